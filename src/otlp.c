/*
 * otlp.c - the OTLP/HTTP span exporter (see otlp.h).
 *
 * Each span is packed once, when it ends, with protobuf-c (Span of
 * trace/v1) and appended to the queue as field 2 of a ScopeSpans; a batch
 * is then the queue's bytes behind the resource and the scope packed at
 * start, wrapped by hand in ResourceSpans and ExportTraceServiceRequest
 * (three length prefixes), so a span costs one pack and one copy. One POST
 * is in flight at a time on the persistent connection; spans that end
 * meanwhile wait in the queue, bounded by OTLP_QUEUE_MAX: past it they are
 * dropped and counted, and so is a batch the collector refuses or never
 * answers within OTLP_TIMEOUT_S. Nothing is retried: traces are a view,
 * never worth holding a saga or memory for.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "metrics.h"
#include "otlp.h"
#include "util.h"

#define OTLP_BATCH		512	/* spans: a batch is sent at once */
#define OTLP_DELAY_MS		200	/* else this long after its first */
#define OTLP_QUEUE_MAX		8192	/* spans waiting; more are dropped */
#define OTLP_QUEUE_BYTES	(8 << 20)
#define OTLP_TIMEOUT_S		5
#define OTLP_LOG_EVERY_MS	10000

struct otlp {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct evhttp_connection *conn;
	struct event		*timer;
	char			 host[256];
	int			 port;
	char			*path;
	char			 hosthdr[300];
	struct evbuffer		*queue;		/* packed spans, field 2 each */
	size_t			 nqueued;
	size_t			 inflight;	/* spans of the POST in flight */
	int			 busy;
	uint8_t			*head;		/* resource + scope fields */
	size_t			 reslen;	/* of which the resource's */
	size_t			 scopelen;	/* and the scope's */
	struct otlp_stats	 st;
	util_log_fn		 log;
	void			*log_arg;
	int64_t			 logged_ms;
};

static struct otlp *X;

static void	send_batch(struct otlp *);

/* --- protobuf by hand: a tag and a length ------------------------------------ */

static size_t
put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Field number f, wire type 2, then len: the prefix of an embedded message. */
static void
add_prefix(struct evbuffer *b, unsigned f, size_t len)
{
	uint8_t	p[16];
	size_t	n;

	n = put_varint(p, (uint64_t)f << 3 | 2);
	n += put_varint(p + n, len);
	evbuffer_add(b, p, n);
}

static size_t
varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* --- the resource and the scope, packed once -------------------------------- */

static void
kv_str(Opentelemetry__Proto__Common__V1__KeyValue *kv,
    Opentelemetry__Proto__Common__V1__AnyValue *av, const char *k,
    const char *v)
{
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(av);
	av->value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
	av->string_value = (char *)(uintptr_t)v;
	kv->key = (char *)(uintptr_t)k;
	kv->value = av;
}

static void
kv_int(Opentelemetry__Proto__Common__V1__KeyValue *kv,
    Opentelemetry__Proto__Common__V1__AnyValue *av, const char *k, int64_t v)
{
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(av);
	av->value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
	av->int_value = v;
	kv->key = (char *)(uintptr_t)k;
	kv->value = av;
}

/* ResourceSpans.resource (1) and ScopeSpans.scope (1), as their prefixes. */
static void
pack_head(struct otlp *x, const char *pod, const char *process)
{
	Opentelemetry__Proto__Resource__V1__Resource		 res;
	Opentelemetry__Proto__Common__V1__InstrumentationScope	 scope;
	Opentelemetry__Proto__Common__V1__KeyValue		 kv[4], *kvp[4];
	Opentelemetry__Proto__Common__V1__AnyValue		 av[4];
	struct evbuffer						*b = evbuffer_new();
	uint8_t							*tmp;
	size_t							 n;

	kv_str(&kv[0], &av[0], "service.name", "sagad");
	kv_str(&kv[1], &av[1], "service.instance.id", pod);
	kv_str(&kv[2], &av[2], "sagad.process", process);
	kv_int(&kv[3], &av[3], "process.pid", (int64_t)getpid());
	for (int i = 0; i < 4; i++)
		kvp[i] = &kv[i];
	opentelemetry__proto__resource__v1__resource__init(&res);
	res.n_attributes = 4;
	res.attributes = kvp;
	n = opentelemetry__proto__resource__v1__resource__get_packed_size(&res);
	tmp = util_xcalloc(1, n + 1);
	opentelemetry__proto__resource__v1__resource__pack(&res, tmp);
	add_prefix(b, 1, n);
	evbuffer_add(b, tmp, n);
	free(tmp);

	opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
	scope.name = (char *)(uintptr_t)"sagad";
	scope.version = (char *)(uintptr_t)PACKAGE_VERSION;
	n = opentelemetry__proto__common__v1__instrumentation_scope__get_packed_size(
	    &scope);
	tmp = util_xcalloc(1, n + 1);
	opentelemetry__proto__common__v1__instrumentation_scope__pack(&scope,
	    tmp);
	/* Kept apart: the scope goes inside ScopeSpans, the resource not. */
	x->reslen = evbuffer_get_length(b);
	add_prefix(b, 1, n);
	evbuffer_add(b, tmp, n);
	free(tmp);
	n = evbuffer_get_length(b);
	x->scopelen = n - x->reslen;
	x->head = util_xcalloc(1, n);
	evbuffer_remove(b, x->head, n);
	evbuffer_free(b);
}

/* --- the batch ------------------------------------------------------------- */

/* A batch failed: said at most once every OTLP_LOG_EVERY_MS. */
static void
say(struct otlp *x, const char *what)
{
	int64_t	now = util_mono_ms();
	char	msg[512];

	if (x->log == NULL || (x->logged_ms != 0 &&
	    now - x->logged_ms < OTLP_LOG_EVERY_MS))
		return;
	x->logged_ms = now;
	snprintf(msg, sizeof(msg), "tracing: %s; %llu spans dropped so far "
	    "(%llu exported)", what, (unsigned long long)x->st.dropped,
	    (unsigned long long)x->st.exported);
	x->log(UTIL_WARN, NULL, msg, x->log_arg);
}

static void
batch_done(struct evhttp_request *req, void *arg)
{
	struct otlp	*x = arg;
	int		 code = req != NULL ?
			    evhttp_request_get_response_code(req) : 0;
	char		 what[400];

	x->busy = 0;
	if (code >= 200 && code < 300) {
		x->st.exported += x->inflight;
		metrics_spans(x->inflight, 0);
	} else {
		x->st.failed++;
		x->st.dropped += x->inflight;
		metrics_spans(0, x->inflight);
		if (code == 0)
			snprintf(what, sizeof(what), "the collector at %s:%d "
			    "did not answer", x->host, x->port);
		else
			snprintf(what, sizeof(what), "the collector at %s:%d "
			    "answered HTTP %d", x->host, x->port, code);
		say(x, what);
	}
	x->inflight = 0;
	if (x->nqueued >= OTLP_BATCH)
		send_batch(x);
	else if (x->nqueued > 0 && !evtimer_pending(x->timer, NULL)) {
		struct timeval tv = { 0, OTLP_DELAY_MS * 1000 };

		evtimer_add(x->timer, &tv);
	}
}

static void
send_batch(struct otlp *x)
{
	struct evhttp_request	*req;
	struct evkeyvalq	*h;
	struct evbuffer		*out;
	size_t			 sc_len, rs_len;

	if (x->busy || x->nqueued == 0)
		return;
	if (x->timer != NULL)
		evtimer_del(x->timer);
	if (x->conn == NULL) {
		x->conn = evhttp_connection_base_new(x->base, x->dns, x->host,
		    (unsigned short)x->port);
		if (x->conn == NULL) {
			x->st.failed++;
			x->st.dropped += x->nqueued;
			metrics_spans(0, x->nqueued);
			x->nqueued = 0;
			evbuffer_drain(x->queue, evbuffer_get_length(x->queue));
			return;
		}
		evhttp_connection_set_timeout(x->conn, OTLP_TIMEOUT_S);
		evhttp_connection_set_retries(x->conn, 0);
	}
	if ((req = evhttp_request_new(batch_done, x)) == NULL)
		return;
	/* ExportTraceServiceRequest { resource_spans = 1 { resource = 1,
	   scope_spans = 2 { scope = 1, spans = 2... } } } */
	sc_len = x->scopelen + evbuffer_get_length(x->queue);
	rs_len = x->reslen + 1 + varint_len(sc_len) + sc_len;
	out = evhttp_request_get_output_buffer(req);
	add_prefix(out, 1, rs_len);
	evbuffer_add(out, x->head, x->reslen);
	add_prefix(out, 2, sc_len);
	evbuffer_add(out, x->head + x->reslen, x->scopelen);
	evbuffer_add_buffer(out, x->queue);
	x->inflight = x->nqueued;
	x->nqueued = 0;
	x->st.batches++;
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", x->hosthdr);
	evhttp_add_header(h, "Content-Type", "application/x-protobuf");
	evhttp_add_header(h, "User-Agent", "sagad/" PACKAGE_VERSION);
	if (evhttp_make_request(x->conn, req, EVHTTP_REQ_POST, x->path) ==
	    -1) {
		/* evhttp freed req; the connection is made again next time. */
		x->st.failed++;
		x->st.dropped += x->inflight;
		metrics_spans(0, x->inflight);
		x->inflight = 0;
		evhttp_connection_free(x->conn);
		x->conn = NULL;
		return;
	}
	x->busy = 1;
}

static void
timer_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	send_batch(arg);
}

/* --- spans ----------------------------------------------------------------- */

void
otlp_attr_str(struct otlp_span *sp, const char *key, const char *v)
{
	if (sp->nattrs >= OTLP_MAX_ATTRS || v == NULL)
		return;
	sp->attrs[sp->nattrs].key = key;
	sp->attrs[sp->nattrs].s = v;
	sp->nattrs++;
}

void
otlp_attr_int(struct otlp_span *sp, const char *key, int64_t v)
{
	if (sp->nattrs >= OTLP_MAX_ATTRS)
		return;
	sp->attrs[sp->nattrs].key = key;
	sp->attrs[sp->nattrs].s = NULL;
	sp->attrs[sp->nattrs].i = v;
	sp->nattrs++;
}

void
otlp_emit(const struct otlp_span *sp)
{
	struct otlp				*x = X;
	Opentelemetry__Proto__Trace__V1__Span	 span;
	Opentelemetry__Proto__Trace__V1__Status	 status;
	Opentelemetry__Proto__Common__V1__KeyValue kv[OTLP_MAX_ATTRS],
						*kvp[OTLP_MAX_ATTRS];
	Opentelemetry__Proto__Common__V1__AnyValue av[OTLP_MAX_ATTRS];
	struct evbuffer_iovec			 v;
	uint8_t					 pre[16];
	size_t					 n, np;

	if (x == NULL)
		return;
	x->st.queued++;
	if (x->nqueued >= OTLP_QUEUE_MAX ||
	    evbuffer_get_length(x->queue) >= OTLP_QUEUE_BYTES) {
		x->st.dropped++;
		metrics_spans(0, 1);
		return;
	}
	opentelemetry__proto__trace__v1__span__init(&span);
	span.trace_id.data = (uint8_t *)(uintptr_t)sp->trace_id;
	span.trace_id.len = 16;
	span.span_id.data = (uint8_t *)(uintptr_t)sp->span_id;
	span.span_id.len = 8;
	if (sp->parent_id != NULL) {
		span.parent_span_id.data = (uint8_t *)(uintptr_t)sp->parent_id;
		span.parent_span_id.len = 8;
	}
	if (sp->trace_state != NULL)
		span.trace_state = (char *)(uintptr_t)sp->trace_state;
	span.flags = sp->flags;
	span.name = (char *)(uintptr_t)sp->name;
	span.kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)sp->kind;
	span.start_time_unix_nano = (uint64_t)sp->start_ns;
	span.end_time_unix_nano = (uint64_t)sp->end_ns;
	for (int i = 0; i < sp->nattrs; i++) {
		if (sp->attrs[i].s != NULL)
			kv_str(&kv[i], &av[i], sp->attrs[i].key,
			    sp->attrs[i].s);
		else
			kv_int(&kv[i], &av[i], sp->attrs[i].key,
			    sp->attrs[i].i);
		kvp[i] = &kv[i];
	}
	span.n_attributes = (size_t)sp->nattrs;
	span.attributes = kvp;
	opentelemetry__proto__trace__v1__status__init(&status);
	if (sp->error) {
		status.code =
		    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
		status.message = (char *)(uintptr_t)(sp->status_msg != NULL ?
		    sp->status_msg : "");
		span.status = &status;
	}
	n = opentelemetry__proto__trace__v1__span__get_packed_size(&span);
	np = put_varint(pre, 2 << 3 | 2);
	np += put_varint(pre + np, n);
	evbuffer_add(x->queue, pre, np);
	if (evbuffer_reserve_space(x->queue, n, &v, 1) < 1)
		return;		/* out of memory: util_x* would have died */
	opentelemetry__proto__trace__v1__span__pack(&span, v.iov_base);
	v.iov_len = n;
	evbuffer_commit_space(x->queue, &v, 1);
	x->nqueued++;
	if (x->nqueued >= OTLP_BATCH)
		send_batch(x);
	else if (!x->busy && !evtimer_pending(x->timer, NULL)) {
		struct timeval tv = { 0, OTLP_DELAY_MS * 1000 };

		evtimer_add(x->timer, &tv);
	}
}

void
otlp_get_stats(struct otlp_stats *st)
{
	if (X == NULL)
		memset(st, 0, sizeof(*st));
	else
		*st = X->st;
}

/* --- the exporter's life ----------------------------------------------------- */

int
otlp_start(struct event_base *base, const char *endpoint, const char *pod,
    const char *process, util_log_fn log, void *log_arg, char *err,
    size_t errlen)
{
	struct otlp		*x;
	struct evhttp_uri	*u;
	const char		*h, *p, *q;
	struct in6_addr		 a6;

	if (X != NULL)
		otlp_stop();
	if ((u = evhttp_uri_parse(endpoint)) == NULL ||
	    evhttp_uri_get_scheme(u) == NULL ||
	    strcmp(evhttp_uri_get_scheme(u), "http") != 0 ||
	    (h = evhttp_uri_get_host(u)) == NULL || *h == '\0' ||
	    strlen(h) >= 256) {
		snprintf(err, errlen, "tracing.otlp_endpoint: expected "
		    "\"http://host[:port][/path]\"");
		if (u != NULL)
			evhttp_uri_free(u);
		return -1;
	}
	x = util_xcalloc(1, sizeof(*x));
	x->base = base;
	snprintf(x->host, sizeof(x->host), "%s", h);
	x->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
	p = evhttp_uri_get_path(u);
	q = evhttp_uri_get_query(u);
	if (p == NULL || *p == '\0')
		p = "/v1/traces";
	if (q != NULL && *q != '\0') {
		size_t n = strlen(p) + strlen(q) + 2;

		x->path = util_xcalloc(1, n);
		snprintf(x->path, n, "%s?%s", p, q);
	} else
		x->path = util_xstrdup(p);
	snprintf(x->hosthdr, sizeof(x->hosthdr), strchr(x->host, ':') ?
	    "[%s]:%d" : "%s:%d", x->host, x->port);
	evhttp_uri_free(u);
	/* A name is resolved off the loop; an address needs no resolver. */
	if (evutil_inet_pton(AF_INET, x->host, &a6) != 1 &&
	    evutil_inet_pton(AF_INET6, x->host, &a6) != 1)
		x->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	x->queue = evbuffer_new();
	x->timer = evtimer_new(base, timer_cb, x);
	x->log = log;
	x->log_arg = log_arg;
	pack_head(x, pod, process);
	X = x;
	return 0;
}

int
otlp_running(void)
{
	return X != NULL;
}

void
otlp_stop(void)
{
	struct otlp *x = X;

	if (x == NULL)
		return;
	X = NULL;
	if (x->conn != NULL)
		evhttp_connection_free(x->conn);	/* no callback */
	if (x->dns != NULL)
		evdns_base_free(x->dns, 0);
	event_free(x->timer);
	evbuffer_free(x->queue);
	free(x->head);
	free(x->path);
	free(x);
}
