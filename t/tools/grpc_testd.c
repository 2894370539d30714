/*
 * grpc_testd.c - a small gRPC server for the interop tests and the benchmark:
 * the health service plus raw-bytes test methods under /test.Echo/ that echo,
 * sleep, stream and report what the server saw (cancel callbacks run, the
 * largest per-stream queue). It is a test program, not part of sagad.
 *
 * Usage: grpc_testd [-h host] [-p port] [-m max_recv_bytes]
 * Prints "port N" on stdout once it listens. SIGTERM or SIGINT: health
 * watchers end, the server shuts down gracefully and the program exits 0.
 */
#include "autoconf.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "grpc/server.h"
#include "health.h"
#include "util.h"

static struct event_base	*base;
static struct grpc_server	*srv;
static struct health		*health;
static long			 ncancels;
static size_t			 max_queued;

/* A pending timer-driven call: Slow and Stream. */
struct pending {
	struct grpc_call	*call;
	struct event		*ev;
	int			 left;	/* messages still to send */
	int			 seq;
	int			 delay_ms;
	size_t			 size;	/* Flood: bytes per message */
};

static long
md_long(struct grpc_call *call, const char *key, long def)
{
	const struct grpc_md *m = grpc_md_get(grpc_call_metadata(call), key);

	return m != NULL ? strtol((const char *)m->value, NULL, 10) : def;
}

static void
pending_free(struct pending *p)
{
	event_free(p->ev);
	free(p);
}

static void
pending_cancel(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	ncancels++;
	pending_free(arg);
}

static void
arm(struct pending *p, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(p->ev, &tv);
}

/* Echo the request; its metadata comes back as headers and "trailer-*". */
static void
m_unary(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	const struct grpc_metadata *md = grpc_call_metadata(call);
	const struct grpc_md *st, *msg;
	const uint8_t *req;
	size_t len;
	char key[300];

	for (size_t i = 0; i < md->n; i++) {
		if (strncmp(md->items[i].key, "x-", 2) == 0)
			continue;
		grpc_call_add_header(call, md->items[i].key,
		    md->items[i].value, md->items[i].len);
		snprintf(key, sizeof(key), "trailer-%s", md->items[i].key);
		grpc_call_add_trailer(call, key, md->items[i].value,
		    md->items[i].len);
	}
	st = grpc_md_get(md, "x-status");
	if (st != NULL && atoi((const char *)st->value) != 0) {
		msg = grpc_md_get(md, "x-message-bin");
		grpc_call_finish(call, atoi((const char *)st->value),
		    msg != NULL ? (const char *)msg->value : NULL);
		return;
	}
	req = grpc_call_request_raw(call, &len);
	grpc_call_reply_raw(call, req, len);
}

static void
m_len(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	char buf[32];
	size_t len;

	grpc_call_request_raw(call, &len);
	snprintf(buf, sizeof(buf), "%zu", len);
	grpc_call_reply_raw(call, buf, strlen(buf));
}

static void
slow_fire(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct pending *p = arg;

	grpc_call_reply_raw(p->call, "slept", 5);
	pending_free(p);
}

static void
m_slow(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	struct pending *p = util_xcalloc(1, sizeof(*p));

	p->call = call;
	p->ev = evtimer_new(base, slow_fire, p);
	grpc_call_on_cancel(call, pending_cancel, p);
	arm(p, (int)md_long(call, "x-sleep-ms", 10000));
}

static void	stream_fire(evutil_socket_t, short, void *);

static void
stream_writable(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	stream_fire(-1, 0, arg);
}

/* Stream and Flood: send left messages, every delay_ms, respecting EAGAIN. */
static void
stream_fire(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct pending *p = arg;
	char buf[64];
	int rv;

	while (p->left > 0) {
		if (p->size > 0) {
			uint8_t *big = util_xcalloc(1, p->size);
			snprintf((char *)big, p->size, "msg %d", p->seq);
			rv = grpc_call_send_raw(p->call, big, p->size);
			free(big);
		} else {
			snprintf(buf, sizeof(buf), "msg %d", p->seq);
			rv = grpc_call_send_raw(p->call, buf, strlen(buf));
		}
		if (grpc_call_queued(p->call) > max_queued)
			max_queued = grpc_call_queued(p->call);
		if (rv == GRPC_CALL_EAGAIN)
			return;		/* stream_writable goes on */
		if (rv != GRPC_CALL_OK)
			break;
		p->seq++;
		p->left--;
		if (p->delay_ms > 0 && p->left > 0) {
			arm(p, p->delay_ms);
			return;
		}
	}
	grpc_call_finish(p->call, GRPC_STATUS_OK, NULL);
	pending_free(p);
}

static void
m_stream(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	struct pending *p = util_xcalloc(1, sizeof(*p));

	p->call = call;
	p->ev = evtimer_new(base, stream_fire, p);
	p->left = (int)md_long(call, "x-count", 10);
	p->delay_ms = (int)md_long(call, "x-delay-ms", 10);
	p->size = (size_t)md_long(call, "x-size", 0);
	grpc_call_on_cancel(call, pending_cancel, p);
	grpc_call_on_writable(call, stream_writable, p);
	arm(p, 0);
}

static void
m_stats(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	char buf[160];

	snprintf(buf, sizeof(buf), "cancels=%ld calls=%zu conns=%zu "
	    "watchers=%zu max_queued=%zu", ncancels, grpc_server_ncalls(srv),
	    grpc_server_nconns(srv), health_nwatchers(health), max_queued);
	grpc_call_reply_raw(call, buf, strlen(buf));
}

static void
m_set_health(struct grpc_call *call, void *arg SAGAD_UNUSED)
{
	const struct grpc_md *svc = grpc_md_get(grpc_call_metadata(call),
	    "x-service");

	health_set(health, svc != NULL ? (const char *)svc->value : "",
	    (int)md_long(call, "x-health", 1));
	grpc_call_reply_raw(call, "", 0);
}

static void
shutdown_done(struct grpc_server *s SAGAD_UNUSED, void *arg SAGAD_UNUSED)
{
	event_base_loopexit(base, NULL);
}

static void
on_signal(evutil_socket_t sig SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg SAGAD_UNUSED)
{
	health_shutdown(health);
	grpc_server_shutdown(srv, shutdown_done, NULL);
}

int
main(int argc, char **argv)
{
	static const struct {
		const char	*path;
		grpc_handler_fn	 fn;
		int		 streaming;
	} methods[] = {
		{ "/test.Echo/Unary", m_unary, 0 },
		{ "/test.Echo/Len", m_len, 0 },
		{ "/test.Echo/Slow", m_slow, 0 },
		{ "/test.Echo/Stream", m_stream, 1 },
		{ "/test.Echo/Stats", m_stats, 0 },
		{ "/test.Echo/SetHealth", m_set_health, 0 },
	};
	struct grpc_server_opts opts;
	struct event *sigterm, *sigint;
	char err[SAGAD_ERRLEN];
	const char *host = "127.0.0.1";
	int ch, port = 0;

	memset(&opts, 0, sizeof(opts));
	while ((ch = getopt(argc, argv, "h:p:m:")) != -1) {
		switch (ch) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'm':
			opts.max_recv_msg = strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: grpc_testd [-h host] [-p port] "
			    "[-m max_recv]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	if ((srv = grpc_server_new(base, &opts, err, sizeof(err))) == NULL ||
	    (health = health_new(srv, err, sizeof(err))) == NULL) {
		fprintf(stderr, "grpc_testd: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		struct grpc_method m;

		memset(&m, 0, sizeof(m));
		m.path = methods[i].path;
		m.handler = methods[i].fn;
		m.server_streaming = methods[i].streaming;
		if (grpc_server_register(srv, &m, err, sizeof(err)) != 0) {
			fprintf(stderr, "grpc_testd: %s\n", err);
			return 1;
		}
	}
	if (grpc_server_listen(srv, host, port, err, sizeof(err)) != 0) {
		fprintf(stderr, "grpc_testd: %s\n", err);
		return 1;
	}
	printf("port %d\n", grpc_server_port(srv));
	fflush(stdout);
	sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
	sigint = evsignal_new(base, SIGINT, on_signal, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	event_base_dispatch(base);
	grpc_server_free(srv);
	health_free(health);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(base);
	return 0;
}
