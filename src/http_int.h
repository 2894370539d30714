/*
 * http_int.h - what the HTTP listener's files share, and nothing else
 * includes: http.c (the listener, its connections and bounds, routing, the
 * plain endpoints) and http_api.c (the JSON API over the Orchestrator's
 * methods, called in process).
 */
#ifndef SAGAD_HTTP_INT_H
#define SAGAD_HTTP_INT_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct evhttp;
struct evhttp_request;
struct event;
struct bufferevent;
struct grpc_call;

#define HTTP_SSE_OUT_MAX	(1024 * 1024)	/* unsent event bytes per reader */
#define HTTP_SSE_KEEPALIVE_MS	15000	/* a comment on a quiet stream */
#define HTTP_CONN_BUCKETS	256

struct http_req;

/* One connection evhttp serves, as this file tracks it. */
struct http_conn {
	struct http_server	*h;
	struct bufferevent	*bev;		/* a reference of ours */
	int64_t			 since;		/* accepted or last request done */
	int			 busy;		/* a request is being answered */
	int			 killed;
	struct http_req		*req;		/* the request in progress */
	TAILQ_ENTRY(http_conn)	 entry;
};

/* A request of the JSON API waiting on an in-process call. */
struct http_req {
	struct http_server	*h;
	struct evhttp_request	*req;
	struct http_conn	*conn;
	struct grpc_call	*call;		/* NULL once finished */
	int			 sse;		/* Watch: an event stream */
	int			 started;	/* the stream's headers are out */
	int			 gone;		/* the client went away */
	int64_t			 last_sent;	/* mono ms, an event stream's */
	TAILQ_ENTRY(http_req)	 entry;
};

struct http_server {
	struct event_base	*base;
	struct evhttp		*eh;
	struct http_opts	 opts;
	struct http_hooks	 hooks;
	TAILQ_HEAD(, http_conn)	 conns;
	size_t			 nconns;
	TAILQ_HEAD(, http_req)	 reqs;
	struct event		*sweep;
	unsigned long		 refused;
};

/* http.c */
void	 http_reply_json(struct http_server *, struct evhttp_request *,
	    int code, const char *body, size_t len);
void	 http_reply_error(struct http_server *, struct evhttp_request *,
	    int grpc_status, const char *message);
/* The request's answer is out (or its client gone): the deadline resumes. */
void	 http_req_done(struct http_server *, struct evhttp_request *);
int	 http_status_of_grpc(int grpc_status);
struct http_conn *http_conn_of(struct http_server *, struct evhttp_request *);

/* http_api.c: each answers req itself */
void	 http_api_list(struct http_server *, struct evhttp_request *);
void	 http_api_run(struct http_server *, struct evhttp_request *);
void	 http_api_get(struct http_server *, struct evhttp_request *,
	    const char *id);
void	 http_api_events(struct http_server *, struct evhttp_request *,
	    const char *id);
void	 http_api_operate(struct http_server *, struct evhttp_request *,
	    const char *id, const char *verb);
/* From the sweep: a comment on event streams quiet for a while. */
void	 http_api_keepalive(struct http_server *, int64_t now_ms);
/* The connection of r closed: cancel its call. */
void	 http_api_conn_closed(struct http_req *);
void	 http_api_free_all(struct http_server *);

#endif
