/*
 * orch.c - saga.v1.Orchestrator and the sync-mode engine (see orch.h).
 *
 * A sync saga lives in a struct run on the master's loop. Each move of the
 * saga is: ask saga.c what comes next, write the new state to the store (a
 * revision-checked write that also appends its events and extends the
 * lease), and only then act: call the step, wait out a backoff, or answer
 * the callers. A step is therefore always recorded as started before its
 * action is called, and a master that dies leaves behind a record from which
 * any other master's sweeper can compensate. Writes that fail because Redis
 * is away are retried until they land or another master claims the saga
 * (the write then conflicts and this master lets go).
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#include <event2/event.h>

#include "bus.h"
#include "callback.h"
#include "config.h"
#include "grpc/client.h"
#include "grpc/grpc.h"
#include "grpc/server.h"
#include "orch.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "step.h"
#include "store.h"
#include "util.h"
#include "work.h"

#define ORCH_ID_MAX		128	/* longest saga id a caller may give */
#define ORCH_SWEEP_MS		1000	/* sweeper period */
#define ORCH_SWEEP_BATCH	64	/* sagas claimed at most per sweep */
#define ORCH_RETRY_MIN_MS	50	/* first retry of a failed write */
#define ORCH_RETRY_MAX_MS	2000
#define ORCH_MAX_EVENTS		4	/* events one write appends at most */
#define ORCH_POLL_MS		1000	/* held sagas looked up in the store */
#define ORCH_POLL_BATCH		512	/* lookups at most per poll */
#define ORCH_URL_MAX		2048	/* longest callback_url */

struct run;
TAILQ_HEAD(runq, run);

/* What the master knows of one upstream service, across reloads. */
struct svc {
	char			*name;
	int			 max_inflight;
	int			 max_queue;
	int			 inflight;
	int			 queued;
	int			 starting;	/* admitted, first call not made */
	struct grpc_channel	*ch;
	char			 host[256];
	int			 port;
	struct runq		 waiting;
	struct svc		*next;
};

/* A caller waiting for a saga's end: its Run call. */
struct waiter {
	struct grpc_call	*call;
	struct run		*run;
	struct waiter		*next;
};

/* An event waiting to be written with the next store write. */
struct pending_ev {
	const char	*step;		/* "" = the saga; else a step name
					   of the run's saga, not a copy */
	int		 state;
	char		*error;
	int		 attempt;
	int64_t		 ms;
};

struct run {
	struct orch		*o;
	struct config		*cfg;		/* a reference: config_ref */
	const struct config_flow *flow;
	struct saga		*s;
	struct saga_action	 a;
	int64_t			 rev;
	char			*traceparent;
	struct waiter		*waiters;
	struct svc		*svc;		/* queued for a slot of this one */
	struct svc		*slot;		/* holds a slot of this one */
	struct svc		*first;		/* counted in its starting */
	struct grpc_client_call	*call;
	struct event		*timer;
	void			(*timer_fn)(struct run *);
	void			(*then)(struct run *);	/* after a write */
	struct pending_ev	 evs[ORCH_MAX_EVENTS];
	int			 nevs;
	int			 retry_ms;
	int			 store_busy;	/* a store call is pending */
	int			 creating;	/* store_create not answered */
	int			 ended;
	int			 lost;		/* another master owns it now */
	int			 in_table;
	TAILQ_ENTRY(run)	 qlink;		/* svc->waiting */
	struct run		*hnext;		/* hash chain */
	TAILQ_ENTRY(run)	 all;
};

/* A caller of Run or Get for a saga another process is running. */
struct join {
	struct orch		*o;
	struct grpc_call	*call;
	struct store_watch	*watch;
	char			*id;
	int			 getting;
};

/* A caller of Run held until its throttling saga ends. */
struct holder {
	struct grpc_call	*call;
	struct hold		*h;
	struct holder		*next;
};

/* Sagas of one flow this master holds calls for: what max_queue bounds. */
struct flowq {
	char			*name;
	size_t			 held;
	struct flowq		*next;
};

/*
 * A throttling saga this master holds calls for until it ends: the end is
 * heard on saga.done.<pod_id>, or found by the poll of the store that
 * catches notices lost while NATS was away. It stays while its saga runs,
 * callers or not, since it counts against its flow's max_queue.
 */
struct hold {
	struct orch		*o;
	char			*id;
	struct flowq		*fq;
	struct holder		*callers;
	int			 launching;	/* launches not done with it */
	int			 getting;	/* a store_get is pending */
	struct hold		*hnext;
	TAILQ_ENTRY(hold)	 all;
};

/*
 * An async or throttling Run from its first write to its answer: create
 * the saga (PENDING), publish its first work and wait for the broker's
 * acknowledgement. Async callers are answered then; throttling callers
 * wait in the saga's hold.
 */
struct launch {
	struct orch		*o;
	struct grpc_call	*call;		/* async: NULL once gone */
	struct hold		*h;		/* throttling */
	struct config		*cfg;		/* a reference: config_ref */
	const struct config_flow *flow;
	struct saga		*s;
	char			*pod;		/* whose subjects: throttling */
	char			*callback;
	char			*traceparent;
	int64_t			 rev;
	char			*why;		/* why it was not queued */
	int			 reopen;	/* the record ended: run again */
	TAILQ_ENTRY(launch)	 all;
};

struct orch {
	struct event_base	*base;
	struct config		*cfg;
	struct grpc_server	*srv;
	struct grpc_client	*client;
	struct store		*store;
	char			*owner;
	struct svc		*svcs;
	struct run		**table;
	size_t			 tsize;		/* buckets, a power of two */
	size_t			 nruns;
	TAILQ_HEAD(, run)	 runs;
	uint64_t		 rng;
	int			 draining;
	int			 closing;
	int64_t			 last_renew_ms;
	int64_t			 last_sweep_ms;
	int			 sweeping;
	int			 renewing;
	struct bus		*bus;
	struct bus_listener	*done_l;
	char			*done_subject;
	struct hold		**htable;
	size_t			 hsize;		/* buckets, a power of two */
	size_t			 nholds;
	size_t			 nholders;	/* callers in all holds */
	TAILQ_HEAD(, hold)	 holds;
	struct flowq		*flowqs;
	TAILQ_HEAD(, launch)	 launches;
	size_t			 nlaunches;
	int64_t			 last_poll_ms;
	int64_t			 drain_ms;	/* when orch_drain ran */
	int			 listen_failed;	/* logged once */
	struct orch_stats	 st;
	orch_log_fn		 log;
	void			*log_arg;
};

static void	run_next(struct run *);
static void	run_call(struct run *);
static void	run_write(struct run *, void (*)(struct run *));
static void	run_free(struct run *);
static void	run_decided(struct run *, const struct saga_action *,
		    enum saga_state);

static void
olog(struct orch *o, int warn, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
olog(struct orch *o, int warn, const char *id, const char *fmt, ...)
{
	char	msg[1024];
	va_list	ap;

	if (o->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o->log(warn, id, msg, o->log_arg);
}

/* --- the table of sagas this master runs ------------------------------------ */

static uint64_t
hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static struct run *
table_find(struct orch *o, const char *id)
{
	struct run *r = o->table[hash_id(id) & (o->tsize - 1)];

	for (; r != NULL; r = r->hnext)
		if (strcmp(r->s->id, id) == 0)
			return r;
	return NULL;
}

static void
table_add(struct orch *o, struct run *r)
{
	size_t b;

	if (o->nruns + 1 > o->tsize) {
		size_t		 nsize = o->tsize * 2;
		struct run	**nt = util_xcalloc(nsize, sizeof(*nt));

		for (size_t i = 0; i < o->tsize; i++) {
			struct run *x = o->table[i], *nx;
			for (; x != NULL; x = nx) {
				nx = x->hnext;
				b = hash_id(x->s->id) & (nsize - 1);
				x->hnext = nt[b];
				nt[b] = x;
			}
		}
		free(o->table);
		o->table = nt;
		o->tsize = nsize;
	}
	b = hash_id(r->s->id) & (o->tsize - 1);
	r->hnext = o->table[b];
	o->table[b] = r;
	r->in_table = 1;
	o->nruns++;
}

static void
table_del(struct orch *o, struct run *r)
{
	struct run **pp = &o->table[hash_id(r->s->id) & (o->tsize - 1)];

	if (!r->in_table)
		return;
	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == r) {
			*pp = r->hnext;
			break;
		}
	r->in_table = 0;
	o->nruns--;
}

/* --- services ------------------------------------------------------------------ */

static struct svc *
svc_get(struct orch *o, const struct config_service *cs)
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
	/* Limits follow the newest config; a moved service gets a channel. */
	if (v->ch == NULL || strcmp(v->host, cs->host) != 0 ||
	    v->port != cs->port) {
		snprintf(v->host, sizeof(v->host), "%s", cs->host);
		v->port = cs->port;
		v->ch = grpc_client_channel(o->client, cs->host, cs->port);
	}
	return v;
}

static void
svcs_configure(struct orch *o)
{
	for (size_t i = 0; i < o->cfg->nservices; i++) {
		const struct config_service	*cs = &o->cfg->services[i];
		struct svc			*v = svc_get(o, cs);

		v->max_inflight = cs->max_inflight;
		v->max_queue = cs->max_queue;
	}
}

/* A slot came free: the longest waiting run calls now. */
static void
svc_release(struct svc *v)
{
	struct run *r;

	v->inflight--;
	while (v->inflight < v->max_inflight &&
	    (r = TAILQ_FIRST(&v->waiting)) != NULL) {
		TAILQ_REMOVE(&v->waiting, r, qlink);
		v->queued--;
		r->svc = NULL;
		run_call(r);
	}
}

/* --- runs ------------------------------------------------------------------------ */

static const struct config_node *
run_node(const struct run *r)
{
	return &r->cfg->nodes[r->flow->steps[r->a.step]];
}

static void
ev_add(struct run *r, const char *step, int state, const char *error,
    int attempt)
{
	struct pending_ev *e;

	if (r->nevs == ORCH_MAX_EVENTS)
		return;
	e = &r->evs[r->nevs++];
	e->step = step;		/* lives as long as r->s */
	e->state = state;
	e->error = error != NULL ? util_xstrdup(error) : NULL;
	e->attempt = attempt;
	e->ms = util_now_ms();
}

static void
evs_clear(struct run *r)
{
	for (int i = 0; i < r->nevs; i++) {
		free(r->evs[i].error);
	}
	r->nevs = 0;
}

static struct run *
run_new(struct orch *o, struct config *cfg, const struct config_flow *flow,
    struct saga *s)
{
	struct run *r = util_xcalloc(1, sizeof(*r));

	r->o = o;
	r->cfg = config_ref(cfg);
	r->flow = flow;
	r->s = s;
	r->retry_ms = ORCH_RETRY_MIN_MS;
	TAILQ_INSERT_TAIL(&o->runs, r, all);
	o->st.running++;
	return r;
}

static void
waiter_cancelled(struct grpc_call *call, void *arg)
{
	struct waiter	*w = arg, **pp;

	/* The caller went away (deadline, reset): the saga goes on. */
	for (pp = &w->run->waiters; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	free(w);
}

static void
waiter_add(struct run *r, struct grpc_call *call)
{
	struct waiter *w = util_xcalloc(1, sizeof(*w));

	w->call = call;
	w->run = r;
	w->next = r->waiters;
	r->waiters = w;
	grpc_call_on_cancel(call, waiter_cancelled, w);
}

static void
waiters_reply(struct run *r)
{
	struct waiter	*w, *next;
	struct saga_pb	 v;

	saga_pb_view(r->s, &v);
	for (w = r->waiters; w != NULL; w = next) {
		next = w->next;
		grpc_call_on_cancel(w->call, NULL, NULL);
		grpc_call_reply(w->call, &v.pb.base);
		free(w);
	}
	r->waiters = NULL;
	saga_pb_view_free(&v);
}

static void
waiters_fail(struct run *r, int status, const char *msg)
{
	struct waiter *w, *next;

	for (w = r->waiters; w != NULL; w = next) {
		next = w->next;
		grpc_call_on_cancel(w->call, NULL, NULL);
		grpc_call_finish(w->call, status, msg);
		free(w);
	}
	r->waiters = NULL;
}

static void join_start(struct orch *, struct grpc_call *, const char *id);

/* Another master took the saga over: its callers follow it in the store. */
static void
waiters_to_join(struct run *r)
{
	struct waiter *w, *next;

	for (w = r->waiters; w != NULL; w = next) {
		next = w->next;
		grpc_call_on_cancel(w->call, NULL, NULL);
		join_start(r->o, w->call, r->s->id);
		free(w);
	}
	r->waiters = NULL;
}

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

	table_del(o, r);
	run_started(r);
	if (r->svc != NULL) {
		TAILQ_REMOVE(&r->svc->waiting, r, qlink);
		r->svc->queued--;
	}
	if (r->timer != NULL)
		event_free(r->timer);
	TAILQ_REMOVE(&o->runs, r, all);
	o->st.running--;
	evs_clear(r);
	saga_free(r->s);
	config_free(r->cfg);
	free(r->traceparent);
	free(r);
}

/* The saga ended, or is no longer ours: answer, forget, free when idle. */
static void
run_finish(struct run *r)
{
	r->ended = 1;
	table_del(r->o, r);
	if (!r->store_busy && r->call == NULL)
		run_free(r);
}

static void
run_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;

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

/* --- writing a run's state ------------------------------------------------------- */

static void
run_write_again(struct run *r)
{
	run_write(r, r->then);
}

static void
run_write_done(enum store_result res, int64_t rev, const char *err, void *arg)
{
	struct run	*r = arg;
	struct orch	*o = r->o;

	r->store_busy = 0;
	if (o->closing)
		return;
	switch (res) {
	case STORE_OK:
		r->rev = rev;
		r->retry_ms = ORCH_RETRY_MIN_MS;
		evs_clear(r);
		r->then(r);
		return;
	case STORE_CONFLICT:
	case STORE_NOT_FOUND:
		/*
		 * The lease ran out (Redis was away too long) and another
		 * master claimed the saga, or its record is gone: let go.
		 */
		olog(o, 1, r->s->id, "write refused (%s): another master "
		    "runs the saga now", store_result_name(res));
		r->lost = 1;
		waiters_to_join(r);
		run_finish(r);
		return;
	default:
		/* Redis away: keep the saga in memory and try again. */
		o->st.store_retries++;
		if (r->retry_ms == ORCH_RETRY_MIN_MS)
			olog(o, 1, r->s->id, "store write failed, retrying: "
			    "%s", err != NULL ? err : store_result_name(res));
		run_after(r, r->retry_ms, run_write_again);
		r->retry_ms = r->retry_ms * 2 > ORCH_RETRY_MAX_MS ?
		    ORCH_RETRY_MAX_MS : r->retry_ms * 2;
		return;
	}
}

static void
write_of(struct run *r, struct store_write *w, struct saga_pb *v,
    Saga__V1__SagaEvent *ev, Saga__V1__SagaEvent **evp)
{
	memset(w, 0, sizeof(*w));
	saga_pb_view(r->s, v);
	for (int i = 0; i < r->nevs; i++) {
		saga__v1__saga_event__init(&ev[i]);
		ev[i].saga_id = r->s->id;
		/* protobuf-c's char *; the event is only packed. */
		ev[i].step = (char *)(uintptr_t)r->evs[i].step;
		ev[i].state = (Saga__V1__State)r->evs[i].state;
		ev[i].error = r->evs[i].error;
		ev[i].attempt = r->evs[i].attempt;
		ev[i].unix_ms = r->evs[i].ms;
		evp[i] = &ev[i];
	}
	w->saga = &v->pb;
	w->rev = r->rev;
	w->step = (int)r->a.step;
	w->owner = r->o->owner;
	/*
	 * The lease is taken at the create and renewed for every saga in
	 * flight by orch_cron(), not by each write: that keeps a sorted-set
	 * update off the hot path. An ended saga drops it.
	 */
	w->lease_ms = SAGA_STATE_IS_FINAL(r->s->state) ? -1 : 0;
	w->events = evp;
	w->nevents = (size_t)r->nevs;
}

static void
run_write(struct run *r, void (*then)(struct run *))
{
	struct store_write	 w;
	struct saga_pb		 v;
	Saga__V1__SagaEvent	 ev[ORCH_MAX_EVENTS], *evp[ORCH_MAX_EVENTS];

	r->then = then;
	r->store_busy = 1;
	write_of(r, &w, &v, ev, evp);
	store_update(r->o->store, &w, run_write_done, r);
	saga_pb_view_free(&v);
}

/* --- moving a saga on ------------------------------------------------------------ */

static void
run_ended(struct run *r)
{
	struct orch *o = r->o;

	switch (r->s->state) {
	case SAGA_STATE_COMPLETED:	o->st.completed++; break;
	case SAGA_STATE_COMPENSATED:	o->st.compensated++; break;
	default:			o->st.failed++; break;
	}
	if (r->s->state == SAGA_STATE_FAILED)
		olog(o, 1, r->s->id, "saga FAILED, an operator must look: %s",
		    r->s->error != NULL ? r->s->error : "");
	waiters_reply(r);
	run_finish(r);
}

/*
 * Act on r->a: record that a call starts, then make it; or record the end.
 * A saga-level event goes with the write that changes the saga's state.
 */
static void
run_next(struct run *r)
{
	enum saga_state before = r->s->state;

	if (r->a.kind == SAGA_ACT_END) {
		ev_add(r, "", r->s->state, r->s->error, 0);
		run_write(r, run_ended);
		return;
	}
	r->a.kind = SAGA_ACT_CALL;
	saga_step_begin(r->s, &r->a, util_now_ms());
	if (r->s->state != before)
		ev_add(r, "", r->s->state, r->s->error, 0);
	ev_add(r, r->s->steps[r->a.step].name, r->s->steps[r->a.step].state,
	    NULL, r->a.attempt);
	run_write(r, run_call);
}

static void
run_wait_over(struct run *r)
{
	run_next(r);
}

static void
run_wait_start(struct run *r)
{
	run_after(r, r->a.delay_ms, run_wait_over);
}

/* Decides after a step's result; status and msg as the call ended. */
static void
run_result(struct run *r, int status, const char *msg,
    const struct saga_kv *kv, size_t nkv)
{
	struct saga_action	 prev = r->a;
	enum saga_state		 before = r->s->state;

	r->a = saga_step_end(r->s, r->cfg, r->flow, &prev, status, msg, kv,
	    nkv, util_now_ms(), &r->o->rng);
	run_decided(r, &prev, before);
}

/* Records the events of a step's end and acts on the action decided. */
static void
run_decided(struct run *r, const struct saga_action *prev,
    enum saga_state before)
{
	struct saga_step *st = &r->s->steps[prev->step];

	if (r->a.kind == SAGA_ACT_WAIT) {
		/* The failed attempt is an event; the retry comes later. */
		ev_add(r, st->name, st->state, st->error, prev->attempt);
		run_write(r, run_wait_start);
		return;
	}
	ev_add(r, st->name, st->state, st->error, prev->attempt);
	if (r->s->state != before && r->a.kind != SAGA_ACT_END)
		ev_add(r, "", r->s->state, r->s->error, 0);
	/* The result and the next call's start (or the end): one write. */
	run_next(r);
}

static void
run_call_done(void *arg, const struct grpc_client_result *res)
{
	struct run			*r = arg;
	const struct config_node	*node = run_node(r);
	struct saga_kv			*kv = NULL;
	size_t				 nkv = 0;
	int				 status = res->status;
	const char			*msg = res->message;

	r->call = NULL;
	if (r->slot != NULL) {
		struct svc *v = r->slot;
		r->slot = NULL;
		svc_release(v);
	}
	if (r->o->closing)
		return;
	if (status == GRPC_STATUS_OK && !r->a.compensate &&
	    step_reply(node, res->data, res->len, &kv, &nkv) == -1) {
		status = GRPC_STATUS_INTERNAL;
		msg = "the reply is not a saga.v1.StepReply";
	}
	run_result(r, status, msg, kv, nkv);
	step_kv_free(kv, nkv);
}

static void
run_call(struct run *r)
{
	const struct config_node	*node = run_node(r);
	const struct config_service	*cs = &r->cfg->services[node->service];
	struct svc			*v = svc_get(r->o, cs);
	struct grpc_metadata		 md = { 0 };
	const char			*path;
	uint8_t				*req;
	size_t				 len;
	char				 err[256];

	if (v->inflight >= v->max_inflight) {
		/* Admission bounded the queue when the saga started. */
		TAILQ_INSERT_TAIL(&v->waiting, r, qlink);
		v->queued++;
		r->svc = v;
		return;
	}
	path = r->a.compensate ? node->compensate : node->action;
	req = step_request(r->s, node, &r->a, &len, err, sizeof(err));
	if (req == NULL) {
		/* Nothing could be sent: no retry helps, nothing to undo. */
		struct saga_action	prev = r->a;
		enum saga_state		before = r->s->state;

		r->a = saga_step_unsent(r->s, r->cfg, r->flow, &prev, err,
		    util_now_ms());
		run_decided(r, &prev, before);
		return;
	}
	step_metadata(&md, r->s, r->traceparent);
	v->inflight++;
	r->slot = v;
	r->call = grpc_client_call_start(v->ch, path, req, len, &md,
	    node->timeout_ms, run_call_done, r);
	grpc_md_clear(&md);
	free(req);
}

/* --- callers of sagas run elsewhere ------------------------------------------------ */

static void
join_free(struct join *j)
{
	free(j->id);
	free(j);
}

static void
join_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct join *j = arg;

	if (j->call != NULL) {
		grpc_call_on_cancel(j->call, NULL, NULL);
		if (res == STORE_OK)
			grpc_call_reply(j->call, &rec->saga->base);
		else
			grpc_call_finish(j->call, res == STORE_NOT_FOUND ?
			    GRPC_STATUS_NOT_FOUND : GRPC_STATUS_UNAVAILABLE,
			    err);
	}
	join_free(j);
}

static void
join_event(enum store_result res, const Saga__V1__SagaEvent *ev, int final,
    const char *err, void *arg)
{
	struct join *j = arg;

	if (res == STORE_OK && !final)
		return;
	j->watch = NULL;
	if (res != STORE_OK) {
		if (j->call != NULL) {
			grpc_call_on_cancel(j->call, NULL, NULL);
			grpc_call_finish(j->call, res == STORE_NOT_FOUND ?
			    GRPC_STATUS_NOT_FOUND : GRPC_STATUS_UNAVAILABLE,
			    err);
		}
		join_free(j);
		return;
	}
	j->getting = 1;
	store_get(j->o->store, j->id, join_got, j);
}

static void
join_cancelled(struct grpc_call *call, void *arg)
{
	struct join *j = arg;

	j->call = NULL;
	if (j->getting)
		return;		/* join_got frees it */
	if (j->watch != NULL)
		store_watch_cancel(j->watch);
	join_free(j);
}

/* Waits for a saga to end in the store, then answers with it. */
static void
join_start(struct orch *o, struct grpc_call *call, const char *id)
{
	struct join *j = util_xcalloc(1, sizeof(*j));

	j->o = o;
	j->call = call;
	j->id = util_xstrdup(id);
	grpc_call_on_cancel(call, join_cancelled, j);
	j->watch = store_watch(o->store, id, join_event, j);
}

/* --- Run ------------------------------------------------------------------------- */

static uint64_t
rng_next(uint64_t *st)
{
	/* splitmix64: ids need spread, not secrecy; the seed is random. */
	uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* 128 random bits in hex, when the caller named no id. */
static void
new_id(struct orch *o, char *buf, size_t len)
{
	uint64_t a = rng_next(&o->rng), b = rng_next(&o->rng);

	snprintf(buf, len, "%016llx%016llx", (unsigned long long)a,
	    (unsigned long long)b);
}

static int
valid_id(const char *id, char *err, size_t errlen)
{
	size_t n = strlen(id);

	if (n > ORCH_ID_MAX) {
		snprintf(err, errlen, "request_id: expected at most %d bytes, "
		    "got %zu", ORCH_ID_MAX, n);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c <= 0x20 || c == 0x7f || c == '{' || c == '}') {
			snprintf(err, errlen, "request_id: expected printable "
			    "characters without spaces or braces");
			return 0;
		}
	}
	return 1;
}

static void
run_created(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct run	*r = arg;
	struct orch	*o = r->o;

	r->store_busy = 0;
	r->creating = 0;
	run_started(r);
	if (o->closing)
		return;
	switch (res) {
	case STORE_OK:
		r->rev = rec->rev;
		evs_clear(r);
		o->st.started++;
		run_call(r);
		return;
	case STORE_EXISTS:
		/* Known id: run nothing, answer with that saga. */
		if (rec->saga->state >= SAGA__V1__STATE__STATE_COMPLETED) {
			struct waiter *w, *next;
			for (w = r->waiters; w != NULL; w = next) {
				next = w->next;
				grpc_call_on_cancel(w->call, NULL, NULL);
				grpc_call_reply(w->call, &rec->saga->base);
				free(w);
			}
			r->waiters = NULL;
		} else
			waiters_to_join(r);
		break;
	default:
		waiters_fail(r, GRPC_STATUS_UNAVAILABLE, err != NULL ? err :
		    "the saga store is unavailable");
		break;
	}
	r->lost = 1;
	run_finish(r);
}

/* --- async and throttling: the bus side of Run ------------------------------------- */

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
	if (!callback_host_allowed(host, cfg->callbacks.allow,
	    cfg->callbacks.nallow)) {
		snprintf(err, errlen, "callback_url: host %s is not in "
		    "callbacks.allow", host);
		return 0;
	}
	return 1;
}

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

static struct hold *
hold_find(struct orch *o, const char *id)
{
	struct hold *h = o->htable[hash_id(id) & (o->hsize - 1)];

	for (; h != NULL; h = h->hnext)
		if (strcmp(h->id, id) == 0)
			return h;
	return NULL;
}

static struct hold *
hold_new(struct orch *o, const char *id, const char *flow)
{
	struct hold	*h = util_xcalloc(1, sizeof(*h));
	size_t		 b;

	if (o->nholds + 1 > o->hsize) {
		size_t		 nsize = o->hsize * 2;
		struct hold	**nt = util_xcalloc(nsize, sizeof(*nt));

		for (size_t i = 0; i < o->hsize; i++) {
			struct hold *x = o->htable[i], *nx;
			for (; x != NULL; x = nx) {
				nx = x->hnext;
				b = hash_id(x->id) & (nsize - 1);
				x->hnext = nt[b];
				nt[b] = x;
			}
		}
		free(o->htable);
		o->htable = nt;
		o->hsize = nsize;
	}
	h->o = o;
	h->id = util_xstrdup(id);
	h->fq = flowq_get(o, flow);
	h->fq->held++;
	b = hash_id(id) & (o->hsize - 1);
	h->hnext = o->htable[b];
	o->htable[b] = h;
	o->nholds++;
	TAILQ_INSERT_TAIL(&o->holds, h, all);
	o->st.held++;
	return h;
}

static void
holder_cancelled(struct grpc_call *call, void *arg)
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

static void
holder_add(struct hold *h, struct grpc_call *call)
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
		join_start(h->o, c->call, h->id);
		h->o->nholders--;
		free(c);
	}
	h->callers = NULL;
}

static void
hold_free(struct hold *h)
{
	struct orch	*o = h->o;
	struct hold	**pp = &o->htable[hash_id(h->id) & (o->hsize - 1)];

	hold_answer(h, NULL, GRPC_STATUS_UNAVAILABLE, "sagad stopped");
	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == h) {
			*pp = h->hnext;
			break;
		}
	o->nholds--;
	o->st.held--;
	h->fq->held--;
	TAILQ_REMOVE(&o->holds, h, all);
	free(h->id);
	free(h);
}

static void
hold_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
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
done_heard(struct bus_listener *l, const char *subject, const void *data,
    size_t len, void *arg)
{
	struct orch	*o = arg;
	struct hold	*h;
	char		 id[STORE_ID_MAX + 1];
	int		 state;

	if (o->closing || work_done_unpack(data, len, id, sizeof(id),
	    &state) == -1)
		return;
	if ((h = hold_find(o, id)) != NULL)
		hold_check(h);
}

/* Every ORCH_POLL_MS: the held sagas whose end notice may have been lost. */
static void
holds_poll(struct orch *o)
{
	struct hold	*h;
	size_t		 n;

	for (n = 0; n < ORCH_POLL_BATCH && n < o->nholds; n++) {
		h = TAILQ_FIRST(&o->holds);
		TAILQ_REMOVE(&o->holds, h, all);
		TAILQ_INSERT_TAIL(&o->holds, h, all);
		hold_check(h);
	}
}

/* --- launches --- */

static void
launch_cancelled(struct grpc_call *call, void *arg)
{
	struct launch *l = arg;

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
	saga_free(l->s);
	config_free(l->cfg);
	free(l->pod);
	free(l->callback);
	free(l->traceparent);
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
		if ((l->h = hold_find(l->o, l->s->id)) == NULL)
			l->h = hold_new(l->o, l->s->id, l->s->flow);
		l->h->launching++;
	}
	if (l->call != NULL) {
		grpc_call_on_cancel(l->call, NULL, NULL);
		holder_add(l->h, l->call);
		l->call = NULL;
	}
}

/* One write of the launch's saga with one saga-level event. */
static void
launch_write(struct launch *l, int create, store_saga_cb *ccb,
    store_rev_cb *ucb)
{
	struct store_write	 w;
	struct saga_pb		 v;
	Saga__V1__SagaEvent	 ev, *evp = &ev;

	memset(&w, 0, sizeof(w));
	saga_pb_view(l->s, &v);
	saga__v1__saga_event__init(&ev);
	ev.saga_id = l->s->id;
	ev.step = (char *)(uintptr_t)"";
	ev.state = (Saga__V1__State)l->s->state;
	ev.error = l->s->error;
	ev.unix_ms = l->s->updated_ms;
	w.saga = &v.pb;
	w.rev = l->rev;
	w.step = 0;
	/*
	 * The first call counts as started by the write that queues it, as
	 * a sync create records it, but in the record alone: the saga reads
	 * PENDING until its first result (saga_resume catches it up). So the
	 * worker that gets the work makes the call without a write first.
	 */
	w.attempt = 1;
	w.pod = l->pod;
	w.owner = l->o->owner;
	w.callback = l->callback;
	w.lease_ms = 0;		/* the bus drives it: no lease, no sweeper */
	w.reopen = l->reopen;
	w.events = &evp;
	w.nevents = 1;
	if (create)
		store_create(l->o->store, &w, ccb, l);
	else
		store_update(l->o->store, &w, ucb, l);
	saga_pb_view_free(&v);
}

static void
launch_unqueued_written(enum store_result res, int64_t rev, const char *err,
    void *arg)
{
	struct launch	*l = arg;
	char		 msg[512];

	if (l->o->closing) {
		launch_free(l);
		return;
	}
	snprintf(msg, sizeof(msg), "the message bus (NATS) did not accept "
	    "the saga: %s", l->why);
	launch_answer(l, NULL, GRPC_STATUS_UNAVAILABLE, msg);
}

/*
 * The first work was not queued: nothing will ever run the saga. It is
 * written FAILED with a sentence saying so (and expires like any ended
 * saga); nothing of it ever ran, so a Run with the same id starts it again.
 */
static void
launch_unqueued(struct launch *l, const char *why)
{
	struct saga	*s = l->s;
	char		 msg[512];

	l->why = util_xstrdup(why != NULL ? why : "unknown error");
	olog(l->o, 1, s->id, "%s saga not queued: %s",
	    config_mode_name(s->mode), l->why);
	snprintf(msg, sizeof(msg), "never queued (NATS: %s); a Run with the "
	    "same id starts it again", l->why);
	free(s->error);
	s->error = util_xstrdup(msg);
	s->state = SAGA_STATE_FAILED;
	s->updated_ms = util_now_ms();
	launch_write(l, 0, NULL, launch_unqueued_written);
}

static void
launch_published(struct bus *bus, const struct bus_pub_result *res,
    void *arg)
{
	struct launch	*l = arg;
	struct orch	*o = l->o;
	struct saga_pb	 v;

	if (o->closing) {
		launch_free(l);
		return;
	}
	if (res->error != NULL) {
		launch_unqueued(l, res->error);
		return;
	}
	o->st.queued++;
	if (l->s->mode == SAGA_MODE_THROTTLING) {
		/* Held: done_heard or the poll answers. */
		launch_free(l);
		return;
	}
	saga_pb_view(l->s, &v);
	launch_answer(l, &v.pb, 0, NULL);
	saga_pb_view_free(&v);
}

/*
 * Queues the saga's first step: work for its first node's workers. After
 * the create (created) it carries the record the create wrote, so the
 * worker that gets it needs no read (see work.h); a requeue does not.
 */
static void
launch_publish(struct launch *l, int created)
{
	const struct config_node	*node;
	struct work			 w;
	struct work_record		 rec;
	struct saga_pb			 v;
	char				 subj[WORK_SUBJECT_MAX], mid[512],
					 err[SAGAD_ERRLEN];
	uint8_t				*buf;
	size_t				 len;
	static char			 none[1];

	node = &l->cfg->nodes[l->flow->steps[0]];
	memset(&w, 0, sizeof(w));
	w.saga_id = l->s->id;
	w.flow = l->s->flow;
	w.step = 0;
	w.compensate = 0;
	w.pod = l->s->mode == SAGA_MODE_THROTTLING ? l->pod : none;
	w.mode = l->s->mode;
	w.traceparent = l->traceparent;
	if (work_subject(subj, sizeof(subj), l->s->mode, l->pod, l->s->flow,
	    node->name, 0) == -1 || work_msg_id(mid, sizeof(mid), l->s->id,
	    node->name, 0) == -1) {
		launch_unqueued(l, "the work subject is too long");
		return;
	}
	if (l->o->bus == NULL || !bus_is_connected(l->o->bus)) {
		launch_unqueued(l, "not connected");
		return;
	}
	if (created) {
		/* As launch_write wrote it. */
		saga_pb_view(l->s, &v);
		rec.rev = l->rev;
		rec.saga = &v.pb;
		rec.step = 0;
		rec.compensate = 0;
		rec.attempt = 1;
		rec.pod = l->pod;
		rec.callback = l->callback;
		w.record = &rec;
	}
	buf = work_pack(&w, &len);
	if (created)
		saga_pb_view_free(&v);
	if (bus_publish(l->o->bus, subj, buf, len, mid, launch_published, l,
	    err, sizeof(err)) == -1)
		launch_unqueued(l, err);
	free(buf);
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

static void
launch_rearmed(enum store_result res, int64_t rev, const char *err,
    void *arg)
{
	struct launch *l = arg;

	if (l->o->closing) {
		launch_free(l);
		return;
	}
	if (res != STORE_OK) {
		/* Another Run restarted it first, or Redis is away. */
		launch_answer(l, NULL, res == STORE_CONFLICT ?
		    GRPC_STATUS_ABORTED : GRPC_STATUS_UNAVAILABLE,
		    res == STORE_CONFLICT ? "the saga changed meanwhile: "
		    "run it again" : err);
		return;
	}
	l->rev = rev;
	launch_publish(l, 0);
}

/* Run of a known id: run nothing new, answer with that saga. */
static void
launch_exists(struct launch *l, struct store_saga *rec)
{
	const Saga__V1__Saga		*pb = rec->saga;
	const struct config_flow	*flow;
	enum saga_mode			 mode = (enum saga_mode)pb->mode;
	int				 fin = pb->state >=
					    SAGA__V1__STATE__STATE_COMPLETED;

	flow = config_flow_find(l->cfg, pb->flow);
	if (mode != SAGA_MODE_SYNC && never_started(pb) && flow != NULL &&
	    flow->nsteps == pb->n_steps && (!fin ||
	    pb->state == SAGA__V1__STATE__STATE_FAILED)) {
		/*
		 * Nothing of it ever ran: it was never queued (FAILED, see
		 * launch_unqueued) or its first work may be lost. Queue it
		 * again, in its own mode; the message id dedupes a first
		 * work that is still there.
		 */
		saga_free(l->s);
		l->s = saga_from_pb(pb);
		l->flow = flow;
		l->rev = rec->rev;
		if (mode == SAGA_MODE_THROTTLING) {
			free(l->pod);
			l->pod = util_xstrdup(fin || rec->pod[0] == '\0' ?
			    l->cfg->pod_id : rec->pod);
			launch_hold(l);
		}
		if (!fin) {
			launch_publish(l, 0);
			return;
		}
		olog(l->o, 0, pb->id, "restarting a saga that was never "
		    "queued");
		free(l->s->error);
		l->s->error = NULL;
		l->s->state = SAGA_STATE_PENDING;
		l->s->updated_ms = util_now_ms();
		l->reopen = 1;
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
			join_start(l->o, l->call, pb->id);
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
	struct launch *l = arg;

	if (l->o->closing) {
		launch_free(l);
		return;
	}
	switch (res) {
	case STORE_OK:
		l->rev = rec->rev;
		l->o->st.started++;
		launch_publish(l, 1);
		break;
	case STORE_EXISTS:
		launch_exists(l, rec);
		break;
	default:
		launch_answer(l, NULL, GRPC_STATUS_UNAVAILABLE, err != NULL ?
		    err : "the saga store is unavailable");
		break;
	}
}

/*
 * An async or throttling Run, validated: refuse at once what cannot be
 * queued, then create the saga and queue its first step.
 */
static void
launch_start(struct orch *o, struct grpc_call *call,
    const struct config_flow *flow, enum saga_mode mode, const char *id,
    const Saga__V1__RunRequest *req)
{
	const struct grpc_md	*md;
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
	l->cfg = config_ref(o->cfg);
	l->flow = flow;
	l->s = saga_new(id, o->cfg, flow, mode, util_now_ms());
	for (size_t i = 0; i < req->n_context; i++)
		saga_ctx_set(l->s, req->context[i]->key,
		    req->context[i]->value.data, req->context[i]->value.len);
	l->pod = util_xstrdup(o->cfg->pod_id);
	if (req->callback_url != NULL && *req->callback_url != '\0')
		l->callback = util_xstrdup(req->callback_url);
	md = grpc_md_get(grpc_call_metadata(call), "traceparent");
	if (md != NULL)
		l->traceparent = util_xstrdup((const char *)md->value);
	TAILQ_INSERT_TAIL(&o->launches, l, all);
	o->nlaunches++;
	l->call = call;
	grpc_call_on_cancel(call, launch_cancelled, l);
	if (mode == SAGA_MODE_THROTTLING)
		launch_hold(l);
	launch_write(l, 1, launch_created, NULL);
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
	struct saga			*s;
	enum saga_mode			 mode;
	char				 idbuf[64], err[512];
	const char			*id;
	struct store_write		 w;
	struct saga_pb			 v;
	Saga__V1__SagaEvent		 ev[ORCH_MAX_EVENTS],
					*evp[ORCH_MAX_EVENTS];

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
	id = req->request_id;
	if (id == NULL || *id == '\0') {
		md = grpc_md_get(grpc_call_metadata(call), "x-request-id");
		id = md != NULL ? (const char *)md->value : NULL;
	}
	if (id == NULL || *id == '\0') {
		new_id(o, idbuf, sizeof(idbuf));
		id = idbuf;
	} else if (!valid_id(id, err, sizeof(err))) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return;
	}
	/* A saga this master runs: wait for it as its first caller does. */
	if ((r = table_find(o, id)) != NULL) {
		waiter_add(r, call);
		return;
	}
	if ((h = hold_find(o, id)) != NULL) {
		holder_add(h, call);
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
	for (size_t i = 0; i < flow->nsteps; i++) {
		const struct config_node *n = &o->cfg->nodes[flow->steps[i]];
		struct svc *sv = svc_get(o, &o->cfg->services[n->service]);

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
			snprintf(err, sizeof(err), "service %s: %d calls wait "
			    "for one of its %d slots (max_queue)", sv->name,
			    wait, sv->max_inflight);
			grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
			    err);
			return;
		}
	}

	s = saga_new(id, o->cfg, flow, mode, util_now_ms());
	for (size_t i = 0; i < req->n_context; i++)
		saga_ctx_set(s, req->context[i]->key,
		    req->context[i]->value.data, req->context[i]->value.len);
	r = run_new(o, o->cfg, flow, s);
	md = grpc_md_get(grpc_call_metadata(call), "traceparent");
	if (md != NULL)
		r->traceparent = util_xstrdup((const char *)md->value);
	waiter_add(r, call);
	table_add(o, r);
	r->first = svc_get(o, &o->cfg->services[
	    o->cfg->nodes[flow->steps[0]].service]);
	r->first->starting++;

	/* Created with its first step already recorded as started. */
	r->a = saga_first(s);
	saga_step_begin(s, &r->a, util_now_ms());
	ev_add(r, "", s->state, NULL, 0);
	ev_add(r, s->steps[0].name, s->steps[0].state, NULL, 1);
	write_of(r, &w, &v, ev, evp);
	w.pod = o->cfg->pod_id;
	w.lease_ms = o->cfg->redis.lease_ms;
	r->creating = 1;
	r->store_busy = 1;
	store_create(o->store, &w, run_created, r);
	saga_pb_view_free(&v);
}

/* --- Get, Watch, ListFlows ------------------------------------------------------- */

/*
 * Get and Watch: the GetRequest's id checked and the store up, or the call
 * finished with the reason and NULL.
 */
static struct join *
join_of_request(struct orch *o, struct grpc_call *call)
{
	const Saga__V1__GetRequest	*req;
	struct join			*j;

	req = (const Saga__V1__GetRequest *)grpc_call_request(call);
	if (req->id == NULL || *req->id == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "id: expected a saga id");
		return NULL;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return NULL;
	}
	j = util_xcalloc(1, sizeof(*j));
	j->o = o;
	j->call = call;
	j->id = util_xstrdup(req->id);
	return j;
}

static void
get_done(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct join *j = arg;

	if (j->call != NULL) {
		grpc_call_on_cancel(j->call, NULL, NULL);
		if (res == STORE_OK)
			grpc_call_reply(j->call, &rec->saga->base);
		else if (res == STORE_NOT_FOUND)
			grpc_call_finish(j->call, GRPC_STATUS_NOT_FOUND,
			    "no saga with that id (never run, or expired)");
		else
			grpc_call_finish(j->call, GRPC_STATUS_UNAVAILABLE,
			    err);
	}
	join_free(j);
}

static void
get_cancelled(struct grpc_call *call, void *arg)
{
	struct join *j = arg;

	j->call = NULL;		/* get_done frees it */
}

static void
handle_get(struct grpc_call *call, void *arg)
{
	struct join *j;

	if ((j = join_of_request(arg, call)) == NULL)
		return;
	j->getting = 1;
	grpc_call_on_cancel(call, get_cancelled, j);
	store_get(j->o->store, j->id, get_done, j);
}

static void
watch_event(enum store_result res, const Saga__V1__SagaEvent *ev, int final,
    const char *err, void *arg)
{
	struct join *j = arg;

	if (res == STORE_OK) {
		int rc = grpc_call_send(j->call, &ev->base);

		if (rc == GRPC_CALL_EAGAIN) {
			/* A reader this slow is dropped, not buffered. */
			store_watch_cancel(j->watch);
			final = 1;
			res = STORE_BUSY;
			err = "the watcher reads too slowly";
		}
		if (!final)
			return;
	}
	grpc_call_on_cancel(j->call, NULL, NULL);
	switch (res) {
	case STORE_OK:
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
		break;
	case STORE_NOT_FOUND:
		grpc_call_finish(j->call, GRPC_STATUS_NOT_FOUND,
		    "no saga with that id (never run, or expired)");
		break;
	case STORE_BUSY:
		grpc_call_finish(j->call, GRPC_STATUS_RESOURCE_EXHAUSTED, err);
		break;
	default:
		grpc_call_finish(j->call, GRPC_STATUS_UNAVAILABLE, err);
		break;
	}
	join_free(j);
}

static void
watch_cancelled(struct grpc_call *call, void *arg)
{
	struct join *j = arg;

	store_watch_cancel(j->watch);
	join_free(j);
}

static void
handle_watch(struct grpc_call *call, void *arg)
{
	struct join *j;

	if ((j = join_of_request(arg, call)) == NULL)
		return;
	grpc_call_on_cancel(call, watch_cancelled, j);
	j->watch = store_watch(j->o->store, j->id, watch_event, j);
}

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

/* --- leases and recovery ----------------------------------------------------------- */

static void
renewed(enum store_result res, char *const *ids, size_t n, const char *err,
    void *arg)
{
	struct orch *o = arg;

	o->renewing = 0;
	if (o->closing || res != STORE_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		struct run *r = table_find(o, ids[i]);

		/* Its next write will conflict and let it go. */
		if (r != NULL)
			olog(o, 1, r->s->id, "lease lost to another master");
	}
}

static void
renew_leases(struct orch *o)
{
	const char	**ids;
	size_t		  n = 0;
	struct run	 *r;
	int		  lease = o->cfg->redis.lease_ms;

	if (o->nruns == 0 || o->renewing || !store_is_up(o->store))
		return;
	ids = util_xcalloc(o->nruns, sizeof(*ids));
	TAILQ_FOREACH(r, &o->runs, all)
		if (r->in_table && !r->creating && n < o->nruns)
			ids[n++] = r->s->id;
	if (n > 0) {
		o->renewing = 1;
		store_lease_renew(o->store, o->owner, ids, n, lease, renewed,
		    o);
	}
	free(ids);
}

static void
recover_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct orch			*o = arg;
	const struct config_flow	*flow;
	struct saga			*s;
	struct run			*r;

	if (o->closing || res != STORE_OK)
		return;
	s = saga_from_pb(rec->saga);
	if ((r = table_find(o, s->id)) != NULL) {
		/* Our own saga, claimed back after Redis was away. */
		r->rev = rec->rev;
		saga_free(s);
		return;
	}
	if (s->mode != SAGA_MODE_SYNC) {
		saga_free(s);	/* the bus redelivers async work */
		return;
	}
	flow = config_flow_find(o->cfg, s->flow);
	r = run_new(o, o->cfg, flow, s);
	r->rev = rec->rev;
	table_add(o, r);
	o->st.recovered++;
	if (flow == NULL || flow->nsteps != s->nsteps) {
		/* Its flow is gone or changed: nothing safe to call. */
		free(s->error);
		s->error = util_xstrdup("recovered, but its flow is no longer "
		    "configured as it was: compensate by hand");
		s->state = SAGA_STATE_FAILED;
		r->flow = o->cfg->nflows > 0 ? &o->cfg->flows[0] : NULL;
		r->a.kind = SAGA_ACT_END;
		olog(o, 1, s->id, "recovered saga of flow %s cannot be "
		    "compensated: the flow changed", s->flow);
		ev_add(r, "", s->state, s->error, 0);
		run_write(r, run_ended);
		return;
	}
	olog(o, 0, s->id, "recovering a %s saga whose owner died",
	    saga_state_name(s->state));
	r->a = saga_recover(s, r->cfg, flow, util_now_ms());
	ev_add(r, "", s->state, s->error, 0);
	run_next(r);
}

static void
claimed(enum store_result res, char *const *ids, size_t n, const char *err,
    void *arg)
{
	struct orch *o = arg;

	o->sweeping = 0;
	if (o->closing || res != STORE_OK)
		return;
	for (size_t i = 0; i < n; i++)
		store_get(o->store, ids[i], recover_got, o);
}

/* Throttling callers still held when the drain time is up. */
static void
holds_give_up(struct orch *o)
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
orch_cron(struct orch *o)
{
	int64_t now = util_mono_ms();
	char	err[SAGAD_ERRLEN];

	if (o->closing)
		return;
	if (o->bus != NULL && o->done_l == NULL) {
		o->done_l = bus_listen(o->bus, o->done_subject, done_heard, o,
		    err, sizeof(err));
		if (o->done_l == NULL && !o->listen_failed) {
			o->listen_failed = 1;
			olog(o, 1, NULL, "cannot listen on %s, retrying: %s",
			    o->done_subject, err);
		}
	}
	if (now - o->last_poll_ms >= ORCH_POLL_MS) {
		o->last_poll_ms = now;
		holds_poll(o);
	}
	if (o->draining && (o->nholders > 0 || o->nlaunches > 0) &&
	    now - o->drain_ms >= o->cfg->shutdown_timeout_ms)
		holds_give_up(o);
	if (now - o->last_renew_ms >= o->cfg->redis.lease_ms / 3) {
		o->last_renew_ms = now;
		renew_leases(o);
	}
	if (now - o->last_sweep_ms >= ORCH_SWEEP_MS && !o->sweeping &&
	    !o->draining && store_is_up(o->store)) {
		o->last_sweep_ms = now;
		o->sweeping = 1;
		store_lease_claim(o->store, o->owner, ORCH_SWEEP_BATCH,
		    o->cfg->redis.lease_ms, claimed, o);
	}
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
		  &saga__v1__saga__descriptor, 0, handle_get, o },
		{ "/saga.v1.Orchestrator/Watch",
		  &saga__v1__get_request__descriptor,
		  &saga__v1__saga_event__descriptor, 1, handle_watch, o },
		{ "/saga.v1.Orchestrator/ListFlows",
		  &saga__v1__list_flows_request__descriptor,
		  &saga__v1__list_flows_response__descriptor, 0,
		  handle_list_flows, o },
	};

	o->base = base;
	o->cfg = config_ref(cfg);
	o->srv = srv;
	o->client = client;
	o->store = store;
	o->owner = util_xstrdup(owner);
	o->tsize = 1024;
	o->table = util_xcalloc(o->tsize, sizeof(*o->table));
	TAILQ_INIT(&o->runs);
	o->hsize = 1024;
	o->htable = util_xcalloc(o->hsize, sizeof(*o->htable));
	TAILQ_INIT(&o->holds);
	TAILQ_INIT(&o->launches);
	{
		char subj[WORK_SUBJECT_MAX];

		(void)work_done_subject(subj, sizeof(subj), cfg->pod_id);
		o->done_subject = util_xstrdup(subj);
	}
	if (getrandom(&o->rng, sizeof(o->rng), 0) != sizeof(o->rng) ||
	    o->rng == 0)
		o->rng = (uint64_t)util_now_ms() * 2654435761u + 1;
	svcs_configure(o);
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
	config_free(o->cfg);
	o->cfg = config_ref(cfg);
	svcs_configure(o);
}

void
orch_set_log(struct orch *o, orch_log_fn fn, void *arg)
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
orch_close(struct orch *o)
{
	struct run *r;

	o->closing = 1;
	if (o->done_l != NULL) {
		bus_listener_close(o->done_l);
		o->done_l = NULL;
	}
	holds_give_up(o);
	TAILQ_FOREACH(r, &o->runs, all) {
		if (r->call != NULL) {
			grpc_client_call_cancel(r->call);
			r->call = NULL;
		}
		if (r->timer != NULL)
			evtimer_del(r->timer);
		waiters_fail(r, GRPC_STATUS_UNAVAILABLE,
		    "sagad stopped; the saga will be finished by another "
		    "master's recovery");
	}
}

void
orch_free(struct orch *o)
{
	struct run	*r;
	struct svc	*v;
	struct launch	*l;
	struct hold	*h;
	struct flowq	*q;

	if (o == NULL)
		return;
	if (!o->closing)
		orch_close(o);
	while ((r = TAILQ_FIRST(&o->runs)) != NULL)
		run_free(r);
	while ((l = TAILQ_FIRST(&o->launches)) != NULL)
		launch_free(l);
	while ((h = TAILQ_FIRST(&o->holds)) != NULL) {
		h->launching = 0;
		hold_free(h);
	}
	while ((q = o->flowqs) != NULL) {
		o->flowqs = q->next;
		free(q->name);
		free(q);
	}
	free(o->htable);
	free(o->done_subject);
	while ((v = o->svcs) != NULL) {
		o->svcs = v->next;
		free(v->name);
		free(v);
	}
	free(o->table);
	free(o->owner);
	config_free(o->cfg);
	free(o);
}
