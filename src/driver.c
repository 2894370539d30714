/*
 * driver.c - one saga being driven (see driver.h): the moves both engines
 * make, on top of the rules of src/saga.c, and what each move writes, calls
 * and publishes. No I/O.
 *
 * Events follow one rule whatever the engine: a step's result is an event
 * of that step; the saga's own event ("" step) comes with the write that
 * changes its state; a call's start is an event of its step. A retry's
 * wait writes the failed attempt only, and the next start comes with the
 * write after the wait.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "metrics.h"
#include "step.h"
#include "util.h"

#define DRIVER_FLOW_GONE	"its flow is no longer configured as it was " \
				"when it started: compensate by hand"

void
driver_init(struct driver *d, struct config *cfg,
    const struct config_flow *flow, struct saga *s, uint64_t *rng)
{
	memset(d, 0, sizeof(*d));
	d->cfg = config_ref(cfg);
	d->flow = flow;
	d->s = s;
	d->rng = rng;
}

void
driver_events_clear(struct driver *d)
{
	for (int i = 0; i < d->nevs; i++)
		free(d->evs[i].error);
	d->nevs = 0;
}

void
driver_clear(struct driver *d)
{
	driver_events_clear(d);
	free(d->evs);
	saga_free(d->s);
	config_free(d->cfg);
	free(d->pod);
	free(d->callback);
	free(d->traceparent);
	free(d->tracestate);
	free(d->baggage);
	memset(d, 0, sizeof(*d));
}

static void
set_str(char **p, const char *v)
{
	if (v == NULL || *v == '\0')
		return;
	free(*p);
	*p = util_xstrdup(v);
}

void
driver_set(struct driver *d, const char *pod, const char *callback,
    const char *traceparent)
{
	set_str(&d->pod, pod);
	set_str(&d->callback, callback);
	/* An invalid traceparent is never forwarded (W3C trace context). */
	if (traceparent != NULL && trace_parse(traceparent, (uint8_t[16]){ 0 },
	    (uint8_t[8]){ 0 }, &(uint8_t){ 0 }) == 0)
		set_str(&d->traceparent, traceparent);
}

void
driver_set_trace(struct driver *d, const char *tracestate,
    const char *baggage, const uint8_t *parent)
{
	char tp[TRACE_PARENT_LEN + 1];

	if (d->traceparent != NULL)
		set_str(&d->tracestate, tracestate);
	set_str(&d->baggage, baggage);
	if (d->cfg == NULL || d->cfg->tracing.otlp_endpoint == NULL)
		return;
	if (trace_ctx_from(&d->tr, d->traceparent, parent,
	    d->cfg->tracing.sample_ratio, d->s->id, d->rng)) {
		trace_format(tp, d->tr.trace_id, d->tr.span_id, d->tr.flags);
		free(d->traceparent);
		d->traceparent = util_xstrdup(tp);
	}
}

void
driver_copy_trace(struct driver *d, const struct driver *from)
{
	set_str(&d->tracestate, from->tracestate);
	set_str(&d->baggage, from->baggage);
	d->tr = from->tr;
}

const struct config_node *
driver_node(const struct driver *d, size_t step)
{
	return &d->cfg->nodes[d->flow->steps[step]];
}

/* --- events ----------------------------------------------------------------------- */

static void
event(struct driver *d, const char *step, enum saga_state state,
    const char *error, int attempt, int64_t now_ms)
{
	struct driver_event *e;

	if (d->nevs == d->evcap) {
		d->evcap = d->evcap == 0 ? DRIVER_EVENTS_INLINE : d->evcap * 2;
		d->evs = util_xrealloc(d->evs, (size_t)d->evcap *
		    sizeof(*d->evs));
	}
	e = &d->evs[d->nevs++];
	e->step = step;
	e->state = state;
	e->error = error != NULL ? util_xstrdup(error) : NULL;
	e->attempt = attempt;
	e->ms = now_ms;
}

static void
saga_event(struct driver *d, int64_t now_ms)
{
	event(d, "", d->s->state, d->s->error, 0, now_ms);
}

static void
step_event(struct driver *d, size_t i, int attempt, int64_t now_ms)
{
	const struct saga_step *st = &d->s->steps[i];

	event(d, st->name, st->state, st->error, attempt, now_ms);
}

static void
wrote(struct driver *d, size_t step, int compensate, int attempt)
{
	d->wrote.step = step;
	d->wrote.compensate = compensate;
	d->wrote.attempt = attempt;
}

/* --- moves ------------------------------------------------------------------------ */

/* Starts the call in d->a; a saga event when its state is not before's. */
static void
begin(struct driver *d, enum saga_state before, int64_t now_ms)
{
	d->a.kind = SAGA_ACT_CALL;
	saga_step_begin(d->s, &d->a, now_ms);
	if (d->s->state != before)
		saga_event(d, now_ms);
	event(d, d->s->steps[d->a.step].name, d->s->steps[d->a.step].state,
	    NULL, d->a.attempt, now_ms);
	wrote(d, d->a.step, d->a.compensate, d->a.attempt);
	d->carry = 1;
}

void
driver_begin(struct driver *d, int64_t now_ms)
{
	begin(d, d->s->state, now_ms);
}

void
driver_start(struct driver *d, int64_t now_ms)
{
	d->a = saga_first(d->s);
	begin(d, SAGA_STATE_UNSPECIFIED, now_ms);	/* the saga's event too */
}

void
driver_requeue(struct driver *d)
{
	memset(&d->a, 0, sizeof(d->a));
	d->a.kind = SAGA_ACT_CALL;
	d->a.attempt = 1;
	d->carry = 0;
}

void
driver_queue(struct driver *d, int64_t now_ms)
{
	driver_requeue(d);
	saga_event(d, now_ms);
	wrote(d, d->a.step, 0, 1);
	d->carry = 1;
}

/*
 * After saga.c decided on a call's end: the result's events, and the next
 * call's start in the same write.
 */
static enum saga_action_kind
decided(struct driver *d, const struct saga_action *prev,
    enum saga_state before, int64_t now_ms)
{
	if (prev->compensate && d->s->steps[prev->step].state ==
	    SAGA_STATE_COMPENSATED)
		/* Undone: the step keeps its action's failure, not the event. */
		event(d, d->s->steps[prev->step].name, SAGA_STATE_COMPENSATED,
		    NULL, prev->attempt, now_ms);
	else
		step_event(d, prev->step, prev->attempt, now_ms);
	d->carry = 0;
	switch (d->a.kind) {
	case SAGA_ACT_WAIT:
		/* The failed attempt is recorded; the retry comes later. */
		wrote(d, prev->step, prev->compensate, prev->attempt);
		break;
	case SAGA_ACT_END:
		saga_event(d, now_ms);
		wrote(d, prev->step, prev->compensate, prev->attempt);
		break;
	case SAGA_ACT_CALL:
		if (d->s->state != before)
			saga_event(d, now_ms);
		driver_begin(d, now_ms);
		break;
	}
	return d->a.kind;
}

enum saga_action_kind
driver_result(struct driver *d, int status, const char *msg,
    const uint8_t *reply, size_t len, int64_t now_ms)
{
	struct saga_action	 prev = d->a;
	enum saga_state		 before = d->s->state;
	struct saga_kv		*kv = NULL;
	size_t			 nkv = 0;

	if (d->call_us != 0) {
		metrics_step_call(driver_node(d, prev.step)->name,
		    prev.compensate, status, metrics_now_us() - d->call_us);
		d->call_us = 0;
	}
	if (status == GRPC_STATUS_OK && !prev.compensate &&
	    step_reply(driver_node(d, prev.step), reply, len, &kv,
	    &nkv) == -1) {
		status = GRPC_STATUS_INTERNAL;
		msg = "the reply is not a saga.v1.StepReply";
	}
	d->a = saga_step_end(d->s, d->cfg, d->flow, &prev, status, msg, kv,
	    nkv, now_ms, d->rng);
	step_kv_free(kv, nkv);
	return decided(d, &prev, before, now_ms);
}

enum saga_action_kind
driver_unreached(struct driver *d, int status, const char *msg,
    int64_t now_ms)
{
	struct saga_action	prev = d->a;
	enum saga_state		before = d->s->state;

	d->a = saga_step_unreached(d->s, d->cfg, d->flow, &prev, status, msg,
	    now_ms, d->rng);
	return decided(d, &prev, before, now_ms);
}

enum saga_action_kind
driver_unsent(struct driver *d, const char *why, int64_t now_ms)
{
	struct saga_action	prev = d->a;
	enum saga_state		before = d->s->state;

	d->a = saga_step_unsent(d->s, d->cfg, d->flow, &prev, why, now_ms);
	return decided(d, &prev, before, now_ms);
}

/* After an operator's move: its saga event, and the call that follows. */
static enum saga_action_kind
operated(struct driver *d, int64_t now_ms)
{
	d->carry = 0;
	saga_event(d, now_ms);
	if (d->a.kind == SAGA_ACT_CALL)
		driver_begin(d, now_ms);
	return d->a.kind;
}

enum saga_action_kind
driver_cancel(struct driver *d, const char *reason, int64_t now_ms)
{
	enum saga_state state = d->s->state;

	/* Compensating already, or ended: the move under way goes on. */
	if (state != SAGA_STATE_PENDING && state != SAGA_STATE_RUNNING)
		return d->a.kind;
	d->a = saga_cancel(d->s, d->cfg, d->flow, reason, now_ms);
	return operated(d, now_ms);
}

enum saga_action_kind
driver_retry(struct driver *d, int64_t now_ms)
{
	d->a = saga_retry(d->s, d->cfg, d->flow, now_ms);
	d->round++;
	d->retried = 1;
	return operated(d, now_ms);
}

void
driver_resolve(struct driver *d, const char *note, int64_t now_ms)
{
	struct saga *s = d->s;

	s->state = SAGA_STATE_RESOLVED;
	s->updated_ms = now_ms;
	memset(&d->a, 0, sizeof(d->a));
	d->a.kind = SAGA_ACT_END;
	d->carry = 0;
	/* The saga keeps its error; the event carries the operator's note. */
	event(d, "", s->state, note != NULL && *note ? note : "resolved",
	    0, now_ms);
}

int
driver_flow_gone(struct driver *d, const char *why, int64_t now_ms)
{
	struct saga *s = d->s;

	if (d->flow != NULL && d->flow->nsteps == s->nsteps)
		return 0;
	free(s->error);
	s->error = util_xstrdup(why != NULL ? why : DRIVER_FLOW_GONE);
	s->state = SAGA_STATE_FAILED;
	s->updated_ms = now_ms;
	memset(&d->a, 0, sizeof(d->a));
	d->a.kind = SAGA_ACT_END;
	d->carry = 0;
	saga_event(d, now_ms);
	return 1;
}

enum saga_action_kind
driver_recover(struct driver *d, int64_t now_ms)
{
	if (driver_flow_gone(d, NULL, now_ms))
		return SAGA_ACT_END;
	d->a = saga_recover(d->s, d->cfg, d->flow, now_ms);
	saga_event(d, now_ms);
	if (d->a.kind == SAGA_ACT_CALL)
		driver_begin(d, now_ms);
	else
		wrote(d, d->a.step, d->a.compensate, d->a.attempt);
	return d->a.kind;
}

enum driver_resume
driver_resume(struct driver *d, size_t rec_step, int rec_compensate,
    int rec_attempts, size_t step, int compensate, int redelivered,
    const char *cancel, int64_t now_ms, int *write)
{
	struct saga		*s = d->s;
	enum saga_state		 before = s->state;
	struct saga_action	 a;
	int			 changed, fresh;

	*write = 0;
	d->carry = 0;
	wrote(d, rec_step, rec_compensate, rec_attempts);
	if (SAGA_STATE_IS_FINAL(before)) {
		d->a.kind = SAGA_ACT_END;
		return DRIVER_RESUME_END;
	}
	if (driver_flow_gone(d, NULL, now_ms)) {
		*write = 1;
		return DRIVER_RESUME_END;
	}
	if (cancel != NULL && *cancel != '\0' &&
	    (before == SAGA_STATE_PENDING || before == SAGA_STATE_RUNNING)) {
		struct saga_step *st = &s->steps[rec_step];

		/*
		 * Cancelled: the pending call may have been made (its start is
		 * recorded), so it counts as started and is compensated too.
		 */
		if (rec_attempts > 0 && !rec_compensate &&
		    st->state == SAGA_STATE_PENDING) {
			st->state = SAGA_STATE_RUNNING;
			st->attempts = rec_attempts;
			st->started_ms = now_ms;
		}
		*write = 1;
		return driver_cancel(d, cancel, now_ms) == SAGA_ACT_END ?
		    DRIVER_RESUME_END : DRIVER_RESUME_PASS;
	}
	/*
	 * Only a redelivery of the pending call's own work counts its
	 * recorded start as made: the first delivery is what its publisher
	 * recorded, and work of another call must not use up its attempts.
	 */
	fresh = !(rec_step == step && rec_compensate == compensate &&
	    redelivered);
	a = saga_resume(s, d->cfg, d->flow, rec_step, rec_compensate,
	    rec_attempts, fresh, now_ms, d->rng, &changed);
	d->a = a;
	if (a.kind == SAGA_ACT_CALL && a.step == step &&
	    a.compensate == compensate) {
		if (a.begun) {
			/*
			 * Made as recorded. A saga that read PENDING caught
			 * up with its first start: its events go with the
			 * result's write (or this one, if it must be made).
			 */
			if (s->state != before) {
				saga_event(d, now_ms);
				step_event(d, a.step, a.attempt, now_ms);
			}
			wrote(d, a.step, a.compensate, a.attempt);
			*write = changed;
		} else {
			begin(d, before, now_ms);
			*write = 1;
		}
		d->carry = 0;
		return DRIVER_RESUME_CALL;
	}
	if (a.kind == SAGA_ACT_END) {
		saga_event(d, now_ms);
		*write = 1;
		return DRIVER_RESUME_END;
	}
	if (changed) {
		if (s->state != before)
			saga_event(d, now_ms);
		wrote(d, a.step, a.compensate, a.begun ? a.attempt :
		    a.attempt - 1);
		*write = 1;
	}
	return DRIVER_RESUME_PASS;
}

/* --- what a move writes, calls and publishes -------------------------------------- */

void
driver_write(const struct driver *d, struct driver_write *dw)
{
	struct store_write *w = &dw->w;

	memset(w, 0, sizeof(*w));
	dw->ev = dw->ev_;
	dw->evp = dw->evp_;
	if (d->nevs > DRIVER_EVENTS_INLINE) {
		dw->ev = util_xcalloc((size_t)d->nevs, sizeof(*dw->ev));
		dw->evp = util_xcalloc((size_t)d->nevs, sizeof(*dw->evp));
	}
	saga_pb_view(d->s, &dw->v);
	for (int i = 0; i < d->nevs; i++) {
		Saga__V1__SagaEvent *ev = &dw->ev[i];

		saga__v1__saga_event__init(ev);
		ev->saga_id = d->s->id;
		/* protobuf-c's char *; the event is only packed. */
		ev->step = (char *)(uintptr_t)d->evs[i].step;
		ev->state = (Saga__V1__State)d->evs[i].state;
		ev->error = d->evs[i].error;
		ev->attempt = d->evs[i].attempt;
		ev->unix_ms = d->evs[i].ms;
		dw->evp[i] = ev;
	}
	w->saga = &dw->v.pb;
	w->rev = d->rev;
	w->step = (int)d->wrote.step;
	w->compensate = d->wrote.compensate;
	w->attempt = d->wrote.attempt;
	w->round = d->round;
	w->events = dw->evp;
	w->nevents = (size_t)d->nevs;
}

void
driver_write_free(struct driver_write *dw)
{
	saga_pb_view_free(&dw->v);
	if (dw->ev != dw->ev_) {
		free(dw->ev);
		free(dw->evp);
	}
}

/*
 * Metrics of a write the store took: the saga's creation (the write of a
 * driver that had no revision yet), its end (a saga event in a final
 * state), a Retry. Counted here, where both engines and the operator's
 * calls pass once per write, rather than in each of them.
 */
static void
count_written(const struct driver *d)
{
	const char *flow = d->s->flow;

	if (d->retried)
		metrics_in_flight(flow, 1);
	for (int i = 0; i < d->nevs; i++) {
		const struct driver_event *ev = &d->evs[i];

		if (ev->step[0] != '\0')
			continue;
		if (d->rev == 0 && (ev->state == SAGA_STATE_PENDING ||
		    ev->state == SAGA_STATE_RUNNING))
			metrics_saga_started(flow, (int)d->s->mode);
		else if (SAGA_STATE_IS_FINAL(ev->state))
			metrics_saga_ended(flow, (int)d->s->mode,
			    (int)ev->state, ev->ms - d->s->created_ms);
	}
}

void
driver_written(struct driver *d, int64_t rev)
{
	if (metrics_on())
		count_written(d);
	d->retried = 0;
	d->rev = rev;
	driver_events_clear(d);
}

uint8_t *
driver_request(struct driver *d, const char **path, size_t *len,
    struct grpc_metadata *md, char *err, size_t errlen)
{
	const struct config_node	*node = driver_node(d, d->a.step);
	uint8_t				*req;

	req = step_request(d->s, node, &d->a, len, err, errlen);
	if (req == NULL)
		return NULL;
	if (metrics_on())
		d->call_us = metrics_now_us();
	*path = d->a.compensate ? node->compensate : node->action;
	if (d->tr.on) {
		char tp[TRACE_PARENT_LEN + 1];

		/* The participant's parent is this call's own span. */
		trace_format(tp, d->tr.trace_id, d->tr.call_id, d->tr.flags);
		step_metadata(md, d->s, tp);
	} else
		step_metadata(md, d->s, d->traceparent);
	if (d->tracestate != NULL)
		grpc_md_add(md, "tracestate", d->tracestate,
		    strlen(d->tracestate));
	if (d->baggage != NULL)
		grpc_md_add(md, "baggage", d->baggage, strlen(d->baggage));
	return req;
}

int
driver_work(const struct driver *d, const struct saga_action *a,
    struct driver_work *out, char *err, size_t errlen)
{
	const char		*node = driver_node(d, a->step)->name;
	const char		*pod = d->s->mode == SAGA_MODE_THROTTLING &&
				    d->pod != NULL ? d->pod : "";
	struct work		 w;
	struct work_record	 rec;
	struct saga_pb		 v;

	if (work_subject(out->subject, sizeof(out->subject),
	    d->cfg->nats.subject_prefix, d->s->mode, pod, d->s->flow, node,
	    a->compensate) == -1 ||
	    work_msg_id(out->msg_id, sizeof(out->msg_id), d->s->id, node,
	    a->compensate, d->round) == -1) {
		snprintf(err, errlen, "the subject of step %s is too long",
		    node);
		return -1;
	}
	/*
	 * A saga on an older definition of its flow (a view, flowdef.h): its
	 * node's topic may be gone or another's; the legacy topic calls any.
	 */
	if (d->cfg->parent != NULL) {
		char id[sizeof(out->msg_id)];

		/*
		 * Its own dedupe ids: the same call may have been published
		 * on its node's topic, which must not swallow this one.
		 */
		(void)work_legacy_subject(out->subject, sizeof(out->subject),
		    d->cfg->nats.subject_prefix);
		snprintf(id, sizeof(id), "%s", out->msg_id);
		if (snprintf(out->msg_id, sizeof(out->msg_id), "L:%s", id) >=
		    (int)sizeof(out->msg_id)) {
			snprintf(err, errlen, "the dedupe id of step %s is too "
			    "long", node);
			return -1;
		}
	}
	memset(&w, 0, sizeof(w));
	w.saga_id = d->s->id;
	w.flow = d->s->flow;
	w.step = (uint32_t)a->step;
	w.compensate = a->compensate;
	w.pod = (char *)(uintptr_t)pod;
	w.mode = d->s->mode;
	w.traceparent = d->traceparent;
	w.tracestate = d->tracestate;
	w.baggage = d->baggage;
	if (d->tr.on && d->tr.has_parent) {
		memcpy(w.trace_parent, d->tr.parent_id, sizeof(w.trace_parent));
		w.has_trace_parent = 1;
	}
	w.round = d->round;
	if (d->carry && d->wrote.step == a->step &&
	    d->wrote.compensate == a->compensate) {
		saga_pb_view(d->s, &v);
		rec.rev = d->rev;
		rec.saga = &v.pb;
		rec.step = (uint32_t)a->step;
		rec.compensate = a->compensate;
		rec.attempt = d->wrote.attempt;
		rec.pod = d->pod != NULL ? d->pod : "";
		rec.callback = d->callback != NULL ? d->callback : "";
		w.record = &rec;
	}
	out->buf = work_pack(&w, &out->len);
	if (w.record != NULL)
		saga_pb_view_free(&v);
	return 0;
}
