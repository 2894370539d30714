/*
 * wengine.c - sagad-worker's engine (see wengine.h): one job per bus
 * message, driven by the stored saga and src/saga.c's rules.
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
#include "grpc/client.h"
#include "grpc/grpc.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "step.h"
#include "store.h"
#include "util.h"
#include "wengine.h"
#include "work.h"

#define WE_RETRY_MS		1000	/* Redis or the bus failed: again in */
#define WE_CONFLICT_MS		200	/* another worker moved the saga on */
#define WE_ACK_MARGIN_MS	5000	/* AckWait beyond one call's timeout */
#define WE_CALLBACK_TIMEOUT_MS	5000
#define WE_CALLBACK_BACKOFF_MS	250
#define WE_CALLBACK_BACKOFF_MAX	30000
#define WE_MAX_EVENTS		6
#define WE_NAME_MAX		(2 * CONFIG_NAME_MAX + 2)

struct job;

struct wengine {
	struct event_base	*base;
	struct bus		*bus;
	struct store		*store;
	struct grpc_client	*client;
	struct config		*cfg;
	struct callback		*http;
	int			 callbacks;	/* the callbacks topic */
	char			 topic[WE_NAME_MAX];
	char			 flow[CONFIG_NAME_MAX + 1];
	char			 node[CONFIG_NAME_MAX + 1];
	char			 durable[WORK_SUBJECT_MAX];
	char			 filter[WORK_SUBJECT_MAX];
	enum saga_mode		 mode;
	int			 workers;
	int			 timeout_ms;
	uint64_t		 rng;
	int			 closing;
	int			 inflight;
	struct wengine_stats	 st;
	LIST_HEAD(, job)	 jobs;
	util_log_fn		 log;
	void			*log_arg;
};

struct job_ev {
	const char	*step;		/* "" = the saga; points into s */
	int		 state;
	char		*error;
	int		 attempt;
	int64_t		 ms;
};

struct job {
	struct wengine		*e;
	struct bus_msg		*msg;
	struct work		 w;
	struct config		*cfg;		/* a reference */
	const struct config_flow *flow;
	struct saga		*s;
	int64_t			 rev;
	char			*pod;		/* the record's, "" if none */
	char			*callback;	/* the record's, "" if none */
	struct saga_action	 a;		/* the call this job makes */
	struct saga_action	 next;		/* what the record says follows */
	struct saga_action	 wrote;		/* the pending call last written:
						   step, compensate, attempt */
	int			 forward;	/* that write started the call
						   published next */
	int			 delay_ms;	/* WAIT: nak delay */
	struct grpc_client_call	*call;
	struct job_ev		 evs[WE_MAX_EVENTS];
	int			 nevs;
	int			 busy;		/* a store, bus or http callback
						   is pending */
	void			(*then)(struct job *);
	LIST_ENTRY(job)		 entry;
};

static void	job_end_effects(struct job *);

static void
elog(struct wengine *e, enum util_level lv, const char *id,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
elog(struct wengine *e, enum util_level lv, const char *id,
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

/* Finds topic in cfg and fills the engine's view of it; -1 if absent. */
static int
topic_load(struct wengine *e, struct config *cfg, const char *topic,
    char *err, size_t errlen)
{
	struct config_topic	*t;
	size_t			 i, n;
	int			 rc = -1;

	if (strcmp(topic, WORK_CALLBACK_TOPIC) == 0) {
		e->callbacks = 1;
		snprintf(e->topic, sizeof(e->topic), "%s", topic);
		snprintf(e->durable, sizeof(e->durable), "%s", topic);
		snprintf(e->filter, sizeof(e->filter), "%s",
		    WORK_CALLBACK_SUBJECT);
		e->workers = 1;
		e->timeout_ms = WE_CALLBACK_TIMEOUT_MS;
		return 0;
	}
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
		    work_filter(e->filter, sizeof(e->filter), e->mode,
		    cfg->pod_id, f->name, nd->name) == -1) {
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
	e->cfg = config_ref(p->cfg);
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
evs_clear(struct job *j)
{
	for (int i = 0; i < j->nevs; i++)
		free(j->evs[i].error);
	j->nevs = 0;
}

static void
ev_add(struct job *j, const char *step, int state, const char *error,
    int attempt)
{
	struct job_ev *ev;

	if (j->nevs == WE_MAX_EVENTS)
		return;
	ev = &j->evs[j->nevs++];
	ev->step = step;
	ev->state = state;
	ev->error = error != NULL ? util_xstrdup(error) : NULL;
	ev->attempt = attempt;
	ev->ms = util_now_ms();
}

static void
job_free(struct job *j)
{
	struct wengine *e = j->e;

	LIST_REMOVE(j, entry);
	e->inflight--;
	evs_clear(j);
	work_clear(&j->w);
	saga_free(j->s);
	config_free(j->cfg);
	free(j->pod);
	free(j->callback);
	free(j);
}

static void
job_ack(struct job *j)
{
	if (j->msg != NULL)
		(void)bus_ack(j->msg);
	job_free(j);
}

static void
job_nak(struct job *j, int delay_ms)
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
static int
job_closing(struct job *j)
{
	j->busy = 0;
	if (!j->e->closing)
		return 0;
	j->msg = NULL;
	job_free(j);
	return 1;
}

/* --- writing -------------------------------------------------------------------- */

static void
job_written(enum store_result res, int64_t rev, const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;

	if (job_closing(j))
		return;
	switch (res) {
	case STORE_OK:
		j->rev = rev;
		evs_clear(j);
		j->then(j);
		return;
	case STORE_CONFLICT:
		elog(e, UTIL_DEBUG, j->s->id, "write conflict: another "
		    "worker moved the saga on; handing the message back");
		job_nak(j, WE_CONFLICT_MS);
		return;
	case STORE_NOT_FOUND:
		elog(e, UTIL_WARN, j->s->id, "the saga is gone from the "
		    "store (expired?): dropping its work");
		job_ack(j);
		return;
	default:
		elog(e, UTIL_WARN, j->s->id, "store write failed, the "
		    "message comes back in %d ms: %s", WE_RETRY_MS,
		    err != NULL ? err : store_result_name(res));
		job_nak(j, WE_RETRY_MS);
		return;
	}
}

/*
 * Writes j->s with the pending call (step, compensate, attempts made) and
 * the events collected, then runs then(j).
 */
static void
job_write(struct job *j, size_t step, int compensate, int attempts,
    void (*then)(struct job *))
{
	struct store_write	 w;
	struct saga_pb		 v;
	Saga__V1__SagaEvent	 ev[WE_MAX_EVENTS], *evp[WE_MAX_EVENTS];

	memset(&w, 0, sizeof(w));
	saga_pb_view(j->s, &v);
	for (int i = 0; i < j->nevs; i++) {
		saga__v1__saga_event__init(&ev[i]);
		ev[i].saga_id = j->s->id;
		ev[i].step = (char *)(uintptr_t)j->evs[i].step;
		ev[i].state = (Saga__V1__State)j->evs[i].state;
		ev[i].error = j->evs[i].error;
		ev[i].attempt = j->evs[i].attempt;
		ev[i].unix_ms = j->evs[i].ms;
		evp[i] = &ev[i];
	}
	w.saga = &v.pb;
	w.rev = j->rev;
	w.step = (int)step;
	w.compensate = compensate;
	w.attempt = attempts;
	j->wrote.step = step;
	j->wrote.compensate = compensate;
	j->wrote.attempt = attempts;
	/*
	 * Async work is held by the bus, not by a master's lease: the
	 * master creates these sagas without one, so there is none to drop
	 * (the final write drops it anyway).
	 */
	w.lease_ms = 0;
	w.events = evp;
	w.nevents = (size_t)j->nevs;
	j->then = then;
	j->busy = 1;
	store_update(j->e->store, &w, job_written, j);
	saga_pb_view_free(&v);
}

/* --- publishing ----------------------------------------------------------------- */

static void
job_published(struct bus *bus, const struct bus_pub_result *res, void *arg)
{
	struct job *j = arg;

	if (job_closing(j))
		return;
	if (res->error != NULL) {
		elog(j->e, UTIL_WARN, j->w.saga_id, "publish not confirmed, "
		    "the message comes back in %d ms: %s", WE_RETRY_MS,
		    res->error);
		job_nak(j, WE_RETRY_MS);
		return;
	}
	j->then(j);
}

static void
job_publish(struct job *j, const char *subject, const char *msg_id,
    const struct work *w, void (*then)(struct job *))
{
	uint8_t	*buf;
	size_t	 len;
	char	 err[SAGAD_ERRLEN];
	int	 rc;

	buf = work_pack(w, &len);
	j->then = then;
	j->busy = 1;
	rc = bus_publish(j->e->bus, subject, buf, len, msg_id, job_published,
	    j, err, sizeof(err));
	free(buf);
	if (rc == -1) {
		j->busy = 0;
		elog(j->e, UTIL_WARN, j->w.saga_id, "publish to %s failed, "
		    "the message comes back in %d ms: %s", subject,
		    WE_RETRY_MS, err);
		job_nak(j, WE_RETRY_MS);
	}
}

static const char *
job_pod(const struct job *j)
{
	if (j->pod != NULL && *j->pod != '\0')
		return j->pod;
	return j->w.pod != NULL ? j->w.pod : "";
}

/*
 * Publishes the message of call a (the saga's next), then ack. With the
 * record when this job's last write started a (j->forward).
 */
static void
job_publish_call(struct job *j, const struct saga_action *a)
{
	const char		*node = j->s->steps[a->step].name;
	char			 subject[WORK_SUBJECT_MAX],
				 id[WORK_SUBJECT_MAX];
	struct work		 w;
	struct work_record	 rec;
	struct saga_pb		 v;

	memset(&w, 0, sizeof(w));
	if (j->forward && j->wrote.step == a->step &&
	    j->wrote.compensate == a->compensate) {
		saga_pb_view(j->s, &v);
		rec.rev = j->rev;
		rec.saga = &v.pb;
		rec.step = (uint32_t)a->step;
		rec.compensate = a->compensate;
		rec.attempt = j->wrote.attempt;
		rec.pod = j->pod;
		rec.callback = j->callback;
		w.record = &rec;
	}
	w.saga_id = j->s->id;
	w.flow = j->s->flow;
	w.step = (uint32_t)a->step;
	w.compensate = a->compensate;
	w.pod = (char *)(uintptr_t)job_pod(j);
	w.mode = j->s->mode;
	w.traceparent = j->w.traceparent;
	if (work_subject(subject, sizeof(subject), j->s->mode, w.pod,
	    j->s->flow, node, a->compensate) == -1 ||
	    work_msg_id(id, sizeof(id), j->s->id, node, a->compensate) == -1) {
		elog(j->e, UTIL_WARN, j->s->id, "the subject of step %s is "
		    "too long: dropping the message", node);
		job_term(j);
	} else
		job_publish(j, subject, id, &w, job_ack);
	if (w.record != NULL)
		saga_pb_view_free(&v);
}

/* --- the end of a saga ------------------------------------------------------------ */

static void
job_notify_done(struct job *j)
{
	char	 subject[WORK_SUBJECT_MAX], err[SAGAD_ERRLEN];
	uint8_t	*buf;
	size_t	 len;

	if (j->s->mode == SAGA_MODE_THROTTLING && *job_pod(j) != '\0' &&
	    work_done_subject(subject, sizeof(subject), job_pod(j)) == 0) {
		buf = work_done_pack(j->s->id, (int)j->s->state, &len);
		/* Lost notices are fine: the holder polls Redis too. */
		if (bus_notify(j->e->bus, subject, buf, len, err,
		    sizeof(err)) == -1)
			elog(j->e, UTIL_DEBUG, j->s->id, "done notice to "
			    "%s: %s", subject, err);
		free(buf);
	}
	job_ack(j);
}

/*
 * What a final saga needs besides its record: its callback queued and the
 * throttling pod told. Run every time a message finds the saga final, so a
 * worker that died after the final write still gets them done.
 */
static void
job_end_effects(struct job *j)
{
	char		id[STORE_ID_MAX + 16];
	struct work	w;

	if (j->callback == NULL || *j->callback == '\0') {
		job_notify_done(j);
		return;
	}
	memset(&w, 0, sizeof(w));
	w.saga_id = j->s->id;
	w.flow = j->s->flow;
	w.pod = (char *)(uintptr_t)job_pod(j);
	w.mode = j->s->mode;
	w.traceparent = j->w.traceparent;
	snprintf(id, sizeof(id), "%s:callback", j->s->id);
	job_publish(j, WORK_CALLBACK_SUBJECT, id, &w, job_notify_done);
}

static void
job_ended(struct job *j)
{
	j->e->st.ended++;
	if (j->s->state == SAGA_STATE_FAILED)
		elog(j->e, UTIL_WARN, j->s->id, "saga FAILED, an operator "
		    "must look: %s", j->s->error != NULL ? j->s->error : "");
	else
		elog(j->e, UTIL_DEBUG, j->s->id, "saga %s",
		    saga_state_name(j->s->state));
	job_end_effects(j);
}

/* --- a step's call ---------------------------------------------------------------- */

static const struct config_node *
job_node(const struct job *j, size_t step)
{
	return &j->cfg->nodes[j->flow->steps[step]];
}

static void
job_publish_next(struct job *j)
{
	job_publish_call(j, &j->next);
}

static void
job_nak_wait(struct job *j)
{
	job_nak(j, j->delay_ms);
}

/* Records what follows a call's result, then acts on it. */
static void
job_after(struct job *j, enum saga_state before)
{
	const struct saga_action *n = &j->next;

	if (j->s->state != before && n->kind != SAGA_ACT_WAIT)
		ev_add(j, "", j->s->state, j->s->error, 0);
	switch (n->kind) {
	case SAGA_ACT_WAIT:
		/* The same call again later: the attempt made is recorded. */
		j->delay_ms = n->delay_ms > INT32_MAX ? INT32_MAX :
		    (int)n->delay_ms;
		job_write(j, j->a.step, j->a.compensate, j->a.attempt,
		    job_nak_wait);
		break;
	case SAGA_ACT_CALL:
		/*
		 * The result and the next call's start share one write: the
		 * worker that gets the next work makes the call as recorded.
		 */
		saga_step_begin(j->s, n, util_now_ms());
		ev_add(j, j->s->steps[n->step].name,
		    j->s->steps[n->step].state, NULL, n->attempt);
		j->forward = 1;
		job_write(j, n->step, n->compensate, n->attempt,
		    job_publish_next);
		break;
	case SAGA_ACT_END:
		job_write(j, j->a.step, j->a.compensate, j->a.attempt,
		    job_ended);
		break;
	}
}

static void
job_call_done(void *arg, const struct grpc_client_result *res)
{
	struct job			*j = arg;
	const struct config_node	*node = job_node(j, j->a.step);
	struct saga_step		*st = &j->s->steps[j->a.step];
	enum saga_state			 before = j->s->state;
	struct saga_kv			*kv = NULL;
	size_t				 nkv = 0;
	int				 status = res->status;
	const char			*msg = res->message;

	j->call = NULL;
	if (status == GRPC_STATUS_OK && !j->a.compensate &&
	    step_reply(node, res->data, res->len, &kv, &nkv) == -1) {
		status = GRPC_STATUS_INTERNAL;
		msg = "the reply is not a saga.v1.StepReply";
	}
	j->next = saga_step_end(j->s, j->cfg, j->flow, &j->a, status, msg, kv,
	    nkv, util_now_ms(), &j->e->rng);
	step_kv_free(kv, nkv);
	if (status != GRPC_STATUS_OK)
		elog(j->e, UTIL_DEBUG, j->s->id, "%s%s attempt %d: %s: %s",
		    st->name, j->a.compensate ? " (undo)" : "", j->a.attempt,
		    grpc_status_name(status), msg != NULL ? msg : "");
	ev_add(j, st->name, st->state, st->error, j->a.attempt);
	job_after(j, before);
}

static void
job_call(struct job *j)
{
	const struct config_node	*node = job_node(j, j->a.step);
	const struct config_service	*cs = &j->cfg->services[node->service];
	struct grpc_channel		*ch;
	struct grpc_metadata		 md = { 0 };
	uint8_t				*req;
	size_t				 len;
	char				 err[256];

	req = step_request(j->s, node, &j->a, &len, err, sizeof(err));
	if (req == NULL) {
		/* Nothing could be sent: no retry helps, nothing to undo. */
		enum saga_state before = j->s->state;
		struct saga_step *st = &j->s->steps[j->a.step];

		j->next = saga_step_unsent(j->s, j->cfg, j->flow, &j->a, err,
		    util_now_ms());
		ev_add(j, st->name, st->state, st->error, j->a.attempt);
		job_after(j, before);
		return;
	}
	j->e->st.calls++;
	ch = grpc_client_channel(j->e->client, cs->host, cs->port);
	step_metadata(&md, j->s, j->w.traceparent);
	j->call = grpc_client_call_start(ch, j->a.compensate ?
	    node->compensate : node->action, req, len, &md, node->timeout_ms,
	    job_call_done, j);
	grpc_md_clear(&md);
	free(req);
}

/* --- a step message --------------------------------------------------------------- */

static void
job_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct job		*j = arg;
	struct wengine		*e = j->e;
	const struct config_node *node;
	struct saga_action	 a;
	enum saga_state		 before;
	int			 changed, fresh;

	if (job_closing(j))
		return;
	if (res == STORE_NOT_FOUND) {
		elog(e, UTIL_WARN, j->w.saga_id, "no such saga in the store "
		    "(expired, or never created): dropping its work");
		job_ack(j);
		return;
	}
	if (res != STORE_OK) {
		elog(e, UTIL_WARN, j->w.saga_id, "store read failed, the "
		    "message comes back in %d ms: %s", WE_RETRY_MS,
		    err != NULL ? err : store_result_name(res));
		job_nak(j, WE_RETRY_MS);
		return;
	}
	j->s = saga_from_pb(rec->saga);
	j->rev = rec->rev;
	j->pod = util_xstrdup(rec->pod);
	j->callback = util_xstrdup(rec->callback);
	before = j->s->state;
	j->flow = config_flow_find(j->cfg, j->s->flow);
	if (SAGA_STATE_IS_FINAL(before)) {
		e->st.republished++;
		job_end_effects(j);
		return;
	}
	if (j->flow == NULL || j->flow->nsteps != j->s->nsteps) {
		/* Its flow is gone or changed: nothing is safe to call. */
		free(j->s->error);
		j->s->error = util_xstrdup("its flow is no longer configured "
		    "as it was when it started: compensate by hand");
		j->s->state = SAGA_STATE_FAILED;
		j->s->updated_ms = util_now_ms();
		elog(e, UTIL_WARN, j->s->id, "saga of flow %s cannot go "
		    "on: the flow changed", j->s->flow);
		ev_add(j, "", j->s->state, j->s->error, 0);
		job_write(j, (size_t)rec->step, rec->compensate, rec->attempt,
		    job_ended);
		return;
	}
	/*
	 * Only a redelivery of the pending call's own work counts its
	 * recorded start as made: the first delivery is what its publisher
	 * recorded, and work of another call must not use up its attempts.
	 */
	fresh = !((size_t)rec->step == j->w.step &&
	    rec->compensate == (int)j->w.compensate &&
	    bus_msg_delivered(j->msg) > 1);
	a = saga_resume(j->s, j->cfg, j->flow, (size_t)rec->step,
	    rec->compensate, rec->attempt, fresh, util_now_ms(), &e->rng,
	    &changed);
	if (a.kind == SAGA_ACT_CALL && a.step == j->w.step &&
	    a.compensate == j->w.compensate) {
		/*
		 * This message's call: make it as recorded, or record it as
		 * started first.
		 */
		node = job_node(j, a.step);
		if (strcmp(node->name, e->node) != 0) {
			elog(e, UTIL_WARN, j->s->id, "work for step %u (%s) "
			    "came to topic %s: dropping it", j->w.step,
			    node->name, e->topic);
			job_term(j);
			return;
		}
		j->a = a;
		if (a.begun) {
			/*
			 * A saga that read PENDING caught up with its first
			 * start: its events go with the result's write.
			 */
			if (j->s->state != before) {
				ev_add(j, "", j->s->state, j->s->error, 0);
				ev_add(j, j->s->steps[a.step].name,
				    j->s->steps[a.step].state, NULL,
				    a.attempt);
			}
			if (changed)
				job_write(j, a.step, a.compensate, a.attempt,
				    job_call);
			else
				job_call(j);
			return;
		}
		saga_step_begin(j->s, &a, util_now_ms());
		if (j->s->state != before)
			ev_add(j, "", j->s->state, j->s->error, 0);
		ev_add(j, j->s->steps[a.step].name, j->s->steps[a.step].state,
		    NULL, a.attempt);
		job_write(j, a.step, a.compensate, a.attempt, job_call);
		return;
	}
	/*
	 * The record is ahead of this message (a redelivery after the call
	 * was recorded) or names another call: make sure the message of what
	 * the record implies is out, and let this one go.
	 */
	e->st.republished++;
	j->next = a;
	if (a.kind == SAGA_ACT_END) {
		ev_add(j, "", j->s->state, j->s->error, 0);
		job_write(j, (size_t)rec->step, rec->compensate, rec->attempt,
		    job_ended);
	} else if (changed) {
		if (j->s->state != before)
			ev_add(j, "", j->s->state, j->s->error, 0);
		job_write(j, a.step, a.compensate, a.begun ? a.attempt :
		    a.attempt - 1, job_publish_next);
	} else
		job_publish_call(j, &a);
}

/* --- a callback message ------------------------------------------------------------- */

static void
job_posted(int status, const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;
	int		 n;

	if (job_closing(j))
		return;
	if (status >= 200 && status < 300) {
		e->st.delivered++;
		elog(e, UTIL_DEBUG, j->s->id, "callback delivered to %s "
		    "(HTTP %d)", j->callback, status);
		job_ack(j);
		return;
	}
	if (status != 0 && status < 500) {
		e->st.given_up++;
		elog(e, UTIL_WARN, j->s->id, "callback to %s refused (%s): "
		    "not retried", j->callback, err);
		job_ack(j);
		return;
	}
	n = j->msg != NULL ? bus_msg_delivered(j->msg) : 1;
	if (n > j->cfg->callbacks.retries) {
		e->st.given_up++;
		elog(e, UTIL_WARN, j->s->id, "callback to %s: giving up "
		    "after %d tries: %s", j->callback, n, err);
		job_ack(j);
		return;
	}
	elog(e, UTIL_INFO, j->s->id, "callback to %s failed (%s): try %d "
	    "of %d comes later", j->callback, err, n + 1,
	    j->cfg->callbacks.retries + 1);
	job_nak(j, (int)saga_backoff_ms(WE_CALLBACK_BACKOFF_MS, n,
	    WE_CALLBACK_BACKOFF_MAX, &e->rng));
}

static void
job_got_callback(enum store_result res, struct store_saga *rec,
    const char *err, void *arg)
{
	struct job	*j = arg;
	struct wengine	*e = j->e;
	char		*body, perr[SAGAD_ERRLEN];
	size_t		 len;
	int		 rc;

	if (job_closing(j))
		return;
	if (res == STORE_NOT_FOUND) {
		elog(e, UTIL_WARN, j->w.saga_id, "callback of a saga that "
		    "is gone from the store: dropped");
		job_ack(j);
		return;
	}
	if (res != STORE_OK) {
		elog(e, UTIL_WARN, j->w.saga_id, "store read failed, the "
		    "callback comes back in %d ms: %s", WE_RETRY_MS,
		    err != NULL ? err : store_result_name(res));
		job_nak(j, WE_RETRY_MS);
		return;
	}
	j->s = saga_from_pb(rec->saga);
	j->callback = util_xstrdup(rec->callback);
	if (*j->callback == '\0') {
		job_ack(j);
		return;
	}
	body = saga_to_json(j->s, &len);
	j->busy = 1;
	rc = callback_post(e->http, j->callback, j->cfg->callbacks.allow,
	    j->cfg->callbacks.nallow, body, len, job_posted, j, perr,
	    sizeof(perr));
	free(body);
	if (rc == -1) {
		j->busy = 0;
		e->st.given_up++;
		elog(e, UTIL_WARN, j->s->id, "callback not sent: %s", perr);
		job_ack(j);
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
	j->cfg = config_ref(e->cfg);
	LIST_INSERT_HEAD(&e->jobs, j, entry);
	e->inflight++;
	data = bus_msg_data(msg, &len);
	if (work_unpack(&j->w, data, len, err, sizeof(err)) == -1) {
		elog(e, UTIL_WARN, NULL, "%s: %s: dropped",
		    bus_msg_subject(msg), err);
		job_term(j);
		return;
	}
	j->busy = 1;
	if (e->callbacks)
		store_get(e->store, j->w.saga_id, job_got_callback, j);
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
		job_got(STORE_OK, &rec, NULL, j);
	} else
		store_get(e->store, j->w.saga_id, job_got, j);
}

void
wengine_close(struct wengine *e)
{
	struct job *j, *next;

	e->closing = 1;
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
	config_free(e->cfg);
	free(e);
}
