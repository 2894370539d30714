/*
 * orch_admit.c - per-service admission of sync sagas (see orch_int.h): at
 * most max_inflight calls to a service at once, the rest of the sagas
 * waiting in a queue bounded by max_queue; a Run that would pass the bound
 * is refused RESOURCE_EXHAUSTED before anything is stored, so a burst
 * never turns into an unbounded queue. Limits follow the newest config;
 * what a service knows (its channel, its queue) outlives reloads.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/client.h"
#include "grpc/grpc.h"
#include "orch_int.h"
#include "tls.h"
#include "util.h"

static int
same_str(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

struct svc *
admit_svc(struct orch *o, const struct config_service *cs)
{
	struct svc *v;

	for (v = o->svcs; v != NULL; v = v->next)
		if (strcmp(v->name, cs->name) == 0)
			break;
	if (v == NULL) {
		v = util_xcalloc(1, sizeof(*v));
		v->name = util_xstrdup(cs->name);
		TAILQ_INIT(&v->waiting);
		v->next = o->svcs;
		o->svcs = v;
	}
	/*
	 * Limits follow the newest config; a moved service gets a channel,
	 * as one whose TLS changed (the cache gives the same context for the
	 * same files, so an unchanged service keeps its channel).
	 */
	if (v->ch == NULL || strcmp(v->host, cs->host) != 0 ||
	    v->port != cs->port || (v->tls != NULL) != cs->tls.on ||
	    (cs->tls.on && !same_str(v->tls_sn, cs->tls.server_name))) {
		struct tls *tls = NULL;

		snprintf(v->host, sizeof(v->host), "%s", cs->host);
		v->port = cs->port;
		free(v->tls_sn);
		v->tls_sn = cs->tls.server_name != NULL ?
		    util_xstrdup(cs->tls.server_name) : NULL;
		v->ch = NULL;
		v->tls = NULL;
		if (cs->tls.on && (tls = tls_cache_client(o->tls, cs->tls.ca,
		    cs->tls.cert, cs->tls.key, v->tls_err,
		    sizeof(v->tls_err))) == NULL)
			return v;
		v->tls = tls;
		v->ch = grpc_client_channel_tls(o->client, cs->host, cs->port,
		    tls, cs->tls.server_name);
	} else if (cs->tls.on && v->tls != NULL) {
		struct tls *tls = tls_cache_client(o->tls, cs->tls.ca,
		    cs->tls.cert, cs->tls.key, v->tls_err,
		    sizeof(v->tls_err));

		/* Other files: another context, another channel. */
		if (tls != v->tls) {
			v->tls = tls;
			v->ch = tls == NULL ? NULL : grpc_client_channel_tls(
			    o->client, cs->host, cs->port, tls,
			    cs->tls.server_name);
		}
	}
	return v;
}

void
admit_configure(struct orch *o)
{
	for (size_t i = 0; i < o->cfg->nservices; i++) {
		const struct config_service	*cs = &o->cfg->services[i];
		struct svc			*v = admit_svc(o, cs);

		v->max_inflight = cs->max_inflight;
		v->max_queue = cs->max_queue;
		if (v->ch == NULL)
			orch_log(o, UTIL_WARN, NULL, "services.%s.tls: %s; its "
			    "calls fail until a reload fixes it", cs->name,
			    v->tls_err);
	}
}

/*
 * May a new saga of flow start? Every service it calls must have a free
 * slot or room in its queue. Returns 1, or 0 with err.
 */
int
admit_run(struct orch *o, const struct config_flow *flow, char *err,
    size_t errlen)
{
	for (size_t i = 0; i < flow->nsteps; i++) {
		const struct config_node *n = &o->cfg->nodes[flow->steps[i]];
		struct svc *sv = admit_svc(o, &o->cfg->services[n->service]);
		int wait = sv->queued;

		/*
		 * Sagas admitted but not yet stored make their first call
		 * soon: they take the free slots, then wait. Counting only
		 * the queue let every Run of a burst in before any of them
		 * had queued.
		 */
		if (i == 0 && sv->inflight + sv->starting > sv->max_inflight)
			wait += sv->inflight + sv->starting - sv->max_inflight;
		if (wait == 0 && sv->inflight + (i == 0 ? sv->starting : 0) <
		    sv->max_inflight)
			continue;	/* a slot is free: nothing waits */
		if (wait >= sv->max_queue) {
			o->st.shed++;
			snprintf(err, errlen, "service %s: %d calls wait for "
			    "one of its %d slots (max_queue)", sv->name, wait,
			    sv->max_inflight);
			return 0;
		}
	}
	return 1;
}

/* A slot came free: the longest waiting run calls now. */
void
admit_release(struct svc *v)
{
	struct run *r;

	v->inflight--;
	while (v->inflight < v->max_inflight &&
	    (r = TAILQ_FIRST(&v->waiting)) != NULL) {
		TAILQ_REMOVE(&v->waiting, r, qlink);
		v->queued--;
		r->svc = NULL;
		sync_call(r);
	}
}

void
admit_free(struct orch *o)
{
	struct svc *v;

	while ((v = o->svcs) != NULL) {
		o->svcs = v->next;
		free(v->name);
		free(v->tls_sn);
		free(v);
	}
}
