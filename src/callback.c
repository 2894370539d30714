/*
 * callback.c - one HTTP POST of a saga's end to its callback URL (see
 * callback.h). Each POST gets its own evhttp connection, closed once the
 * answer is in: callbacks are one per saga, to URLs the Run named, so there
 * is nothing worth keeping alive between them.
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

struct post {
	struct callback		*cb;
	struct evhttp_connection *conn;
	callback_done_fn	*done;
	void			*arg;
	enum evhttp_request_error error;
	int			 failed;
	LIST_ENTRY(post)	 entry;
};

struct callback {
	struct event_base	*base;
	struct evdns_base	*dns;	/* receivers' names, off the loop */
	int			 timeout_ms;
	int			 inflight;
	LIST_HEAD(, post)	 posts;
};

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
	LIST_INIT(&c->posts);
	return c;
}

void
callback_free(struct callback *c)
{
	struct post *p;

	if (c == NULL)
		return;
	while ((p = LIST_FIRST(&c->posts)) != NULL) {
		LIST_REMOVE(p, entry);
		if (p->conn != NULL)
			evhttp_connection_free(p->conn);	/* no callback */
		free(p);
	}
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

/* From the loop, after the request's callback has returned. */
static void
post_free_cb(evutil_socket_t fd SAGAD_UNUSED, short what SAGAD_UNUSED,
    void *arg)
{
	struct post *p = arg;

	evhttp_connection_free(p->conn);
	free(p);
}

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

static void
post_done_cb(struct evhttp_request *req, void *arg)
{
	struct post	*p = arg;
	struct callback	*c = p->cb;
	struct timeval	 now = { 0, 0 };
	int		 status = req != NULL ?
			    evhttp_request_get_response_code(req) : 0;
	char		 err[128];

	LIST_REMOVE(p, entry);
	c->inflight--;
	if (status == 0)
		snprintf(err, sizeof(err), "no answer: %s", p->failed ?
		    error_name(p->error) : "connection failed");
	else
		snprintf(err, sizeof(err), "HTTP %d", status);
	/* evhttp frees req after this returns; the connection comes next. */
	if (event_base_once(c->base, -1, EV_TIMEOUT, post_free_cb, p,
	    &now) == -1)
		abort();
	p->done(status, status >= 200 && status < 300 ? NULL : err, p->arg);
}

int
callback_post(struct callback *c, const char *url, char *const *allow,
    size_t nallow, const char *body, size_t len, callback_done_fn *done,
    void *arg, char *err, size_t errlen)
{
	char			 host[CALLBACK_HOST_MAX], path[CALLBACK_PATH_MAX];
	char			 hosthdr[CALLBACK_HOST_MAX + 16];
	int			 port;
	struct post		*p;
	struct evhttp_request	*req;
	struct evkeyvalq	*h;
	struct timeval		 tv = { c->timeout_ms / 1000,
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
	p->done = done;
	p->arg = arg;
	/* A name is looked up by evdns, not by a getaddrinfo on the loop. */
	if (c->dns == NULL && !callback_is_address(host))
		c->dns = evdns_base_new(c->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
	p->conn = evhttp_connection_base_new(c->base, c->dns, host,
	    (unsigned short)port);
	if (p->conn == NULL) {
		snprintf(err, errlen, "callback to %s:%d: cannot make a "
		    "connection", host, port);
		free(p);
		return -1;
	}
	evhttp_connection_set_timeout_tv(p->conn, &tv);
	evhttp_connection_set_retries(p->conn, 0);
	req = evhttp_request_new(post_done_cb, p);
	evhttp_request_set_error_cb(req, post_error_cb);
	h = evhttp_request_get_output_headers(req);
	if (port != 80)
		snprintf(hosthdr, sizeof(hosthdr), "%s:%d", host, port);
	else
		snprintf(hosthdr, sizeof(hosthdr), "%s", host);
	evhttp_add_header(h, "Host", hosthdr);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "User-Agent", "sagad/" PACKAGE_VERSION);
	evhttp_add_header(h, "Connection", "close");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	LIST_INSERT_HEAD(&c->posts, p, entry);
	c->inflight++;
	if (evhttp_make_request(p->conn, req, EVHTTP_REQ_POST, path) == -1) {
		/* evhttp has freed req. */
		LIST_REMOVE(p, entry);
		c->inflight--;
		snprintf(err, errlen, "callback to %s:%d: cannot send", host,
		    port);
		evhttp_connection_free(p->conn);
		free(p);
		return -1;
	}
	return 0;
}
