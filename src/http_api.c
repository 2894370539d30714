/*
 * http_api.c - the JSON API of the HTTP listener (DESIGN.md, "The HTTP
 * listener"): /api/v1/sagas and its saga routes, each an in-process call of
 * the Orchestrator's gRPC method (grpc_server_call_local), so that HTTP and
 * gRPC share every check, status and effect. A request is decoded here into
 * the method's protobuf request (the body through protobuf's JSON mapping,
 * http_json.c; List's from the query string), the answer encoded back the
 * same way, and the gRPC status mapped to HTTP as grpc-gateway does. Watch
 * becomes a Server-Sent Events stream: one SagaEvent per `data:` line.
 */
#include "autoconf.h"

#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "grpc/grpc.h"
#include "grpc/server.h"
#include "http.h"
#include "http_int.h"
#include "http_json.h"
#include "json.h"
#include "saga/v1/saga.pb-c.h"
#include "util.h"

#define M_RUN		"/saga.v1.Orchestrator/Run"
#define M_GET		"/saga.v1.Orchestrator/Get"
#define M_WATCH		"/saga.v1.Orchestrator/Watch"
#define M_LIST		"/saga.v1.Orchestrator/List"
#define M_CANCEL	"/saga.v1.Orchestrator/Cancel"
#define M_RETRY		"/saga.v1.Orchestrator/Retry"
#define M_RESOLVE	"/saga.v1.Orchestrator/Resolve"

/* Request headers handed to the method as gRPC metadata. */
static const char *const forwarded[] = {
	"x-request-id", "traceparent", "tracestate", "baggage", "authorization",
};

/* --- one request ---------------------------------------------------------------- */

struct api_req {
	struct http_req		 hr;
	char			*body;		/* unary: the reply's JSON */
	size_t			 bodylen;
};

static void
req_free(struct api_req *r)
{
	TAILQ_REMOVE(&r->hr.h->reqs, &r->hr, entry);
	free(r->body);
	free(r);
}

/* A message as protobuf JSON, malloc'd. */
static char *
to_json(const ProtobufCMessage *m, size_t *len)
{
	char	*buf = NULL;
	FILE	*fp = open_memstream(&buf, len);

	if (fp == NULL)
		return NULL;
	http_json_write(fp, m);
	fclose(fp);
	return buf;
}

static int
unary_message(const ProtobufCMessage *m, void *arg)
{
	struct api_req *r = arg;

	free(r->body);
	r->body = to_json(m, &r->bodylen);
	return GRPC_CALL_OK;
}

static void
unary_finish(int status, const char *message, void *arg)
{
	struct api_req *r = arg;

	r->hr.call = NULL;
	if (r->hr.conn != NULL)
		r->hr.conn->req = NULL;
	if (status == GRPC_STATUS_OK && r->body != NULL) {
		r->body = util_xrealloc(r->body, r->bodylen + 2);
		r->body[r->bodylen++] = '\n';
		http_reply_json(r->hr.h, r->hr.req, 200, r->body, r->bodylen);
	} else
		http_reply_error(r->hr.h, r->hr.req, status == GRPC_STATUS_OK ?
		    GRPC_STATUS_INTERNAL : status, message != NULL ? message :
		    grpc_status_name(status));
	req_free(r);
}

static const struct grpc_local_ops unary_ops = { unary_message, unary_finish };

/* --- Watch as Server-Sent Events ---------------------------------------------- */

/*
 * A stream lasts as long as its saga. evhttp watches a connection it
 * writes to for reads too (to see the client close) under the same
 * timeout, which a listening client never resets: a stream gets a day.
 * A reader that stops reading is dropped by HTTP_SSE_OUT_MAX instead.
 */
#define SSE_TIMEOUT_S	86400

static void
sse_start(struct api_req *r)
{
	struct evkeyvalq *hd = evhttp_request_get_output_headers(r->hr.req);
	struct evhttp_connection *evcon =
	    evhttp_request_get_connection(r->hr.req);
	struct timeval tv = { SSE_TIMEOUT_S, 0 };

	if (evcon != NULL)
		evhttp_connection_set_timeout_tv(evcon, &tv);

	evhttp_add_header(hd, "Content-Type", "text/event-stream");
	evhttp_add_header(hd, "Cache-Control", "no-store");
	evhttp_add_header(hd, "X-Accel-Buffering", "no");
	evhttp_send_reply_start(r->hr.req, 200, "OK");
	r->hr.started = 1;
	r->hr.last_sent = util_mono_ms();
}

/*
 * Proxies end a response that says nothing for a minute or so (nginx's
 * proxy_read_timeout), and a peer gone without a word is only noticed when
 * something is written: a comment line, which EventSource ignores, on
 * every stream quiet for timeout_ms (HTTP_SSE_KEEPALIVE_MS at most).
 */
void
http_api_keepalive(struct http_server *h, int64_t now)
{
	struct http_req	*hr;
	int64_t		 quiet = h->opts.timeout_ms < HTTP_SSE_KEEPALIVE_MS ?
	    h->opts.timeout_ms : HTTP_SSE_KEEPALIVE_MS;

	TAILQ_FOREACH(hr, &h->reqs, entry) {
		struct evbuffer *b;

		if (!hr->sse || !hr->started || hr->call == NULL ||
		    now - hr->last_sent < quiet)
			continue;
		b = evbuffer_new();
		evbuffer_add(b, ": keepalive\n\n", 13);
		hr->last_sent = now;
		evhttp_send_reply_chunk(hr->req, b);
		evbuffer_free(b);
	}
}

/* Bytes the client has not read yet. */
static size_t
sse_unsent(struct api_req *r)
{
	struct evhttp_connection *evcon =
	    evhttp_request_get_connection(r->hr.req);

	if (evcon == NULL)
		return 0;
	return evbuffer_get_length(bufferevent_get_output(
	    evhttp_connection_get_bufferevent(evcon)));
}

static int
sse_message(const ProtobufCMessage *m, void *arg)
{
	struct api_req	*r = arg;
	struct evbuffer	*b;
	char		*json;
	size_t		 len;

	if (!r->hr.started)
		sse_start(r);
	if (sse_unsent(r) > HTTP_SSE_OUT_MAX)
		return GRPC_CALL_EAGAIN;	/* Watch drops a reader this slow */
	if ((json = to_json(m, &len)) == NULL)
		return GRPC_CALL_EAGAIN;
	b = evbuffer_new();
	evbuffer_add(b, "data: ", 6);
	evbuffer_add(b, json, len);
	evbuffer_add(b, "\n\n", 2);
	r->hr.last_sent = util_mono_ms();
	evhttp_send_reply_chunk(r->hr.req, b);
	evbuffer_free(b);
	free(json);
	return GRPC_CALL_OK;
}

static void
sse_finish(int status, const char *message, void *arg)
{
	struct api_req *r = arg;

	r->hr.call = NULL;
	if (r->hr.conn != NULL)
		r->hr.conn->req = NULL;
	if (!r->hr.started) {
		/* Nothing streamed: a plain answer says what went wrong. */
		if (status == GRPC_STATUS_OK)
			sse_start(r);
		else {
			http_reply_error(r->hr.h, r->hr.req, status, message);
			req_free(r);
			return;
		}
	}
	if (status != GRPC_STATUS_OK) {
		struct evbuffer *b = evbuffer_new();
		char *buf = NULL;
		size_t len = 0;
		FILE *fp = open_memstream(&buf, &len);

		if (fp != NULL) {
			fprintf(fp, "{\"code\":%d,\"message\":", status);
			json_write_string(fp, message != NULL ? message : "");
			fputc('}', fp);
			fclose(fp);
			evbuffer_add_printf(b, "event: error\ndata: %.*s\n\n",
			    (int)len, buf);
			free(buf);
		}
		evhttp_send_reply_chunk(r->hr.req, b);
		evbuffer_free(b);
	}
	http_req_done(r->hr.h, r->hr.req);
	evhttp_send_reply_end(r->hr.req);
	req_free(r);
}

static const struct grpc_local_ops sse_ops = { sse_message, sse_finish };

/* --- the call ------------------------------------------------------------------- */

/* Calls method with msg (taken) for req; the answer comes by ops. */
static void
api_call(struct http_server *h, struct evhttp_request *req,
    const char *method, ProtobufCMessage *msg, int sse)
{
	struct api_req		*r = util_xcalloc(1, sizeof(*r));
	struct evkeyvalq	*in = evhttp_request_get_input_headers(req);
	struct grpc_metadata	 md;
	char			 peer[128];
	char			*host = NULL;
	ev_uint16_t		 port = 0;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	memset(&md, 0, sizeof(md));
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
		const char *v = evhttp_find_header(in, forwarded[i]);

		if (v != NULL)
			grpc_md_add(&md, forwarded[i], v, strlen(v));
	}
	if (evcon != NULL)
		evhttp_connection_get_peer(evcon, &host, &port);
	snprintf(peer, sizeof(peer), "http:%s:%u", host != NULL ? host : "?",
	    (unsigned)port);
	r->hr.h = h;
	r->hr.req = req;
	r->hr.sse = sse;
	r->hr.conn = http_conn_of(h, req);
	TAILQ_INSERT_TAIL(&h->reqs, &r->hr, entry);
	if (r->hr.conn != NULL)
		r->hr.conn->req = &r->hr;
	/* The answer may come before this returns; r is gone then. */
	if (grpc_server_call_local(h->hooks.grpc, method, msg, &md, peer,
	    sse ? &sse_ops : &unary_ops, r, &r->hr.call) == -1) {
		if (r->hr.conn != NULL)
			r->hr.conn->req = NULL;
		req_free(r);
		http_reply_error(h, req, GRPC_STATUS_UNIMPLEMENTED,
		    "this method is not served");
	}
	grpc_md_clear(&md);
}

void
http_api_conn_closed(struct http_req *hr)
{
	struct api_req *r = (struct api_req *)hr;
	struct grpc_call *call = hr->call;

	/*
	 * evhttp frees the request with the connection, unless it had let
	 * go of it already (a connection lost while we still owed the
	 * answer): then it is ours to free.
	 */
	if (evhttp_request_get_connection(hr->req) == NULL)
		evhttp_request_free(hr->req);
	hr->req = NULL;
	hr->call = NULL;
	req_free(r);
	if (call != NULL)
		grpc_server_call_local_cancel(call);
}

void
http_api_free_all(struct http_server *h)
{
	struct http_req *hr;

	/* The connections close next (evhttp_free), which ends these. */
	while ((hr = TAILQ_FIRST(&h->reqs)) != NULL) {
		if (hr->conn != NULL)
			hr->conn->req = NULL;
		hr->conn = NULL;
		{
			struct grpc_call *call = hr->call;

			hr->call = NULL;
			req_free((struct api_req *)hr);
			if (call != NULL)
				grpc_server_call_local_cancel(call);
		}
	}
}

/* --- decoding requests ---------------------------------------------------------- */

/*
 * The body as a message of type d, or NULL after answering 400. An empty
 * body is an empty message.
 */
static ProtobufCMessage *
body_msg(struct http_server *h, struct evhttp_request *req,
    const ProtobufCMessageDescriptor *d)
{
	struct evbuffer		*in = evhttp_request_get_input_buffer(req);
	size_t			 len = evbuffer_get_length(in);
	struct json_value	*v;
	ProtobufCMessage	*m;
	char			 err[512];
	const char		*text;

	if (len == 0) {
		m = util_xcalloc(1, d->sizeof_message);
		d->message_init(m);
		return m;
	}
	text = (const char *)evbuffer_pullup(in, -1);
	if ((v = json_parse(text, len, err, sizeof(err))) == NULL) {
		http_reply_error(h, req, GRPC_STATUS_INVALID_ARGUMENT, err);
		return NULL;
	}
	m = http_json_read(d, v, err, sizeof(err));
	json_free(v);
	if (m == NULL)
		http_reply_error(h, req, GRPC_STATUS_INVALID_ARGUMENT, err);
	return m;
}

/* The saga id of the path into a request's id field (id in body must match). */
static int
set_id(struct http_server *h, struct evhttp_request *req, char **field,
    const char *id)
{
	if (*field != NULL && **field != '\0' && strcmp(*field, id) != 0) {
		http_reply_error(h, req, GRPC_STATUS_INVALID_ARGUMENT,
		    "id: the body names another saga than the path");
		return -1;
	}
	if (*field != NULL && **field != '\0')
		return 0;
	*field = util_xstrdup(id);
	return 0;
}

void
http_api_run(struct http_server *h, struct evhttp_request *req)
{
	ProtobufCMessage *m = body_msg(h, req, &saga__v1__run_request__descriptor);

	if (m != NULL)
		api_call(h, req, M_RUN, m, 0);
}

void
http_api_get(struct http_server *h, struct evhttp_request *req, const char *id)
{
	Saga__V1__GetRequest *g = util_xcalloc(1, sizeof(*g));

	saga__v1__get_request__init(g);
	g->id = util_xstrdup(id);
	api_call(h, req, M_GET, &g->base, 0);
}

void
http_api_events(struct http_server *h, struct evhttp_request *req,
    const char *id)
{
	Saga__V1__GetRequest *g = util_xcalloc(1, sizeof(*g));

	saga__v1__get_request__init(g);
	g->id = util_xstrdup(id);
	api_call(h, req, M_WATCH, &g->base, 1);
}

void
http_api_operate(struct http_server *h, struct evhttp_request *req,
    const char *id, const char *verb)
{
	ProtobufCMessage	*m;
	const char		*method;

	if (strcmp(verb, "cancel") == 0) {
		Saga__V1__CancelRequest *c;

		if ((m = body_msg(h, req,
		    &saga__v1__cancel_request__descriptor)) == NULL)
			return;
		c = (Saga__V1__CancelRequest *)m;
		if (set_id(h, req, &c->id, id) == -1)
			goto bad;
		method = M_CANCEL;
	} else if (strcmp(verb, "retry") == 0) {
		Saga__V1__RetryRequest *rr;

		if ((m = body_msg(h, req,
		    &saga__v1__retry_request__descriptor)) == NULL)
			return;
		rr = (Saga__V1__RetryRequest *)m;
		if (set_id(h, req, &rr->id, id) == -1)
			goto bad;
		method = M_RETRY;
	} else {
		Saga__V1__ResolveRequest *rs;

		if ((m = body_msg(h, req,
		    &saga__v1__resolve_request__descriptor)) == NULL)
			return;
		rs = (Saga__V1__ResolveRequest *)m;
		if (set_id(h, req, &rs->id, id) == -1)
			goto bad;
		method = M_RESOLVE;
	}
	api_call(h, req, method, m, 0);
	return;
bad:
	protobuf_c_message_free_unpacked(m, NULL);
}

/* A state by its name, STATE_FAILED or FAILED (any case). */
static int
state_of(const char *s)
{
	const ProtobufCEnumDescriptor *d = &saga__v1__state__descriptor;

	for (unsigned i = 1; i < d->n_values; i++) {
		const char *name = d->values[i].name;

		if (strcasecmp(s, name) == 0 ||
		    strcasecmp(s, name + 6) == 0)	/* "STATE_" */
			return d->values[i].value;
	}
	return -1;
}

void
http_api_list(struct http_server *h, struct evhttp_request *req)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq	 params;
	struct evkeyval		*kv;
	Saga__V1__ListRequest	*lr;
	char			 err[300];
	size_t			 ns = 0;

	TAILQ_INIT(&params);
	if (q != NULL && evhttp_parse_query_str(q, &params) == -1) {
		http_reply_error(h, req, GRPC_STATUS_INVALID_ARGUMENT,
		    "the query string is malformed");
		return;
	}
	lr = util_xcalloc(1, sizeof(*lr));
	saga__v1__list_request__init(lr);
	TAILQ_FOREACH(kv, &params, next)
		if (strcmp(kv->key, "state") == 0 || strcmp(kv->key, "states") == 0)
			ns++;
	if (ns > 0)
		lr->states = util_xcalloc(ns, sizeof(*lr->states));
	TAILQ_FOREACH(kv, &params, next) {
		const char *k = kv->key, *v = kv->value;
		struct json_value num;
		long long ll;

		memset(&num, 0, sizeof(num));
		num.type = JSON_STRING;
		num.s = (char *)(uintptr_t)v;
		num.slen = strlen(v);
		if (strcmp(k, "state") == 0 || strcmp(k, "states") == 0) {
			int st = state_of(v);

			if (st < 0) {
				snprintf(err, sizeof(err), "state: unknown "
				    "state \"%.64s\"; expected STATE_FAILED or "
				    "FAILED and the like", v);
				goto bad;
			}
			lr->states[lr->n_states++] = (Saga__V1__State)st;
		} else if (strcmp(k, "flow") == 0) {
			free((const char *)lr->flow != protobuf_c_empty_string ?
			    lr->flow : NULL);
			lr->flow = util_xstrdup(v);
		} else if (strcmp(k, "since_unix_ms") == 0 ||
		    strcmp(k, "sinceUnixMs") == 0 ||
		    strcmp(k, "until_unix_ms") == 0 ||
		    strcmp(k, "untilUnixMs") == 0) {
			if (json_int(&num, 0, INT64_MAX, &ll) == -1) {
				snprintf(err, sizeof(err), "%s: expected "
				    "milliseconds since 1970", k);
				goto bad;
			}
			if (k[0] == 's')
				lr->since_unix_ms = ll;
			else
				lr->until_unix_ms = ll;
		} else if (strcmp(k, "page_size") == 0 ||
		    strcmp(k, "pageSize") == 0) {
			if (json_int(&num, 0, INT32_MAX, &ll) == -1) {
				snprintf(err, sizeof(err), "page_size: "
				    "expected a count");
				goto bad;
			}
			lr->page_size = (int32_t)ll;
		} else if (strcmp(k, "page_token") == 0 ||
		    strcmp(k, "pageToken") == 0) {
			free((const char *)lr->page_token != protobuf_c_empty_string ?
			    lr->page_token : NULL);
			lr->page_token = util_xstrdup(v);
		} else {
			snprintf(err, sizeof(err), "%.64s: unknown parameter; "
			    "expected state, flow, since_unix_ms, "
			    "until_unix_ms, page_size or page_token", k);
			goto bad;
		}
	}
	evhttp_clear_headers(&params);
	api_call(h, req, M_LIST, &lr->base, 0);
	return;
bad:
	evhttp_clear_headers(&params);
	protobuf_c_message_free_unpacked(&lr->base, NULL);
	http_reply_error(h, req, GRPC_STATUS_INVALID_ARGUMENT, err);
}
