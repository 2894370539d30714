/*
 * client.c - the gRPC client on libevent and nghttp2 (protocol: grpc/grpc
 * doc/PROTOCOL-HTTP2.md). A client holds channels, one per target; a channel
 * holds a few HTTP/2 connections (slots) and a bounded queue of calls waiting
 * for a stream. A call is one allocation holding its path, its framed
 * request and its metadata, plus its deadline timer.
 *
 * The loop of control: API calls and nghttp2 callbacks only change state and
 * ask for a "run" (one deferred event per client). The run dispatches queued
 * calls onto ready connections, serializes what nghttp2 wants to send (once
 * per loop iteration for all the calls started meanwhile, so sends are
 * batched and nghttp2_session_send is never reached from inside an nghttp2
 * callback), then delivers completed calls to their callbacks and frees
 * them: grpc_client_call_deliver() is the only place a call is freed, and
 * no user callback of a final status runs inside nghttp2.
 *
 * This file holds the connections, the channels and the client with its
 * run; a call's life, from its allocation to its delivery, is
 * client_call.c's, and client_int.h is what the two share.
 *
 * Host names resolve asynchronously through libevent's evdns (the system's
 * resolv.conf and hosts file, read once when the first name is looked up),
 * never with a getaddrinfo that would stop the loop: a slow DNS server
 * delays the connections that need it and nothing else. Each (re)connect
 * looks the name up again, so a service that moves is found. A channel
 * made with a TLS context (tls.h) connects through bufferevent_openssl:
 * the server's certificate and name are verified and it must agree to
 * ALPN h2; a handshake that fails fails the calls that waited for it
 * (unsent: no connection carried them) with OpenSSL's reason. What it is
 * not: no compression, no client streaming.
 */
#include "autoconf.h"

#include <sys/queue.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "grpc/client.h"
#include "grpc/client_int.h"
#include "tls.h"
#include "util.h"

#define CLIENT_STREAM_WINDOW	(1024 * 1024)
#define CLIENT_CONN_WINDOW	(16 * 1024 * 1024)
#define CLIENT_LAST_STREAM_ID	(INT32_C(0x7fffffff) - 1024)

static void	conn_timer(evutil_socket_t, short, void *);
static void	conn_fail(struct conn *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	conn_retire(struct conn *);

static double
client_random(struct grpc_client *cli)
{
	/* xorshift64*: jitter only needs to differ between processes. */
	cli->rng ^= cli->rng >> 12;
	cli->rng ^= cli->rng << 25;
	cli->rng ^= cli->rng >> 27;
	return (double)((cli->rng * UINT64_C(2685821657736338717)) >> 11) /
	    (double)(UINT64_C(1) << 53);
}

int
grpc_client_backoff_ms(int failures, int min_ms, int max_ms, double rnd)
{
	double	d = min_ms;

	for (int i = 1; i < failures && d < max_ms; i++)
		d *= 1.6;
	if (d > max_ms)
		d = max_ms;
	d *= 0.8 + 0.4 * rnd;
	return d < 1 ? 1 : (int)d;
}

/* --- nghttp2 callbacks: the connection's frames ------------------------ */

static void
conn_ready(struct conn *c)
{
	struct grpc_client *cli = c->ch->cli;

	c->state = CONN_READY;
	c->failures = 0;
	c->ch->connects++;
	evtimer_del(c->timer);
	if (cli->opts.keepalive_ms > 0) {
		struct timeval tv = { cli->opts.keepalive_ms / 1000,
		    (cli->opts.keepalive_ms % 1000) * 1000 };
		evtimer_add(c->timer, &tv);
	}
	grpc_client_schedule(cli);
}

static int
h2_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *arg)
{
	struct conn		*c = arg;
	struct grpc_client_call	*call;

	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
		    c->state == CONN_HANDSHAKE)
			conn_ready(c);
		break;
	case NGHTTP2_GOAWAY:
		/*
		 * nghttp2 closes the streams above last_stream_id with
		 * REFUSED_STREAM, which retries them elsewhere.
		 */
		conn_retire(c);
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_out = 0;
		break;
	case NGHTTP2_HEADERS:
		call = nghttp2_session_get_stream_user_data(h2,
		    frame->hd.stream_id);
		if (call == NULL || call->state != CALL_ACTIVE)
			break;
		if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
			call->got_headers = 1;
			/* Trailers-Only: its metadata is trailing metadata. */
			if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
				struct grpc_metadata t = call->trailers;
				call->trailers = call->headers;
				call->headers = t;
				call->got_trailers = 1;
			}
		} else if (frame->headers.cat == NGHTTP2_HCAT_HEADERS)
			call->got_trailers = 1;
		break;
	}
	return 0;
}

/* --- connections ----------------------------------------------------------------- */

static struct conn *
conn_new(struct grpc_channel *ch)
{
	struct conn *c = util_xcalloc(1, sizeof(*c));

	c->ch = ch;
	c->state = CONN_IDLE;
	TAILQ_INIT(&c->calls);
	c->timer = evtimer_new(ch->cli->base, conn_timer, c);
	if (c->timer == NULL)
		abort();	/* as util_xcalloc: no memory, no way on */
	return c;
}

static void
conn_mark_dirty(struct conn *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		TAILQ_INSERT_TAIL(&c->ch->cli->dirty, c, dirty_entry);
	}
	grpc_client_schedule(c->ch->cli);
}

/* Frees the socket and the session, never the calls or the struct. */
static void
conn_close(struct conn *c)
{
	if (c->dirty) {
		TAILQ_REMOVE(&c->ch->cli->dirty, c, dirty_entry);
		c->dirty = 0;
	}
	if (c->h2 != NULL)
		nghttp2_session_del(c->h2);
	c->h2 = NULL;
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->timer != NULL)
		evtimer_del(c->timer);
	c->nstreams = 0;
	c->ping_out = 0;
}

static void
conn_destroy(struct conn *c)
{
	conn_close(c);
	if (c->timer != NULL)
		event_free(c->timer);
	free(c);
}

/* Takes a connection out of its slot: it finishes its streams, takes no more. */
static void
conn_retire(struct conn *c)
{
	struct grpc_channel *ch = c->ch;

	if (c->draining)
		return;
	c->draining = 1;
	for (int i = 0; i < ch->nslots; i++)
		if (ch->slots[i] == c) {
			ch->slots[i] = conn_new(ch);
			break;
		}
	TAILQ_INSERT_TAIL(&ch->draining, c, drain_entry);
	conn_mark_dirty(c);
}

static void
channel_fail_queue(struct grpc_channel *ch, int status, const char *msg)
{
	struct grpc_client_call *call;

	while ((call = TAILQ_FIRST(&ch->queue)) != NULL) {
		TAILQ_REMOVE(&ch->queue, call, entry);
		ch->nqueued--;
		grpc_client_call_finish(call, status, "%s", msg);
	}
}

static int
channel_busy(struct grpc_channel *ch)
{
	for (int i = 0; i < ch->nslots; i++)
		if (ch->slots[i]->state == CONN_CONNECTING ||
		    ch->slots[i]->state == CONN_HANDSHAKE ||
		    ch->slots[i]->state == CONN_READY)
			return 1;
	return 0;
}

/*
 * The one way a connection goes down: its calls end UNAVAILABLE with the
 * reason, and a slot connection waits (connect failure) or goes idle.
 */
static void
conn_fail(struct conn *c, const char *fmt, ...)
{
	struct grpc_channel	*ch = c->ch;
	struct grpc_client	*cli = ch->cli;
	struct grpc_client_call	*call;
	enum conn_state		 was = c->state;
	va_list			 ap;
	char			 msg[SAGAD_ERRLEN];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
		TAILQ_REMOVE(&c->calls, call, entry);
		call->conn = NULL;
		grpc_client_call_finish(call, GRPC_STATUS_UNAVAILABLE, "%s",
		    msg);
	}
	conn_close(c);
	grpc_client_schedule(cli);
	if (c->draining) {
		TAILQ_REMOVE(&ch->draining, c, drain_entry);
		conn_destroy(c);
		return;
	}
	snprintf(ch->lasterr, sizeof(ch->lasterr), "%s", msg);
	if (was == CONN_READY) {
		/* It worked before: the next call reconnects at once. */
		c->state = CONN_IDLE;
		return;
	}
	c->failures++;
	c->state = CONN_BACKOFF;
	{
		int ms = grpc_client_backoff_ms(c->failures,
		    cli->opts.backoff_min_ms, cli->opts.backoff_max_ms,
		    client_random(cli));
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		evtimer_add(c->timer, &tv);
	}
	/* Nothing can carry the waiting calls now: they fail fast. */
	if (!channel_busy(ch))
		channel_fail_queue(ch, GRPC_STATUS_UNAVAILABLE, msg);
}

static void
conn_timer(evutil_socket_t fd, short ev, void *arg)
{
	struct conn		*c = arg;
	struct grpc_client	*cli = c->ch->cli;

	(void)fd;
	(void)ev;
	switch (c->state) {
	case CONN_CONNECTING:
	case CONN_HANDSHAKE:
		conn_fail(c, "connect %s: timed out after %d ms",
		    c->ch->authority, cli->opts.connect_timeout_ms);
		break;
	case CONN_BACKOFF:
		c->state = CONN_IDLE;
		grpc_client_schedule(cli);
		break;
	case CONN_READY: {
		struct timeval tv = { cli->opts.keepalive_ms / 1000,
		    (cli->opts.keepalive_ms % 1000) * 1000 };
		if (c->ping_out) {
			conn_fail(c, "%s: keepalive PING not answered in %d ms",
			    c->ch->authority, cli->opts.keepalive_ms);
			break;
		}
		if (util_mono_ms() - c->last_rx >= cli->opts.keepalive_ms) {
			nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
			c->ping_out = 1;
			conn_mark_dirty(c);
		}
		evtimer_add(c->timer, &tv);
		break;
	}
	case CONN_IDLE:
		break;
	}
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct conn	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);

	c->last_rx = util_mono_ms();
	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec	v;
		ssize_t			n;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = nghttp2_session_mem_recv(c->h2, v.iov_base, v.iov_len);
		if (n < 0) {
			conn_fail(c, "%s: http2: %s", c->ch->authority,
			    nghttp2_strerror((int)n));
			return;
		}
		evbuffer_drain(in, (size_t)n);
	}
	conn_mark_dirty(c);
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn	*c = arg;
	int		 err = EVUTIL_SOCKET_ERROR();
	char		 why[SAGAD_ERRLEN];

	if (what & BEV_EVENT_CONNECTED) {
		struct grpc_client	*cli = c->ch->cli;
		nghttp2_settings_entry	 iv[3];
		int			 one = 1;

		if (c->ch->tls != NULL && !tls_alpn_h2(bev)) {
			conn_fail(c, "tls %s: the server did not agree to "
			    "HTTP/2 (ALPN h2)", c->ch->authority);
			return;
		}
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
		if (nghttp2_session_client_new2(&c->h2, cli->cbs, c,
		    cli->h2opt) != 0) {
			conn_fail(c, "%s: cannot make an HTTP/2 session",
			    c->ch->authority);
			return;
		}
		iv[0].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
		iv[0].value = 0;
		iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
		iv[1].value = CLIENT_STREAM_WINDOW;
		iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
		iv[2].value = CLIENT_MAX_HDR_BYTES;
		nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 3);
		nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE,
		    0, CLIENT_CONN_WINDOW);
		c->state = CONN_HANDSHAKE;
		c->last_rx = util_mono_ms();
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		conn_mark_dirty(c);
		return;
	}
	/* Before HTTP/2 is up, an OpenSSL error is the handshake's. */
	if (c->ch->tls != NULL && c->state != CONN_READY &&
	    tls_bev_error(bev, why, sizeof(why)) != NULL) {
		conn_fail(c, "tls %s: %s", c->ch->authority, why);
		return;
	}
	if (c->state == CONN_CONNECTING) {
		int dnserr = bufferevent_socket_get_dns_error(bev);
		if (dnserr != 0)
			conn_fail(c, "connect %s: %s", c->ch->authority,
			    evutil_gai_strerror(dnserr));
		else
			conn_fail(c, "connect %s: %s", c->ch->authority,
			    evutil_socket_error_to_string(err));
	} else if (what & BEV_EVENT_EOF)
		conn_fail(c, "%s: connection closed by the server",
		    c->ch->authority);
	else
		conn_fail(c, "%s: connection lost: %s", c->ch->authority,
		    evutil_socket_error_to_string(err));
}

static void
conn_connect(struct conn *c)
{
	struct grpc_channel	*ch = c->ch;
	struct grpc_client	*cli = ch->cli;
	struct sockaddr_storage	 ss;
	int			 sslen = sizeof(ss), rc;
	struct timeval		 tv;
	char			 err[SAGAD_ERRLEN];

	if (ch->tls != NULL) {
		c->bev = tls_connect_bev(ch->tls, cli->base, ch->server_name !=
		    NULL ? ch->server_name : ch->host, err, sizeof(err));
		if (c->bev == NULL) {
			c->state = CONN_CONNECTING;
			conn_fail(c, "tls %s: %s", ch->authority, err);
			return;
		}
	} else
		c->bev = bufferevent_socket_new(cli->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		c->state = CONN_CONNECTING;
		conn_fail(c, "connect %s: cannot make a socket buffer",
		    ch->authority);
		return;
	}
	bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
	c->state = CONN_CONNECTING;
	tv.tv_sec = cli->opts.connect_timeout_ms / 1000;
	tv.tv_usec = (cli->opts.connect_timeout_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	/* Addresses connect directly; names go through evdns. */
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(ch->authority, (struct sockaddr *)&ss,
	    &sslen) == 0)
		rc = bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss,
		    sslen);
	else {
		if (cli->dns == NULL)
			cli->dns = evdns_base_new(cli->base,
			    EVDNS_BASE_INITIALIZE_NAMESERVERS);
		rc = bufferevent_socket_connect_hostname(c->bev, cli->dns,
		    AF_UNSPEC, ch->host, ch->port);
	}
	if (rc != 0 && c->state == CONN_CONNECTING && c->bev != NULL) {
		int dnserr = bufferevent_socket_get_dns_error(c->bev);
		if (dnserr != 0)
			conn_fail(c, "connect %s: %s", ch->authority,
			    evutil_gai_strerror(dnserr));
		else
			conn_fail(c, "connect %s: %s", ch->authority,
			    evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
	}
}

/* Serializes what nghttp2 has to send; closes what has nothing left. */
static void
conn_flush(struct conn *c)
{
	struct evbuffer *out;

	if (c->h2 == NULL)
		return;
	out = bufferevent_get_output(c->bev);
	for (;;) {
		const uint8_t	*data;
		ssize_t		 n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0) {
			conn_fail(c, "%s: http2: %s", c->ch->authority,
			    nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			break;
		if (evbuffer_add(out, data, (size_t)n) != 0) {
			conn_fail(c, "%s: out of memory for output",
			    c->ch->authority);
			return;
		}
	}
	if (c->draining && c->nstreams == 0 && TAILQ_EMPTY(&c->calls) &&
	    evbuffer_get_length(out) == 0) {
		TAILQ_REMOVE(&c->ch->draining, c, drain_entry);
		conn_destroy(c);
		return;
	}
	if (!nghttp2_session_want_read(c->h2) &&
	    !nghttp2_session_want_write(c->h2))
		conn_fail(c, "%s: connection closed by the server",
		    c->ch->authority);
}

/* --- channels and the client ----------------------------------------------- */

static struct conn *
channel_pick(struct grpc_channel *ch)
{
	for (int i = 0; i < ch->nslots; i++) {
		int		 idx = (ch->rr + i) % ch->nslots;
		struct conn	*c = ch->slots[idx];
		uint32_t	 max;

		if (c->state != CONN_READY)
			continue;
		/* Stream ids run out after 2^31: move on before they do. */
		if (nghttp2_session_get_next_stream_id(c->h2) >
		    (uint32_t)CLIENT_LAST_STREAM_ID ||
		    !nghttp2_session_check_request_allowed(c->h2)) {
			conn_retire(c);
			continue;
		}
		max = nghttp2_session_get_remote_settings(c->h2,
		    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
		if (c->nstreams >= max)
			continue;
		ch->rr = idx + 1;
		return c;
	}
	return NULL;
}

static void
channel_dispatch(struct grpc_channel *ch)
{
	struct grpc_client_call *call;
	struct conn		*c;

	while ((call = TAILQ_FIRST(&ch->queue)) != NULL) {
		if ((c = channel_pick(ch)) == NULL)
			break;
		TAILQ_REMOVE(&ch->queue, call, entry);
		ch->nqueued--;
		grpc_client_call_submit(call, c);
	}
	if (TAILQ_EMPTY(&ch->queue))
		return;
	for (int i = 0; i < ch->nslots; i++)
		if (ch->slots[i]->state == CONN_IDLE)
			conn_connect(ch->slots[i]);
	if (!channel_busy(ch))
		channel_fail_queue(ch, GRPC_STATUS_UNAVAILABLE,
		    ch->lasterr[0] != '\0' ? ch->lasterr : "no connection");
}

void
grpc_client_schedule(struct grpc_client *cli)
{
	/* Activating an active event does nothing: one run per iteration. */
	event_active(cli->run_ev, EV_TIMEOUT, 0);
}

static void
client_run(evutil_socket_t fd, short ev, void *arg)
{
	struct grpc_client	*cli = arg;
	struct grpc_channel	*ch;
	struct grpc_client_call	*call;
	struct conn		*c;

	(void)fd;
	(void)ev;
	for (int pass = 0; pass < 8; pass++) {
		TAILQ_FOREACH(ch, &cli->channels, entry)
			if (!TAILQ_EMPTY(&ch->queue))
				channel_dispatch(ch);
		while ((c = TAILQ_FIRST(&cli->dirty)) != NULL) {
			TAILQ_REMOVE(&cli->dirty, c, dirty_entry);
			c->dirty = 0;
			conn_flush(c);
		}
		if (TAILQ_EMPTY(&cli->done))
			return;
		/* Callbacks may start calls: the next pass sends them. */
		while ((call = TAILQ_FIRST(&cli->done)) != NULL) {
			TAILQ_REMOVE(&cli->done, call, entry);
			grpc_client_call_deliver(call);
		}
	}
	grpc_client_schedule(cli);
}

struct grpc_client *
grpc_client_new(struct event_base *base, const struct grpc_client_opts *opts,
    char *err, size_t errlen)
{
	struct grpc_client	*cli = util_xcalloc(1, sizeof(*cli));

	if (opts != NULL)
		cli->opts = *opts;
	if (cli->opts.max_recv == 0)
		cli->opts.max_recv = GRPC_DEFAULT_MAX_RECV;
	if (cli->opts.connect_timeout_ms <= 0)
		cli->opts.connect_timeout_ms = 5000;
	if (cli->opts.backoff_min_ms <= 0)
		cli->opts.backoff_min_ms = 100;
	if (cli->opts.backoff_max_ms <= 0)
		cli->opts.backoff_max_ms = 5000;
	if (cli->opts.backoff_max_ms < cli->opts.backoff_min_ms)
		cli->opts.backoff_max_ms = cli->opts.backoff_min_ms;
	if (cli->opts.max_queued == 0)
		cli->opts.max_queued = 10000;
	if (cli->opts.conns_per_target <= 0)
		cli->opts.conns_per_target = 1;
	if (cli->opts.conns_per_target > 64)
		cli->opts.conns_per_target = 64;
	snprintf(cli->ua, sizeof(cli->ua), "%s",
	    cli->opts.user_agent != NULL ? cli->opts.user_agent :
	    "sagad/" PACKAGE_VERSION);
	cli->opts.user_agent = NULL;
	cli->base = base;
	cli->rng = (uint64_t)util_mono_ms() ^ (uint64_t)util_now_ms() << 20 ^
	    (uint64_t)(uintptr_t)cli;
	if (cli->rng == 0)
		cli->rng = 1;
	TAILQ_INIT(&cli->channels);
	TAILQ_INIT(&cli->dirty);
	TAILQ_INIT(&cli->done);
	if ((cli->run_ev = event_new(base, -1, 0, client_run, cli)) == NULL) {
		snprintf(err, errlen, "grpc client: cannot make an event");
		free(cli);
		return NULL;
	}
	if (nghttp2_session_callbacks_new(&cli->cbs) != 0 ||
	    nghttp2_option_new(&cli->h2opt) != 0) {
		snprintf(err, errlen, "grpc client: out of memory");
		grpc_client_free(cli);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_header_callback(cli->cbs,
	    grpc_client_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cli->cbs,
	    grpc_client_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cli->cbs,
	    h2_on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cli->cbs,
	    grpc_client_on_stream_close);
	return cli;
}

static void
channel_free(struct grpc_channel *ch)
{
	struct grpc_client_call	*call;
	struct conn		*c;

	for (int i = 0; i < ch->nslots; i++) {
		c = ch->slots[i];
		while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
			TAILQ_REMOVE(&c->calls, call, entry);
			call->cancelled = 1;
			grpc_client_call_deliver(call);
		}
		conn_destroy(c);
	}
	while ((c = TAILQ_FIRST(&ch->draining)) != NULL) {
		TAILQ_REMOVE(&ch->draining, c, drain_entry);
		while ((call = TAILQ_FIRST(&c->calls)) != NULL) {
			TAILQ_REMOVE(&c->calls, call, entry);
			call->cancelled = 1;
			grpc_client_call_deliver(call);
		}
		conn_destroy(c);
	}
	while ((call = TAILQ_FIRST(&ch->queue)) != NULL) {
		TAILQ_REMOVE(&ch->queue, call, entry);
		call->cancelled = 1;
		grpc_client_call_deliver(call);
	}
	free(ch->slots);
	free(ch->host);
	free(ch->authority);
	free(ch->server_name);
	tls_free(ch->tls);
	free(ch);
}

void
grpc_client_free(struct grpc_client *cli)
{
	struct grpc_channel	*ch;
	struct grpc_client_call	*call;

	if (cli == NULL)
		return;
	while ((ch = TAILQ_FIRST(&cli->channels)) != NULL) {
		TAILQ_REMOVE(&cli->channels, ch, entry);
		channel_free(ch);
	}
	while ((call = TAILQ_FIRST(&cli->done)) != NULL) {
		TAILQ_REMOVE(&cli->done, call, entry);
		call->cancelled = 1;
		grpc_client_call_deliver(call);
	}
	if (cli->run_ev != NULL)
		event_free(cli->run_ev);
	/* After the channels: their freed connections cancelled lookups. */
	if (cli->dns != NULL)
		evdns_base_free(cli->dns, 1);
	if (cli->cbs != NULL)
		nghttp2_session_callbacks_del(cli->cbs);
	if (cli->h2opt != NULL)
		nghttp2_option_del(cli->h2opt);
	free(cli);
}

struct grpc_channel *
grpc_client_channel(struct grpc_client *cli, const char *host, int port)
{
	return grpc_client_channel_tls(cli, host, port, NULL, NULL);
}

struct grpc_channel *
grpc_client_channel_tls(struct grpc_client *cli, const char *host, int port,
    struct tls *tls, const char *server_name)
{
	struct grpc_channel	*ch;
	size_t			 len;

	if (tls == NULL)
		server_name = NULL;
	TAILQ_FOREACH(ch, &cli->channels, entry)
		if (ch->port == port && strcmp(ch->host, host) == 0 &&
		    ch->tls == tls && (ch->server_name == NULL ?
		    server_name == NULL : server_name != NULL &&
		    strcmp(ch->server_name, server_name) == 0))
			return ch;
	ch = util_xcalloc(1, sizeof(*ch));
	ch->cli = cli;
	ch->host = util_xstrdup(host);
	ch->port = port;
	ch->tls = tls_ref(tls);
	ch->server_name = server_name != NULL ? util_xstrdup(server_name) :
	    NULL;
	len = strlen(host) + 16;
	ch->authority = util_xcalloc(1, len);
	if (strchr(host, ':') != NULL)
		snprintf(ch->authority, len, "[%s]:%d", host, port);
	else
		snprintf(ch->authority, len, "%s:%d", host, port);
	TAILQ_INIT(&ch->draining);
	TAILQ_INIT(&ch->queue);
	ch->nslots = cli->opts.conns_per_target;
	ch->slots = util_xcalloc((size_t)ch->nslots, sizeof(*ch->slots));
	for (int i = 0; i < ch->nslots; i++)
		ch->slots[i] = conn_new(ch);
	TAILQ_INSERT_TAIL(&cli->channels, ch, entry);
	return ch;
}

void
grpc_client_channel_stats(const struct grpc_channel *ch,
    struct grpc_channel_stats *st)
{
	const struct conn *c;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < ch->nslots; i++) {
		c = ch->slots[i];
		if (c->h2 != NULL)
			st->conns_open++;
		st->active += c->nstreams;
	}
	TAILQ_FOREACH(c, &ch->draining, drain_entry) {
		if (c->h2 != NULL)
			st->conns_open++;
		st->active += c->nstreams;
	}
	st->connects = ch->connects;
	st->queued = ch->nqueued;
}
