/*
 * wengine.c - sagad-worker's engine (see wengine.h) for step messages:
 * one job per bus message, its saga moved on by src/driver.c (the same
 * moves the master's sync engine makes). Messages of the callbacks topic
 * are wengine_callback.c's.
 *
 * The order of effects is always: write Redis, then publish what follows,
 * then ack. A crash between any two of them leaves a message that is
 * delivered again and a record that says how far the saga got. The record
 * names the pending call (step, undo, attempt: see store.h), so a worker
 * that never saw the saga knows what to do next and how many calls of the
 * phase were started. Whoever publishes a call's work records its start in
 * the write before (the master's create for step 0, else the write of the
 * previous result), so the first delivery makes the call without a write
 * of its own and a redelivery counts that start as a call made.
 * Conflicting writes (another worker moved the saga on) and every failure
 * of Redis or the bus hand the message back with a delay: the next delivery
 * decides again from the store.
 *
 * The write that starts a call (the master's create, or the result of the
 * call before) is made by the first publisher of that call's work, which
 * sends the record it wrote along (work.h): the first delivery of that
 * message decides from it without reading Redis. Any other message of the
 * same call is a republish, later in the stream, or a redelivery, and both
 * read the store; a record that moved on in between fails the result's
 * revision check, and the message comes back to read it.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "bus.h"
#include "callback.h"
#include "config.h"
#include "flowdefs.h"
#include "driver.h"
#include "grpc/client.h"
#include "grpc/grpc.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "step.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "wengine_int.h"
#include "trace_saga.h"
#include "work.h"

#define WE_CONFLICT_MS		200	/* another worker moved the saga on */
#define WE_ACK_MARGIN_MS	5000	/* AckWait beyond one call's timeout */
#define WE_CALLBACK_TIMEOUT_MS	5000

static void	job_end_effects(struct job *);

void
wengine_log(struct wengine *e, enum util_level lv, const char *id,
    const char *fmt, ...)
{
	char	msg[1024];
	va_list	ap;

	if (e->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->log(lv, id, msg, e->log_arg);
}

/* --- topics --------------------------------------------------------------------- */

/*
 * "Flow/Node~MODE": a topic gone from the config. Its node is checked
 * against each saga's own definition (flowdef.h), not the config.
 */
static int
topic_linger(struct wengine *e, struct config *cfg, const char *topic,
    const char *sep, char *err, size_t errlen)
{
	const char	*slash = strchr(topic, '/');
	size_t		 fl, nl;

	if (slash == NULL || slash > sep || (fl = (size_t)(slash - topic)) == 0 ||
	    fl > CONFIG_NAME_MAX || (nl = (size_t)(sep - slash - 1)) == 0 ||
	    nl > CONFIG_NAME_MAX) {
		snprintf(err, errlen, "topic %s: not Flow/Node~MODE", topic);
		return -1;
	}
	if (strcmp(sep + 1, "async") == 0)
		e->mode = SAGA_MODE_ASYNC;
	else if (strcmp(sep + 1, "throttling") == 0)
		e->mode = SAGA_MODE_THROTTLING;
	else {
		snprintf(err, errlen, "topic %s: mode %s is not async or "
		    "throttling", topic, sep + 1);
		return -1;
	}
	snprintf(e->topic, sizeof(e->topic), "%.*s", (int)(sep - topic), topic);
	snprintf(e->flow, sizeof(e->flow), "%.*s", (int)fl, topic);
	snprintf(e->node, sizeof(e->node), "%.*s", (int)nl, slash + 1);
	e->workers = 1;
	e->timeout_ms = WE_LEGACY_TIMEOUT_MS;
	if (work_durable(e->durable, sizeof(e->durable), e->mode, cfg->pod_id,
	    e->flow, e->node) == -1 || work_filter(e->filter, sizeof(e->filter),
	    cfg->nats.subject_prefix, e->mode, cfg->pod_id, e->flow,
	    e->node) == -1) {
		snprintf(err, errlen, "topic %s: its subject is too long", topic);
		return -1;
	}
	return 0;
}

/* Finds topic in cfg and fills the engine's view of it; -1 if absent. */
static int
topic_load(struct wengine *e, struct config *cfg, const char *topic,
    char *err, size_t errlen)
{
	struct config_topic	*t;
	size_t			 i, n;
	int			 rc = -1;
	const char		*sep;

	if (strcmp(topic, WORK_CALLBACK_TOPIC) == 0) {
		e->callbacks = 1;
		snprintf(e->topic, sizeof(e->topic), "%s", topic);
		snprintf(e->durable, sizeof(e->durable), "%s", topic);
		(void)work_callback_subject(e->filter, sizeof(e->filter),
		    cfg->nats.subject_prefix);
		e->workers = 1;
		e->timeout_ms = WE_CALLBACK_TIMEOUT_MS;
		return 0;
	}
	if (strcmp(topic, WORK_LEGACY_TOPIC) == 0) {
		/* Any node: the definition each saga started with says which. */
		snprintf(e->topic, sizeof(e->topic), "%s", topic);
		snprintf(e->durable, sizeof(e->durable), "%s", topic);
		(void)work_legacy_subject(e->filter, sizeof(e->filter),
		    cfg->nats.subject_prefix);
		e->node[0] = '\0';
		e->mode = SAGA_MODE_ASYNC;
		e->workers = CONFIG_LEGACY_WORKERS;
		e->timeout_ms = WE_LEGACY_TIMEOUT_MS;
		return 0;
	}
	if ((sep = strchr(topic, WENGINE_LINGER_SEP)) != NULL)
		return topic_linger(e, cfg, topic, sep, err, errlen);
	n = config_topics(cfg, &t);
	for (i = 0; i < n; i++) {
		const struct config_flow *f = &cfg->flows[t[i].flow];
		const struct config_node *nd = &cfg->nodes[t[i].node];

		if (strcmp(t[i].name, topic) != 0)
			continue;
		snprintf(e->topic, sizeof(e->topic), "%s", topic);
		snprintf(e->flow, sizeof(e->flow), "%s", f->name);
		snprintf(e->node, sizeof(e->node), "%s", nd->name);
		e->mode = t[i].mode;
		e->workers = t[i].workers;
		e->timeout_ms = nd->timeout_ms;
		if (work_durable(e->durable, sizeof(e->durable), e->mode,
		    cfg->pod_id, f->name, nd->name) == -1 ||
		    work_filter(e->filter, sizeof(e->filter),
		    cfg->nats.subject_prefix, e->mode, cfg->pod_id, f->name,
		    nd->name) == -1) {
			snprintf(err, errlen, "topic %s: its subject is too "
			    "long", topic);
			break;
		}
		rc = 0;
		break;
	}
	if (i == n)
		snprintf(err, errlen, "no topic %s in the config (no async or "
		    "throttling flow has that node)", topic);
	free(t);
	return rc;
}

struct wengine *
wengine_new(const struct wengine_params *p, char *err, size_t errlen)
{
	struct wengine *e = util_xcalloc(1, sizeof(*e));

	if (topic_load(e, p->cfg, p->topic, err, errlen) == -1) {
		free(e);
		return NULL;
	}
	e->base = p->base;
	e->bus = p->bus;
	e->store = p->store;
	e->client = p->client;
	e->tls = tls_cache_new();
	e->cfg = config_ref(p->cfg);
	e->defs = defs_new(p->store, p->cfg);
	e->log = p->log;
	e->log_arg = p->log_arg;
	e->http = callback_new(p->base, WE_CALLBACK_TIMEOUT_MS);
	LIST_INIT(&e->jobs);
	util_rng_seed(&e->rng);
	return e;
}

void
wengine_consumer_opts(const struct wengine *e, int concurrency,
    struct bus_consumer_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->durable = e->durable;
	o->filter = e->filter;
	o->concurrency = concurrency;
	o->max_ack_pending = e->workers * concurrency;
	/*
	 * One delivery makes one call: retries go back to the bus with their
	 * backoff as the nak delay. So a message is held for one call's
	 * timeout plus the writes and the publish around it; a worker killed
	 * in between is noticed that much later.
	 */
	o->ack_wait_ms = e->timeout_ms + WE_ACK_MARGIN_MS;
}

int
wengine_set_config(struct wengine *e, struct config *cfg, char *err,
    size_t errlen)
{
	struct wengine tmp;

	memset(&tmp, 0, sizeof(tmp));
	if (topic_load(&tmp, cfg, e->topic, err, errlen) == -1)
		return -1;
	/* The consumer keeps its name and filter until the process ends. */
	e->timeout_ms = tmp.timeout_ms;
	config_free(e->cfg);
	e->cfg = config_ref(cfg);
	defs_set_config(e->defs, cfg);
	/* SIGHUP: the services' certificates are read again. */
	if (tls_cache_reload(e->tls, err, errlen) == -1)
		wengine_log(e, UTIL_WARN, NULL, "reload: services' TLS: %s; "
		    "keeping what was loaded before", err);
	return 0;
}

int
wengine_inflight(const struct wengine *e)
{
	return e->inflight;
}

void
wengine_stats(const struct wengine *e, struct wengine_stats *st)
{
	*st = e->st;
}

/* --- jobs ----------------------------------------------------------------------- */

static void
job_free(struct job *j)
{
	struct wengine *e = j->e;

	LIST_REMOVE(j, entry);
	e->inflight--;
	work_clear(&j->w);
	if (j->d.cfg != NULL)
		driver_clear(&j->d);
	free(j);
}

void
wengine_job_ack(struct job *j)
{
	if (j->msg != NULL)
		(void)bus_ack(j->msg);
	job_free(j);
}

void
wengine_job_nak(struct job *j, int delay_ms)
{
	j->e->st.naks++;
	if (j->msg != NULL)
		(void)bus_nak(j->msg, delay_ms);
	job_free(j);
}

static void
job_term(struct job *j)
{
	if (j->msg != NULL)
		(void)bus_term(j->msg);
	job_free(j);
}

/*
 * A callback arrived after wengine_close(): the message is the bus's again
 * (or soon will be); only the job is left to free.
 */
int
wengine_job_closing(struct job *j)
{
	j->busy = 0;
	if (!j->e->closing)
		return 0;
	j->msg = NULL;
	job_free(j);
	return 1;
}

/* --- writing -------------------------------------------------------------------- */

static void	job_after(struct job *);

/* An operator's Cancel: nothing further starts; compensate instead. */
static int
job_cancelled(struct job *j, const char *why)
{
	enum saga_state state = j->d.s->state;

	if (why == NULL || (state != SAGA_STATE_PENDING &&
	    state != SAGA_STATE_RUNNING))
		return 0;
	wengine_log(j->e, UTIL_INFO, j->d.s->id, "cancelled: %s", why);
	j->e->st.cancelled++;
	driver_cancel(&j->d, why, util_now_ms());
	job_after(j);
	return 1;
}

static void
job_written(enum store_result res, int64_t rev, const char *cancel,
    const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;

	if (wengine_job_closing(j))
		return;
	switch (res) {
	case STORE_OK:
		driver_written(&j->d, rev);
		if (job_cancelled(j, cancel))
			return;
		j->then(j);
		return;
	case STORE_CONFLICT:
		wengine_log(e, UTIL_DEBUG, j->d.s->id, "write conflict: another "
		    "worker moved the saga on; handing the message back");
		wengine_job_nak(j, WE_CONFLICT_MS);
		return;
	case STORE_NOT_FOUND:
		wengine_log(e, UTIL_WARN, j->d.s->id, "the saga is gone from the "
		    "store (expired?): dropping its work");
		wengine_job_ack(j);
		return;
	default:
		wengine_log(e, UTIL_WARN, j->d.s->id, "store write failed, the "
		    "message comes back in %d ms: %s", WE_RETRY_MS,
		    err != NULL ? err : store_result_name(res));
		wengine_job_nak(j, WE_RETRY_MS);
		return;
	}
}

/*
 * Writes the saga as the driver left it (its pending call and events),
 * then runs then(j). Async work is held by the bus, not by a master's
 * lease: the master creates these sagas without one, and a final write
 * drops any anyway.
 */
static void
job_write(struct job *j, void (*then)(struct job *))
{
	struct driver_write dw;

	driver_write(&j->d, &dw);
	j->then = then;
	j->busy = 1;
	store_update(j->e->store, &dw.w, job_written, j);
	driver_write_free(&dw);
}

/* --- publishing ----------------------------------------------------------------- */

static void
job_published(struct bus *bus, const struct bus_pub_result *res, void *arg)
{
	struct job *j = arg;

	(void)bus;
	if (wengine_job_closing(j))
		return;
	if (res->error != NULL) {
		wengine_log(j->e, UTIL_WARN, j->w.saga_id, "publish not confirmed, "
		    "the message comes back in %d ms: %s", WE_RETRY_MS,
		    res->error);
		wengine_job_nak(j, WE_RETRY_MS);
		return;
	}
	j->then(j);
}

static void
job_publish(struct job *j, const char *subject, const char *msg_id,
    const uint8_t *buf, size_t len, void (*then)(struct job *))
{
	char	err[SAGAD_ERRLEN];
	int	rc;

	j->then = then;
	j->busy = 1;
	rc = bus_publish(j->e->bus, subject, buf, len, msg_id, job_published,
	    j, err, sizeof(err));
	if (rc == -1) {
		j->busy = 0;
		wengine_log(j->e, UTIL_WARN, j->w.saga_id, "publish to %s failed, "
		    "the message comes back in %d ms: %s", subject,
		    WE_RETRY_MS, err);
		wengine_job_nak(j, WE_RETRY_MS);
	}
}

static const char *
job_pod(const struct job *j)
{
	return j->d.pod != NULL ? j->d.pod : "";
}

/* Publishes the Work of call a (the saga's next), then acks. */
static void
job_publish_call(struct job *j, const struct saga_action *a)
{
	struct driver_work	dw;
	char			err[SAGAD_ERRLEN];

	if (driver_work(&j->d, a, &dw, err, sizeof(err)) == -1) {
		wengine_log(j->e, UTIL_WARN, j->d.s->id, "%s: dropping the message",
		    err);
		job_term(j);
		return;
	}
	job_publish(j, dw.subject, dw.msg_id, dw.buf, dw.len, wengine_job_ack);
	free(dw.buf);
}

/* --- the end of a saga ------------------------------------------------------------ */

static void
job_notify_done(struct job *j)
{
	char	 subject[WORK_SUBJECT_MAX], err[SAGAD_ERRLEN];
	uint8_t	*buf;
	size_t	 len;

	if (j->d.s->mode == SAGA_MODE_THROTTLING && *job_pod(j) != '\0' &&
	    work_done_subject(subject, sizeof(subject),
	    j->e->cfg->nats.subject_prefix, job_pod(j)) == 0) {
		buf = work_done_pack(j->d.s->id, (int)j->d.s->state, &len);
		/* Lost notices are fine: the holder polls Redis too. */
		if (bus_notify(j->e->bus, subject, buf, len, err,
		    sizeof(err)) == -1)
			wengine_log(j->e, UTIL_DEBUG, j->d.s->id, "done notice to "
			    "%s: %s", subject, err);
		free(buf);
	}
	wengine_job_ack(j);
}

/*
 * What a final saga needs besides its record: its callback queued and the
 * throttling pod told. Run every time a message finds the saga final, so a
 * worker that died after the final write still gets them done.
 */
static void
job_end_effects(struct job *j)
{
	char		 id[STORE_ID_MAX + 16], subject[WORK_SUBJECT_MAX];
	struct work	 w;
	uint8_t		*buf;
	size_t		 len;

	if (j->d.callback == NULL) {
		job_notify_done(j);
		return;
	}
	memset(&w, 0, sizeof(w));
	w.saga_id = j->d.s->id;
	w.flow = j->d.s->flow;
	w.pod = (char *)(uintptr_t)job_pod(j);
	w.mode = j->d.s->mode;
	w.traceparent = j->w.traceparent;
	snprintf(id, sizeof(id), "%s:callback", j->d.s->id);
	buf = work_pack(&w, &len);
	(void)work_callback_subject(subject, sizeof(subject),
	    j->e->cfg->nats.subject_prefix);
	job_publish(j, subject, id, buf, len, job_notify_done);
	free(buf);
}

static void
job_ended(struct job *j)
{
	struct saga *s = j->d.s;

	j->e->st.ended++;
	if (s->state == SAGA_STATE_FAILED)
		wengine_log(j->e, UTIL_WARN, s->id, "saga FAILED, an operator must "
		    "look: %s", s->error != NULL ? s->error : "");
	else
		wengine_log(j->e, UTIL_DEBUG, s->id, "saga %s",
		    saga_state_name(s->state));
	trace_saga_end(&j->d);
	job_end_effects(j);
}

/* --- a step's call ---------------------------------------------------------------- */

static void
job_publish_next(struct job *j)
{
	job_publish_call(j, &j->d.a);
}

static void
job_nak_wait(struct job *j)
{
	wengine_job_nak(j, j->delay_ms);
}

/*
 * The driver has decided after a call's end: write it (the result, and the
 * next call's start when one follows), then pass the saga on. The worker
 * that gets the next work makes the call as recorded.
 */
static void
job_after(struct job *j)
{
	switch (j->d.a.kind) {
	case SAGA_ACT_WAIT:
		/* The same call again later: the attempt made is recorded. */
		j->delay_ms = j->d.a.delay_ms > INT32_MAX ? INT32_MAX :
		    (int)j->d.a.delay_ms;
		job_write(j, job_nak_wait);
		break;
	case SAGA_ACT_CALL:
		job_write(j, job_publish_next);
		break;
	case SAGA_ACT_END:
		job_write(j, job_ended);
		break;
	}
}

static void
job_call_done(void *arg, const struct grpc_client_result *res)
{
	struct job		*j = arg;
	const struct saga_action *a = &j->d.a;

	j->call = NULL;
	if (res->status != GRPC_STATUS_OK)
		wengine_log(j->e, UTIL_DEBUG, j->d.s->id, "%s%s attempt %d: %s: %s",
		    j->d.s->steps[a->step].name, a->compensate ? " (undo)" :
		    "", a->attempt, grpc_status_name(res->status),
		    res->message != NULL ? res->message : "");
	trace_call_end(&j->d, res->status, res->message);
	if (res->unsent)
		driver_unreached(&j->d, res->status, res->message,
		    util_now_ms());
	else
		driver_result(&j->d, res->status, res->message, res->data,
		    res->len, util_now_ms());
	job_after(j);
}

static void
job_call(struct job *j)
{
	const struct config_node	*node = driver_node(&j->d, j->d.a.step);
	const struct config_service	*cs = &j->d.cfg->services[node->service];
	struct grpc_channel		*ch;
	struct tls			*tls = NULL;
	char				 why[SAGAD_ERRLEN];
	struct grpc_metadata		 md = { 0 };
	const char			*path;
	uint8_t				*req;
	size_t				 len;
	char				 err[SAGAD_ERRLEN];

	trace_call_start(&j->d, &j->e->rng);
	req = driver_request(&j->d, &path, &len, &md, err, sizeof(err));
	if (req == NULL) {
		/* Nothing could be sent: no retry helps, nothing to undo. */
		driver_unsent(&j->d, err, util_now_ms());
		job_after(j);
		return;
	}
	if (cs->tls.on && (tls = tls_cache_client(j->e->tls, cs->tls.ca,
	    cs->tls.cert, cs->tls.key, why, sizeof(why))) == NULL) {
		char msg[SAGAD_ERRLEN + 2 * CONFIG_NAME_MAX];

		/* Its TLS files did not load: nothing can reach it. */
		free(req);
		grpc_md_clear(&md);
		snprintf(msg, sizeof(msg), "services.%s.tls: %s", cs->name,
		    why);
		driver_unreached(&j->d, GRPC_STATUS_UNAVAILABLE, msg,
		    util_now_ms());
		job_after(j);
		return;
	}
	j->e->st.calls++;
	ch = grpc_client_channel_tls(j->e->client, cs->host, cs->port, tls,
	    cs->tls.server_name);
	j->call = grpc_client_call_start(ch, path, req, len, &md,
	    node->timeout_ms, job_call_done, j);
	grpc_md_clear(&md);
	free(req);
}

/* --- Cancel notices --------------------------------------------------------------- */

/*
 * Sagas cancelled in the last WE_CANCEL_KEEP_MS: a message that carries
 * its record makes its call without reading the store, so a Cancel heard
 * before it arrives must still stop it.
 */
static const char *
cancelled_recently(struct wengine *e, const char *id)
{
	int64_t	now;
	int	n = e->ncancels < WE_CANCEL_KEEP ? (int)e->ncancels :
		    WE_CANCEL_KEEP;

	/* The hot path: no Cancel heard in the last minute, nothing to scan. */
	if (n == 0 || (now = util_mono_ms()) - e->last_cancel_ms >=
	    WE_CANCEL_KEEP_MS)
		return NULL;
	for (int i = 0; i < n; i++)
		if (e->cancels[i].id[0] != '\0' &&
		    now - e->cancels[i].ms < WE_CANCEL_KEEP_MS &&
		    strcmp(e->cancels[i].id, id) == 0)
			return e->cancels[i].reason;
	return NULL;
}

static void
cancel_heard(struct bus_listener *l, const char *subject, const void *data,
    size_t len, void *arg)
{
	struct wengine	*e = arg;
	struct job	*j;
	char		 id[STORE_ID_MAX + 1], reason[WE_REASON_MAX];
	int		 k;

	(void)l;
	(void)subject;
	if (e->closing || work_cancel_unpack(data, len, id, sizeof(id),
	    reason, sizeof(reason)) == -1)
		return;
	k = e->ncancels++ % WE_CANCEL_KEEP;
	snprintf(e->cancels[k].id, sizeof(e->cancels[k].id), "%s", id);
	snprintf(e->cancels[k].reason, sizeof(e->cancels[k].reason), "%s",
	    reason);
	e->cancels[k].ms = e->last_cancel_ms = util_mono_ms();
	/* A call in flight is reset; a job waiting on the store learns it. */
	LIST_FOREACH(j, &e->jobs, entry) {
		if (j->call == NULL || j->d.s == NULL ||
		    strcmp(j->d.s->id, id) != 0)
			continue;
		grpc_client_call_cancel(j->call);
		j->call = NULL;
		job_cancelled(j, reason);
		break;
	}
}

void
wengine_cron(struct wengine *e)
{
	char err[SAGAD_ERRLEN], subject[WORK_SUBJECT_MAX];

	if (e->callbacks || e->cancel_l != NULL || e->closing ||
	    !bus_is_connected(e->bus))
		return;
	(void)work_cancel_subject(subject, sizeof(subject),
	    e->cfg->nats.subject_prefix);
	e->cancel_l = bus_listen(e->bus, subject, cancel_heard, e, err,
	    sizeof(err));
	if (e->cancel_l == NULL)
		wengine_log(e, UTIL_WARN, NULL, "cannot listen on %s, "
		    "retrying: %s", subject, err);
}

/* --- a step message --------------------------------------------------------------- */

static void	job_got(enum store_result, struct store_saga *, const char *,
		    void *);

/*
 * The saga's flow definition is fetched (flowdefs.h): read the saga again,
 * which finds it now. One the store does not have may be on its way (a
 * master not done storing it): the message comes back; after WE_DEF_TRIES
 * deliveries it is lost, and the saga ends as one whose flow changed.
 */
static void
job_def_fetched(int rc, int unknown, const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;

	if (wengine_job_closing(j))
		return;
	if (rc == -1 && (!unknown || bus_msg_delivered(j->msg) < WE_DEF_TRIES)) {
		wengine_log(e, UTIL_WARN, j->w.saga_id, "%s: the message comes "
		    "back in %d ms", err, 2 * WE_RETRY_MS);
		wengine_job_nak(j, 2 * WE_RETRY_MS);
		return;
	}
	if (rc == -1) {
		wengine_log(e, UTIL_WARN, j->w.saga_id, "%s: nothing can be "
		    "called for this saga", err);
		j->def_lost = 1;
	}
	store_get(e->store, j->w.saga_id, job_got, j);
}

static void
job_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct job		*j = arg;
	struct wengine		*e = j->e;
	const struct config_node *node;
	const struct config_flow *flow;
	struct config		*cfg;
	int			 write;

	if (wengine_job_closing(j))
		return;
	if (res == STORE_NOT_FOUND) {
		wengine_log(e, UTIL_WARN, j->w.saga_id, "no such saga in the store "
		    "(expired, or never created): dropping its work");
		wengine_job_ack(j);
		return;
	}
	if (res != STORE_OK) {
		wengine_log(e, UTIL_WARN, j->w.saga_id, "store read failed, the "
		    "message comes back in %d ms: %s", WE_RETRY_MS,
		    err != NULL ? err : store_result_name(res));
		wengine_job_nak(j, WE_RETRY_MS);
		return;
	}
	/* The definition the saga started with, not the config's now. */
	if (j->def_lost) {
		cfg = e->cfg;
		flow = NULL;
	} else if ((cfg = defs_lookup(e->defs, rec->saga->flow,
	    rec->saga->flow_version, &flow)) == NULL) {
		defs_fetch(e->defs, rec->saga->flow_version, job_def_fetched, j);
		return;
	}
	driver_init(&j->d, cfg, flow, saga_from_pb(rec->saga), &e->rng);
	j->d.rev = rec->rev;
	j->d.round = rec->round > j->w.round ? rec->round : j->w.round;
	driver_set(&j->d, *rec->pod != '\0' ? rec->pod : j->w.pod,
	    rec->callback, j->w.traceparent);
	driver_set_trace(&j->d, j->w.tracestate, j->w.baggage,
	    j->w.has_trace_parent ? j->w.trace_parent : NULL);
	switch (driver_resume(&j->d, (size_t)rec->step, rec->compensate,
	    rec->attempt, j->w.step, j->w.compensate,
	    bus_msg_delivered(j->msg) > 1, *rec->cancel != '\0' ? rec->cancel :
	    cancelled_recently(e, j->w.saga_id), util_now_ms(), &write)) {
	case DRIVER_RESUME_END:
		if (!write) {
			/* Ended before: only its end's effects, again. */
			e->st.republished++;
			job_end_effects(j);
			return;
		}
		if (j->d.flow == NULL || j->d.flow->nsteps != j->d.s->nsteps)
			wengine_log(e, UTIL_WARN, j->d.s->id, "saga of flow %s cannot "
			    "go on: the flow changed", j->d.s->flow);
		else
			e->st.republished++;
		job_write(j, job_ended);
		return;
	case DRIVER_RESUME_CALL:
		node = driver_node(&j->d, j->d.a.step);
		if (e->node[0] != '\0' && strcmp(node->name, e->node) != 0) {
			/*
			 * Not this topic's call (its saga runs an older
			 * definition, or a reload moved the node): passed on
			 * to the topic that makes it, the legacy one for an
			 * older definition's.
			 */
			wengine_log(e, UTIL_INFO, j->d.s->id, "work for step %u "
			    "(%s) came to topic %s: passing it on", j->w.step,
			    node->name, e->topic);
			e->st.republished++;
			job_publish_call(j, &j->d.a);
			return;
		}
		if (write)
			job_write(j, job_call);
		else
			job_call(j);
		return;
	case DRIVER_RESUME_PASS:
		/*
		 * The record is ahead of this message (a redelivery after the
		 * call was recorded) or names another call: make sure the
		 * message of what the record implies is out, and let this one
		 * go.
		 */
		e->st.republished++;
		if (write)
			job_write(j, job_publish_next);
		else
			job_publish_call(j, &j->d.a);
		return;
	}
}

/* --- messages ------------------------------------------------------------------------ */

void
wengine_handle(struct bus_msg *msg, void *arg)
{
	struct wengine	*e = arg;
	struct job	*j;
	const void	*data;
	size_t		 len;
	char		 err[SAGAD_ERRLEN];

	e->st.messages++;
	j = util_xcalloc(1, sizeof(*j));
	j->e = e;
	j->msg = msg;
	LIST_INSERT_HEAD(&e->jobs, j, entry);
	e->inflight++;
	data = bus_msg_data(msg, &len);
	if (work_unpack(&j->w, data, len, err, sizeof(err)) == -1) {
		wengine_log(e, UTIL_WARN, NULL, "%s: %s: dropped",
		    bus_msg_subject(msg), err);
		job_term(j);
		return;
	}
	j->busy = 1;
	if (e->callbacks)
		wengine_callback_start(j);
	else if (j->w.record != NULL && bus_msg_delivered(msg) == 1) {
		/* Its publisher's record: see the top of this file. */
		struct store_saga rec;

		e->st.unread++;
		rec.saga = (Saga__V1__Saga *)(uintptr_t)j->w.record->saga;
		rec.rev = j->w.record->rev;
		rec.step = (int)j->w.record->step;
		rec.compensate = j->w.record->compensate;
		rec.attempt = j->w.record->attempt;
		rec.pod = j->w.record->pod;
		rec.owner = "";
		rec.callback = j->w.record->callback;
		rec.cancel = "";
		rec.round = j->w.round;
		job_got(STORE_OK, &rec, NULL, j);
	} else
		store_get(e->store, j->w.saga_id, job_got, j);
}

void
wengine_close(struct wengine *e)
{
	struct job *j, *next;

	e->closing = 1;
	if (e->cancel_l != NULL) {
		bus_listener_close(e->cancel_l);
		e->cancel_l = NULL;
	}
	for (j = LIST_FIRST(&e->jobs); j != NULL; j = next) {
		next = LIST_NEXT(j, entry);
		j->msg = NULL;
		if (j->call != NULL) {
			grpc_client_call_cancel(j->call);
			j->call = NULL;
		}
		if (!j->busy)
			job_free(j);
	}
}

void
wengine_free(struct wengine *e)
{
	struct job *j;

	if (e == NULL)
		return;
	if (!e->closing)
		wengine_close(e);
	/* What is left waited for an HTTP answer: callback_free drops it. */
	callback_free(e->http);
	while ((j = LIST_FIRST(&e->jobs)) != NULL)
		job_free(j);
	defs_free(e->defs);
	tls_cache_free(e->tls);
	config_free(e->cfg);
	free(e);
}
