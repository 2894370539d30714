/*
 * callback.c - HTTP POSTs of sagas' ends to their callback URLs (see
 * callback.h), on keep-alive connections: a small pool of evhttp
 * connections per origin (host and port), each carrying one request at a
 * time (no pipelining: a receiver that answers out of order, or closes
 * after any answer, would make pipelined POSTs ambiguous) with the rest
 * queued behind it. libevent reconnects a connection the receiver closed
 * (an answer with "Connection: close", a reset, its idle timeout) for the
 * next request on it, and a connection idle for CALLBACK_IDLE_MS is closed
 * here. A POST whose connection was closed before any answer (EOF: the
 * receiver's idle close racing the request) is sent once more at once on a
 * fresh connection; every other failure is the caller's to retry. Each
 * POST has its own deadline, the timeout from callback_post(), time queued
 * behind others included, so a slow receiver never holds one longer than
 * a POST on a connection of its own would be held.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "callback.h"
#include "util.h"

#define CALLBACK_IDLE_MS	10000	/* an unused connection is closed */
#define CALLBACK_SWEEP_MS	1000

struct origin;

struct conn {
	struct evhttp_connection *evcon;	/* NULL: a free slot */
	int			 inflight;	/* sent and queued on it */
	int64_t			 idle_since;	/* util_mono_ms(), inflight 0 */
};

struct origin {
	char			 host[CALLBACK_HOST_MAX];
	int			 port;
	char			 hosthdr[CALLBACK_HOST_MAX + 16];
	struct conn		 conns[CALLBACK_POOL];
	int			 nconns;
	LIST_ENTRY(origin)	 entry;
};

struct post {
	struct callback		*cb;
	struct origin		*o;
	struct conn		*conn;
	struct evhttp_request	*req;		/* NULL once answered */
	struct event		*deadline;
	char			*path;
	char			*body;
	size_t			 len;
	int			 resent;
	callback_done_fn	*done;
	void			*arg;
	enum evhttp_request_error error;
	int			 failed;
	LIST_ENTRY(post)	 entry;
};

struct callback {
	struct event_base	*base;
	struct evdns_base	*dns;	/* receivers' names, off the loop */
	struct event		*sweep;
	int			 timeout_ms;
	int			 inflight;
	unsigned long long	 connects;
	LIST_HEAD(, post)	 posts;
	LIST_HEAD(, origin)	 origins;
};

static void	sweep_cb(evutil_socket_t, short, void *);

/* An IPv4 or IPv6 literal: nothing to look up. */
static int
callback_is_address(const char *host)
{
	struct in6_addr a;

	return evutil_inet_pton(AF_INET, host, &a) == 1 ||
	    evutil_inet_pton(AF_INET6, host, &a) == 1;
}

struct callback *
callback_new(struct event_base *base, int timeout_ms)
{
	struct callback *c = util_xcalloc(1, sizeof(*c));

	c->base = base;
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
	c->sweep = evtimer_new(base, sweep_cb, c);
	LIST_INIT(&c->posts);
	LIST_INIT(&c->origins);
	return c;
}

static void
post_free(struct post *p)
{
	if (p->deadline != NULL)
		event_free(p->deadline);
	free(p->path);
	free(p->body);
	free(p);
}

void
callback_free(struct callback *c)
{
	struct post	*p;
	struct origin	*o;

	if (c == NULL)
		return;
	while ((p = LIST_FIRST(&c->posts)) != NULL) {
		LIST_REMOVE(p, entry);
		post_free(p);
	}
	/* Freeing a connection drops its requests without their callbacks. */
	while ((o = LIST_FIRST(&c->origins)) != NULL) {
		LIST_REMOVE(o, entry);
		for (int i = 0; i < CALLBACK_POOL; i++)
			if (o->conns[i].evcon != NULL)
				evhttp_connection_free(o->conns[i].evcon);
		free(o);
	}
	if (c->sweep != NULL)
		event_free(c->sweep);
	if (c->dns != NULL)
		evdns_base_free(c->dns, 1);
	free(c);
}

int
callback_inflight(const struct callback *c)
{
	return c->inflight;
}

int
callback_connections(const struct callback *c)
{
	const struct origin	*o;
	int			 n = 0;

	LIST_FOREACH(o, &c->origins, entry)
		n += o->nconns;
	return n;
}

unsigned long long
callback_connects(const struct callback *c)
{
	return c->connects;
}

int
callback_url_parse(const char *url, char *host, size_t hostlen, int *port,
    char *path, size_t pathlen, char *err, size_t errlen)
{
	struct evhttp_uri	*u;
	const char		*scheme, *h, *p, *q;
	int			 rc = -1;

	if ((u = evhttp_uri_parse(url)) == NULL) {
		snprintf(err, errlen, "callback URL \"%s\" does not parse",
		    url);
		return -1;
	}
	scheme = evhttp_uri_get_scheme(u);
	h = evhttp_uri_get_host(u);
	p = evhttp_uri_get_path(u);
	q = evhttp_uri_get_query(u);
	if (scheme == NULL || strcasecmp(scheme, "http") != 0)
		snprintf(err, errlen, "callback URL \"%s\": only http:// is "
		    "supported", url);
	else if (h == NULL || *h == '\0')
		snprintf(err, errlen, "callback URL \"%s\" names no host", url);
	else if (strlen(h) >= hostlen)
		snprintf(err, errlen, "callback URL \"%s\": host too long",
		    url);
	else if ((size_t)snprintf(path, pathlen, "%s%s%s",
	    p != NULL && *p ? p : "/", q != NULL ? "?" : "",
	    q != NULL ? q : "") >= pathlen)
		snprintf(err, errlen, "callback URL \"%s\": path too long",
		    url);
	else {
		snprintf(host, hostlen, "%s", h);
		*port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) :
		    80;
		rc = 0;
	}
	evhttp_uri_free(u);
	return rc;
}

/*
 * An allow entry split: its host (without brackets) into h, and its port,
 * 0 when it names none. -1 when it does not parse.
 */
static int
allow_split(const char *e, char *h, size_t hlen, int *port)
{
	const char	*end, *colon;
	char		*p;
	long		 v;

	*port = 0;
	if (e[0] == '[') {
		if ((end = strchr(e, ']')) == NULL || end == e + 1 ||
		    (size_t)(end - e - 1) >= hlen)
			return -1;
		snprintf(h, hlen, "%.*s", (int)(end - e - 1), e + 1);
		if (end[1] == '\0')
			return 0;
		if (end[1] != ':')
			return -1;
		colon = end + 1;
	} else {
		colon = strchr(e, ':');
		/* Two colons or more: a bare IPv6 address, no port. */
		if (colon == NULL || strchr(colon + 1, ':') != NULL) {
			if (strlen(e) >= hlen || e[0] == '\0')
				return -1;
			snprintf(h, hlen, "%s", e);
			return 0;
		}
		if (colon == e || (size_t)(colon - e) >= hlen)
			return -1;
		snprintf(h, hlen, "%.*s", (int)(colon - e), e);
	}
	v = strtol(colon + 1, &p, 10);
	if (colon[1] == '\0' || *p != '\0' || v < 1 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

int
callback_host_allowed(const char *host, int port, char *const *allow,
    size_t nallow)
{
	char	h[CALLBACK_HOST_MAX], want[CALLBACK_HOST_MAX];
	size_t	n = strlen(host);
	int	p;

	/* evhttp keeps an IPv6 literal's brackets. */
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
		snprintf(want, sizeof(want), "%.*s", (int)(n - 2), host + 1);
	else
		snprintf(want, sizeof(want), "%s", host);
	for (size_t i = 0; i < nallow; i++) {
		if (allow_split(allow[i], h, sizeof(h), &p) == -1 ||
		    strcasecmp(h, want) != 0)
			continue;
		if (p == 0 ? (port == 80 || port == 443) : p == port)
			return 1;
	}
	return 0;
}

/* --- the pool --------------------------------------------------------------- */

static void
sweep_arm(struct callback *c)
{
	struct timeval tv = { CALLBACK_SWEEP_MS / 1000,
	    (CALLBACK_SWEEP_MS % 1000) * 1000 };

	if (!evtimer_pending(c->sweep, NULL))
		evtimer_add(c->sweep, &tv);
}

/* Closes the connections idle for CALLBACK_IDLE_MS, and empty origins. */
static void
sweep_cb(evutil_socket_t fd SAGAD_UNUSED, short what SAGAD_UNUSED,
    void *arg)
{
	struct callback	*c = arg;
	struct origin	*o, *next;
	int64_t		 now = util_mono_ms();

	for (o = LIST_FIRST(&c->origins); o != NULL; o = next) {
		next = LIST_NEXT(o, entry);
		for (int i = 0; i < CALLBACK_POOL; i++) {
			struct conn *k = &o->conns[i];

			if (k->evcon == NULL || k->inflight > 0 ||
			    now - k->idle_since < CALLBACK_IDLE_MS)
				continue;
			evhttp_connection_free(k->evcon);
			k->evcon = NULL;
			o->nconns--;
		}
		if (o->nconns == 0) {
			LIST_REMOVE(o, entry);
			free(o);
		}
	}
	if (!LIST_EMPTY(&c->origins))
		sweep_arm(c);
}

static struct origin *
origin_get(struct callback *c, const char *host, int port)
{
	struct origin *o;

	LIST_FOREACH(o, &c->origins, entry)
		if (o->port == port && strcasecmp(o->host, host) == 0)
			return o;
	o = util_xcalloc(1, sizeof(*o));
	snprintf(o->host, sizeof(o->host), "%s", host);
	o->port = port;
	if (port != 80)
		snprintf(o->hosthdr, sizeof(o->hosthdr), "%s:%d", host, port);
	else
		snprintf(o->hosthdr, sizeof(o->hosthdr), "%s", host);
	LIST_INSERT_HEAD(&c->origins, o, entry);
	sweep_arm(c);
	return o;
}

/*
 * The connection for the next POST to o: an idle one, else a new one while
 * the pool has room, else the one with the fewest requests queued.
 */
static struct conn *
conn_get(struct callback *c, struct origin *o)
{
	struct conn	*best = NULL, *slot = NULL;
	struct timeval	 tv = { c->timeout_ms / 1000,
			    (c->timeout_ms % 1000) * 1000 };

	for (int i = 0; i < CALLBACK_POOL; i++) {
		struct conn *k = &o->conns[i];

		if (k->evcon == NULL) {
			if (slot == NULL)
				slot = k;
			continue;
		}
		if (k->inflight == 0)
			return k;
		if (best == NULL || k->inflight < best->inflight)
			best = k;
	}
	if (slot == NULL)
		return best;
	/* A name is looked up by evdns, not by a getaddrinfo on the loop. */
	if (c->dns == NULL && !callback_is_address(o->host))
		c->dns = evdns_base_new(c->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
	slot->evcon = evhttp_connection_base_new(c->base, c->dns, o->host,
	    (unsigned short)o->port);
	if (slot->evcon == NULL)
		return best;
	evhttp_connection_set_timeout_tv(slot->evcon, &tv);
	evhttp_connection_set_retries(slot->evcon, 0);
	slot->inflight = 0;
	o->nconns++;
	c->connects++;
	return slot;
}

/* --- a POST ----------------------------------------------------------------- */

static void
post_error_cb(enum evhttp_request_error e, void *arg)
{
	struct post *p = arg;

	p->failed = 1;
	p->error = e;
}

static const char *
error_name(enum evhttp_request_error e)
{
	switch (e) {
	case EVREQ_HTTP_TIMEOUT:	return "timed out";
	case EVREQ_HTTP_EOF:		return "connection closed early";
	case EVREQ_HTTP_INVALID_HEADER:	return "invalid answer";
	case EVREQ_HTTP_BUFFER_ERROR:	return "connection refused or reset";
	case EVREQ_HTTP_REQUEST_CANCEL:	return "cancelled";
	case EVREQ_HTTP_DATA_TOO_LONG:	return "answer too long";
	}
	return "failed";
}

static int	post_send(struct post *);

/* The end of p: its caller told, p freed. */
static void
post_finish(struct post *p, int status)
{
	struct callback	*c = p->cb;
	char		 err[128];

	LIST_REMOVE(p, entry);
	c->inflight--;
	if (status == 0)
		snprintf(err, sizeof(err), "no answer: %s", p->failed ?
		    error_name(p->error) : "connection failed");
	else
		snprintf(err, sizeof(err), "HTTP %d", status);
	p->done(status, status >= 200 && status < 300 ? NULL : err, p->arg);
	post_free(p);
}

static void
post_unqueue(struct post *p)
{
	p->req = NULL;
	if (--p->conn->inflight == 0)
		p->conn->idle_since = util_mono_ms();
}

static void
post_done_cb(struct evhttp_request *req, void *arg)
{
	struct post	*p = arg;
	int		 status = req != NULL ?
			    evhttp_request_get_response_code(req) : 0;

	post_unqueue(p);
	/* Closed under the request, as a receiver's idle close does. */
	if (status == 0 && p->failed && p->error == EVREQ_HTTP_EOF &&
	    !p->resent) {
		p->resent = 1;
		if (post_send(p) == 0)
			return;
	}
	evtimer_del(p->deadline);
	post_finish(p, status);
}

/* The deadline passed, queued or sent: the request is cancelled. */
static void
post_deadline_cb(evutil_socket_t fd SAGAD_UNUSED, short what SAGAD_UNUSED,
    void *arg)
{
	struct post		*p = arg;
	struct evhttp_request	*req = p->req;

	/* Its callback is not run; a request being sent resets the connection. */
	post_unqueue(p);
	if (req != NULL)
		evhttp_cancel_request(req);
	p->failed = 1;
	p->error = EVREQ_HTTP_TIMEOUT;
	post_finish(p, 0);
}

/* Sends p on a connection of its origin; 0, or -1 (no request made). */
static int
post_send(struct post *p)
{
	struct evhttp_request	*req;
	struct evkeyvalq	*h;
	struct conn		*k;

	if ((k = conn_get(p->cb, p->o)) == NULL)
		return -1;
	req = evhttp_request_new(post_done_cb, p);
	evhttp_request_set_error_cb(req, post_error_cb);
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", p->o->hosthdr);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "User-Agent", "sagad/" PACKAGE_VERSION);
	evbuffer_add(evhttp_request_get_output_buffer(req), p->body, p->len);
	p->failed = 0;
	p->conn = k;
	p->req = req;
	k->inflight++;
	if (evhttp_make_request(k->evcon, req, EVHTTP_REQ_POST,
	    p->path) == -1) {
		/* evhttp has freed req. */
		post_unqueue(p);
		return -1;
	}
	return 0;
}

int
callback_post(struct callback *c, const char *url, char *const *allow,
    size_t nallow, const char *body, size_t len, callback_done_fn *done,
    void *arg, char *err, size_t errlen)
{
	char		 host[CALLBACK_HOST_MAX], path[CALLBACK_PATH_MAX];
	int		 port;
	struct post	*p;
	struct timeval	 tv = { c->timeout_ms / 1000,
			    (c->timeout_ms % 1000) * 1000 };

	if (callback_url_parse(url, host, sizeof(host), &port, path,
	    sizeof(path), err, errlen) == -1)
		return -1;
	if (!callback_host_allowed(host, port, allow, nallow)) {
		snprintf(err, errlen, "callback URL \"%s\": %s:%d is not in "
		    "callbacks.allow (an entry without a port allows 80 and "
		    "443 only)", url, host, port);
		return -1;
	}
	p = util_xcalloc(1, sizeof(*p));
	p->cb = c;
	p->o = origin_get(c, host, port);
	p->path = util_xstrdup(path);
	p->body = util_xcalloc(1, len + 1);
	memcpy(p->body, body, len);
	p->len = len;
	p->done = done;
	p->arg = arg;
	p->deadline = evtimer_new(c->base, post_deadline_cb, p);
	if (p->deadline == NULL || post_send(p) == -1) {
		snprintf(err, errlen, "callback to %s:%d: cannot send", host,
		    port);
		post_free(p);
		return -1;
	}
	evtimer_add(p->deadline, &tv);
	LIST_INSERT_HEAD(&c->posts, p, entry);
	c->inflight++;
	return 0;
}
