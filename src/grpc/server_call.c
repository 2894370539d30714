/*
 * server_call.c - a call's life in the gRPC server: a request arriving
 * (its HEADERS and DATA, as nghttp2 hands them over), the checks of
 * grpc/grpc doc/PROTOCOL-HTTP2.md's request shape, the call dispatched
 * through the method table to its handler, the grpc_call_* API the handler
 * uses, the response on the wire (HEADERS, DATA, trailers or Trailers-Only)
 * and the call's one free path, grpc_server_stream_free(). What it is not:
 * the connection, its session and its output (server.c), nor the memory
 * budget and the counts it asks about (server_limits.c). It does not log.
 *
 * Memory is bounded: request headers by max_header_list, request messages by
 * max_recv_msg and per connection by conn_in_max, queued replies per stream
 * by stream_queue_max (grpc_call_send says EAGAIN above it), and above all
 * by the server's memory budget (server_limits.c): past it a new stream or a
 * reply is RESOURCE_EXHAUSTED.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>

#include "grpc/grpc.h"
#include "grpc/h2.h"
#include "grpc/server.h"
#include "grpc/server_int.h"
#include "metrics.h"
#include "util.h"

#define STREAM_SMALL_MSG	4096	/* always queued on an empty stream */

/* Literals live forever: nghttp2 need not copy them. */
static void
nv_set_static(nghttp2_nv *nv, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	grpc_nv_set(nv, name, namelen, value, valuelen);
	nv->flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
}

#define NV_LIT(nv, n, v) \
	nv_set_static((nv), (n), sizeof(n) - 1, (v), sizeof(v) - 1)

/* grpc-status values without a printf per call; statuses are clamped. */
static const char *
status_str(int status)
{
	static const char *codes[] = { "0", "1", "2", "3", "4", "5", "6",
	    "7", "8", "9", "10", "11", "12", "13", "14", "15", "16" };

	if (status < 0 || status > GRPC_STATUS_MAX)
		status = GRPC_STATUS_UNKNOWN;
	return codes[status];
}

/* --- metadata out --------------------------------------------------------- */

static int
md_add_checked(struct grpc_metadata *md, const char *key, const void *value,
    size_t len)
{
	if (!grpc_md_sendable(key, strlen(key), value, len))
		return GRPC_CALL_EINVAL;
	grpc_md_add(md, key, value, len);
	return GRPC_CALL_OK;
}

/*
 * Appends md to nva; -bin values are base64-encoded into strings the caller
 * frees with nv_free_b64(). Returns the new count.
 */
static size_t
nv_add_md(nghttp2_nv *nva, size_t n, const struct grpc_metadata *md,
    char **b64s, size_t *nb64)
{
	for (size_t i = 0; i < md->n; i++) {
		const struct grpc_md *m = &md->items[i];
		size_t klen = strlen(m->key);

		if (grpc_md_is_bin(m->key, klen)) {
			size_t blen;
			char *b = grpc_b64_encode(m->value, m->len, &blen);
			b64s[(*nb64)++] = b;
			grpc_nv_set(&nva[n++], m->key, klen, b, blen);
		} else
			grpc_nv_set(&nva[n++], m->key, klen, m->value, m->len);
	}
	return n;
}

static void
nv_free_b64(char **b64s, size_t nb64)
{
	for (size_t i = 0; i < nb64; i++)
		free(b64s[i]);
}

/* --- responses ------------------------------------------------------------ */

static ssize_t
data_read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
    uint32_t *flags, nghttp2_data_source *src, void *user SAGAD_UNUSED)
{
	struct grpc_call *c = src->ptr;
	struct conn *conn = c->conn;
	size_t have = evbuffer_get_length(c->out);
	size_t n = have < length ? have : length;
	size_t cap = conn->srv->opts.stream_queue_max;

	if (n > 0) {
		evbuffer_remove(c->out, buf, n);
		grpc_server_mem_sub(conn, &conn->out_queued, n);
	}
	if (c->want_writable && have - n <= cap / 2) {
		/* The callback runs from conn_flush, outside nghttp2. */
		c->want_writable = 0;
		c->writable_pending = 1;
		conn->writable_pending = 1;
	}
	if (have - n > 0)
		return (ssize_t)n;
	if (!c->finished) {
		if (n > 0)
			return (ssize_t)n;
		c->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	/* The end: trailers carry the status, so DATA does not end the stream. */
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	{
		const char *code = status_str(c->status);
		char *pmsg = NULL, *b64s[64];
		size_t nb64 = 0, n_nv = 0, max = 2 + c->trls_out.n;
		nghttp2_nv stack_nv[16], *nva;

		if (c->trls_out.n > 64)
			max = 2 + 64;
		nva = max <= 16 ? stack_nv : util_xcalloc(max, sizeof(*nva));
		nv_set_static(&nva[n_nv++], "grpc-status", 11, code,
		    strlen(code));
		if (c->message != NULL && c->message[0] != '\0') {
			pmsg = grpc_percent_encode(c->message, strlen(c->message));
			grpc_nv_set(&nva[n_nv++], "grpc-message", 12, pmsg,
			    strlen(pmsg));
		}
		if (c->trls_out.n <= 64)
			n_nv = nv_add_md(nva, n_nv, &c->trls_out, b64s, &nb64);
		if (nghttp2_submit_trailer(h2, id, nva, n_nv) != 0)
			*flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nv_free_b64(b64s, nb64);
		free(pmsg);
		if (nva != stack_nv)
			free(nva);
	}
	return (ssize_t)n;
}

/* HEADERS that open the response; DATA follows from c->out. */
static int
call_send_headers(struct grpc_call *c)
{
	char *b64s[64];
	size_t nb64 = 0, n = 0, max = 2 + c->hdrs_out.n;
	nghttp2_nv stack_nv[16], *nva;
	nghttp2_data_provider dp;
	int rv;

	if (c->hdrs_out.n > 64)
		return GRPC_CALL_EINVAL;
	nva = max <= 16 ? stack_nv : util_xcalloc(max, sizeof(*nva));
	NV_LIT(&nva[n++], ":status", "200");
	NV_LIT(&nva[n++], "content-type", "application/grpc");
	n = nv_add_md(nva, n, &c->hdrs_out, b64s, &nb64);
	dp.source.ptr = c;
	dp.read_callback = data_read_cb;
	rv = nghttp2_submit_response(c->conn->h2, c->id, nva, n, &dp);
	nv_free_b64(b64s, nb64);
	if (nva != stack_nv)
		free(nva);
	if (rv != 0)
		return GRPC_CALL_EDONE;
	c->headers_sent = 1;
	return GRPC_CALL_OK;
}

/* A response of one HEADERS frame with END_STREAM: Trailers-Only. */
static void
call_trailers_only(struct grpc_call *c, int status, const char *msg)
{
	const char *code = status_str(status);
	char *pmsg = NULL, *b64s[128];
	size_t nb64 = 0, n = 0, max = 4 + c->hdrs_out.n + c->trls_out.n;
	nghttp2_nv stack_nv[16], *nva;

	nva = max <= 16 ? stack_nv : util_xcalloc(max, sizeof(*nva));
	NV_LIT(&nva[n++], ":status", "200");
	NV_LIT(&nva[n++], "content-type", "application/grpc");
	nv_set_static(&nva[n++], "grpc-status", 11, code, strlen(code));
	if (msg != NULL && msg[0] != '\0') {
		pmsg = grpc_percent_encode(msg, strlen(msg));
		grpc_nv_set(&nva[n++], "grpc-message", 12, pmsg, strlen(pmsg));
	}
	if (c->hdrs_out.n + c->trls_out.n <= 128) {
		n = nv_add_md(nva, n, &c->hdrs_out, b64s, &nb64);
		n = nv_add_md(nva, n, &c->trls_out, b64s, &nb64);
	}
	nghttp2_submit_response(c->conn->h2, c->id, nva, n, NULL);
	nv_free_b64(b64s, nb64);
	free(pmsg);
	if (nva != stack_nv)
		free(nva);
	c->headers_sent = 1;
	c->finished = 1;
	grpc_server_conn_schedule_flush(c->conn);
}

/* A plain HTTP error, for requests that are not gRPC at all. */
static void
call_http_error(struct grpc_call *c, const char *status)
{
	nghttp2_nv nva[1];

	grpc_nv_set(&nva[0], ":status", 7, status, strlen(status));
	nghttp2_submit_response(c->conn->h2, c->id, nva, 1, NULL);
	c->headers_sent = 1;
	c->finished = 1;
	c->state = CALL_DONE;
	if (nghttp2_session_get_stream_remote_close(c->conn->h2, c->id) == 0)
		c->rst_after = 1;
	grpc_server_conn_schedule_flush(c->conn);
}

/*
 * Ends a call that the handler does not own (yet or any more) with a status.
 * If the client is still sending, the stream is reset with NO_ERROR once the
 * response is out, as RFC 9113 8.1 allows.
 */
static void
call_fail(struct grpc_call *c, int status, const char *msg)
{
	c->state = CALL_DONE;
	if (c->finished)
		return;
	metrics_grpc_request(c->method != NULL ? c->method->path : "unknown",
	    status);
	if (nghttp2_session_get_stream_remote_close(c->conn->h2, c->id) == 0)
		c->rst_after = 1;
	if (!c->headers_sent && evbuffer_get_length(c->out) == 0) {
		call_trailers_only(c, status, msg);
		return;
	}
	c->status = status;
	free(c->message);
	c->message = msg != NULL ? util_xstrdup(msg) : NULL;
	c->finished = 1;
	if (!c->headers_sent)
		call_send_headers(c);
	else if (c->deferred) {
		c->deferred = 0;
		nghttp2_session_resume_data(c->conn->h2, c->id);
	}
	grpc_server_conn_schedule_flush(c->conn);
}

/* --- the call API --------------------------------------------------------- */

const char *
grpc_call_path(const struct grpc_call *c)
{
	return c->path;
}

const ProtobufCMessage *
grpc_call_request(const struct grpc_call *c)
{
	return c->reqmsg;
}

const uint8_t *
grpc_call_request_raw(const struct grpc_call *c, size_t *len)
{
	*len = c->reqlen;
	return c->req != NULL ? c->req : (const uint8_t *)"";
}

const struct grpc_metadata *
grpc_call_metadata(const struct grpc_call *c)
{
	return &c->md;
}

int64_t
grpc_call_deadline(const struct grpc_call *c)
{
	return c->deadline;
}

const char *
grpc_call_peer(const struct grpc_call *c)
{
	if (c->conn == NULL)
		return c->lpeer != NULL ? c->lpeer : "local";
	return c->conn->peer;
}

void
grpc_call_set_caller(struct grpc_call *c, const char *name)
{
	free(c->caller);
	c->caller = name != NULL ? util_xstrdup(name) : NULL;
}

const char *
grpc_call_caller(const struct grpc_call *c)
{
	return c->caller;
}

const char *
grpc_call_peer_name(const struct grpc_call *c)
{
	/* A local call (the HTTP listener's JSON API) has no TLS of its own. */
	if (c->conn == NULL)
		return NULL;
	return c->conn->subject;
}

struct grpc_server *
grpc_call_server(const struct grpc_call *c)
{
	if (c->conn == NULL)
		return c->lsrv;
	return c->conn->srv;
}

int
grpc_call_add_header(struct grpc_call *c, const char *key, const void *value,
    size_t len)
{
	if (c->state == CALL_DONE || c->headers_sent)
		return GRPC_CALL_EDONE;
	return md_add_checked(&c->hdrs_out, key, value, len);
}

int
grpc_call_add_trailer(struct grpc_call *c, const char *key, const void *value,
    size_t len)
{
	if (c->state == CALL_DONE || c->finished)
		return GRPC_CALL_EDONE;
	return md_add_checked(&c->trls_out, key, value, len);
}

void
grpc_call_on_cancel(struct grpc_call *c, grpc_call_cb fn, void *arg)
{
	c->cancel_cb = fn;
	c->cancel_arg = arg;
}

void
grpc_call_on_done(struct grpc_call *c, grpc_call_done_cb fn, void *arg)
{
	c->done_cb = fn;
	c->done_arg = arg;
}

void
grpc_server_call_done(struct grpc_call *c, int status)
{
	grpc_call_done_cb fn = c->done_cb;

	c->done_cb = NULL;
	if (fn != NULL)
		fn(c, status, c->done_arg);
}

void
grpc_call_on_writable(struct grpc_call *c, grpc_call_cb fn, void *arg)
{
	c->writable_cb = fn;
	c->writable_arg = arg;
}

size_t
grpc_call_queued(const struct grpc_call *c)
{
	return evbuffer_get_length(c->out);
}

static int
call_queue_check(struct grpc_call *c, size_t len)
{
	if (c->state != CALL_ACTIVE || c->finished)
		return GRPC_CALL_EDONE;
	if (!c->method->server_streaming && c->nmsgs >= 1)
		return GRPC_CALL_EINVAL;	/* a unary call has one reply */
	if (evbuffer_get_length(c->out) > c->conn->srv->opts.stream_queue_max) {
		c->want_writable = 1;
		return GRPC_CALL_EAGAIN;
	}
	if (len > UINT32_MAX)
		return GRPC_CALL_EINVAL;
	if (grpc_server_mem_over(c->conn, len + 5)) {
		if (!c->method->server_streaming)
			return GRPC_CALL_ENOMEM;
		/*
		 * A stream with nothing queued still gets one small message:
		 * with an empty queue no writable callback would ever come,
		 * and a Health watcher would wait forever. That is one
		 * message per stream, and streams are bounded.
		 */
		if (evbuffer_get_length(c->out) > 0 ||
		    len > STREAM_SMALL_MSG) {
			c->want_writable = 1;
			return GRPC_CALL_EAGAIN;
		}
	}
	return GRPC_CALL_OK;
}

static int
call_queued(struct grpc_call *c, size_t len)
{
	grpc_server_mem_add(c->conn, &c->conn->out_queued, len + 5);
	c->nmsgs++;
	if (!c->headers_sent) {
		if (call_send_headers(c) != GRPC_CALL_OK)
			return GRPC_CALL_EDONE;
	} else if (c->deferred) {
		c->deferred = 0;
		nghttp2_session_resume_data(c->conn->h2, c->id);
	}
	grpc_server_conn_schedule_flush(c->conn);
	return GRPC_CALL_OK;
}

int
grpc_call_send_raw(struct grpc_call *c, const void *data, size_t len)
{
	uint8_t pfx[5];
	int rv;

	if (c->conn == NULL)
		return GRPC_CALL_EINVAL;	/* in-process calls carry messages */
	if ((rv = call_queue_check(c, len)) != GRPC_CALL_OK)
		return rv;
	grpc_frame_prefix(pfx, len);
	evbuffer_add(c->out, pfx, 5);
	if (len > 0)
		evbuffer_add(c->out, data, len);
	return call_queued(c, len);
}

int
grpc_call_send(struct grpc_call *c, const ProtobufCMessage *msg)
{
	struct evbuffer_iovec v;
	uint8_t stack[512];
	size_t len;
	int rv;

	if (c->method->resp == NULL || msg->descriptor != c->method->resp)
		return GRPC_CALL_EINVAL;
	if (c->state != CALL_ACTIVE || c->finished)
		return GRPC_CALL_EDONE;
	if (c->conn == NULL)
		return grpc_server_local_send(c, msg);
	len = protobuf_c_message_get_packed_size(msg);
	if ((rv = call_queue_check(c, len)) != GRPC_CALL_OK)
		return rv;
	if (len <= sizeof(stack) - 5) {
		grpc_frame_prefix(stack, len);
		protobuf_c_message_pack(msg, stack + 5);
		evbuffer_add(c->out, stack, len + 5);
	} else {
		/* Pack straight into the queue's own memory. */
		if (evbuffer_reserve_space(c->out, len + 5, &v, 1) < 1)
			return GRPC_CALL_EINVAL;
		grpc_frame_prefix(v.iov_base, len);
		protobuf_c_message_pack(msg, (uint8_t *)v.iov_base + 5);
		v.iov_len = len + 5;
		evbuffer_commit_space(c->out, &v, 1);
	}
	return call_queued(c, len);
}

int
grpc_call_finish(struct grpc_call *c, int status, const char *message)
{
	if (c->state != CALL_ACTIVE || c->finished)
		return GRPC_CALL_EDONE;
	if (status < 0 || status > GRPC_STATUS_MAX)
		status = GRPC_STATUS_UNKNOWN;
	grpc_server_call_done(c, status);
	if (c->conn == NULL)
		return grpc_server_local_finish(c, status, message);
	metrics_grpc_request(c->method->path, status);
	if (c->has_timer) {
		evtimer_del(&c->timer);
		c->has_timer = 0;
	}
	c->cancel_cb = NULL;
	c->writable_cb = NULL;
	if (!c->headers_sent && evbuffer_get_length(c->out) == 0) {
		c->state = CALL_DONE;
		call_trailers_only(c, status, message);
		return GRPC_CALL_OK;
	}
	c->status = status;
	c->message = message != NULL ? util_xstrdup(message) : NULL;
	c->finished = 1;
	c->state = CALL_DONE;
	if (!c->headers_sent)
		call_send_headers(c);
	else if (c->deferred) {
		c->deferred = 0;
		nghttp2_session_resume_data(c->conn->h2, c->id);
	}
	grpc_server_conn_schedule_flush(c->conn);
	return GRPC_CALL_OK;
}

int
grpc_call_reply(struct grpc_call *c, const ProtobufCMessage *msg)
{
	int rv;

	if ((rv = grpc_call_send(c, msg)) == GRPC_CALL_ENOMEM) {
		grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "the reply would exceed the server's memory budget");
		return rv;
	}
	if (rv != GRPC_CALL_OK)
		return rv;
	return grpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

int
grpc_call_reply_raw(struct grpc_call *c, const void *data, size_t len)
{
	int rv;

	if ((rv = grpc_call_send_raw(c, data, len)) == GRPC_CALL_ENOMEM) {
		grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "the reply would exceed the server's memory budget");
		return rv;
	}
	if (rv != GRPC_CALL_OK)
		return rv;
	return grpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

/* --- the life of a stream ------------------------------------------------- */

/* The handler loses the call: tell it once, and never again. */
static void
call_cancel(struct grpc_call *c)
{
	grpc_call_cb fn = c->cancel_cb;
	int was_active = c->state == CALL_ACTIVE && !c->finished;

	c->state = CALL_DONE;
	c->cancel_cb = NULL;
	c->writable_cb = NULL;
	if (was_active && fn != NULL)
		fn(c, c->cancel_arg);
}

static void
deadline_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct grpc_call *c = arg;
	struct conn *conn = c->conn;

	c->has_timer = 0;
	if (c->state == CALL_DONE)
		return;
	call_cancel(c);
	call_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
	grpc_server_conn_schedule_flush(conn);
}

/* The one place a call's memory goes. */
void
grpc_server_stream_free(struct grpc_call *c)
{
	struct conn *conn = c->conn;

	call_cancel(c);
	grpc_server_call_done(c, GRPC_STATUS_CANCELLED);
	if (c->has_timer)
		evtimer_del(&c->timer);
	TAILQ_REMOVE(&conn->calls, c, entry);
	conn->srv->ncalls--;
	grpc_server_mem_sub(conn, &conn->in_buffered, c->accounted);
	grpc_server_mem_sub(conn, &conn->out_queued,
	    evbuffer_get_length(c->out));
	if (c->streaming && conn->addr != NULL) {
		conn->addr->nstreaming--;
		grpc_server_peer_release(conn->srv, conn->addr);
	}
	grpc_framer_reset(&c->framer);
	grpc_md_clear(&c->md);
	grpc_md_clear(&c->hdrs_out);
	grpc_md_clear(&c->trls_out);
	if (c->reqmsg != NULL)
		protobuf_c_message_free_unpacked(c->reqmsg, NULL);
	evbuffer_free(c->out);
	free(c->req);
	free(c->path);
	free(c->message);
	free(c->caller);
	free(c);
}

const struct grpc_method *
grpc_server_method_find(struct grpc_server *srv, const char *path)
{
	for (size_t i = 0; i < srv->nmethods; i++)
		if (strcmp(srv->methods[i].path, path) == 0)
			return &srv->methods[i];
	return NULL;
}

/* Headers are complete: is this a gRPC call we serve? */
void
grpc_server_call_headers_done(struct grpc_call *c)
{
	struct grpc_server *srv = c->conn->srv;
	char buf[256];

	if (c->state != CALL_RECV)
		return;
	if (c->bad_method) {
		call_http_error(c, "405");
		return;
	}
	if (c->bad_ctype) {
		call_http_error(c, "415");
		return;
	}
	if (c->hdr_overflow) {
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "request header list too large");
		return;
	}
	/*
	 * Like grpc-go, a missing "te: trailers" is tolerated unless the
	 * options say otherwise; nghttp2 itself refuses any other te value.
	 */
	if (!c->te_ok && srv->opts.require_te) {
		call_fail(c, GRPC_STATUS_INTERNAL, "missing te: trailers");
		return;
	}
	if (c->bad_timeout) {
		call_fail(c, GRPC_STATUS_INTERNAL, "malformed grpc-timeout");
		return;
	}
	if (c->path == NULL ||
	    (c->method = grpc_server_method_find(srv, c->path)) == NULL) {
		const char *p = c->path != NULL ? c->path : "";
		const char *slash = p[0] == '/' ? strchr(p + 1, '/') : NULL;
		int known = 0;

		/* Name the service if nobody serves it, else the method. */
		if (slash != NULL) {
			size_t slen = (size_t)(slash - p) + 1;
			for (size_t i = 0; i < srv->nmethods && !known; i++)
				known = strncmp(srv->methods[i].path, p,
				    slen) == 0;
		}
		if (slash == NULL || !known)
			snprintf(buf, sizeof(buf), "unknown service %.*s",
			    slash != NULL ? (int)(slash - p - 1) : 200,
			    p[0] == '/' ? p + 1 : p);
		else
			snprintf(buf, sizeof(buf),
			    "unknown method %.200s for service %.*s", slash + 1,
			    (int)(slash - p - 1), p + 1);
		call_fail(c, GRPC_STATUS_UNIMPLEMENTED, buf);
		return;
	}
	if (srv->opts.authorize != NULL) {
		int st = srv->opts.authorize(c, srv->opts.authorize_arg, buf,
		    sizeof(buf));

		if (st != GRPC_STATUS_OK) {
			call_fail(c, st, buf);
			return;
		}
	}
	if (c->bad_encoding) {
		grpc_md_add(&c->trls_out, "grpc-accept-encoding", "identity",
		    8);
		call_fail(c, GRPC_STATUS_UNIMPLEMENTED,
		    "unsupported grpc-encoding");
		return;
	}
	if (grpc_server_mem_over(c->conn, 0)) {
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "the server's memory budget is spent; try again later");
		return;
	}
	if (c->method->server_streaming && c->conn->addr != NULL) {
		if (c->conn->addr->nstreaming >= srv->opts.max_streaming_per_ip) {
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "too many streaming calls open from this address");
			return;
		}
		c->conn->addr->nstreaming++;
		c->streaming = 1;
	}
	if (c->deadline != 0) {
		int64_t left = c->deadline - util_mono_ms();
		struct timeval tv;

		if (left < 0)
			left = 0;
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		evtimer_assign(&c->timer, srv->base, deadline_cb, c);
		evtimer_add(&c->timer, &tv);
		c->has_timer = 1;
	}
}

/* The request is complete: decode it and hand it to the handler. */
void
grpc_server_call_dispatch(struct grpc_call *c)
{
	const struct grpc_method *m = c->method;

	if (c->state != CALL_RECV)
		return;
	if (c->framer.hdrlen != 0) {
		call_fail(c, GRPC_STATUS_INTERNAL, "truncated request message");
		return;
	}
	if (c->nmsgs != 1) {
		call_fail(c, GRPC_STATUS_INTERNAL, "missing request message");
		return;
	}
	if (c->deadline != 0 && util_mono_ms() >= c->deadline) {
		call_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED,
		    "deadline exceeded");
		return;
	}
	if (m->req != NULL) {
		c->reqmsg = protobuf_c_message_unpack(m->req, NULL, c->reqlen,
		    c->req != NULL ? c->req : (const uint8_t *)"");
		if (c->reqmsg == NULL) {
			call_fail(c, GRPC_STATUS_INTERNAL,
			    "could not parse request message");
			return;
		}
	}
	c->state = CALL_ACTIVE;
	c->nmsgs = 0;		/* from now on: replies sent */
	m->handler(c, m->arg);
}

static int
framer_msg_cb(void *arg, const uint8_t *msg, size_t len)
{
	struct grpc_call *c = arg;

	if (c->nmsgs++ > 0)
		return GRPC_STATUS_INTERNAL;
	c->req = len > 0 ? util_xcalloc(1, len) : NULL;
	if (len > 0)
		memcpy(c->req, msg, len);
	c->reqlen = len;
	return 0;
}

/* --- a request arriving (nghttp2 callbacks) ---------------------------- */

int
grpc_server_on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame,
    void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = util_xcalloc(1, sizeof(*c));
	c->conn = conn;
	c->id = frame->hd.stream_id;
	c->out = evbuffer_new();
	grpc_framer_init(&c->framer, conn->srv->opts.max_recv_msg);
	TAILQ_INSERT_TAIL(&conn->calls, c, entry);
	conn->srv->ncalls++;
	nghttp2_session_set_stream_user_data(h2, c->id, c);
	return 0;
}

static int
hdr_is(const uint8_t *name, size_t len, const char *lit, size_t litlen)
{
	return len == litlen && memcmp(name, lit, len) == 0;
}

#define HDR_IS(n, l, lit)	hdr_is((n), (l), (lit), sizeof(lit) - 1)

int
grpc_server_on_header(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags SAGAD_UNUSED, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;	/* request trailers carry nothing we use */
	c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (c == NULL || c->hdr_overflow)
		return 0;
	c->hdr_bytes += namelen + valuelen + 32;
	if (c->hdr_bytes > conn->srv->opts.max_header_list) {
		/*
		 * Answer now and make nghttp2 skip the rest of the block: it
		 * still has to inflate it for HPACK's sake, but no longer
		 * validates and hands over every field, which a block of
		 * references to one large table entry makes very costly.
		 * nghttp2 resets the stream after our answer.
		 */
		c->hdr_overflow = 1;
		call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "request header list too large");
		c->rst_after = 0;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (namelen > 0 && name[0] == ':') {
		if (HDR_IS(name, namelen, ":method"))
			c->bad_method = !HDR_IS(value, valuelen, "POST");
		else if (HDR_IS(name, namelen, ":path") && c->path == NULL) {
			c->path = util_xcalloc(1, valuelen + 1);
			memcpy(c->path, value, valuelen);
		}
		return 0;
	}
	if (HDR_IS(name, namelen, "content-type")) {
		/* application/grpc, application/grpc+proto, ...;charset */
		c->bad_ctype = !(valuelen >= 16 &&
		    memcmp(value, "application/grpc", 16) == 0 &&
		    (valuelen == 16 || value[16] == '+' || value[16] == ';'));
	} else if (HDR_IS(name, namelen, "te")) {
		c->te_ok = HDR_IS(value, valuelen, "trailers");
	} else if (HDR_IS(name, namelen, "grpc-timeout")) {
		int64_t ms;

		if (grpc_timeout_parse((const char *)value, valuelen, &ms) != 0)
			c->bad_timeout = 1;
		else
			c->deadline = util_mono_ms() + ms;
	} else if (HDR_IS(name, namelen, "grpc-encoding")) {
		c->bad_encoding = !HDR_IS(value, valuelen, "identity");
	} else if (!grpc_md_is_reserved((const char *)name, namelen)) {
		if (grpc_md_is_bin((const char *)name, namelen)) {
			uint8_t *bin;
			size_t blen;

			/* A bad -bin value is dropped, not the call. */
			if (grpc_b64_decode((const char *)value, valuelen,
			    &bin, &blen) == 0) {
				grpc_md_addn(&c->md, (const char *)name,
				    namelen, bin, blen);
				free(bin);
			}
		} else
			grpc_md_addn(&c->md, (const char *)name, namelen,
			    value, valuelen);
	}
	return 0;
}

int
grpc_server_on_data_chunk_recv(nghttp2_session *h2, uint8_t flags SAGAD_UNUSED,
    int32_t id, const uint8_t *data, size_t len, void *user)
{
	struct conn *conn = user;
	struct grpc_call *c;
	size_t before;
	int rv;

	c = nghttp2_session_get_stream_user_data(h2, id);
	if (c == NULL || c->state != CALL_RECV)
		return 0;
	before = grpc_framer_held(&c->framer) + c->reqlen;
	rv = grpc_framer_feed(&c->framer, data, len, framer_msg_cb, c);
	if (rv != 0) {
		const char *why = rv == GRPC_STATUS_RESOURCE_EXHAUSTED ?
		    "request message larger than the limit" :
		    c->nmsgs > 1 ? "too many request messages" :
		    "compressed or malformed request message";
		call_fail(c, rv, why);
		return 0;
	}
	/* Count what the framer and the request now hold. */
	if (grpc_framer_held(&c->framer) + c->reqlen > before) {
		size_t grew = grpc_framer_held(&c->framer) + c->reqlen - before;
		c->accounted += grew;
		grpc_server_mem_add(conn, &conn->in_buffered, grew);
		if (conn->in_buffered > conn->srv->opts.conn_in_max) {
			grpc_framer_reset(&c->framer);
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "too much request data buffered on the connection");
		} else if (grpc_server_mem_over(conn, 0)) {
			grpc_framer_reset(&c->framer);
			call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    "the server's memory budget is spent; try again later");
		}
	}
	return 0;
}
