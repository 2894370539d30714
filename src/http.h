/*
 * http.h - the master's HTTP/1.1 listener (`http.listen`) on libevent's
 * evhttp: /livez, /readyz, /metrics, the JSON API under /api/v1/sagas
 * (http_api.c) and `/`. It bounds what a client can hold: connections,
 * request headers and body, the time a request may take to arrive, and
 * the output a slow reader lets pile up. What it serves comes from hooks
 * the process layer gives it: whether the service is ready, the metrics
 * text, and the gRPC server whose methods the JSON API calls in process.
 * Library code: it never logs.
 */
#ifndef SAGAD_HTTP_H
#define SAGAD_HTTP_H

#include <stddef.h>

struct evbuffer;
struct event_base;
struct grpc_server;
struct http_server;
struct tls;

/* Every field 0 means its default. */
struct http_opts {
	int	 max_connections;	/* 256; more are closed on accept */
	size_t	 max_body;		/* 1 MiB; larger is 413 */
	int	 timeout_ms;		/* 10000: a request must arrive within it */
};

struct http_hooks {
	/* 1 when ready; else 0 with a sentence in why. */
	int	(*ready)(void *arg, char *why, size_t whylen);
	/* Appends the Prometheus text of the whole pod. */
	void	(*metrics)(struct evbuffer *, void *arg);
	/*
	 * The token check (service.c, auth.h): authorization is the header's
	 * value (NULL: none), role an enum http_role, peer and what (the
	 * request line) for the log. 1 serves the request; 0 refuses it with
	 * *status (401 or 403) and a sentence in msg. NULL: no auth.
	 */
	int	(*authorize)(void *arg, const char *authorization, int role,
		    const char *peer, const char *what, int *status, char *msg,
		    size_t msglen);
	void	 *arg;
	struct grpc_server *grpc;	/* the JSON API calls its methods */
	struct tls	*tls;		/* issue 15: TLS (tls.h), the gRPC
					   listener's context; NULL: cleartext */
};

/*
 * The role a request needs (auth.c decides who has it). The one place each
 * route's role is known is http.c's route table; http_authorize() there is
 * where a token is checked against it.
 */
enum http_role {
	HTTP_ROLE_NONE,		/* /livez /readyz /metrics / */
	HTTP_ROLE_READ,		/* list, get, events */
	HTTP_ROLE_RUN,		/* POST a Run */
	HTTP_ROLE_OPERATE,	/* cancel, retry, resolve */
};

struct http_server *http_new(struct event_base *, const struct http_opts *,
	    const struct http_hooks *, char *err, size_t errlen);
int	 http_listen(struct http_server *, const char *host, int port,
	    char *err, size_t errlen);
/* SIGHUP: new bounds apply to what comes next. */
void	 http_set_limits(struct http_server *, const struct http_opts *);
/* Connections open now (for metrics and tests). */
size_t	 http_nconns(const struct http_server *);
/*
 * Closes the listener and every connection: requests waiting on a saga
 * are cancelled (the sagas go on). Call it before the gRPC server and the
 * Orchestrator are freed.
 */
void	 http_free(struct http_server *);

#endif
