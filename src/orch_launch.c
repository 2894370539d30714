/*
 * orch_launch.c - async and throttling Runs (see orch_int.h). A launch
 * creates the saga PENDING, publishes its first work and answers once the
 * broker holds it (async); a throttling Run's callers are held in the
 * saga's hold until a worker reports its end on saga.done.<pod_id>, or the
 * poll of the store finds it ended (a notice lost while the bus was away).
 * The create takes a launch lease (ORCH_LAUNCH_LEASE_MS): a bus that does
 * not confirm the first work (a timeout says "unknown", not "no") leaves
 * the saga PENDING, accepted, and a sweeper queues its first work again
 * once the lease runs out with the saga still PENDING (orch_sweep.c), as
 * it does for a create that Redis applied after its caller gave up. Only a
 * definite no (not sent, no stream for it, the broker refused it) writes
 * the saga FAILED "never queued"; a Run with the same id queues it again.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "grpc/grpc.h"
#include "grpc/server.h"
#include "orch_int.h"
#include "trace_saga.h"
#include "util.h"
#include "work.h"

/* --- holds: throttling calls waiting for their saga's end --- */

static struct flowq *
flowq_get(struct orch *o, const char *name)
{
	struct flowq *q;

	for (q = o->flowqs; q != NULL; q = q->next)
		if (strcmp(q->name, name) == 0)
			return q;
	q = util_xcalloc(1, sizeof(*q));
	q->name = util_xstrdup(name);
	q->next = o->flowqs;
	o->flowqs = q;
	return q;
}

struct hold *
launch_find_hold(struct orch *o, const char *id)
{
	struct idtable_entry *e = idtable_find(&o->holds_by_id, id);

	return e != NULL ? IDTABLE_ITEM(e, struct hold, ent) : NULL;
}

static struct hold *
hold_new(struct orch *o, const char *id, const char *flow)
{
	struct hold *h = util_xcalloc(1, sizeof(*h));

	h->o = o;
	h->id = util_xstrdup(id);
	h->fq = flowq_get(o, flow);
	h->fq->held++;
	h->ent.id = h->id;
	idtable_add(&o->holds_by_id, &h->ent);
	TAILQ_INSERT_TAIL(&o->holds, h, all);
	o->st.held++;
	return h;
}

static void
holder_cancelled(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	struct holder	*c = arg, **pp;

	/* The caller went away (deadline, reset): the saga goes on. */
	for (pp = &c->h->callers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->h->o->nholders--;
	free(c);
}

void
launch_wait(struct hold *h, struct grpc_call *call)
{
	struct holder *c = util_xcalloc(1, sizeof(*c));

	c->call = call;
	c->h = h;
	c->next = h->callers;
	h->callers = c;
	h->o->nholders++;
	grpc_call_on_cancel(call, holder_cancelled, c);
}

/* Answers every caller: with pb, or with status and msg. */
static void
hold_answer(struct hold *h, const Saga__V1__Saga *pb, int status,
    const char *msg)
{
	struct holder *c, *next;

	for (c = h->callers; c != NULL; c = next) {
		next = c->next;
		grpc_call_on_cancel(c->call, NULL, NULL);
		if (pb != NULL)
			grpc_call_reply(c->call, &pb->base);
		else
			grpc_call_finish(c->call, status, msg);
		h->o->nholders--;
		free(c);
	}
	h->callers = NULL;
}

/* Its callers follow the saga through the store (a sync saga). */
static void
hold_to_join(struct hold *h)
{
	struct holder *c, *next;

	for (c = h->callers; c != NULL; c = next) {
		next = c->next;
		grpc_call_on_cancel(c->call, NULL, NULL);
		follow_start(h->o, c->call, h->id);
		h->o->nholders--;
		free(c);
	}
	h->callers = NULL;
}

static void
hold_free(struct hold *h)
{
	struct orch	*o = h->o;

	hold_answer(h, NULL, GRPC_STATUS_UNAVAILABLE, "sagad stopped");
	idtable_del(&o->holds_by_id, &h->ent);
	o->st.held--;
	h->fq->held--;
	TAILQ_REMOVE(&o->holds, h, all);
	free(h->id);
	free(h);
}

static void
hold_got(enum store_result res, struct store_saga *rec,
    const char *err SAGAD_UNUSED, void *arg)
{
	struct hold	*h = arg;

	h->getting = 0;
	if (h->o->closing || h->launching > 0)
		return;
	if (res == STORE_OK && rec->saga->state >=
	    SAGA__V1__STATE__STATE_COMPLETED) {
		hold_answer(h, rec->saga, 0, NULL);
		hold_free(h);
	} else if (res == STORE_NOT_FOUND) {
		hold_answer(h, NULL, GRPC_STATUS_NOT_FOUND,
		    "the saga is no longer in the store (expired?)");
		hold_free(h);
	}
	/* Not ended yet, or Redis away: the next poll looks again. */
}

static void
hold_check(struct hold *h)
{
	if (h->getting || h->launching || !store_is_up(h->o->store))
		return;
	h->getting = 1;
	store_get(h->o->store, h->id, hold_got, h);
}

/* saga.done.<pod_id>: a worker ended a saga whose calls this pod holds. */
static void
done_heard(struct bus_listener *l SAGAD_UNUSED,
    const char *subject SAGAD_UNUSED, const void *data,
    size_t len, void *arg)
{
	struct orch	*o = arg;
	struct hold	*h;
	char		 id[STORE_ID_MAX + 1];
	int		 state;

	if (o->closing || work_done_unpack(data, len, id, sizeof(id),
	    &state) == -1)
		return;
	if ((h = launch_find_hold(o, id)) != NULL)
		hold_check(h);
}

/* Every ORCH_POLL_MS: the held sagas whose end notice may have been lost. */
static void
holds_poll(struct orch *o)
{
	struct hold	*h;
	size_t		 n;

	for (n = 0; n < ORCH_POLL_BATCH && n < o->holds_by_id.n; n++) {
		h = TAILQ_FIRST(&o->holds);
		TAILQ_REMOVE(&o->holds, h, all);
		TAILQ_INSERT_TAIL(&o->holds, h, all);
		hold_check(h);
	}
}

/* --- launches ------------------------------------------------------------------------ */

static void
launch_cancelled(struct grpc_call *call, void *arg)
{
	struct launch *l = arg;

	(void)call;
	l->call = NULL;		/* the saga goes on */
}

static void
launch_free(struct launch *l)
{
	struct orch *o = l->o;

	if (l->call != NULL) {
		grpc_call_on_cancel(l->call, NULL, NULL);
		grpc_call_finish(l->call, GRPC_STATUS_UNAVAILABLE,
		    "sagad stopped");
	}
	if (l->h != NULL)
		l->h->launching--;
	TAILQ_REMOVE(&o->launches, l, all);
	o->nlaunches--;
	driver_clear(&l->d);
	saga_free(l->failed);
	free(l->why);
	free(l);
}

/* Its callers get pb, or status and msg; then it is gone. */
static void
launch_answer(struct launch *l, const Saga__V1__Saga *pb, int status,
    const char *msg)
{
	if (l->call != NULL) {
		grpc_call_on_cancel(l->call, NULL, NULL);
		if (pb != NULL)
			grpc_call_reply(l->call, &pb->base);
		else
			grpc_call_finish(l->call, status, msg);
		l->call = NULL;
	}
	if (l->h != NULL) {
		struct hold *h = l->h;

		hold_answer(h, pb, status, msg);
		l->h = NULL;
		if (--h->launching == 0)
			hold_free(h);
	}
	launch_free(l);
}

/* A throttling saga: its callers wait in its hold. */
static void
launch_hold(struct launch *l)
{
	if (l->h == NULL) {
		if ((l->h = launch_find_hold(l->o, l->d.s->id)) == NULL)
			l->h = hold_new(l->o, l->d.s->id, l->d.s->flow);
		l->h->launching++;
	}
	if (l->call != NULL) {
		grpc_call_on_cancel(l->call, NULL, NULL);
		launch_wait(l->h, l->call);
		l->call = NULL;
	}
}

/*
 * One write of the launch's saga with its saga-level event. The first call
 * counts as started by the write that queues it, as a sync create records
 * it, but in the record alone: the saga reads PENDING until its first
 * result (saga_resume catches it up). So the worker that gets the work
 * makes the call without a write first.
 */
static void
launch_write(struct launch *l, int create, store_saga_cb *ccb,
    store_rev_cb *ucb)
{
	struct driver_write dw;

	driver_write(&l->d, &dw);
	dw.w.pod = l->d.pod;
	dw.w.owner = l->o->owner;
	dw.w.callback = l->d.callback;
	/* Until its first result: then the bus drives it (orch_sweep.c). */
	dw.w.lease_ms = ORCH_LAUNCH_LEASE_MS(l->o->cfg);
	dw.w.reopen = l->reopen;
	if (create)
		store_create(l->o->store, &dw.w, ccb, l);
	else
		store_update(l->o->store, &dw.w, ucb, l);
	driver_write_free(&dw);
}

static void
launch_unqueued_written(enum store_result res, int64_t rev,
    const char *cancel, const char *err, void *arg)
{
	struct launch	*l = arg;
	char		 msg[512];

	(void)res;
	(void)rev;
	(void)cancel;
	(void)err;
	if (l->o->closing) {
		launch_free(l);
		return;
	}
	snprintf(msg, sizeof(msg), "the message bus (NATS) did not accept "
	    "the saga: %s", l->why);
	launch_answer(l, NULL, GRPC_STATUS_UNAVAILABLE, msg);
}

/*
 * The first work is not in the stream, for sure (not sent, or refused):
 * nothing will ever run the saga. It is written FAILED with a sentence
 * saying so; nothing of it ever ran, so a Run with the same id starts it
 * again.
 */
static void
launch_unqueued(struct launch *l, const char *why)
{
	struct saga	*s = l->d.s;
	char		 msg[512];

	l->why = util_xstrdup(why != NULL ? why : "unknown error");
	orch_log(l->o, UTIL_WARN, s->id, "%s saga not queued: %s",
	    config_mode_name(s->mode), l->why);
	snprintf(msg, sizeof(msg), "never queued (NATS: %s); a Run with the "
	    "same id starts it again", l->why);
	free(s->error);
	s->error = util_xstrdup(msg);
	s->state = SAGA_STATE_FAILED;
	s->updated_ms = util_now_ms();
	driver_events_clear(&l->d);
	driver_queue(&l->d, s->updated_ms);
	launch_write(l, 0, NULL, launch_unqueued_written);
}

/* --- first works the bus did not confirm ------------------------------------------ */

static void
unconfirmed_free(struct unconfirmed *u)
{
	if (u->o != NULL) {
		TAILQ_REMOVE(&u->o->republish, u, all);
		u->o->nrepublish--;
	}
	free(u->subject);
	free(u->msg_id);
	free(u->buf);
	free(u);
}

static void
republished(struct bus *bus, const struct bus_pub_result *res, void *arg)
{
	struct unconfirmed *u = arg;

	(void)bus;
	u->busy = 0;
	if (u->o == NULL || u->o->closing || res->error == NULL ||
	    res->refused || ++u->tries >= ORCH_REPUBLISH_TRIES) {
		unconfirmed_free(u);	/* stored, or the sweeper's now */
		return;
	}
	u->next_ms = util_mono_ms() + (1000LL << u->tries);
}

/* Keeps the first work of l to publish again until the bus confirms it. */
static void
unconfirmed_add(struct launch *l)
{
	struct orch		*o = l->o;
	struct driver_work	 dw;
	struct unconfirmed	*u;
	char			 err[SAGAD_ERRLEN];

	if (o->nrepublish >= ORCH_REPUBLISH_MAX ||
	    driver_work(&l->d, &l->d.a, &dw, err, sizeof(err)) == -1)
		return;
	u = util_xcalloc(1, sizeof(*u));
	u->o = o;
	u->subject = util_xstrdup(dw.subject);
	u->msg_id = util_xstrdup(dw.msg_id);
	u->buf = dw.buf;
	u->len = dw.len;
	u->next_ms = util_mono_ms() + 1000;
	TAILQ_INSERT_TAIL(&o->republish, u, all);
	o->nrepublish++;
}

static void
republish_due(struct orch *o, int64_t now)
{
	struct unconfirmed	*u, *next;
	char			 err[SAGAD_ERRLEN];

	if (o->bus == NULL || !bus_is_connected(o->bus))
		return;
	for (u = TAILQ_FIRST(&o->republish); u != NULL; u = next) {
		next = TAILQ_NEXT(u, all);
		if (u->busy || now < u->next_ms)
			continue;
		u->busy = 1;
		if (bus_publish(o->bus, u->subject, u->buf, u->len, u->msg_id,
		    republished, u, err, sizeof(err)) == -1) {
			u->busy = 0;
			u->next_ms = now + 1000;
		}
	}
}

/*
 * The first work is queued, or may be: the saga is accepted either way.
 * One the bus did not confirm (refused, timed out, or not connected) is
 * queued again by a sweeper when its launch lease runs out with the saga
 * still PENDING; its callers get it PENDING now (throttling ones stay held).
 */
static void
launch_accepted(struct launch *l, const char *unconfirmed)
{
	struct orch	*o = l->o;
	struct saga_pb	 v;

	if (unconfirmed != NULL) {
		unsigned	held;
		enum util_level	lv = orch_burst_level(&o->unconfirmed, &held);

		unconfirmed_add(l);
		orch_log(o, lv, l->d.s->id, "the bus did not confirm the first "
		    "work of this %s saga (%s): it is published again, and "
		    "queued again within %d s if it was lost (%u more like it "
		    "since the last warning)",
		    config_mode_name(l->d.s->mode), unconfirmed,
		    ORCH_LAUNCH_LEASE_MS(o->cfg) / 1000 + 1, held);
	} else
		o->st.queued++;
	if (l->d.s->mode == SAGA_MODE_THROTTLING) {
		/* Held: done_heard or the poll answers. */
		launch_free(l);
		return;
	}
	saga_pb_view(l->d.s, &v);
	launch_answer(l, &v.pb, 0, NULL);
	saga_pb_view_free(&v);
}

static void
launch_published(struct bus *bus, const struct bus_pub_result *res,
    void *arg)
{
	struct launch *l = arg;

	(void)bus;
	if (l->o->closing) {
		launch_free(l);
		return;
	}
	if (res->error != NULL && res->refused)
		launch_unqueued(l, res->error);		/* a definite no */
	else
		launch_accepted(l, res->error);		/* yes, or unknown */
}

/*
 * Queues the saga's first step: work for its first node's workers. After
 * the create it carries the record the create wrote, so the worker that
 * gets it needs no read (see work.h); a requeue does not.
 */
static void
launch_publish(struct launch *l)
{
	struct driver_work	dw;
	char			err[SAGAD_ERRLEN];

	if (driver_work(&l->d, &l->d.a, &dw, err, sizeof(err)) == -1) {
		launch_unqueued(l, err);
		return;
	}
	/* Not even sent: a definite no. */
	if (l->o->bus == NULL || !bus_is_connected(l->o->bus))
		launch_unqueued(l, "not connected");
	else if (bus_publish(l->o->bus, dw.subject, dw.buf, dw.len,
	    dw.msg_id, launch_published, l, err, sizeof(err)) == -1)
		launch_unqueued(l, err);
	free(dw.buf);
}

/*
 * A sweeper claimed the launch lease of a saga still PENDING (orch_sweep.c):
 * its first work may never have been queued, or its create was applied
 * after its Run was answered. Queue that work again, nobody waiting; the
 * dedupe id drops it if the first is still in the stream.
 */
void
launch_requeue(struct orch *o, struct store_saga *rec)
{
	const Saga__V1__Saga		*pb = rec->saga;
	const struct config_flow	*flow;
	enum saga_mode			 mode = (enum saga_mode)pb->mode;
	struct launch			*l;
	struct config			*cfg;
	enum util_level			 lv;
	unsigned			 held;

	if (pb->state != SAGA__V1__STATE__STATE_PENDING || o->closing)
		return;
	/* Its definition asked for: the next sweep finds it. */
	if ((cfg = orch_saga_config(o, pb, &flow)) == NULL)
		return;
	if (flow == NULL || flow->nsteps != pb->n_steps) {
		orch_log(o, UTIL_WARN, pb->id, "a PENDING saga of flow %s "
		    "cannot be queued again: its flow changed", pb->flow);
		return;
	}
	lv = orch_burst_level(&o->requeued, &held);
	orch_log(o, lv, pb->id, "its launch lease ran out with the saga "
	    "PENDING: queueing its first work again (%u more like it since "
	    "the last warning)", held);
	l = util_xcalloc(1, sizeof(*l));
	l->o = o;
	driver_init(&l->d, cfg, flow, saga_from_pb(pb), &o->rng);
	driver_set(&l->d, mode == SAGA_MODE_THROTTLING && rec->pod[0] != '\0' ?
	    rec->pod : o->cfg->pod_id, rec->callback, NULL);
	l->d.rev = rec->rev;
	l->d.round = rec->round;
	TAILQ_INSERT_TAIL(&o->launches, l, all);
	o->nlaunches++;
	driver_requeue(&l->d);
	launch_publish(l);
}

static int
never_started(const Saga__V1__Saga *pb)
{
	for (size_t i = 0; i < pb->n_steps; i++)
		if (pb->steps[i]->attempts != 0 || pb->steps[i]->state !=
		    SAGA__V1__STATE__STATE_PENDING)
			return 0;
	return 1;
}

/*
 * An update of a launch's saga answered: 1 when it went through (the
 * driver has the new revision); else its callers got why, and it is gone.
 */
static int
launch_written(struct launch *l, enum store_result res, int64_t rev,
    const char *err)
{
	if (l->o->closing) {
		launch_free(l);
		return 0;
	}
	if (res != STORE_OK) {
		/* Another Run or Retry moved it first, or Redis is away. */
		launch_answer(l, NULL, res == STORE_CONFLICT ?
		    GRPC_STATUS_ABORTED : GRPC_STATUS_UNAVAILABLE,
		    res == STORE_CONFLICT ? "the saga changed meanwhile: look "
		    "at it again" : err);
		return 0;
	}
	driver_written(&l->d, rev);
	return 1;
}

static void
launch_rearmed(enum store_result res, int64_t rev, const char *cancel,
    const char *err, void *arg)
{
	struct launch *l = arg;

	(void)cancel;
	if (!launch_written(l, res, rev, err))
		return;
	l->d.carry = 0;
	launch_publish(l);
}

/* Run of a known id: run nothing new, answer with that saga. */
static void
launch_exists(struct launch *l, struct store_saga *rec)
{
	const Saga__V1__Saga		*pb = rec->saga;
	const struct config_flow	*flow;
	struct config			*cfg;
	enum saga_mode			 mode = (enum saga_mode)pb->mode;
	int				 fin = pb->state >=
					    SAGA__V1__STATE__STATE_COMPLETED;

	cfg = orch_saga_config(l->o, pb, &flow);
	if (cfg == NULL)
		flow = NULL;
	if (mode != SAGA_MODE_SYNC && never_started(pb) && flow != NULL &&
	    flow->nsteps == pb->n_steps && (!fin ||
	    pb->state == SAGA__V1__STATE__STATE_FAILED)) {
		/*
		 * Nothing of it ever ran: it was never queued (FAILED, see
		 * launch_unqueued) or its first work may be lost. Queue it
		 * again, in its own mode; the message id dedupes a first
		 * work that is still there.
		 */
		struct driver	d;

		driver_init(&d, cfg, flow, saga_from_pb(pb), &l->o->rng);
		driver_set(&d, mode == SAGA_MODE_THROTTLING ? (fin ||
		    rec->pod[0] == '\0' ? l->d.cfg->pod_id : rec->pod) :
		    l->d.pod, l->d.callback, l->d.traceparent);
		driver_copy_trace(&d, &l->d);
		driver_clear(&l->d);
		l->d = d;
		l->d.rev = rec->rev;
		if (mode == SAGA_MODE_THROTTLING)
			launch_hold(l);
		if (!fin) {
			driver_requeue(&l->d);
			launch_publish(l);
			return;
		}
		orch_log(l->o, UTIL_INFO, pb->id, "restarting a saga that "
		    "was never queued");
		free(l->d.s->error);
		l->d.s->error = NULL;
		l->d.s->state = SAGA_STATE_PENDING;
		l->d.s->updated_ms = util_now_ms();
		l->reopen = 1;
		driver_queue(&l->d, l->d.s->updated_ms);
		launch_write(l, 0, NULL, launch_rearmed);
		return;
	}
	if (fin || mode == SAGA_MODE_ASYNC) {
		launch_answer(l, pb, 0, NULL);
		return;
	}
	if (mode == SAGA_MODE_SYNC) {
		/* Run by a master: follow it in the store. */
		if (l->call != NULL) {
			grpc_call_on_cancel(l->call, NULL, NULL);
			follow_start(l->o, l->call, pb->id);
			l->call = NULL;
		}
		if (l->h != NULL) {
			struct hold *h = l->h;

			hold_to_join(h);
			l->h = NULL;
			if (--h->launching == 0)
				hold_free(h);
		}
		launch_free(l);
		return;
	}
	/* A throttling saga under way: held until it ends, as its first. */
	launch_hold(l);
	launch_free(l);
}

static void
launch_created(enum store_result res, struct store_saga *rec,
    const char *err, void *arg)
{
	struct launch	*l = arg;
	char		 why[512];

	if (l->o->closing) {
		launch_free(l);
		return;
	}
	switch (res) {
	case STORE_OK:
		driver_written(&l->d, rec->rev);
		l->o->st.started++;
		launch_publish(l);
		break;
	case STORE_EXISTS:
		if (!orch_same_flow(l->d.s->id, l->d.s->flow, rec->saga->flow,
		    why, sizeof(why)))
			launch_answer(l, NULL, GRPC_STATUS_ALREADY_EXISTS, why);
		else
			launch_exists(l, rec);
		break;
	default:
		launch_answer(l, NULL, GRPC_STATUS_UNAVAILABLE, err != NULL ?
		    err : "the saga store is unavailable");
		break;
	}
}

/*
 * An async or throttling Run, checked: refuse at once what cannot be
 * queued, then create the saga and queue its first step.
 */
void
launch_start(struct orch *o, struct grpc_call *call,
    const struct config_flow *flow, enum saga_mode mode, const char *id,
    const Saga__V1__RunRequest *req)
{
	struct launch		*l;
	struct flowq		*q;
	char			 err[256];

	if (o->bus == NULL || !bus_is_connected(o->bus)) {
		snprintf(err, sizeof(err), "the message bus (NATS) is "
		    "unavailable: %s sagas are refused until it is back",
		    config_mode_name(mode));
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, err);
		return;
	}
	if (mode == SAGA_MODE_THROTTLING) {
		q = flowq_get(o, flow->name);
		if (q->held >= (size_t)flow->max_queue) {
			o->st.shed++;
			snprintf(err, sizeof(err), "flow %s: %zu sagas are "
			    "queued on this pod (max_queue %d)", flow->name,
			    q->held, flow->max_queue);
			grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    err);
			return;
		}
	}
	l = util_xcalloc(1, sizeof(*l));
	l->o = o;
	driver_init(&l->d, o->cfg, flow, saga_new(id, o->cfg, flow, mode,
	    util_now_ms()), &o->rng);
	orch_context_load(l->d.s, req);
	driver_set(&l->d, o->cfg->pod_id, req->callback_url, NULL);
	trace_run(call, &l->d, &o->rng);
	TAILQ_INSERT_TAIL(&o->launches, l, all);
	o->nlaunches++;
	l->call = call;
	grpc_call_on_cancel(call, launch_cancelled, l);
	if (mode == SAGA_MODE_THROTTLING)
		launch_hold(l);
	driver_queue(&l->d, l->d.s->created_ms);
	launch_write(l, 1, launch_created, NULL);
}

/* --- Retry of a FAILED async or throttling saga ------------------------------------- */

static void
retry_reverted(enum store_result res, int64_t rev, const char *cancel,
    const char *err, void *arg)
{
	struct launch	*l = arg;
	char		 msg[SAGAD_ERRLEN];

	(void)rev;
	(void)cancel;
	snprintf(msg, sizeof(msg), "the message bus did not take the "
	    "compensation (%s); the saga %s FAILED", l->why, res == STORE_OK ?
	    "stays" : "may read COMPENSATING but is");
	if (res != STORE_OK)
		orch_log(l->o, UTIL_WARN, l->d.s->id, "retry: the saga could "
		    "not be written back FAILED: %s", err != NULL ? err :
		    store_result_name(res));
	launch_answer(l, NULL, GRPC_STATUS_UNAVAILABLE, msg);
}

/* Its compensation's work was not queued: back to FAILED as it was. */
static void
retry_unqueued(struct launch *l, const char *why)
{
	struct driver_write dw;

	l->why = util_xstrdup(why);
	saga_free(l->d.s);
	l->d.s = l->failed;
	l->failed = NULL;
	driver_events_clear(&l->d);
	driver_write(&l->d, &dw);
	store_update(l->o->store, &dw.w, retry_reverted, l);
	driver_write_free(&dw);
}

static void
retry_published(struct bus *bus, const struct bus_pub_result *res,
    void *arg)
{
	struct launch	*l = arg;
	struct saga_pb	 v;

	(void)bus;
	if (l->o->closing) {
		launch_free(l);
		return;
	}
	if (res->error != NULL) {
		retry_unqueued(l, res->error);
		return;
	}
	saga_pb_view(l->d.s, &v);
	launch_answer(l, &v.pb, 0, NULL);
	saga_pb_view_free(&v);
}

static void
retry_written(enum store_result res, int64_t rev, const char *cancel,
    const char *err, void *arg)
{
	struct launch		*l = arg;
	struct driver_work	 dw;
	char			 perr[SAGAD_ERRLEN];
	struct saga_pb		 v;

	(void)cancel;
	if (!launch_written(l, res, rev, err))
		return;
	if (l->d.a.kind == SAGA_ACT_END) {
		/* Nothing was left to undo: it ended with this write. */
		saga_pb_view(l->d.s, &v);
		launch_answer(l, &v.pb, 0, NULL);
		saga_pb_view_free(&v);
		return;
	}
	if (driver_work(&l->d, &l->d.a, &dw, perr, sizeof(perr)) == -1) {
		retry_unqueued(l, perr);
		return;
	}
	if (l->o->bus == NULL || !bus_is_connected(l->o->bus))
		retry_unqueued(l, "not connected");
	else if (bus_publish(l->o->bus, dw.subject, dw.buf, dw.len,
	    dw.msg_id, retry_published, l, perr, sizeof(perr)) == -1)
		retry_unqueued(l, perr);
	free(dw.buf);
}

/*
 * Retry of a FAILED async or throttling saga: its compensations are written
 * as started again and their work queued for the workers (a throttling
 * saga's on this pod); the caller gets the saga COMPENSATING. If the bus
 * does not take the work, the saga is written back FAILED as it was.
 */
void
launch_retry(struct orch *o, struct grpc_call *call, struct store_saga *rec)
{
	struct driver_write	 dw;
	struct launch		*l;
	struct saga		*s = saga_from_pb(rec->saga);
	const struct config_flow *flow;
	struct config		*cfg = orch_saga_config(o, rec->saga, &flow);

	if (cfg == NULL) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "the "
		    "definition of the flow the saga started with is being "
		    "read: try again");
		saga_free(s);
		return;
	}
	if (flow == NULL || flow->nsteps != s->nsteps) {
		grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
		    "its flow is no longer configured as it was when the saga "
		    "started: compensate by hand and Resolve it");
		saga_free(s);
		return;
	}
	if (o->bus == NULL || !bus_is_connected(o->bus)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "the message "
		    "bus is unavailable: the workers cannot be reached");
		saga_free(s);
		return;
	}
	l = util_xcalloc(1, sizeof(*l));
	l->o = o;
	l->failed = saga_dup(s);
	driver_init(&l->d, cfg, flow, s, &o->rng);
	l->d.rev = rec->rev;
	l->d.round = rec->round;
	driver_set(&l->d, o->cfg->pod_id, rec->callback, NULL);
	driver_set_trace(&l->d, NULL, NULL, NULL);	/* its saga-id trace */
	TAILQ_INSERT_TAIL(&o->launches, l, all);
	o->nlaunches++;
	l->call = call;
	grpc_call_on_cancel(call, launch_cancelled, l);
	orch_log(o, UTIL_INFO, s->id, "retrying the compensations of a "
	    "FAILED %s saga", config_mode_name(s->mode));
	driver_retry(&l->d, util_now_ms());
	driver_write(&l->d, &dw);
	dw.w.pod = l->d.pod;
	dw.w.owner = o->owner;
	store_update(o->store, &dw.w, retry_written, l);
	driver_write_free(&dw);
}

/* --- the pod's periodic work and its end --------------------------------------------- */

/*
 * Listens on saga.done.<pod_id> once the bus is there, polls the held
 * sagas, and answers held calls UNAVAILABLE once a drain has lasted
 * shutdown_timeout_ms.
 */
void
launch_cron(struct orch *o, int64_t now)
{
	char err[SAGAD_ERRLEN];

	if (o->bus != NULL && o->done_l == NULL) {
		o->done_l = bus_listen(o->bus, o->done_subject, done_heard, o,
		    err, sizeof(err));
		if (o->done_l == NULL && !o->listen_failed) {
			o->listen_failed = 1;
			orch_log(o, UTIL_WARN, NULL, "cannot listen on %s, "
			    "retrying: %s", o->done_subject, err);
		}
	}
	if (o->bus != NULL && o->cancel_l == NULL && bus_is_connected(o->bus))
		o->cancel_l = bus_listen(o->bus, o->cancel_subject,
		    operate_cancel_heard, o, err, sizeof(err));
	if (now - o->last_poll_ms >= ORCH_POLL_MS) {
		o->last_poll_ms = now;
		holds_poll(o);
	}
	republish_due(o, now);
	if (o->draining && (o->nholders > 0 || o->nlaunches > 0) &&
	    now - o->drain_ms >= o->cfg->shutdown_timeout_ms)
		launch_give_up(o);
}

/* Throttling callers still held when the drain time is up. */
void
launch_give_up(struct orch *o)
{
	struct hold	*h;
	struct launch	*l;
	const char	*msg = "sagad is stopping: the saga goes on "
			    "(Get shows it)";

	TAILQ_FOREACH(h, &o->holds, all)
		hold_answer(h, NULL, GRPC_STATUS_UNAVAILABLE, msg);
	TAILQ_FOREACH(l, &o->launches, all)
		if (l->call != NULL) {
			grpc_call_on_cancel(l->call, NULL, NULL);
			grpc_call_finish(l->call, GRPC_STATUS_UNAVAILABLE,
			    msg);
			l->call = NULL;
		}
}

void
launch_close(struct orch *o)
{
	if (o->done_l != NULL) {
		bus_listener_close(o->done_l);
		o->done_l = NULL;
	}
	if (o->cancel_l != NULL) {
		bus_listener_close(o->cancel_l);
		o->cancel_l = NULL;
	}
	launch_give_up(o);
}

void
launch_free_all(struct orch *o)
{
	struct unconfirmed *u;
	struct launch	*l;
	struct hold	*h;
	struct flowq	*q;

	while ((l = TAILQ_FIRST(&o->launches)) != NULL)
		launch_free(l);
	while ((u = TAILQ_FIRST(&o->republish)) != NULL) {
		TAILQ_REMOVE(&o->republish, u, all);
		o->nrepublish--;
		u->o = NULL;
		if (!u->busy)
			unconfirmed_free(u);	/* else its answer frees it */
	}
	while ((h = TAILQ_FIRST(&o->holds)) != NULL) {
		h->launching = 0;
		hold_free(h);
	}
	while ((q = o->flowqs) != NULL) {
		o->flowqs = q->next;
		free(q->name);
		free(q);
	}
}
