/*
 * client_call.c - a call's life in the gRPC client (protocol: grpc/grpc
 * doc/PROTOCOL-HTTP2.md): made in one allocation holding its path, its
 * framed request, its metadata and its deadline timer; queued on its
 * channel (at most max_queued wait for a stream); submitted on a stream of
 * the connection its channel picked; its response read from nghttp2's
 * callbacks (headers, length-prefixed messages, trailers, or the status a
 * reset stream or an HTTP error means); a refused stream retried; ended by
 * its deadline, a cancel or the server; and delivered to its callback, the
 * only place a call is freed (grpc_client_call_deliver). What it is not:
 * the connections, the channels and the client's run (client.c).
 */
#include "autoconf.h"

#include <sys/queue.h>
#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>

#include "grpc/client.h"
#include "grpc/client_int.h"
#include "grpc/h2.h"
#include "util.h"

static void	call_abort(struct grpc_client_call *, int, const char *, ...)
		    __attribute__((format(printf, 3, 4)));

/* --- status mapping (PROTOCOL-HTTP2.md) ------------------------------------ */

static int
status_from_http(int http)
{
	switch (http) {
	case 400:	return GRPC_STATUS_INTERNAL;
	case 401:	return GRPC_STATUS_UNAUTHENTICATED;
	case 403:	return GRPC_STATUS_PERMISSION_DENIED;
	case 404:	return GRPC_STATUS_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:	return GRPC_STATUS_UNAVAILABLE;
	default:	return GRPC_STATUS_UNKNOWN;
	}
}

static int
status_from_rst(uint32_t code)
{
	switch (code) {
	case NGHTTP2_REFUSED_STREAM:	return GRPC_STATUS_UNAVAILABLE;
	case NGHTTP2_CANCEL:		return GRPC_STATUS_CANCELLED;
	case NGHTTP2_ENHANCE_YOUR_CALM:	return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case NGHTTP2_INADEQUATE_SECURITY: return GRPC_STATUS_PERMISSION_DENIED;
	default:			return GRPC_STATUS_INTERNAL;
	}
}

/* --- calls ------------------------------------------------------------------ */

static void
call_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct grpc_client_call *call = arg;

	(void)fd;
	(void)ev;
	call_abort(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
}

static struct grpc_client_call *
call_new(struct grpc_channel *ch, const char *path, const uint8_t *req,
    size_t len, const struct grpc_metadata *md, int64_t timeout_ms,
    grpc_client_msg_cb on_msg, grpc_client_cb cb, void *arg)
{
	struct grpc_client	*cli = ch->cli;
	struct grpc_client_call	*call;
	const char		*bad = NULL;
	size_t			 nmd = md != NULL ? md->n : 0;
	size_t			 evsz, evoff, nvoff, pathoff, reqoff, mdoff, total;
	size_t			 pathlen = strlen(path);
	char			*p;

	/* One allocation: the call, its timer, nv, path, request, metadata. */
	evsz = event_get_struct_event_size();
	evoff = (sizeof(*call) + 15) & ~(size_t)15;
	nvoff = (evoff + evsz + 15) & ~(size_t)15;
	pathoff = nvoff + (CLIENT_NFIXED_NV + nmd) * sizeof(nghttp2_nv);
	reqoff = pathoff + pathlen + 1;
	mdoff = reqoff + 5 + len;
	total = mdoff;
	for (size_t i = 0; i < nmd; i++) {
		const struct grpc_md *m = &md->items[i];
		size_t kl = strlen(m->key);
		total += kl + 1;
		total += grpc_md_is_bin(m->key, kl) ? (m->len + 2) / 3 * 4 + 1 :
		    m->len + 1;
	}
	call = util_xcalloc(1, total);
	call->ch = ch;
	call->state = CALL_NEW;
	call->cb = cb;
	call->on_msg = on_msg;
	call->streaming = on_msg != NULL;
	call->arg = arg;
	call->timer = (struct event *)(void *)((char *)call + evoff);
	call->nv = (nghttp2_nv *)(void *)((char *)call + nvoff);
	p = (char *)call + pathoff;
	memcpy(p, path, pathlen + 1);
	call->path = p;
	p = (char *)call + reqoff;
	grpc_frame_prefix((uint8_t *)p, len);
	if (len > 0)
		memcpy(p + 5, req, len);
	call->req = (const uint8_t *)p;
	call->reqlen = 5 + len;
	grpc_framer_init(&call->framer, cli->opts.max_recv);
	event_assign(call->timer, cli->base, -1, 0, call_timeout, call);

	p = (char *)call + mdoff;
	for (size_t i = 0; i < nmd; i++) {
		const struct grpc_md *m = &md->items[i];
		nghttp2_nv *nv = &call->nv[CLIENT_NFIXED_NV + call->nmd];
		size_t kl = strlen(m->key), vl;
		char *k = p;

		if (!grpc_md_sendable(m->key, kl, m->value, m->len)) {
			bad = m->key;
			break;
		}
		memcpy(k, m->key, kl + 1);
		p += kl + 1;
		if (grpc_md_is_bin(m->key, kl)) {
			/* Unpadded base64, as the spec asks senders to emit. */
			char *b = grpc_b64_encode(m->value, m->len, &vl);
			while (vl > 0 && b[vl - 1] == '=')
				vl--;
			memcpy(p, b, vl);
			free(b);
		} else {
			vl = m->len;
			memcpy(p, m->value, vl);
		}
		grpc_nv_set(nv, k, kl, p, vl);
		p += vl + 1;
		call->nmd++;
	}

	if (timeout_ms > 0) {
		struct timeval tv;
		if (timeout_ms > GRPC_MAX_TIMEOUT_MS)
			timeout_ms = GRPC_MAX_TIMEOUT_MS;
		call->deadline = util_mono_ms() + timeout_ms;
		tv.tv_sec = (time_t)(timeout_ms / 1000);
		tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
		evtimer_add(call->timer, &tv);
	}
	if (bad != NULL)
		grpc_client_call_finish(call, GRPC_STATUS_INTERNAL,
		    "metadata %s: reserved or invalid key, or a text value "
		    "that is not printable ASCII", bad);
	return call;
}

/* Puts a new or refused call where it can get a stream. */
static void
call_enqueue(struct grpc_client_call *call, int front)
{
	struct grpc_channel *ch = call->ch;

	if (!front && ch->nqueued >= ch->cli->opts.max_queued) {
		grpc_client_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "%s: %zu calls already wait for a stream", ch->authority,
		    ch->nqueued);
		return;
	}
	call->state = CALL_QUEUED;
	if (front)
		TAILQ_INSERT_HEAD(&ch->queue, call, entry);
	else
		TAILQ_INSERT_TAIL(&ch->queue, call, entry);
	ch->nqueued++;
	grpc_client_schedule(ch->cli);
}

struct grpc_client_call *
grpc_client_call_start(struct grpc_channel *ch, const char *path,
    const uint8_t *req, size_t len, const struct grpc_metadata *md,
    int64_t timeout_ms, grpc_client_cb cb, void *arg)
{
	struct grpc_client_call *call;

	call = call_new(ch, path, req, len, md, timeout_ms, NULL, cb, arg);
	if (call->state == CALL_NEW)
		call_enqueue(call, 0);
	return call;
}

struct grpc_client_call *
grpc_client_stream_start(struct grpc_channel *ch, const char *path,
    const uint8_t *req, size_t len, const struct grpc_metadata *md,
    int64_t timeout_ms, grpc_client_msg_cb on_msg, grpc_client_cb cb,
    void *arg)
{
	struct grpc_client_call *call;

	call = call_new(ch, path, req, len, md, timeout_ms, on_msg, cb, arg);
	if (call->state == CALL_NEW)
		call_enqueue(call, 0);
	return call;
}

void
grpc_client_call_cancel(struct grpc_client_call *call)
{
	call->cancelled = 1;
	if (call->state != CALL_DONE)
		call_abort(call, GRPC_STATUS_CANCELLED, "cancelled");
}

/*
 * Ends a call that is on no list: it waits on the done list for the run to
 * deliver it. A message given here replaces the server's.
 */
void
grpc_client_call_finish(struct grpc_client_call *call, int status,
    const char *fmt, ...)
{
	struct grpc_client *cli = call->ch->cli;
	va_list	ap;
	char	buf[SAGAD_ERRLEN];

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		free(call->message);
		call->message = util_xstrdup(buf);
	}
	call->status = status;
	call->state = CALL_DONE;
	evtimer_del(call->timer);
	TAILQ_INSERT_TAIL(&cli->done, call, entry);
	grpc_client_schedule(cli);
}

/*
 * Ends a call on our side: deadline, cancel, oversized response. A stream it
 * has gets RST_STREAM CANCEL and forgets the call; nghttp2 closes it later.
 */
static void
call_abort(struct grpc_client_call *call, int status, const char *fmt, ...)
{
	struct conn	*c = call->conn;
	va_list		 ap;
	char		 buf[SAGAD_ERRLEN];

	switch (call->state) {
	case CALL_DONE:
		return;
	case CALL_QUEUED:
		TAILQ_REMOVE(&call->ch->queue, call, entry);
		call->ch->nqueued--;
		break;
	case CALL_ACTIVE:
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->sid,
		    NGHTTP2_CANCEL);
		nghttp2_session_set_stream_user_data(c->h2, call->sid, NULL);
		TAILQ_REMOVE(&c->calls, call, entry);
		call->conn = NULL;
		if (!c->dirty) {
			c->dirty = 1;
			TAILQ_INSERT_TAIL(&c->ch->cli->dirty, c, dirty_entry);
		}
		break;
	case CALL_NEW:
		break;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	grpc_client_call_finish(call, status, "%s", buf);
}

/* The only place a call is freed. */
void
grpc_client_call_deliver(struct grpc_client_call *call)
{
	struct grpc_client_result r;

	if (!call->cancelled && call->cb != NULL) {
		r.status = call->status;
		r.message = call->message != NULL ? call->message : "";
		r.data = call->resp;
		r.len = call->resplen;
		r.headers = &call->headers;
		r.trailers = &call->trailers;
		r.unsent = !call->submitted;
		call->cb(call->arg, &r);
	}
	evtimer_del(call->timer);
	grpc_framer_reset(&call->framer);
	grpc_md_clear(&call->headers);
	grpc_md_clear(&call->trailers);
	free(call->resp);
	free(call->message);
	free(call);
}

/* Clears what a refused attempt left, so a retry starts clean. */
static void
call_reset_response(struct grpc_client_call *call)
{
	call->got_headers = call->got_trailers = call->have_status = 0;
	call->http_status = call->nmsgs = 0;
	call->sent = call->hdrbytes = 0;
	free(call->message);
	call->message = NULL;
	free(call->resp);
	call->resp = NULL;
	call->resplen = 0;
	grpc_framer_reset(&call->framer);
	grpc_md_clear(&call->headers);
	grpc_md_clear(&call->trailers);
}

static ssize_t
call_read_request(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct grpc_client_call *call;
	size_t	n;

	(void)src;
	(void)arg;
	/* A call that went away (deadline, cancel) is looked up, not kept. */
	call = nghttp2_session_get_stream_user_data(h2, sid);
	if (call == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = call->reqlen - call->sent;
	if (n > len)
		n = len;
	memcpy(buf, call->req + call->sent, n);
	call->sent += n;
	if (call->sent == call->reqlen)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

void
grpc_client_call_submit(struct grpc_client_call *call, struct conn *c)
{
	struct grpc_channel	*ch = call->ch;
	nghttp2_data_provider	 prd;
	nghttp2_nv		*nv = call->nv;
	size_t			 n = 0;
	int32_t			 sid;

	if (call->deadline != 0) {
		int64_t left = call->deadline - util_mono_ms();
		if (left <= 0) {
			grpc_client_call_finish(call,
			    GRPC_STATUS_DEADLINE_EXCEEDED,
			    "deadline exceeded while waiting for a stream");
			return;
		}
		grpc_timeout_format(left, call->tmo, sizeof(call->tmo));
	}
	grpc_nv_set(&nv[n++], ":method", 7, "POST", 4);
	grpc_nv_set(&nv[n++], ":scheme", 7, "http", 4);
	grpc_nv_set(&nv[n++], ":path", 5, call->path, strlen(call->path));
	grpc_nv_set(&nv[n++], ":authority", 10, ch->authority,
	    strlen(ch->authority));
	grpc_nv_set(&nv[n++], "te", 2, "trailers", 8);
	grpc_nv_set(&nv[n++], "content-type", 12, "application/grpc", 16);
	grpc_nv_set(&nv[n++], "user-agent", 10, ch->cli->ua, strlen(ch->cli->ua));
	if (call->deadline != 0)
		grpc_nv_set(&nv[n++], "grpc-timeout", 12, call->tmo,
		    strlen(call->tmo));
	/* Custom metadata sits right after the fixed slots. */
	if (n < CLIENT_NFIXED_NV)
		memmove(&nv[n], &nv[CLIENT_NFIXED_NV],
		    call->nmd * sizeof(*nv));
	n += call->nmd;

	memset(&prd, 0, sizeof(prd));
	prd.read_callback = call_read_request;
	sid = nghttp2_submit_request(c->h2, NULL, nv, n, &prd, call);
	/* Put the metadata back where the next attempt expects it. */
	if (n - call->nmd < CLIENT_NFIXED_NV)
		memmove(&nv[CLIENT_NFIXED_NV], &nv[n - call->nmd],
		    call->nmd * sizeof(*nv));
	if (sid < 0) {
		grpc_client_call_finish(call, GRPC_STATUS_INTERNAL,
		    "%s: submit: %s", ch->authority, nghttp2_strerror(sid));
		return;
	}
	call->state = CALL_ACTIVE;
	call->submitted = 1;
	call->conn = c;
	call->sid = sid;
	TAILQ_INSERT_TAIL(&c->calls, call, entry);
	c->nstreams++;
	if (!c->dirty) {
		c->dirty = 1;
		TAILQ_INSERT_TAIL(&ch->cli->dirty, c, dirty_entry);
	}
}

/* --- nghttp2 callbacks -------------------------------------------------------- */

int
grpc_client_on_header(nghttp2_session *h2, const nghttp2_frame *frame,
    const uint8_t *name, size_t namelen, const uint8_t *value,
    size_t valuelen, uint8_t flags, void *arg)
{
	struct grpc_client_call	*call;
	struct grpc_metadata	*md;
	const char		*k = (const char *)name;
	int			 trailers;

	(void)flags;
	(void)arg;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (call == NULL || call->state != CALL_ACTIVE)
		return 0;
	call->hdrbytes += namelen + valuelen + 32;
	if (call->hdrbytes > CLIENT_MAX_HDR_BYTES) {
		call_abort(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "response metadata larger than %d bytes",
		    CLIENT_MAX_HDR_BYTES);
		return 0;
	}
	trailers = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
	if (namelen > 0 && k[0] == ':') {
		if (!trailers && namelen == 7 && memcmp(k, ":status", 7) == 0) {
			call->http_status = 0;
			for (size_t i = 0; i < valuelen && i < 3; i++)
				call->http_status = call->http_status * 10 +
				    (value[i] - '0');
		}
		return 0;
	}
	if (namelen == 11 && memcmp(k, "grpc-status", 11) == 0) {
		int s = 0;
		for (size_t i = 0; i < valuelen; i++) {
			if (value[i] < '0' || value[i] > '9' || s > 1000) {
				s = GRPC_STATUS_UNKNOWN;
				break;
			}
			s = s * 10 + (value[i] - '0');
		}
		/* Codes we do not know are UNKNOWN, as the spec says. */
		call->status = valuelen == 0 || s > GRPC_STATUS_MAX ?
		    GRPC_STATUS_UNKNOWN : s;
		call->have_status = 1;
		return 0;
	}
	if (namelen == 12 && memcmp(k, "grpc-message", 12) == 0) {
		free(call->message);
		call->message = grpc_percent_decode((const char *)value,
		    valuelen);
		return 0;
	}
	if (!trailers && namelen == 12 && memcmp(k, "content-type", 12) == 0)
		return 0;
	md = trailers ? &call->trailers : &call->headers;
	if (grpc_md_is_bin(k, namelen)) {
		uint8_t	*bin;
		size_t	 binlen;
		if (grpc_b64_decode((const char *)value, valuelen, &bin,
		    &binlen) == 0) {
			grpc_md_addn(md, k, namelen, bin, binlen);
			free(bin);
			return 0;
		}
	}
	grpc_md_addn(md, k, namelen, value, valuelen);
	return 0;
}

static int
call_on_message(void *arg, const uint8_t *msg, size_t len)
{
	struct grpc_client_call *call = arg;

	if (call->state != CALL_ACTIVE)
		return 1;
	if (call->streaming) {
		call->on_msg(call->arg, msg, len);
		/* The callback may have cancelled the call. */
		return call->state != CALL_ACTIVE;
	}
	if (call->nmsgs++ > 0) {
		call_abort(call, GRPC_STATUS_INTERNAL,
		    "more than one response message to a unary call");
		return 1;
	}
	call->resp = util_xcalloc(1, len + 1);
	if (len > 0)
		memcpy(call->resp, msg, len);
	call->resplen = len;
	return 0;
}

int
grpc_client_on_data(nghttp2_session *h2, uint8_t flags, int32_t sid,
    const uint8_t *data, size_t len, void *arg)
{
	struct grpc_client_call *call;
	int	rc;

	(void)flags;
	(void)arg;
	call = nghttp2_session_get_stream_user_data(h2, sid);
	if (call == NULL || call->state != CALL_ACTIVE)
		return 0;
	/* Not a gRPC response (an HTTP error page): its status tells. */
	if (call->http_status != 200)
		return 0;
	rc = grpc_framer_feed(&call->framer, data, len, call_on_message, call);
	if (rc == 0 || call->state != CALL_ACTIVE)
		return 0;
	if (rc == GRPC_STATUS_RESOURCE_EXHAUSTED)
		call_abort(call, rc, "received message larger than max "
		    "(%zu vs. %zu)", call->framer.msglen, call->framer.max);
	else
		call_abort(call, GRPC_STATUS_INTERNAL, "compressed message "
		    "but no grpc-encoding was negotiated");
	return 0;
}

int
grpc_client_on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error,
    void *arg)
{
	struct conn		*c = arg;
	struct grpc_channel	*ch = c->ch;
	struct grpc_client_call	*call;

	c->nstreams--;
	grpc_client_schedule(ch->cli);	/* a stream is free: dispatch, drain */
	call = nghttp2_session_get_stream_user_data(h2, sid);
	if (call == NULL || call->state != CALL_ACTIVE)
		return 0;
	TAILQ_REMOVE(&c->calls, call, entry);
	call->conn = NULL;

	/* Refused streams were not processed: try again, elsewhere if need be. */
	if (error == NGHTTP2_REFUSED_STREAM && !call->got_headers &&
	    call->retries < CLIENT_MAX_RETRIES) {
		call->retries++;
		call_reset_response(call);
		call_enqueue(call, 1);
		return 0;
	}
	if (call->have_status) {
		if (!call->streaming && call->status == GRPC_STATUS_OK &&
		    call->nmsgs == 0)
			grpc_client_call_finish(call, GRPC_STATUS_INTERNAL,
			    "no response message to a unary call");
		else
			grpc_client_call_finish(call, call->status, NULL);
	} else if (error != NGHTTP2_NO_ERROR)
		grpc_client_call_finish(call, status_from_rst(error),
		    "%s: stream reset by the server: %s", ch->authority,
		    nghttp2_http2_strerror(error));
	else if (call->http_status != 0 && call->http_status != 200)
		grpc_client_call_finish(call,
		    status_from_http(call->http_status), "%s: HTTP status %d",
		    ch->authority, call->http_status);
	else if (!call->got_trailers)
		grpc_client_call_finish(call, GRPC_STATUS_INTERNAL,
		    "%s: stream ended without trailers", ch->authority);
	else
		grpc_client_call_finish(call, GRPC_STATUS_UNKNOWN,
		    "%s: trailers without grpc-status", ch->authority);
	return 0;
}
