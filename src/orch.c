/*
 * orch.c - saga.v1.Orchestrator (see orch.h): the gRPC handlers of Run and
 * ListFlows with the checks of a request, and the object's life. A Run is
 * decoded and checked once here, then handed whole to the engine of its
 * mode: the sync engine (orch_sync.c, after admission in orch_admit.c) or
 * the launch on the bus (orch_launch.c); a Run of a saga already under way
 * joins it. Get and Watch are orch_follow.c's; leases and the sweeper are
 * orch_sweep.c's. orch_int.h maps the files.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "callback.h"
#include "grpc/grpc.h"
#include "grpc/server.h"
#include "flowdefs.h"
#include "orch_int.h"
#include "tls.h"
#include "util.h"
#include "work.h"

void
orch_log(struct orch *o, enum util_level lv, const char *id, const char *fmt,
    ...)
{
	char	msg[1024];
	va_list	ap;

	if (o->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o->log(lv, id, msg, o->log_arg);
}

enum util_level
orch_burst_level(struct orch_burst *b, unsigned *held)
{
	int64_t now = util_mono_ms();

	if (now - b->last_ms >= 1000) {
		b->last_ms = now;
		*held = b->held;
		b->held = 0;
		return UTIL_WARN;
	}
	b->held++;
	*held = 0;
	return UTIL_DEBUG;
}

void
orch_context_load(struct saga *s, const Saga__V1__RunRequest *req)
{
	for (size_t i = 0; i < req->n_context; i++)
		saga_ctx_set(s, req->context[i]->key,
		    req->context[i]->value.data, req->context[i]->value.len);
}

/* --- Run ------------------------------------------------------------------------- */

/* 128 random bits in hex, when the caller named no id. */
static void
new_id(struct orch *o, char *buf, size_t len)
{
	uint64_t a = util_rng_next(&o->rng), b = util_rng_next(&o->rng);

	snprintf(buf, len, "%016llx%016llx", (unsigned long long)a,
	    (unsigned long long)b);
}

int
orch_valid_id(const char *field, const char *id, char *err, size_t errlen)
{
	size_t n = strlen(id);

	if (n > ORCH_ID_MAX) {
		snprintf(err, errlen, "%s: expected at most %d bytes, got %zu",
		    field, ORCH_ID_MAX, n);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		/* Printable ASCII: ids travel as gRPC metadata (x-request-id). */
		if (c <= 0x20 || c >= 0x7f || c == '{' || c == '}') {
			snprintf(err, errlen, "%s: expected printable ASCII "
			    "characters without spaces or braces, got byte "
			    "0x%02x at offset %zu", field, c, i);
			return 0;
		}
	}
	return 1;
}

int
orch_same_flow(const char *id, const char *asked, const char *runs,
    char *err, size_t errlen)
{
	if (runs == NULL || strcmp(asked, runs) == 0)
		return 1;
	snprintf(err, errlen, "request_id \"%s\" is a saga of flow %s, not %s: "
	    "a new saga needs a new id", id, runs, asked);
	return 0;
}

/*
 * The Run's metadata: keys of lowercase letters, digits, '-', '_' and '.',
 * values (other than -bin ones) of printable ASCII, as gRPC says; what a
 * step call forwards must be sendable. Returns 1, or 0 with err.
 */
static int
run_metadata_ok(const struct grpc_metadata *md, char *err, size_t errlen)
{
	for (size_t i = 0; i < md->n; i++) {
		const struct grpc_md	*m = &md->items[i];
		size_t			 klen = strlen(m->key);

		for (size_t j = 0; j < klen; j++) {
			char c = m->key[j];

			if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '_' || c == '.')
				continue;
			snprintf(err, errlen, "metadata: a key with byte 0x%02x: "
			    "expected lowercase letters, digits, '-', '_' or "
			    "'.'", (unsigned char)c);
			return 0;
		}
		if (grpc_md_is_bin(m->key, klen))
			continue;
		for (size_t j = 0; j < m->len; j++) {
			if (m->value[j] >= 0x20 && m->value[j] <= 0x7e)
				continue;
			snprintf(err, errlen, "metadata %.64s: byte 0x%02x at "
			    "offset %zu: expected printable ASCII (binary "
			    "values go in a -bin key)", m->key, m->value[j], j);
			return 0;
		}
	}
	return 1;
}

/*
 * A context key: UTF-8 (proto3's rule for a string, which a participant's
 * StepRequest parser enforces) without control characters. Returns the
 * offset of the first bad byte, or -1 if it is fine.
 */
static long
context_key_bad(const char *k)
{
	const unsigned char	*p = (const unsigned char *)k;
	size_t			 i = 0, n, j;
	uint32_t		 cp;

	while (p[i] != '\0') {
		if (p[i] < 0x80) {
			if (p[i] < 0x20 || p[i] == 0x7f)
				return (long)i;
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 1;
			cp = p[i] & 0x1f;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 2;
			cp = p[i] & 0x0f;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 3;
			cp = p[i] & 0x07;
		} else
			return (long)i;
		for (j = 1; j <= n; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return (long)i;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		/* Overlong forms, surrogates, beyond U+10FFFF, C1 controls. */
		if ((n == 1 && cp < 0xa0) || (n == 2 && cp < 0x800) ||
		    (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return (long)i;
		i += n + 1;
	}
	return -1;
}

/*
 * Which modes a flow can run in: sync always (the master runs it), async or
 * throttling only in the flow's own mode, since only then does the
 * supervisor run workers that consume that mode's subjects.
 */
static int
flow_has_workers(const struct config_flow *flow, enum saga_mode mode)
{
	return mode == SAGA_MODE_SYNC || mode == flow->mode;
}

/*
 * callback_url must be http://host[:port][/path] with host in
 * callbacks.allow: parsed and matched by callback.c, as the callbacks
 * worker does when it sends, so that what Run accepts can be delivered.
 * Returns 1, or 0 with err.
 */
static int
callback_url_ok(const struct config *cfg, const char *url, char *err,
    size_t errlen)
{
	char	host[CALLBACK_HOST_MAX], path[CALLBACK_PATH_MAX], why[256];
	size_t	n = strlen(url);
	int	port;

	if (n > ORCH_URL_MAX) {
		snprintf(err, errlen, "callback_url: expected at most %d bytes, "
		    "got %zu", ORCH_URL_MAX, n);
		return 0;
	}
	if (strncasecmp(url, "https://", 8) == 0) {
		snprintf(err, errlen, "callback_url: https is not supported; "
		    "expected http://host[:port]/path");
		return 0;
	}
	if (callback_url_parse(url, host, sizeof(host), &port, path,
	    sizeof(path), why, sizeof(why)) == -1) {
		snprintf(err, errlen, "callback_url: %s; expected "
		    "http://host[:port]/path", why);
		return 0;
	}
	if (!callback_host_allowed(host, port, cfg->callbacks.allow,
	    cfg->callbacks.nallow)) {
		snprintf(err, errlen, "callback_url: %s:%d is not in "
		    "callbacks.allow (an entry without a port allows 80 and "
		    "443 only)", host, port);
		return 0;
	}
	return 1;
}

static void
handle_run(struct grpc_call *call, void *arg)
{
	struct orch			*o = arg;
	const Saga__V1__RunRequest	*req;
	const struct config_flow	*flow;
	const struct grpc_md		*md;
	struct run			*r;
	struct hold			*h;
	enum saga_mode			 mode;
	char				 idbuf[64], err[512];
	const char			*id, *idfield;

	req = (const Saga__V1__RunRequest *)grpc_call_request(call);
	if (o->draining) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "sagad is shutting down");
		return;
	}
	if (req->flow == NULL || *req->flow == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "flow: expected the name of a configured flow");
		return;
	}
	if ((flow = config_flow_find(o->cfg, req->flow)) == NULL) {
		snprintf(err, sizeof(err), "flow \"%s\" is not configured",
		    req->flow);
		grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, err);
		return;
	}
	if ((unsigned)req->mode > SAGA_MODE_THROTTLING) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "mode: expected MODE_SYNC, MODE_ASYNC or MODE_THROTTLING");
		return;
	}
	mode = req->mode != 0 ? (enum saga_mode)req->mode : flow->mode;
	if (!flow_has_workers(flow, mode)) {
		snprintf(err, sizeof(err), "flow %s is configured %s: it has "
		    "no workers for mode %s (configure the flow with mode = "
		    "\"%s\")", flow->name, config_mode_name(flow->mode),
		    config_mode_name(mode), config_mode_name(mode));
		grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, err);
		return;
	}
	/* limits.max_context_entries (issue 12): refused before any work. */
	if (o->cfg->limits.max_context_entries > 0 && req->n_context >
	    (size_t)o->cfg->limits.max_context_entries) {
		snprintf(err, sizeof(err), "context: %zu entries, more than "
		    "limits.max_context_entries (%d)", req->n_context,
		    o->cfg->limits.max_context_entries);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	if (req->callback_url != NULL && *req->callback_url != '\0') {
		if (mode != SAGA_MODE_ASYNC) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
			    "callback_url: only async sagas report by "
			    "callback");
			return;
		}
		if (!callback_url_ok(o->cfg, req->callback_url, err,
		    sizeof(err))) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
			    err);
			return;
		}
	}
	if (!run_metadata_ok(grpc_call_metadata(call), err, sizeof(err))) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	for (size_t i = 0; i < req->n_context; i++) {
		long bad = context_key_bad(req->context[i]->key);

		if (bad < 0)
			continue;
		snprintf(err, sizeof(err), "context: key #%zu: byte 0x%02x at "
		    "offset %ld: expected UTF-8 without control characters",
		    i + 1, (unsigned char)req->context[i]->key[bad], bad);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	id = req->request_id;
	idfield = "request_id";
	if (id == NULL || *id == '\0') {
		md = grpc_md_get(grpc_call_metadata(call), "x-request-id");
		id = md != NULL ? (const char *)md->value : NULL;
		idfield = "x-request-id";
	}
	if (id == NULL || *id == '\0') {
		new_id(o, idbuf, sizeof(idbuf));
		id = idbuf;
	} else if (!orch_valid_id(idfield, id, err, sizeof(err))) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	/*
	 * A saga this master runs: wait for it as its first caller does, if
	 * the Run asks for its flow (ALREADY_EXISTS if not).
	 */
	if ((r = sync_find(o, id)) != NULL) {
		if (!orch_same_flow(id, flow->name, r->d.s->flow, err,
		    sizeof(err)))
			grpc_call_finish(call, GRPC_STATUS_ALREADY_EXISTS, err);
		else
			sync_wait(r, call);
		return;
	}
	if ((h = launch_find_hold(o, id)) != NULL) {
		if (!orch_same_flow(id, flow->name, h->fq->name, err,
		    sizeof(err)))
			grpc_call_finish(call, GRPC_STATUS_ALREADY_EXISTS, err);
		else
			launch_wait(h, call);
		return;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return;
	}
	if (mode != SAGA_MODE_SYNC) {
		launch_start(o, call, flow, mode, id, req);
		return;
	}
	if (!admit_run(o, flow, err, sizeof(err))) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
		return;
	}
	sync_start(o, call, flow, id, req);
}

/* --- ListFlows ------------------------------------------------------------------- */

static void
handle_list_flows(struct grpc_call *call, void *arg)
{
	struct orch			 *o = arg;
	const struct config		 *cfg = o->cfg;
	Saga__V1__ListFlowsResponse	  resp;
	Saga__V1__Flow			 *fl, **flp;
	char				**names;
	size_t				  k = 0;

	saga__v1__list_flows_response__init(&resp);
	fl = util_xcalloc(cfg->nflows, sizeof(*fl));
	flp = util_xcalloc(cfg->nflows, sizeof(*flp));
	for (size_t i = 0; i < cfg->nflows; i++)
		k += cfg->flows[i].nsteps;
	names = util_xcalloc(k, sizeof(*names));
	k = 0;
	for (size_t i = 0; i < cfg->nflows; i++) {
		const struct config_flow *f = &cfg->flows[i];

		saga__v1__flow__init(&fl[i]);
		fl[i].name = f->name;
		fl[i].mode = (Saga__V1__Mode)f->mode;
		fl[i].n_steps = f->nsteps;
		fl[i].steps = &names[k];
		for (size_t j = 0; j < f->nsteps; j++)
			names[k++] = cfg->nodes[f->steps[j]].name;
		flp[i] = &fl[i];
	}
	resp.n_flows = cfg->nflows;
	resp.flows = flp;
	grpc_call_reply(call, &resp.base);
	free(fl);
	free(flp);
	free(names);
}

/* --- the object ------------------------------------------------------------------------- */

struct orch *
orch_new(struct event_base *base, struct config *cfg, struct grpc_server *srv,
    struct grpc_client *client, struct store *store, const char *owner,
    char *err, size_t errlen)
{
	struct orch		*o = util_xcalloc(1, sizeof(*o));
	struct grpc_method	 m[] = {
		{ "/saga.v1.Orchestrator/Run", &saga__v1__run_request__descriptor,
		  &saga__v1__saga__descriptor, 0, handle_run, o },
		{ "/saga.v1.Orchestrator/Get", &saga__v1__get_request__descriptor,
		  &saga__v1__saga__descriptor, 0, follow_get, o },
		{ "/saga.v1.Orchestrator/Watch",
		  &saga__v1__get_request__descriptor,
		  &saga__v1__saga_event__descriptor, 1, follow_watch, o },
		{ "/saga.v1.Orchestrator/ListFlows",
		  &saga__v1__list_flows_request__descriptor,
		  &saga__v1__list_flows_response__descriptor, 0,
		  handle_list_flows, o },
		{ "/saga.v1.Orchestrator/List",
		  &saga__v1__list_request__descriptor,
		  &saga__v1__list_response__descriptor, 0, operate_list, o },
		{ "/saga.v1.Orchestrator/Cancel",
		  &saga__v1__cancel_request__descriptor,
		  &saga__v1__saga__descriptor, 0, operate_cancel, o },
		{ "/saga.v1.Orchestrator/Retry",
		  &saga__v1__retry_request__descriptor,
		  &saga__v1__saga__descriptor, 0, operate_retry, o },
		{ "/saga.v1.Orchestrator/Resolve",
		  &saga__v1__resolve_request__descriptor,
		  &saga__v1__saga__descriptor, 0, operate_resolve, o },
	};

	o->base = base;
	o->cfg = config_ref(cfg);
	o->srv = srv;
	o->client = client;
	o->store = store;
	o->defs = store != NULL ? defs_new(store, cfg) : NULL;
	o->owner = util_xstrdup(owner);
	o->tls = tls_cache_new();
	idtable_init(&o->runs_by_id, 1024);
	TAILQ_INIT(&o->runs);
	idtable_init(&o->holds_by_id, 1024);
	TAILQ_INIT(&o->holds);
	TAILQ_INIT(&o->republish);
	TAILQ_INIT(&o->launches);
	{
		char subj[WORK_SUBJECT_MAX];

		(void)work_done_subject(subj, sizeof(subj),
		    cfg->nats.subject_prefix, cfg->pod_id);
		o->done_subject = util_xstrdup(subj);
		(void)work_cancel_subject(subj, sizeof(subj),
		    cfg->nats.subject_prefix);
		o->cancel_subject = util_xstrdup(subj);
	}
	util_rng_seed(&o->rng);
	admit_configure(o);
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (grpc_server_register(srv, &m[i], err, errlen) == -1) {
			orch_free(o);
			return NULL;
		}
	return o;
}

void
orch_set_config(struct orch *o, struct config *cfg)
{
	char err[SAGAD_ERRLEN];

	pods_reload(o, o->cfg, cfg);
	config_free(o->cfg);
	o->cfg = config_ref(cfg);
	if (o->defs != NULL)
		defs_set_config(o->defs, cfg);
	/* SIGHUP: the services' certificates are read again. */
	if (tls_cache_reload(o->tls, err, sizeof(err)) == -1)
		orch_log(o, UTIL_WARN, NULL, "reload: services' TLS: %s; "
		    "keeping what was loaded before", err);
	admit_configure(o);
}

void
orch_set_log(struct orch *o, util_log_fn fn, void *arg)
{
	o->log = fn;
	o->log_arg = arg;
}

void
orch_set_bus(struct orch *o, struct bus *bus)
{
	o->bus = bus;
}

void
orch_drain(struct orch *o)
{
	if (!o->draining)
		o->drain_ms = util_mono_ms();
	o->draining = 1;
}

size_t
orch_running(const struct orch *o)
{
	return o->st.running + o->nlaunches + o->nholders;
}

void
orch_stats(const struct orch *o, struct orch_stats *st)
{
	*st = o->st;
}

void
orch_cron(struct orch *o)
{
	int64_t now = util_mono_ms();

	if (o->closing)
		return;
	launch_cron(o, now);
	sweep_cron(o, now);
	pods_cron(o, now);
	if (o->defs != NULL)
		defs_publish(o->defs);	/* until every flow's is stored */
}

static void
def_fetched(int rc, int unknown, const char *err, void *arg)
{
	struct orch *o = arg;

	if (rc == -1 && !o->closing)
		orch_log(o, unknown ? UTIL_WARN : UTIL_DEBUG, NULL, "%s", err);
}

struct config *
orch_saga_config(struct orch *o, const Saga__V1__Saga *pb,
    const struct config_flow **flow)
{
	struct config *cfg;

	if (o->defs == NULL || defs_is_lost(o->defs, pb->flow_version)) {
		*flow = config_flow_find(o->cfg, pb->flow);
		return o->cfg;
	}
	if ((cfg = defs_lookup(o->defs, pb->flow, pb->flow_version,
	    flow)) == NULL)
		defs_fetch(o->defs, pb->flow_version, def_fetched, o);
	return cfg;
}

void
orch_close(struct orch *o)
{
	o->closing = 1;
	launch_close(o);
	sync_close(o);
}

void
orch_free(struct orch *o)
{
	if (o == NULL)
		return;
	if (!o->closing)
		orch_close(o);
	sync_free(o);
	launch_free_all(o);
	pods_free(o);
	defs_free(o->defs);
	idtable_free(&o->holds_by_id);
	idtable_free(&o->runs_by_id);
	free(o->done_subject);
	free(o->cancel_subject);
	admit_free(o);
	free(o->owner);
	tls_cache_free(o->tls);
	config_free(o->cfg);
	free(o);
}
