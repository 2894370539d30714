/*
 * ctl_bench.c - `sagactl bench`: drives Runs at a fixed rate (an open
 * loop, like vegeta) or as fast as answers come (a closed loop, with a
 * bound on the sagas in flight) over one or more connections, and prints
 * a report of what came back (src/report.c), optionally with a plot.
 */
#include "autoconf.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ctl.h"
#include "ctl_int.h"
#include "grpc/client.h"
#include "grpc/grpc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "json.h"
#include "report.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "util.h"

struct bench;

struct bench_req {
	struct bench	*b;
	int64_t		 sent_us;
};

struct bench {
	struct ctl		*c;
	int			 nchans;
	struct report		 rep;
	uint8_t			*tmpl;		/* RunRequest without its id */
	size_t			 tmpl_len;
	char			 prefix[64];
	uint64_t		 seq;
	double			 rate;		/* 0: closed loop */
	int64_t			 duration_us;
	int64_t			 start_us;
	int64_t			 last_sent_us;
	int64_t			 last_done_us;
	size_t			 inflight;
	size_t			 max_inflight;
	size_t			 done;
	size_t			 ok;
	int			 stopping;
	int			 tty;
	struct event		*tick;
	struct event		*progress;
	struct event		*sigint;
};

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void bench_send(struct bench *);

static void
bench_done(void *arg, const struct grpc_client_result *r)
{
	struct bench_req	*q = arg;
	struct bench		*b = q->b;
	int64_t			 now = mono_us();
	int			 state = 0;

	if (r->status == GRPC_STATUS_OK) {
		Saga__V1__Saga *pb = saga__v1__saga__unpack(NULL, r->len,
		    r->data);
		if (pb != NULL) {
			state = pb->state;
			if (pb->error != NULL && *pb->error &&
			    state != SAGA_STATE_COMPLETED)
				report_error(&b->rep, pb->error);
			saga__v1__saga__free_unpacked(pb, NULL);
		}
		if (state == SAGA_STATE_COMPLETED)
			b->ok++;
	} else {
		char msg[300];
		snprintf(msg, sizeof(msg), "%s: %s",
		    grpc_status_name(r->status), r->message);
		report_error(&b->rep, msg);
	}
	report_add(&b->rep, q->sent_us - b->start_us, now - q->sent_us,
	    r->status, state);
	b->last_done_us = now;
	b->inflight--;
	b->done++;
	free(q);
	if (b->rate == 0 && !b->stopping && now - b->start_us < b->duration_us)
		bench_send(b);
}

static void
bench_send(struct bench *b)
{
	struct bench_req	*q = util_xcalloc(1, sizeof(*q));
	char			 id[96];
	uint8_t			*buf;
	size_t			 idlen, len;

	/* The template already holds the flow and context; add field 2. */
	idlen = (size_t)snprintf(id, sizeof(id), "%s-%llu", b->prefix,
	    (unsigned long long)b->seq);
	len = b->tmpl_len + 2 + idlen;
	buf = util_xcalloc(1, len);
	memcpy(buf, b->tmpl, b->tmpl_len);
	buf[b->tmpl_len] = (2 << 3) | 2;	/* field 2, length-delimited */
	buf[b->tmpl_len + 1] = (uint8_t)idlen;	/* ids are < 128 bytes */
	memcpy(buf + b->tmpl_len + 2, id, idlen);
	q->b = b;
	q->sent_us = mono_us();
	b->last_sent_us = q->sent_us;
	b->inflight++;
	grpc_client_call_start(b->c->ch,
	    "/saga.v1.Orchestrator/Run", buf, len, CTL_MD(b->c),
	    b->c->timeout_ms,
	    bench_done, q);
	b->seq++;
	free(buf);
}

static void
bench_check_end(struct bench *b)
{
	int64_t now = mono_us();

	if ((b->stopping || now - b->start_us >= b->duration_us) &&
	    b->inflight == 0)
		event_base_loopbreak(b->c->base);
}

static void
bench_tick(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct bench	*b = arg;
	int64_t		 now = mono_us(), el = now - b->start_us;
	uint64_t	 due;

	if (b->rate > 0 && !b->stopping && el < b->duration_us) {
		due = (uint64_t)((double)el * b->rate / 1e6) + 1;
		while (b->seq < due && b->inflight < b->max_inflight)
			bench_send(b);
	}
	bench_check_end(b);
}

static void
bench_progress(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED,
    void *arg)
{
	struct bench	*b = arg;
	double		 el = (double)(mono_us() - b->start_us) / 1e6;

	fprintf(stderr, "\r[%6.1fs] sent %llu  done %zu  completed %zu  "
	    "in flight %zu   ", el, (unsigned long long)b->seq, b->done,
	    b->ok, b->inflight);
}

static void
bench_sigint(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct bench *b = arg;

	/* Stop sending; the answers still due complete the report. */
	b->stopping = 1;
}

int
ctl_cmd_bench(struct ctl *c, int argc, char **argv, const char *host, int port)
{
	static const struct option opts[] = {
		{ "rate",	  required_argument, NULL, 'r' },
		{ "duration",	  required_argument, NULL, 'd' },
		{ "connections",  required_argument, NULL, 'c' },
		{ "max-inflight", required_argument, NULL, 'n' },
		{ "mode",	  required_argument, NULL, 'm' },
		{ "plot",	  required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	Saga__V1__RunRequest			 req;
	struct bench				 b;
	const char				*plot = NULL;
	char					 err[SAGAD_ERRLEN], *end;
	struct timeval				 tv_tick = { 0, 1000 },
						 tv_prog = { 1, 0 };
	int					 ch, rc = CTL_EXIT_USAGE, mode;

	memset(&b, 0, sizeof(b));
	b.c = c;
	b.rate = -1;
	b.nchans = 1;
	b.max_inflight = 0;
	saga__v1__run_request__init(&req);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "r:d:c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			b.rate = strtod(optarg, &end);
			if (*end != '\0' || b.rate < 0) {
				fprintf(stderr, "sagactl: bench: -r: expected "
				    "a rate per second (0 = closed loop), got "
				    "\"%s\"\n", optarg);
				return CTL_EXIT_USAGE;
			}
			break;
		case 'd':
			if (ctl_parse_duration(optarg, &b.duration_us) == -1 ||
			    b.duration_us <= 0) {
				fprintf(stderr, "sagactl: bench: -d: expected "
				    "a duration such as 30s or 500ms, got "
				    "\"%s\"\n", optarg);
				return CTL_EXIT_USAGE;
			}
			break;
		case 'c':
			b.nchans = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || b.nchans < 1 || b.nchans > 1024) {
				fprintf(stderr, "sagactl: bench: -c: expected "
				    "1 to 1024 connections\n");
				return CTL_EXIT_USAGE;
			}
			break;
		case 'n':
			b.max_inflight = strtoul(optarg, &end, 10);
			if (*end != '\0' || b.max_inflight < 1) {
				fprintf(stderr, "sagactl: bench: "
				    "--max-inflight: expected a positive "
				    "count\n");
				return CTL_EXIT_USAGE;
			}
			break;
		case 'm':
			if ((mode = ctl_parse_mode(optarg)) != -1)
				req.mode = (Saga__V1__Mode)mode;
			else {
				fprintf(stderr, "sagactl: bench: --mode: "
				    "expected sync, async or throttling\n");
				return CTL_EXIT_USAGE;
			}
			break;
		case 'p':
			plot = optarg;
			break;
		default:
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc || b.rate < 0 || b.duration_us == 0) {
		fprintf(stderr, "sagactl: bench: expected FLOW -r RATE -d "
		    "DURATION\n");
		return CTL_EXIT_USAGE;
	}
	if (b.max_inflight == 0)
		b.max_inflight = b.rate == 0 ? 64 : 100000;
	req.flow = argv[optind++];
	if (ctl_req_context(&req, argc, argv, optind, err, sizeof(err)) == -1) {
		fprintf(stderr, "sagactl: bench: %s\n", err);
		goto out;
	}
	b.tmpl_len = saga__v1__run_request__get_packed_size(&req);
	b.tmpl = util_xcalloc(1, b.tmpl_len + 1);
	saga__v1__run_request__pack(&req, b.tmpl);

	/* Unique ids per run, so a second bench never joins old sagas. */
	snprintf(b.prefix, sizeof(b.prefix), "bench-%ld-%lld", (long)getpid(),
	    (long long)util_now_ms());
	{
		/*
		 * -c N: N connections to sagad, calls round robin on them. An
		 * open loop must never wait in its own queue: that would hide
		 * sagad's latency, so the queue is as long as --max-inflight.
		 */
		struct grpc_client_opts	 o = { .conns_per_target = b.nchans,
					    .max_queued = b.max_inflight + 1 };
		struct grpc_client	*cl;

		cl = grpc_client_new(c->base, &o, err, sizeof(err));
		if (cl == NULL) {
			fprintf(stderr, "sagactl: %s\n", err);
			rc = CTL_EXIT_FAILED;
			goto out;
		}
		grpc_client_free(c->client);
		c->client = cl;
		c->ch = grpc_client_channel_tls(cl, host, port, c->tls,
		    c->server_name);
	}
	report_init(&b.rep, "");
	{
		char title[256];
		snprintf(title, sizeof(title), "sagactl bench %s: %s",
		    req.flow, b.rate > 0 ? "open loop" : "closed loop");
		free(b.rep.title);
		b.rep.title = util_xstrdup(title);
	}
	b.tty = isatty(STDERR_FILENO);
	b.tick = event_new(c->base, -1, EV_PERSIST, bench_tick, &b);
	event_add(b.tick, &tv_tick);
	if (b.tty) {
		b.progress = event_new(c->base, -1, EV_PERSIST, bench_progress,
		    &b);
		event_add(b.progress, &tv_prog);
	}
	b.sigint = evsignal_new(c->base, SIGINT, bench_sigint, &b);
	event_add(b.sigint, NULL);
	b.start_us = mono_us();
	if (b.rate == 0)
		for (size_t i = 0; i < b.max_inflight; i++)
			bench_send(&b);
	event_base_dispatch(c->base);
	if (b.tty)
		fprintf(stderr, "\n");
	b.rep.attack_us = b.last_sent_us - b.start_us;
	b.rep.total_us = b.last_done_us - b.start_us;
	if (c->json)
		report_print_json(&b.rep, stdout);
	else
		report_print(&b.rep, stdout);
	rc = CTL_EXIT_OK;
	if (plot != NULL) {
		FILE *fp = fopen(plot, "w");
		if (fp == NULL) {
			fprintf(stderr, "sagactl: %s: %s\n", plot,
			    strerror(errno));
			rc = CTL_EXIT_FAILED;
		} else {
			report_plot_svg(&b.rep, fp);
			fclose(fp);
		}
	}
	event_free(b.tick);
	if (b.progress != NULL)
		event_free(b.progress);
	event_free(b.sigint);
	report_free(&b.rep);
out:
	ctl_req_context_free(&req);
	free(b.tmpl);
	return rc;
}

