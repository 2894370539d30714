/*
 * callback.h - delivering an async saga's end to its callback URL: one HTTP
 * POST of a JSON body with libevent's evhttp client, on the caller's loop.
 * It checks the URL (http only, a host of the allow list) again at the
 * moment of sending, since the list may have changed by SIGHUP since the Run
 * that stored it. It makes one attempt per call: retrying, backing off and
 * giving up are the caller's (sagad-worker's) decisions. It never logs.
 */
#ifndef SAGAD_CALLBACK_H
#define SAGAD_CALLBACK_H

#include <stddef.h>

struct event_base;
struct callback;

#define CALLBACK_HOST_MAX	256
#define CALLBACK_PATH_MAX	2048

/*
 * The end of one POST: the HTTP status the receiver answered, or 0 when
 * there was no answer (refused, reset, timed out), with a sentence in err.
 */
typedef void	callback_done_fn(int http_status, const char *err, void *arg);

struct callback	*callback_new(struct event_base *, int timeout_ms);
/* Drops the POSTs in flight without calling their callbacks. */
void		 callback_free(struct callback *);

/*
 * Splits an http:// URL into host, port (80 if none) and path with its
 * query ("/" if none). Returns 0, or -1 with a sentence in err.
 */
int		 callback_url_parse(const char *url, char *host, size_t hostlen,
		    int *port, char *path, size_t pathlen, char *err,
		    size_t errlen);
/*
 * 1 when host:port is allowed by allow[] (names compare without case): an
 * entry "host" allows ports 80 and 443 only; "host:port" and "[v6]:port"
 * that port; a bare IPv6 address ("::1") ports 80 and 443. host may come
 * bracketed from a URL ("[::1]").
 */
int		 callback_host_allowed(const char *host, int port,
		    char *const *allow, size_t nallow);

/*
 * POSTs body as application/json to url. Returns 0 and calls done exactly
 * once later from the loop, or -1 with err and no call when the URL is not
 * one to send to (unparsable, not http, host not allowed): a failure no
 * retry can mend.
 */
int		 callback_post(struct callback *, const char *url,
		    char *const *allow, size_t nallow, const char *body,
		    size_t len, callback_done_fn *done, void *arg, char *err,
		    size_t errlen);

/* POSTs in flight. */
int		 callback_inflight(const struct callback *);

#endif
