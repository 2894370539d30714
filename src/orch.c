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

#define ORCH_ID_MAX		128	/* longest saga id a caller may give */
#define ORCH_SWEEP_MS		1000	/* sweeper period */
#define ORCH_SWEEP_BATCH	64	/* sagas claimed at most per sweep */
#define ORCH_RETRY_MIN_MS	50	/* first retry of a failed write */
#define ORCH_RETRY_MAX_MS	2000
#define ORCH_MAX_EVENTS		4	/* events one write appends at most */

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
	char		*step;		/* "" = the saga */
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
	struct orch_stats	 st;
	orch_log_fn		 log;
	void			*log_arg;
};

static void	run_next(struct run *);
static void	run_call(struct run *);
static void	run_write(struct run *, void (*)(struct run *));
static void	run_free(struct run *);

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
	e->step = util_xstrdup(step);
	e->state = state;
	e->error = error != NULL ? util_xstrdup(error) : NULL;
	e->attempt = attempt;
	e->ms = util_now_ms();
}

static void
evs_clear(struct run *r)
{
	for (int i = 0; i < r->nevs; i++) {
		free(r->evs[i].step);
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
		ev[i].step = r->evs[i].step;
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
	struct saga_step	*st = &r->s->steps[prev.step];
	enum saga_state		 before = r->s->state;

	r->a = saga_step_end(r->s, r->cfg, r->flow, &prev, status, msg, kv,
	    nkv, util_now_ms(), &r->o->rng);
	if (r->a.kind == SAGA_ACT_WAIT) {
		/* The failed attempt is an event; the retry comes later. */
		ev_add(r, st->name, st->state, st->error, prev.attempt);
		run_write(r, run_wait_start);
		return;
	}
	ev_add(r, st->name, st->state, st->error, prev.attempt);
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
		/* Nothing to send is the caller's mistake: no retry helps. */
		run_result(r, GRPC_STATUS_INVALID_ARGUMENT, err, NULL, 0);
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

static void
handle_run(struct grpc_call *call, void *arg)
{
	struct orch			*o = arg;
	const Saga__V1__RunRequest	*req;
	const struct config_flow	*flow;
	const struct grpc_md		*md;
	struct run			*r;
	struct saga			*s;
	enum saga_mode			 mode;
	char				 idbuf[64], err[256];
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
	if (mode != SAGA_MODE_SYNC) {
		snprintf(err, sizeof(err), "mode %s needs sagad's workers on "
		    "NATS JetStream, which this version does not run yet",
		    config_mode_name(mode));
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED, err);
		return;
	}
	if (req->callback_url != NULL && *req->callback_url != '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "callback_url: only async sagas report by callback");
		return;
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
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
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
	struct orch			*o = arg;
	const Saga__V1__GetRequest	*req;
	struct join			*j;

	req = (const Saga__V1__GetRequest *)grpc_call_request(call);
	if (req->id == NULL || *req->id == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "id: expected a saga id");
		return;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return;
	}
	j = util_xcalloc(1, sizeof(*j));
	j->o = o;
	j->call = call;
	j->id = util_xstrdup(req->id);
	j->getting = 1;
	grpc_call_on_cancel(call, get_cancelled, j);
	store_get(o->store, j->id, get_done, j);
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
	struct orch			*o = arg;
	const Saga__V1__GetRequest	*req;
	struct join			*j;

	req = (const Saga__V1__GetRequest *)grpc_call_request(call);
	if (req->id == NULL || *req->id == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "id: expected a saga id");
		return;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return;
	}
	j = util_xcalloc(1, sizeof(*j));
	j->o = o;
	j->call = call;
	j->id = util_xstrdup(req->id);
	grpc_call_on_cancel(call, watch_cancelled, j);
	j->watch = store_watch(o->store, j->id, watch_event, j);
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

void
orch_cron(struct orch *o)
{
	int64_t now = util_mono_ms();

	if (o->closing)
		return;
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
orch_drain(struct orch *o)
{
	o->draining = 1;
}

size_t
orch_running(const struct orch *o)
{
	return o->st.running;
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

	if (o == NULL)
		return;
	if (!o->closing)
		orch_close(o);
	while ((r = TAILQ_FIRST(&o->runs)) != NULL)
		run_free(r);
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
