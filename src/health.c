/*
 * health.c - grpc.health.v1.Health on our gRPC server: Check answers from a
 * small table of service states (NOT_FOUND for names it does not know), Watch
 * streams a service's state now and at every change until the client goes
 * (SERVICE_UNKNOWN for names it does not know yet, as the protocol says). A
 * slow watcher is sent only the latest state once its queue drains.
 */
#include "autoconf.h"

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/server.h"
#include "health.h"
#include "util.h"

struct hsvc {
	char	*name;
	int	 status;
};

struct watcher {
	TAILQ_ENTRY(watcher)	 entry;
	struct health		*h;
	struct grpc_call	*call;
	char			*service;
	int			 sent;	/* last state queued; -1 none */
};

struct health {
	struct grpc_server	*srv;
	struct hsvc		*svcs;
	size_t			 nsvcs;
	TAILQ_HEAD(, watcher)	 watchers;
	size_t			 nwatchers;
};

#define MAX_WATCHERS	10000	/* beyond that Watch is RESOURCE_EXHAUSTED */

static struct hsvc *
svc_find(const struct health *h, const char *name)
{
	for (size_t i = 0; i < h->nsvcs; i++)
		if (strcmp(h->svcs[i].name, name) == 0)
			return &h->svcs[i];
	return NULL;
}

int
health_get(const struct health *h, const char *service)
{
	struct hsvc *s = svc_find(h, service);

	return s != NULL ? s->status : -1;
}

static void
watcher_free(struct watcher *w)
{
	TAILQ_REMOVE(&w->h->watchers, w, entry);
	w->h->nwatchers--;
	free(w->service);
	free(w);
}

/* Queues the service's state if the watcher has not seen it yet. */
static void
watcher_push(struct watcher *w)
{
	Grpc__Health__V1__HealthCheckResponse resp;
	int st = health_get(w->h, w->service), rv;

	if (st < 0)
		st = HEALTH_SERVICE_UNKNOWN;
	if (st == w->sent)
		return;
	grpc__health__v1__health_check_response__init(&resp);
	resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
	rv = grpc_call_send(w->call, &resp.base);
	if (rv == GRPC_CALL_OK)
		w->sent = st;
	/* EAGAIN: watcher_writable pushes the latest state later. */
}

static void
watcher_cancel(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	watcher_free(arg);
}

static void
watcher_writable(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	watcher_push(arg);
}

static void
health_check(struct grpc_call *call, void *arg)
{
	struct health *h = arg;
	const Grpc__Health__V1__HealthCheckRequest *req =
	    (const Grpc__Health__V1__HealthCheckRequest *)grpc_call_request(call);
	Grpc__Health__V1__HealthCheckResponse resp;
	int st = health_get(h, req->service);

	if (st < 0) {
		grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "unknown service");
		return;
	}
	grpc__health__v1__health_check_response__init(&resp);
	resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
	grpc_call_reply(call, &resp.base);
}

static void
health_watch(struct grpc_call *call, void *arg)
{
	struct health *h = arg;
	const Grpc__Health__V1__HealthCheckRequest *req =
	    (const Grpc__Health__V1__HealthCheckRequest *)grpc_call_request(call);
	struct watcher *w;

	if (h->nwatchers >= MAX_WATCHERS) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "too many health watchers");
		return;
	}
	w = util_xcalloc(1, sizeof(*w));
	w->h = h;
	w->call = call;
	w->service = util_xstrdup(req->service);
	w->sent = -1;
	TAILQ_INSERT_TAIL(&h->watchers, w, entry);
	h->nwatchers++;
	grpc_call_on_cancel(call, watcher_cancel, w);
	grpc_call_on_writable(call, watcher_writable, w);
	watcher_push(w);
}

struct health *
health_new(struct grpc_server *srv, char *err, size_t errlen)
{
	struct health *h = util_xcalloc(1, sizeof(*h));
	struct grpc_method m;

	h->srv = srv;
	TAILQ_INIT(&h->watchers);
	memset(&m, 0, sizeof(m));
	m.req = &grpc__health__v1__health_check_request__descriptor;
	m.resp = &grpc__health__v1__health_check_response__descriptor;
	m.arg = h;
	m.path = "/grpc.health.v1.Health/Check";
	m.handler = health_check;
	if (grpc_server_register(srv, &m, err, errlen) != 0) {
		free(h);
		return NULL;
	}
	m.path = "/grpc.health.v1.Health/Watch";
	m.handler = health_watch;
	m.server_streaming = 1;
	if (grpc_server_register(srv, &m, err, errlen) != 0) {
		free(h);
		return NULL;
	}
	health_set(h, "", HEALTH_SERVING);
	return h;
}

void
health_set(struct health *h, const char *service, int status)
{
	struct hsvc *s = svc_find(h, service);
	struct watcher *w;

	if (s == NULL) {
		h->svcs = util_xrealloc(h->svcs,
		    (h->nsvcs + 1) * sizeof(*h->svcs));
		s = &h->svcs[h->nsvcs++];
		s->name = util_xstrdup(service);
	}
	s->status = status;
	TAILQ_FOREACH(w, &h->watchers, entry)
		if (strcmp(w->service, service) == 0)
			watcher_push(w);
}

void
health_set_all_not_serving(struct health *h)
{
	struct watcher *w;

	for (size_t i = 0; i < h->nsvcs; i++)
		h->svcs[i].status = HEALTH_NOT_SERVING;
	TAILQ_FOREACH(w, &h->watchers, entry)
		watcher_push(w);
}

void
health_shutdown(struct health *h)
{
	struct watcher *w;

	health_set_all_not_serving(h);
	while ((w = TAILQ_FIRST(&h->watchers)) != NULL) {
		grpc_call_finish(w->call, GRPC_STATUS_OK, NULL);
		watcher_free(w);
	}
}

size_t
health_nwatchers(const struct health *h)
{
	return h->nwatchers;
}

void
health_free(struct health *h)
{
	struct watcher *w;

	if (h == NULL)
		return;
	while ((w = TAILQ_FIRST(&h->watchers)) != NULL)
		watcher_free(w);
	for (size_t i = 0; i < h->nsvcs; i++)
		free(h->svcs[i].name);
	free(h->svcs);
	free(h);
}
