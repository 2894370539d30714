/*
 * orch_sync.c - the sync engine: sagas driven on the master's loop while
 * their callers wait (see orch_int.h).
 *
 * A sync saga lives in a struct run around its driver (driver.h). Each
 * move is: the driver decides and builds the write, the store takes it (a
 * revision-checked write that also appends its events), and only then the
 * engine acts: calls the step, waits out a backoff, or answers the
 * callers. A step is therefore always recorded as started before its
 * action is called, and a master that dies leaves behind a record from
 * which any other master's sweeper compensates (orch_sweep.c). Writes that
 * fail because Redis is away are retried until they land or another master
 * claims the saga (the write then conflicts and this master lets go).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "grpc/client.h"
#include "grpc/grpc.h"
#include "grpc/server.h"
#include "orch_int.h"
#include "trace_saga.h"
#include "util.h"

static void	run_next(struct run *);
static void	run_write(struct run *, void (*)(struct run *));

static struct run *
run_new(struct orch *o, struct config *cfg, const struct config_flow *flow,
    struct saga *s)
{
	struct run *r = util_xcalloc(1, sizeof(*r));

	r->o = o;
	driver_init(&r->d, cfg, flow, s, &o->rng);
	r->retry_ms = ORCH_RETRY_MIN_MS;
	r->ent.id = s->id;
	idtable_add(&o->runs_by_id, &r->ent);
	TAILQ_INSERT_TAIL(&o->runs, r, all);
	o->st.running++;
	return r;
}

struct run *
sync_find(struct orch *o, const char *id)
{
	struct idtable_entry *e = idtable_find(&o->runs_by_id, id);

	return e != NULL ? IDTABLE_ITEM(e, struct run, ent) : NULL;
}

/* --- its callers ------------------------------------------------------------------ */

static void
waiter_cancelled(struct grpc_call *call, void *arg)
{
	struct waiter	*w = arg, **pp;

	(void)call;
	/* The caller went away (deadline, reset): the saga goes on. */
	for (pp = &w->run->waiters; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	free(w);
}

void
sync_wait(struct run *r, struct grpc_call *call)
{
	struct waiter *w = util_xcalloc(1, sizeof(*w));

	w->call = call;
	w->run = r;
	w->next = r->waiters;
	r->waiters = w;
	grpc_call_on_cancel(call, waiter_cancelled, w);
}

/*
 * Answers every caller: with the saga pb (the run's own when NULL and no
 * status), with status and msg, or hands them to follow the saga in the
 * store (follow).
 */
static void
waiters_answer(struct run *r, const Saga__V1__Saga *pb, int status,
    const char *msg, int follow)
{
	struct waiter	*w, *next;
	struct saga_pb	 v;
	int		 view = pb == NULL && status == 0 && !follow;

	if (view) {
		saga_pb_view(r->d.s, &v);
		pb = &v.pb;
	}
	for (w = r->waiters; w != NULL; w = next) {
		next = w->next;
		grpc_call_on_cancel(w->call, NULL, NULL);
		if (follow)
			follow_start(r->o, w->call, r->d.s->id);
		else if (pb != NULL)
			grpc_call_reply(w->call, &pb->base);
		else
			grpc_call_finish(w->call, status, msg);
		free(w);
	}
	r->waiters = NULL;
	if (view)
		saga_pb_view_free(&v);
}

/* --- a run's life ----------------------------------------------------------------- */

/* Its first call is about to be made (or never will be): not starting. */
static void
run_started(struct run *r)
{
	if (r->first != NULL) {
		r->first->starting--;
		r->first = NULL;
	}
}

static void
run_free(struct run *r)
{
	struct orch *o = r->o;

	idtable_del(&o->runs_by_id, &r->ent);
	run_started(r);
	free(r->cancel);
	if (r->svc != NULL) {
		TAILQ_REMOVE(&r->svc->waiting, r, qlink);
		r->svc->queued--;
	}
	if (r->timer != NULL)
		event_free(r->timer);
	TAILQ_REMOVE(&o->runs, r, all);
	o->st.running--;
	driver_clear(&r->d);
	free(r);
}

/* The saga ended, or is no longer ours: answer, forget, free when idle. */
static void
run_finish(struct run *r)
{
	r->ended = 1;
	idtable_del(&r->o->runs_by_id, &r->ent);
	if (!r->store_busy && r->call == NULL)
		run_free(r);
}

static void
run_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;

	(void)fd;
	(void)what;
	r->timer_fn(r);
}

static void
run_after(struct run *r, int64_t ms, void (*fn)(struct run *))
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (r->timer == NULL)
		r->timer = evtimer_new(r->o->base, run_timer_cb, r);
	r->timer_fn = fn;
	evtimer_add(r->timer, &tv);
}

/* --- writing ---------------------------------------------------------------------- */

static void
run_write_again(struct run *r)
{
	run_write(r, r->then);
}

/*
 * An operator's Cancel, learnt from a write's answer, a notice or the
 * Cancel call itself: nothing further starts; the compensations follow.
 */
static int
run_cancelled(struct run *r, const char *why)
{
	enum saga_state state = r->d.s->state;

	if (why == NULL && r->cancel == NULL)
		return 0;
	if (why == NULL)
		why = r->cancel;
	if (state == SAGA_STATE_PENDING || state == SAGA_STATE_RUNNING) {
		orch_log(r->o, UTIL_INFO, r->d.s->id, "cancelled: %s", why);
		driver_cancel(&r->d, why, util_now_ms());
		free(r->cancel);
		r->cancel = NULL;
		run_next(r);
		return 1;
	}
	free(r->cancel);
	r->cancel = NULL;
	return 0;
}

static void
run_write_done(enum store_result res, int64_t rev, const char *cancel,
    const char *err, void *arg)
{
	struct run	*r = arg;
	struct orch	*o = r->o;

	r->store_busy = 0;
	if (o->closing)
		return;
	switch (res) {
	case STORE_OK:
		driver_written(&r->d, rev);
		r->retry_ms = ORCH_RETRY_MIN_MS;
		if (run_cancelled(r, cancel))
			return;
		r->then(r);
		return;
	case STORE_CONFLICT:
	case STORE_NOT_FOUND:
		/*
		 * The lease ran out (Redis was away too long) and another
		 * master claimed the saga, or its record is gone: let go.
		 */
		orch_log(o, UTIL_WARN, r->d.s->id, "write refused (%s): "
		    "another master runs the saga now",
		    store_result_name(res));
		r->lost = 1;
		waiters_answer(r, NULL, 0, NULL, 1);
		run_finish(r);
		return;
	default:
		/* Redis away: keep the saga in memory and try again. */
		o->st.store_retries++;
		if (r->retry_ms == ORCH_RETRY_MIN_MS)
			orch_log(o, UTIL_WARN, r->d.s->id, "store write "
			    "failed, retrying: %s", err != NULL ? err :
			    store_result_name(res));
		run_after(r, r->retry_ms, run_write_again);
		r->retry_ms = r->retry_ms * 2 > ORCH_RETRY_MAX_MS ?
		    ORCH_RETRY_MAX_MS : r->retry_ms * 2;
		return;
	}
}

/*
 * The lease is taken at the create and renewed for every saga in flight by
 * orch_sweep.c, not by each write: that keeps a sorted-set update off the
 * hot path. A final write drops it.
 */
static void
run_write(struct run *r, void (*then)(struct run *))
{
	struct driver_write dw;

	r->then = then;
	r->store_busy = 1;
	driver_write(&r->d, &dw);
	dw.w.owner = r->o->owner;
	store_update(r->o->store, &dw.w, run_write_done, r);
	driver_write_free(&dw);
}

/* --- moving a saga on ------------------------------------------------------------- */

static void
run_ended(struct run *r)
{
	struct orch	*o = r->o;
	struct saga	*s = r->d.s;

	switch (s->state) {
	case SAGA_STATE_COMPLETED:	o->st.completed++; break;
	case SAGA_STATE_COMPENSATED:	o->st.compensated++; break;
	default:			o->st.failed++; break;
	}
	if (s->state == SAGA_STATE_FAILED)
		orch_log(o, UTIL_WARN, s->id, "saga FAILED, an operator must "
		    "look: %s", s->error != NULL ? s->error : "");
	trace_saga_end(&r->d);
	waiters_answer(r, NULL, 0, NULL, 0);
	run_finish(r);
}

static void
run_wait_over(struct run *r)
{
	driver_begin(&r->d, util_now_ms());
	run_write(r, sync_call);
}

static void
run_wait_start(struct run *r)
{
	run_after(r, r->d.a.delay_ms, run_wait_over);
}

/* The driver has decided: write it, then act. */
static void
run_next(struct run *r)
{
	switch (r->d.a.kind) {
	case SAGA_ACT_CALL:
		run_write(r, sync_call);
		break;
	case SAGA_ACT_WAIT:
		run_write(r, run_wait_start);
		break;
	case SAGA_ACT_END:
		run_write(r, run_ended);
		break;
	}
}

static void
run_call_done(void *arg, const struct grpc_client_result *res)
{
	struct run *r = arg;

	r->call = NULL;
	if (r->slot != NULL) {
		struct svc *v = r->slot;

		r->slot = NULL;
		admit_release(v);
	}
	if (r->o->closing)
		return;
	trace_call_end(&r->d, res->status, res->message);
	if (res->unsent)
		driver_unreached(&r->d, res->status, res->message,
		    util_now_ms());
	else
		driver_result(&r->d, res->status, res->message, res->data,
		    res->len, util_now_ms());
	run_next(r);
}

/* Makes the call in r->d.a, or queues for a slot of its service. */
void
sync_call(struct run *r)
{
	const struct config_node	*node = driver_node(&r->d, r->d.a.step);
	struct svc			*v = admit_svc(r->o,
					    &r->d.cfg->services[node->service]);
	struct grpc_metadata		 md = { 0 };
	const char			*path;
	uint8_t				*req;
	size_t				 len;
	char				 err[SAGAD_ERRLEN];

	run_started(r);
	if (v->inflight >= v->max_inflight) {
		/* Admission bounded the queue when the saga started. */
		TAILQ_INSERT_TAIL(&v->waiting, r, qlink);
		v->queued++;
		r->svc = v;
		return;
	}
	trace_call_start(&r->d, &r->o->rng);
	if (v->ch == NULL) {
		char why[SAGAD_ERRLEN + 2 * CONFIG_NAME_MAX];

		/* Its TLS files did not load: nothing can reach it. */
		snprintf(why, sizeof(why), "services.%s.tls: %s", v->name,
		    v->tls_err);
		driver_unreached(&r->d, GRPC_STATUS_UNAVAILABLE, why,
		    util_now_ms());
		run_next(r);
		return;
	}
	req = driver_request(&r->d, &path, &len, &md, err, sizeof(err));
	if (req == NULL) {
		/* Nothing could be sent: no retry helps, nothing to undo. */
		driver_unsent(&r->d, err, util_now_ms());
		run_next(r);
		return;
	}
	v->inflight++;
	r->slot = v;
	r->call = grpc_client_call_start(v->ch, path, req, len, &md,
	    node->timeout_ms, run_call_done, r);
	grpc_md_clear(&md);
	free(req);
}

/* --- starting ----------------------------------------------------------------------- */

static void
run_created(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct run	*r = arg;
	struct orch	*o = r->o;
	char		 why[512];

	r->store_busy = 0;
	r->creating = 0;
	if (o->closing) {
		run_started(r);
		return;
	}
	switch (res) {
	case STORE_OK:
		driver_written(&r->d, rec->rev);
		o->st.started++;
		if (!run_cancelled(r, NULL))
			sync_call(r);
		return;
	case STORE_EXISTS:
		/* Known id: run nothing, answer with that saga. */
		if (!orch_same_flow(r->d.s->id, r->d.s->flow, rec->saga->flow,
		    why, sizeof(why)))
			waiters_answer(r, NULL, GRPC_STATUS_ALREADY_EXISTS, why,
			    0);
		else if (rec->saga->state >= SAGA__V1__STATE__STATE_COMPLETED)
			waiters_answer(r, rec->saga, 0, NULL, 0);
		else
			waiters_answer(r, NULL, 0, NULL, 1);
		break;
	default:
		waiters_answer(r, NULL, GRPC_STATUS_UNAVAILABLE, err != NULL ?
		    err : "the saga store is unavailable", 0);
		break;
	}
	run_started(r);
	r->lost = 1;
	run_finish(r);
}

/* A sync Run, checked and admitted: create the saga, its first call started. */
void
sync_start(struct orch *o, struct grpc_call *call,
    const struct config_flow *flow, const char *id,
    const Saga__V1__RunRequest *req)
{
	struct driver_write	 dw;
	struct saga		*s;
	struct run		*r;

	s = saga_new(id, o->cfg, flow, SAGA_MODE_SYNC, util_now_ms());
	orch_context_load(s, req);
	r = run_new(o, o->cfg, flow, s);
	driver_set(&r->d, o->cfg->pod_id, NULL, NULL);
	trace_run(call, &r->d, &o->rng);
	sync_wait(r, call);
	r->first = admit_svc(o, &o->cfg->services[
	    o->cfg->nodes[flow->steps[0]].service]);
	r->first->starting++;

	driver_start(&r->d, util_now_ms());
	driver_write(&r->d, &dw);
	dw.w.pod = o->cfg->pod_id;
	dw.w.owner = o->owner;
	dw.w.lease_ms = o->cfg->redis.lease_ms;
	r->creating = 1;
	r->store_busy = 1;
	store_create(o->store, &dw.w, run_created, r);
	driver_write_free(&dw);
}

/*
 * A sync saga claimed from a master that died (orch_sweep.c): compensated
 * from its last started step, or its compensation resumed.
 */
void
sync_recover(struct orch *o, struct store_saga *rec)
{
	struct saga			*s;
	struct run			*r;
	struct config			*cfg;
	const struct config_flow	*flow;

	if ((r = sync_find(o, rec->saga->id)) != NULL) {
		/* Our own saga, claimed back after Redis was away. */
		r->d.rev = rec->rev;
		return;
	}
	/* Its definition asked for: claimed again when the lease runs out. */
	if ((cfg = orch_saga_config(o, rec->saga, &flow)) == NULL)
		return;
	s = saga_from_pb(rec->saga);
	r = run_new(o, cfg, flow, s);
	r->d.rev = rec->rev;
	r->d.round = rec->round;
	o->st.recovered++;
	if (r->d.flow == NULL || r->d.flow->nsteps != s->nsteps)
		orch_log(o, UTIL_WARN, s->id, "recovered saga of flow %s "
		    "cannot be compensated: the flow changed", s->flow);
	else
		orch_log(o, UTIL_INFO, s->id, "recovering a %s saga whose "
		    "owner died", saga_state_name(s->state));
	driver_set_trace(&r->d, NULL, NULL, NULL);	/* its saga-id trace */
	driver_recover(&r->d, util_now_ms());
	run_next(r);
}

/*
 * Cancel reached this master (the call itself, or a notice on the bus): a
 * call in flight is reset and counts as started, a wait or a queue for a
 * slot ends; a write under way learns it when it lands.
 */
void
sync_cancel(struct orch *o, const char *id, const char *reason)
{
	struct run	*r = sync_find(o, id);
	struct svc	*v;

	if (r == NULL || r->ended || r->lost)
		return;
	if (r->d.s->state != SAGA_STATE_PENDING &&
	    r->d.s->state != SAGA_STATE_RUNNING)
		return;
	if (r->store_busy) {
		free(r->cancel);
		r->cancel = util_xstrdup(reason);
		return;
	}
	if (r->call != NULL) {
		grpc_client_call_cancel(r->call);
		r->call = NULL;
		if ((v = r->slot) != NULL) {
			r->slot = NULL;
			admit_release(v);
		}
	} else if ((v = r->svc) != NULL) {
		TAILQ_REMOVE(&v->waiting, r, qlink);
		v->queued--;
		r->svc = NULL;
	} else if (r->timer != NULL)
		evtimer_del(r->timer);
	run_cancelled(r, reason);
}

/*
 * Retry of a FAILED sync saga: this master drives its compensations again
 * (with a lease of its own), and answers the call once that is recorded.
 */
static void
run_retried(struct run *r)
{
	waiters_answer(r, NULL, 0, NULL, 0);
	sync_call(r);
}

int
sync_retry(struct orch *o, struct grpc_call *call, struct store_saga *rec,
    char *err, size_t errlen)
{
	struct saga			*s;
	struct driver_write		 dw;
	struct run			*r;
	struct config			*cfg;
	const struct config_flow	*flow;

	if (sync_find(o, rec->saga->id) != NULL) {
		snprintf(err, errlen, "the saga is being driven already");
		return -1;
	}
	if ((cfg = orch_saga_config(o, rec->saga, &flow)) == NULL) {
		snprintf(err, errlen, "the definition of flow %s the saga "
		    "started with is being read: try again", rec->saga->flow);
		return -1;
	}
	s = saga_from_pb(rec->saga);
	r = run_new(o, cfg, flow, s);
	r->d.rev = rec->rev;
	r->d.round = rec->round;
	if (r->d.flow == NULL || r->d.flow->nsteps != s->nsteps) {
		snprintf(err, errlen, "flow %s is no longer configured as it "
		    "was when the saga started: compensate by hand and "
		    "Resolve it", s->flow);
		run_finish(r);
		return -1;
	}
	orch_log(o, UTIL_INFO, s->id, "retrying the compensations of a "
	    "FAILED saga");
	driver_set_trace(&r->d, NULL, NULL, NULL);	/* its saga-id trace */
	if (driver_retry(&r->d, util_now_ms()) == SAGA_ACT_END) {
		run_next(r);	/* nothing left to undo: it ends now */
		sync_wait(r, call);
		return 0;
	}
	sync_wait(r, call);
	r->then = run_retried;
	r->store_busy = 1;
	driver_write(&r->d, &dw);
	dw.w.owner = o->owner;
	dw.w.lease_ms = o->cfg->redis.lease_ms;
	store_update(o->store, &dw.w, run_write_done, r);
	driver_write_free(&dw);
	return 0;
}

/* --- stopping ----------------------------------------------------------------------- */

void
sync_close(struct orch *o)
{
	struct run *r;

	TAILQ_FOREACH(r, &o->runs, all) {
		if (r->call != NULL) {
			grpc_client_call_cancel(r->call);
			r->call = NULL;
		}
		if (r->timer != NULL)
			evtimer_del(r->timer);
		waiters_answer(r, NULL, GRPC_STATUS_UNAVAILABLE,
		    "sagad stopped; the saga will be finished by another "
		    "master's recovery", 0);
	}
}

void
sync_free(struct orch *o)
{
	struct run *r;

	while ((r = TAILQ_FIRST(&o->runs)) != NULL)
		run_free(r);
}
