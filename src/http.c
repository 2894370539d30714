/*
 * http.c - the HTTP/1.1 listener (see http.h): evhttp bound to
 * `http.listen`, the connections it serves and their bounds, the route
 * table with the role each route needs, and the endpoints that are not the
 * JSON API: /livez, /readyz, /metrics and `/`.
 *
 * evhttp bounds header and body sizes itself, but neither the number of
 * connections nor the total time a request may take to arrive (its read
 * timeout restarts at every byte, so a client trickling a byte at a time
 * holds a connection for hours). So every connection's bufferevent is made
 * here (evhttp's bevcb) and tracked: a reference of ours keeps it, and its
 * descriptor, until evhttp has let it go (its callbacks are cleared then);
 * a sweep closes connections over max_connections at once and, with
 * shutdown(2), any whose request has not arrived within timeout_ms of the
 * connection opening or its last answer. evhttp then sees the connection
 * end and frees it as usual.
 */
#include "autoconf.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "dashboard.h"
#include "grpc/grpc.h"
#include "http.h"
#include "http_int.h"
#include "json.h"
#include "tls.h"
#include "util.h"

#define DEF_MAX_CONNS		256
#define DEF_MAX_BODY		(1024 * 1024)
#define DEF_TIMEOUT_MS		10000
#define MAX_HEADERS		(16 * 1024)
#define SWEEP_MS		250
#define API_PREFIX		"/api/v1/sagas"

/* --- answers ----------------------------------------------------------------- */

int
http_status_of_grpc(int st)
{
	switch (st) {
	case GRPC_STATUS_OK:			return 200;
	case GRPC_STATUS_CANCELLED:		return 499;
	case GRPC_STATUS_INVALID_ARGUMENT:	return 400;
	case GRPC_STATUS_DEADLINE_EXCEEDED:	return 504;
	case GRPC_STATUS_NOT_FOUND:		return 404;
	case GRPC_STATUS_ALREADY_EXISTS:	return 409;
	case GRPC_STATUS_PERMISSION_DENIED:	return 403;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:	return 429;
	case GRPC_STATUS_FAILED_PRECONDITION:	return 409;
	case GRPC_STATUS_ABORTED:		return 409;
	case GRPC_STATUS_OUT_OF_RANGE:		return 400;
	case GRPC_STATUS_UNIMPLEMENTED:		return 501;
	case GRPC_STATUS_UNAVAILABLE:		return 503;
	case GRPC_STATUS_UNAUTHENTICATED:	return 401;
	default:				return 500;
	}
}

static const char *
reason_of(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 499: return "Client Closed Request";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Internal Server Error";
	}
}

struct http_conn *
http_conn_of(struct http_server *h, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev;
	struct http_conn *c;

	if (evcon == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	TAILQ_FOREACH(c, &h->conns, entry)
		if (c->bev == bev)
			return c;
	return NULL;
}

void
http_req_done(struct http_server *h, struct evhttp_request *req)
{
	struct http_conn *c = http_conn_of(h, req);

	if (c != NULL) {
		c->busy = 0;
		c->req = NULL;
		c->since = util_mono_ms();
	}
}

static void
reply(struct http_server *h, struct evhttp_request *req, int code,
    const char *ctype, const char *body, size_t len)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *hd = evhttp_request_get_output_headers(req);

	evhttp_add_header(hd, "Content-Type", ctype);
	evhttp_add_header(hd, "Cache-Control", "no-store");
	evbuffer_add(b, body, len);
	http_req_done(h, req);
	evhttp_send_reply(req, code, reason_of(code), b);
	evbuffer_free(b);
}

void
http_reply_json(struct http_server *h, struct evhttp_request *req, int code,
    const char *body, size_t len)
{
	reply(h, req, code, "application/json", body, len);
}

/* An error as grpc-gateway writes it: {"code": N, "message": "..."}. */
void
http_reply_error(struct http_server *h, struct evhttp_request *req,
    int grpc_status, const char *message)
{
	char	*buf = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&buf, &len);

	if (fp == NULL) {
		reply(h, req, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	fprintf(fp, "{\"code\":%d,\"message\":", grpc_status);
	json_write_string(fp, message != NULL ? message : "");
	fputs("}\n", fp);
	fclose(fp);
	http_reply_json(h, req, http_status_of_grpc(grpc_status), buf, len);
	free(buf);
}

static void
reply_text(struct http_server *h, struct evhttp_request *req, int code,
    const char *text)
{
	reply(h, req, code, "text/plain; charset=utf-8", text, strlen(text));
}

/* --- the plain endpoints ---------------------------------------------------- */

static void
serve_livez(struct http_server *h, struct evhttp_request *req)
{
	reply_text(h, req, 200, "ok\n");
}

static void
serve_readyz(struct http_server *h, struct evhttp_request *req)
{
	char why[256], buf[300];

	why[0] = '\0';
	if (h->hooks.ready == NULL || h->hooks.ready(h->hooks.arg, why,
	    sizeof(why))) {
		reply_text(h, req, 200, "ok\n");
		return;
	}
	snprintf(buf, sizeof(buf), "not ready: %s\n", why);
	reply_text(h, req, 503, buf);
}

static void
serve_metrics(struct http_server *h, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *hd = evhttp_request_get_output_headers(req);

	if (h->hooks.metrics != NULL)
		h->hooks.metrics(b, h->hooks.arg);
	evhttp_add_header(hd, "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	http_req_done(h, req);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/*
 * `/`: the dashboard, one page built into the binary (src/dashboard.h). It
 * is open to all: it holds no data, and asks the API with the user's token.
 */
static void
serve_root(struct http_server *h, struct evhttp_request *req)
{
	reply(h, req, 200, "text/html; charset=utf-8",
	    (const char *)dashboard_html, dashboard_html_len);
}

/* --- routing ------------------------------------------------------------------ */

enum route {
	R_NONE, R_LIVEZ, R_READYZ, R_METRICS, R_ROOT, R_LIST, R_RUN, R_GET,
	R_EVENTS, R_OPERATE,
};

/*
 * Whether the request may use a route that needs role. Every request
 * passes here once, with its route's role known (http_route below); the
 * authorize hook (service.c: auth.tokens_file, the same tokens, roles and
 * refusal log as gRPC's) judges its Authorization header. Without auth
 * configured everyone may do everything, as with gRPC. Returns 1, or
 * answers the request itself (401 with WWW-Authenticate: Bearer, 403) and
 * returns 0.
 */
static int
http_authorize(struct http_server *h, struct evhttp_request *req,
    enum http_role role)
{
	struct evhttp_connection	*evcon;
	const char			*v, *m;
	char				*addr = NULL;
	ev_uint16_t			 port = 0;
	char				 peer[96], what[300], msg[256];
	int				 status = 401;

	if (h->hooks.authorize == NULL || role == HTTP_ROLE_NONE)
		return 1;
	v = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if ((evcon = evhttp_request_get_connection(req)) != NULL)
		evhttp_connection_get_peer(evcon, &addr, &port);
	snprintf(peer, sizeof(peer), "%s:%u", addr != NULL ? addr : "?",
	    (unsigned)port);
	m = evhttp_request_get_command(req) == EVHTTP_REQ_POST ? "POST" :
	    "GET";
	snprintf(what, sizeof(what), "%s %.200s", m,
	    evhttp_request_get_uri(req));
	if (h->hooks.authorize(h->hooks.arg, v, (int)role, peer, what,
	    &status, msg, sizeof(msg)))
		return 1;
	if (status == 401)
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
	http_reply_error(h, req, status == 403 ?
	    GRPC_STATUS_PERMISSION_DENIED : GRPC_STATUS_UNAUTHENTICATED, msg);
	return 0;
}

/*
 * The route of a request, the role it needs, and for the API's saga
 * routes the id (percent-decoded) and the verb after ':'. An id holding
 * '/' or ':' must be percent-encoded, since the path is split before it
 * is decoded. Returns R_NONE with *bad_method set for a known path asked
 * with the wrong method.
 */
static enum route
http_route(const char *path, enum evhttp_cmd_type cmd, enum http_role *role,
    char **id, char **verb, int *bad_method)
{
	int get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST;
	const char *rest, *slash, *colon;
	size_t n;

	*role = HTTP_ROLE_NONE;
	*id = *verb = NULL;
	*bad_method = 0;
	if (strcmp(path, "/livez") == 0 || strcmp(path, "/readyz") == 0 ||
	    strcmp(path, "/metrics") == 0 || strcmp(path, "/") == 0) {
		if (!get) {
			*bad_method = 1;
			return R_NONE;
		}
		return path[1] == 'l' ? R_LIVEZ : path[1] == 'r' ? R_READYZ :
		    path[1] == 'm' ? R_METRICS : R_ROOT;
	}
	n = strlen(API_PREFIX);
	if (strncmp(path, API_PREFIX, n) != 0)
		return R_NONE;
	rest = path + n;
	if (*rest == '\0') {
		if (get) {
			*role = HTTP_ROLE_READ;
			return R_LIST;
		}
		if (post) {
			*role = HTTP_ROLE_RUN;
			return R_RUN;
		}
		*bad_method = 1;
		return R_NONE;
	}
	if (*rest != '/' || rest[1] == '\0')
		return R_NONE;
	rest++;
	slash = strchr(rest, '/');
	if (slash != NULL) {
		if (strcmp(slash, "/events") != 0 || slash == rest)
			return R_NONE;
		if (!get) {
			*bad_method = 1;
			return R_NONE;
		}
		{
			char *raw = util_xcalloc(1, (size_t)(slash - rest) + 1);

			memcpy(raw, rest, (size_t)(slash - rest));
			*id = evhttp_uridecode(raw, 0, NULL);
			free(raw);
		}
		*role = HTTP_ROLE_READ;
		return R_EVENTS;
	}
	colon = strrchr(rest, ':');
	if (colon != NULL) {
		char *raw;

		if (!post) {
			*bad_method = 1;
			return R_NONE;
		}
		if (strcmp(colon + 1, "cancel") != 0 &&
		    strcmp(colon + 1, "retry") != 0 &&
		    strcmp(colon + 1, "resolve") != 0)
			return R_NONE;
		if (colon == rest)
			return R_NONE;
		raw = util_xcalloc(1, (size_t)(colon - rest) + 1);
		memcpy(raw, rest, (size_t)(colon - rest));
		*id = evhttp_uridecode(raw, 0, NULL);
		free(raw);
		*verb = util_xstrdup(colon + 1);
		*role = HTTP_ROLE_OPERATE;
		return R_OPERATE;
	}
	if (!get) {
		*bad_method = 1;
		return R_NONE;
	}
	*id = evhttp_uridecode(rest, 0, NULL);
	*role = HTTP_ROLE_READ;
	return R_GET;
}

static void
conn_closed(struct evhttp_connection *evcon SAGAD_UNUSED, void *arg)
{
	struct http_conn *c = arg;

	if (c->req != NULL) {
		struct http_req *r = c->req;

		c->req = NULL;
		http_api_conn_closed(r);
	}
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct http_server		*h = arg;
	struct http_conn		*c = http_conn_of(h, req);
	const struct evhttp_uri		*uri = evhttp_request_get_evhttp_uri(req);
	const char			*path;
	enum http_role			 role;
	enum route			 rt;
	char				*id, *verb;
	int				 bad_method;

	if (c != NULL) {
		c->busy = 1;
		evhttp_connection_set_closecb(evhttp_request_get_connection(req),
		    conn_closed, c);
		if (c->killed) {
			reply_text(h, req, 503, "too many connections\n");
			return;
		}
	}
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || *path == '\0')
		path = "/";
	rt = http_route(path, evhttp_request_get_command(req), &role, &id,
	    &verb, &bad_method);
	if (rt == R_NONE) {
		if (bad_method)
			reply_text(h, req, 405, "method not allowed\n");
		else
			reply_text(h, req, 404, "not found\n");
		return;
	}
	if (!http_authorize(h, req, role))
		goto out;
	switch (rt) {
	case R_LIVEZ:	serve_livez(h, req); break;
	case R_READYZ:	serve_readyz(h, req); break;
	case R_METRICS:	serve_metrics(h, req); break;
	case R_ROOT:	serve_root(h, req); break;
	case R_LIST:	http_api_list(h, req); break;
	case R_RUN:	http_api_run(h, req); break;
	case R_GET:	http_api_get(h, req, id); break;
	case R_EVENTS:	http_api_events(h, req, id); break;
	case R_OPERATE:	http_api_operate(h, req, id, verb); break;
	default:	break;
	}
out:
	free(id);
	free(verb);
}

/* --- connections --------------------------------------------------------------- */

static void	reap(struct http_server *);

static struct bufferevent *
make_bev(struct event_base *base, void *arg)
{
	struct http_server	*h = arg;
	struct http_conn	*c;
	struct bufferevent	*bev;

	/* TLS: the handshake runs in the bufferevent, before any request. */
	if (h->hooks.tls != NULL)
		bev = tls_accept_bev(h->hooks.tls, base, -1, 0);
	else
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	bufferevent_incref(bev);
	if (h->nconns >= (size_t)h->opts.max_connections)
		reap(h);
	c = util_xcalloc(1, sizeof(*c));
	c->h = h;
	c->bev = bev;
	c->since = util_mono_ms();
	TAILQ_INSERT_TAIL(&h->conns, c, entry);
	if (++h->nconns > (size_t)h->opts.max_connections) {
		/* Closed by the sweep, once evhttp has given it its socket. */
		c->killed = 1;
		h->refused++;
		event_active(h->sweep, EV_TIMEOUT, 0);
	}
	return bev;
}

static void
conn_kill(struct http_conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

/* Lets go of the connections evhttp is done with (their callbacks cleared). */
static void
reap(struct http_server *h)
{
	struct http_conn *c, *next;

	for (c = TAILQ_FIRST(&h->conns); c != NULL; c = next) {
		bufferevent_event_cb evcb;

		next = TAILQ_NEXT(c, entry);
		bufferevent_getcb(c->bev, NULL, NULL, &evcb, NULL);
		if (evcb != NULL)
			continue;
		if (c->req != NULL)
			c->req->conn = NULL;
		TAILQ_REMOVE(&h->conns, c, entry);
		h->nconns--;
		bufferevent_decref(c->bev);
		free(c);
	}
}

/* Closes what is over its bounds. */
static void
sweep_cb(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct http_server	*h = arg;
	struct http_conn	*c;
	int64_t			 now = util_mono_ms();

	reap(h);
	http_api_keepalive(h, now);
	TAILQ_FOREACH(c, &h->conns, entry)
		if (c->killed || (!c->busy && now - c->since >
		    h->opts.timeout_ms)) {
			c->killed = 1;
			conn_kill(c);
		}
}

static void
apply_opts(struct http_server *h, const struct http_opts *o)
{
	struct timeval tv;

	if (o->max_connections > 0)
		h->opts.max_connections = o->max_connections;
	if (o->max_body > 0)
		h->opts.max_body = o->max_body;
	if (o->timeout_ms > 0)
		h->opts.timeout_ms = o->timeout_ms;
	evhttp_set_max_body_size(h->eh, (ev_ssize_t)h->opts.max_body);
	tv.tv_sec = h->opts.timeout_ms / 1000;
	tv.tv_usec = (h->opts.timeout_ms % 1000) * 1000;
	evhttp_set_timeout_tv(h->eh, &tv);
}

struct http_server *
http_new(struct event_base *base, const struct http_opts *o,
    const struct http_hooks *hooks, char *err, size_t errlen)
{
	struct http_server	*h = util_xcalloc(1, sizeof(*h));
	struct timeval		 tv = { 0, SWEEP_MS * 1000 };

	h->base = base;
	h->hooks = *hooks;
	h->hooks.tls = tls_ref(hooks->tls);
	h->opts.max_connections = DEF_MAX_CONNS;
	h->opts.max_body = DEF_MAX_BODY;
	h->opts.timeout_ms = DEF_TIMEOUT_MS;
	TAILQ_INIT(&h->conns);
	TAILQ_INIT(&h->reqs);
	if ((h->eh = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "http: evhttp_new failed");
		free(h);
		return NULL;
	}
	h->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, h);
	event_add(h->sweep, &tv);
	evhttp_set_allowed_methods(h->eh, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(h->eh, MAX_HEADERS);
	evhttp_set_bevcb(h->eh, make_bev, h);
	evhttp_set_gencb(h->eh, on_request, h);
	apply_opts(h, o);
	return h;
}

int
http_listen(struct http_server *h, const char *host, int port, char *err,
    size_t errlen)
{
	if (evhttp_bind_socket_with_handle(h->eh, host, (ev_uint16_t)port) ==
	    NULL) {
		snprintf(err, errlen, "http: cannot listen on %s:%d (in use, "
		    "or not an address of this host)", host, port);
		return -1;
	}
	return 0;
}

void
http_set_limits(struct http_server *h, const struct http_opts *o)
{
	apply_opts(h, o);
}

size_t
http_nconns(const struct http_server *h)
{
	return h->nconns;
}

void
http_free(struct http_server *h)
{
	struct http_conn *c;

	if (h == NULL)
		return;
	http_api_free_all(h);
	evhttp_free(h->eh);	/* frees its connections (closecb runs) */
	while ((c = TAILQ_FIRST(&h->conns)) != NULL) {
		TAILQ_REMOVE(&h->conns, c, entry);
		bufferevent_decref(c->bev);
		free(c);
	}
	event_free(h->sweep);
	tls_free(h->hooks.tls);
	free(h);
}
