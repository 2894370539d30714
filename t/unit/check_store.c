/*
 * check_store.c - the saga store against a real redis-server, whose port
 * comes from REDIS_PORT (t/store.sh starts one; without it the suite is
 * skipped). Each test runs its own event_base and stores, empties Redis
 * first, and waits for callbacks with a deadline so that a lost callback
 * fails the test instead of hanging it. A plain synchronous hiredis context
 * looks at what the store wrote (TTL, ZSCORE, XRANGE) and plays the operator
 * (SCRIPT FLUSH, CLIENT PAUSE, SHUTDOWN).
 */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check_run.h"
#include "store.h"
#include "store_int.h"
#include "util.h"

static int redis_port;
static int completed_ttl;	/* open_store's, 0 unless a test sets it */

/* --- helpers ----------------------------------------------------------- */

static redisContext *
rsync(void)
{
	redisContext *rc;
	struct timeval tv = { 5, 0 };

	rc = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
	ck_assert_msg(rc != NULL && rc->err == 0, "connect to redis on %d",
	    redis_port);
	return rc;
}

static long long
rint_cmd(redisContext *rc, const char *fmt, const char *arg)
{
	redisReply *rep;
	long long v;

	rep = redisCommand(rc, fmt, arg);
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
	v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* The lease bucket of a saga (store_lua.c). */
static const char *
lease_key(const char *id)
{
	static char k[32];

	snprintf(k, sizeof(k), "saga:leases:{b%u}", store_bucket(id));
	return k;
}

static void
setup(void)
{
	redisContext *rc = rsync();
	redisReply *rep;

	rep = redisCommand(rc, "FLUSHALL");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	redisFree(rc);
	completed_ttl = 0;
}

/* Runs the loop until *flag or ms pass; fails the test on the latter. */
static void
wait_for(struct event_base *base, const int *flag, int ms, const char *what)
{
	int64_t end = util_mono_ms() + ms;

	while (!*flag && util_mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	ck_assert_msg(*flag, "timed out after %d ms waiting for %s", ms, what);
}

#define WAIT_UNTIL(base, cond, ms, what) do {				\
	int64_t end_ = util_mono_ms() + (ms);				\
									\
	while (!(cond) && util_mono_ms() < end_)			\
		event_base_loop((base), EVLOOP_ONCE);			\
	ck_assert_msg((cond), "timed out after %d ms waiting for %s",	\
	    (ms), (what));						\
} while (0)

static void
run_ms(struct event_base *base, int ms)
{
	int64_t end = util_mono_ms() + ms;

	while (util_mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

struct up { int up, down, ups; };

static void
status_cb(int up, const char *why SAGAD_UNUSED, void *arg)
{
	struct up *u = arg;

	u->up = up;
	if (up)
		u->ups++;
	else
		u->down++;
}

static struct store *
open_store(struct event_base *base, struct up *u, int cmd_timeout)
{
	struct store_params p;
	struct store *st;
	char err[SAGAD_ERRLEN];

	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = redis_port;
	p.saga_ttl = 600;
	p.completed_ttl = completed_ttl;
	p.backoff_min_ms = 50;
	p.backoff_max_ms = 400;
	p.cmd_timeout_ms = cmd_timeout;
	p.watch_block_ms = 3000;
	st = store_new(base, &p, err, sizeof(err));
	ck_assert_msg(st != NULL, "store_new: %s", err);
	memset(u, 0, sizeof(*u));
	store_set_status_cb(st, status_cb, u);
	wait_for(base, &u->up, 3000, "the store to connect");
	return st;
}

/* A saga built on the stack, with two steps and a binary context value. */
struct tsaga {
	Saga__V1__Saga			 s;
	Saga__V1__Saga__ContextEntry	 ce[2];
	Saga__V1__Saga__ContextEntry	*cep[2];
	Saga__V1__StepResult		 sr[2];
	Saga__V1__StepResult		*srp[2];
	Saga__V1__SagaEvent		 ev;
	Saga__V1__SagaEvent		*evp[1];
	struct store_write		 w;
};

static const uint8_t binval[] = { 'a', 0, 'b', 0xff, 0x80, '\n' };

static void
tsaga_init(struct tsaga *t, char *id, const char *val)
{
	int i;

	memset(t, 0, sizeof(*t));
	saga__v1__saga__init(&t->s);
	t->s.id = id;
	t->s.flow = "Booking";
	t->s.mode = SAGA__V1__MODE__MODE_SYNC;
	t->s.state = SAGA__V1__STATE__STATE_RUNNING;
	t->s.created_unix_ms = 1700000000123LL;
	t->s.updated_unix_ms = 1700000000456LL;
	for (i = 0; i < 2; i++) {
		saga__v1__saga__context_entry__init(&t->ce[i]);
		t->cep[i] = &t->ce[i];
		saga__v1__step_result__init(&t->sr[i]);
		t->srp[i] = &t->sr[i];
	}
	t->ce[0].key = "bin";
	t->ce[0].value.data = (uint8_t *)(uintptr_t)binval;
	t->ce[0].value.len = sizeof(binval);
	t->ce[1].key = "val";
	t->ce[1].value.data = (uint8_t *)(uintptr_t)val;
	t->ce[1].value.len = strlen(val);
	t->s.n_context = 2;
	t->s.context = t->cep;
	t->sr[0].name = "CreateOrder";
	t->sr[0].state = SAGA__V1__STATE__STATE_RUNNING;
	t->sr[0].attempts = 1;
	t->sr[1].name = "CreatePayment";
	t->sr[1].state = SAGA__V1__STATE__STATE_PENDING;
	t->s.n_steps = 2;
	t->s.steps = t->srp;

	saga__v1__saga_event__init(&t->ev);
	t->ev.saga_id = id;
	t->ev.step = "";
	t->ev.state = SAGA__V1__STATE__STATE_RUNNING;
	t->ev.unix_ms = 1700000000123LL;
	t->evp[0] = &t->ev;

	t->w.saga = &t->s;
	t->w.pod = "pod-a";
	t->w.owner = "pod-a";
	t->w.callback = "http://127.0.0.1:9/cb";
	t->w.lease_ms = 30000;
	t->w.events = t->evp;
	t->w.nevents = 1;
}

/* What a callback saw. */
struct res {
	int			 n;		/* times called */
	enum store_result	 r;
	int64_t			 rev;
	Saga__V1__Saga		*saga;		/* stolen from the record */
	char			 owner[64];
	char			 pod[64];
	char			 callback[64];
	char			 cancel[64];
	int			 step;
	int			 compensate;
	int			 attempt;
	char			 err[256];
};

static void
res_free(struct res *x)
{
	if (x->saga != NULL)
		saga__v1__saga__free_unpacked(x->saga, NULL);
	x->saga = NULL;
}

static void
saga_cb(enum store_result r, struct store_saga *rec, const char *err,
    void *arg)
{
	struct res *x = arg;

	x->n++;
	x->r = r;
	if (err != NULL)
		snprintf(x->err, sizeof(x->err), "%s", err);
	if (rec != NULL) {
		x->rev = rec->rev;
		x->step = rec->step;
		x->compensate = rec->compensate;
		x->attempt = rec->attempt;
		snprintf(x->owner, sizeof(x->owner), "%s", rec->owner);
		snprintf(x->pod, sizeof(x->pod), "%s", rec->pod);
		snprintf(x->callback, sizeof(x->callback), "%s",
		    rec->callback);
		snprintf(x->cancel, sizeof(x->cancel), "%s", rec->cancel);
		x->saga = rec->saga;	/* steal it */
		rec->saga = NULL;
	}
}

static void
rev_cb(enum store_result r, int64_t rev, const char *cancel, const char *err,
    void *arg)
{
	struct res *x = arg;

	x->n++;
	x->r = r;
	x->rev = rev;
	snprintf(x->cancel, sizeof(x->cancel), "%s", cancel != NULL ? cancel :
	    "");
	if (err != NULL)
		snprintf(x->err, sizeof(x->err), "%s", err);
}

struct ids {
	int			 n;
	enum store_result	 r;
	char			*ids[64];
	size_t			 nids;
};

static void
ids_cb(enum store_result r, char *const *ids, size_t n,
    const char *err SAGAD_UNUSED, void *arg)
{
	struct ids *x = arg;
	size_t i;

	x->n++;
	x->r = r;
	for (i = 0; i < n && x->nids < 64; i++)
		x->ids[x->nids++] = util_xstrdup(ids[i]);
}

static void
ids_free(struct ids *x)
{
	size_t i;

	for (i = 0; i < x->nids; i++)
		free(x->ids[i]);
	x->nids = 0;
}

static int
ids_has(const struct ids *x, const char *id)
{
	size_t i;

	for (i = 0; i < x->nids; i++)
		if (strcmp(x->ids[i], id) == 0)
			return 1;
	return 0;
}

static void
create_ok(struct event_base *base, struct store *st, struct tsaga *t)
{
	struct res x;

	memset(&x, 0, sizeof(x));
	store_create(st, &t->w, saga_cb, &x);
	wait_for(base, &x.n, 3000, "create");
	ck_assert_msg(x.r == STORE_OK, "create: %s %s",
	    store_result_name(x.r), x.err);
	ck_assert_int_eq(x.rev, 1);
	ck_assert_ptr_null(x.saga);
}

static void
get_one(struct event_base *base, struct store *st, const char *id,
    struct res *x)
{
	memset(x, 0, sizeof(*x));
	store_get(st, id, saga_cb, x);
	wait_for(base, &x->n, 3000, "get");
}

static void
update(struct event_base *base, struct store *st, struct tsaga *t,
    int64_t rev, struct res *x)
{
	memset(x, 0, sizeof(*x));
	t->w.rev = rev;
	store_update(st, &t->w, rev_cb, x);
	wait_for(base, &x->n, 3000, "update");
}

/* --- sagas ------------------------------------------------------------- */

START_TEST(create_then_get_round_trips_the_saga)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	Saga__V1__Saga *s;
	redisContext *rc;
	redisReply *rep;

	tsaga_init(&t, "s-1", "hello");
	t.w.step = 1;
	create_ok(base, st, &t);
	get_one(base, st, "s-1", &x);
	ck_assert_msg(x.r == STORE_OK, "get: %s", store_result_name(x.r));
	ck_assert_int_eq(x.n, 1);
	ck_assert_int_eq(x.rev, 1);
	ck_assert_int_eq(x.step, 1);
	ck_assert_str_eq(x.owner, "pod-a");
	ck_assert_str_eq(x.pod, "pod-a");
	ck_assert_str_eq(x.callback, "http://127.0.0.1:9/cb");
	s = x.saga;
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s->id, "s-1");
	ck_assert_str_eq(s->flow, "Booking");
	ck_assert_int_eq(s->mode, SAGA__V1__MODE__MODE_SYNC);
	ck_assert_int_eq(s->state, SAGA__V1__STATE__STATE_RUNNING);
	ck_assert_int_eq(s->created_unix_ms, 1700000000123LL);
	ck_assert_int_eq(s->n_context, 2);
	ck_assert_str_eq(s->context[0]->key, "bin");
	ck_assert_uint_eq(s->context[0]->value.len, sizeof(binval));
	ck_assert(memcmp(s->context[0]->value.data, binval,
	    sizeof(binval)) == 0);
	ck_assert_int_eq(s->n_steps, 2);
	ck_assert_str_eq(s->steps[1]->name, "CreatePayment");
	ck_assert_int_eq(s->steps[0]->attempts, 1);
	res_free(&x);

	/* The readable fields are there for operators. */
	rc = rsync();
	rep = redisCommand(rc, "HGET saga:{s-1} state");
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "STATE_RUNNING");
	freeReplyObject(rep);
	redisFree(rc);

	get_one(base, st, "nope", &x);
	ck_assert_int_eq(x.r, STORE_NOT_FOUND);
	ck_assert_ptr_null(x.saga);

	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(second_create_returns_exists_with_the_first_saga)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t1, t2;
	struct res x;

	tsaga_init(&t1, "s-dup", "first");
	create_ok(base, st, &t1);
	tsaga_init(&t2, "s-dup", "second");
	memset(&x, 0, sizeof(x));
	store_create(st, &t2.w, saga_cb, &x);
	wait_for(base, &x.n, 3000, "second create");
	ck_assert_int_eq(x.r, STORE_EXISTS);
	ck_assert_int_eq(x.rev, 1);
	ck_assert_ptr_nonnull(x.saga);
	ck_assert_str_eq(x.saga->context[1]->key, "val");
	ck_assert_uint_eq(x.saga->context[1]->value.len, 5);
	ck_assert(memcmp(x.saga->context[1]->value.data, "first", 5) == 0);
	res_free(&x);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(update_with_current_rev_wins_and_stale_rev_conflicts)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;

	tsaga_init(&t, "s-cas", "v");
	create_ok(base, st, &t);
	t.sr[0].state = SAGA__V1__STATE__STATE_COMPLETED;
	t.sr[1].state = SAGA__V1__STATE__STATE_RUNNING;
	t.sr[1].attempts = 1;
	t.w.step = 1;
	update(base, st, &t, 1, &x);
	ck_assert_msg(x.r == STORE_OK, "%s %s", store_result_name(x.r), x.err);
	ck_assert_int_eq(x.rev, 2);
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_CONFLICT);
	ck_assert_int_eq(x.rev, 2);

	get_one(base, st, "s-cas", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(x.rev, 2);
	ck_assert_int_eq(x.step, 1);
	ck_assert_int_eq(x.saga->steps[1]->state,
	    SAGA__V1__STATE__STATE_RUNNING);
	ck_assert_int_eq(x.saga->steps[1]->attempts, 1);
	res_free(&x);

	tsaga_init(&t, "s-missing", "v");
	update(base, st, &t, 3, &x);
	ck_assert_int_eq(x.r, STORE_NOT_FOUND);
	store_free(st);
	event_base_free(base);
}
END_TEST

/* What sagad-worker resumes from: the pending call's phase and attempts. */
START_TEST(update_keeps_the_pending_phase_and_its_attempts)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;

	tsaga_init(&t, "s-phase", "v");
	create_ok(base, st, &t);
	get_one(base, st, "s-phase", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(x.compensate, 0);
	ck_assert_int_eq(x.attempt, 0);
	res_free(&x);

	t.w.step = 1;
	t.w.compensate = 1;
	t.w.attempt = 3;
	update(base, st, &t, 1, &x);
	ck_assert_msg(x.r == STORE_OK, "%s %s", store_result_name(x.r), x.err);
	get_one(base, st, "s-phase", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(x.step, 1);
	ck_assert_int_eq(x.compensate, 1);
	ck_assert_int_eq(x.attempt, 3);
	res_free(&x);

	t.w.compensate = 0;
	t.w.attempt = 0;
	update(base, st, &t, 2, &x);
	ck_assert_msg(x.r == STORE_OK, "%s %s", store_result_name(x.r), x.err);
	get_one(base, st, "s-phase", &x);
	ck_assert_int_eq(x.compensate, 0);
	ck_assert_int_eq(x.attempt, 0);
	res_free(&x);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(concurrent_updates_on_one_rev_have_one_winner)
{
	struct event_base *base = event_base_new();
	struct up u1, u2;
	struct store *a = open_store(base, &u1, 0);
	struct store *b = open_store(base, &u2, 0);
	struct tsaga t;
	struct res xa, xb;
	int both, round;

	tsaga_init(&t, "s-race", "v");
	create_ok(base, a, &t);
	for (round = 1; round <= 20; round++) {
		memset(&xa, 0, sizeof(xa));
		memset(&xb, 0, sizeof(xb));
		t.w.rev = round;
		store_update(a, &t.w, rev_cb, &xa);
		store_update(b, &t.w, rev_cb, &xb);
		WAIT_UNTIL(base, xa.n && xb.n, 3000, "both updates");
		both = (xa.r == STORE_OK) + (xb.r == STORE_OK);
		ck_assert_msg(both == 1, "round %d: %s and %s", round,
		    store_result_name(xa.r), store_result_name(xb.r));
		ck_assert(xa.r == STORE_CONFLICT || xb.r == STORE_CONFLICT);
		ck_assert_int_eq(xa.rev, round + 1);
		ck_assert_int_eq(xb.rev, round + 1);
	}
	store_free(a);
	store_free(b);
	event_base_free(base);
}
END_TEST

/* --- events and watches ------------------------------------------------- */

struct evs {
	int			 n;		/* events */
	int			 ended;		/* last callback seen */
	int			 calls_after_end;
	enum store_result	 r;
	char			 steps[16][32];
	int			 states[16];
	int			 final;
	struct store_watch	*w;
	int			 cancel_at;	/* cancel after this many */
	char			 error[256];	/* of the last event */
	char			 saga_id[64];
};

static void
ev_cb(enum store_result r, const Saga__V1__SagaEvent *ev, int final,
    const char *err SAGAD_UNUSED, void *arg)
{
	struct evs *x = arg;

	if (x->ended)
		x->calls_after_end++;
	x->r = r;
	if (r != STORE_OK) {
		x->ended = 1;
		return;
	}
	if (x->n < 16) {
		snprintf(x->steps[x->n], sizeof(x->steps[0]), "%s", ev->step);
		x->states[x->n] = ev->state;
	}
	snprintf(x->error, sizeof(x->error), "%s", ev->error);
	snprintf(x->saga_id, sizeof(x->saga_id), "%s", ev->saga_id);
	x->n++;
	if (final) {
		x->final = 1;
		x->ended = 1;
	}
	if (x->cancel_at > 0 && x->n == x->cancel_at) {
		store_watch_cancel(x->w);
		x->ended = 1;
	}
}

static void
step_event(struct tsaga *t, char *step, int state)
{
	t->ev.step = step;
	t->ev.state = state;
}

START_TEST(events_are_appended_in_order_and_readable_from_the_start)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	struct evs e;
	redisContext *rc;
	int64_t rev = 1;

	tsaga_init(&t, "s-ev", "v");
	create_ok(base, st, &t);
	step_event(&t, "CreateOrder", SAGA__V1__STATE__STATE_RUNNING);
	update(base, st, &t, rev++, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	step_event(&t, "CreateOrder", SAGA__V1__STATE__STATE_COMPLETED);
	update(base, st, &t, rev++, &x);
	ck_assert_int_eq(x.r, STORE_OK);

	/* The events are fields of the saga's hash: no stream unwatched. */
	rc = rsync();
	ck_assert_int_eq(rint_cmd(rc, "HLEN %s", "saga:{s-ev}") > 0, 1);
	/* One value a write: e1 (the create), e2, e3. */
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e1", "saga:{s-ev}"), 1);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e3", "saga:{s-ev}"), 1);
	ck_assert_int_eq(rint_cmd(rc, "EXISTS %s", "saga:{s-ev}:events"), 0);
	redisFree(rc);

	/* A watch replays the three, then follows. */
	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-ev", ev_cb, &e);
	WAIT_UNTIL(base, e.n >= 3 || e.ended, 3000, "replayed events");
	run_ms(base, 50);
	ck_assert_int_eq(e.n, 3);
	ck_assert_str_eq(e.steps[0], "");
	ck_assert_int_eq(e.states[0], SAGA__V1__STATE__STATE_RUNNING);
	ck_assert_str_eq(e.steps[1], "CreateOrder");
	ck_assert_int_eq(e.states[1], SAGA__V1__STATE__STATE_RUNNING);
	ck_assert_int_eq(e.states[2], SAGA__V1__STATE__STATE_COMPLETED);
	ck_assert(!e.ended);

	t.s.state = SAGA__V1__STATE__STATE_COMPLETED;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPLETED);
	update(base, st, &t, rev++, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	wait_for(base, &e.ended, 3000, "the final event");
	ck_assert_int_eq(e.n, 4);
	ck_assert(e.final);
	ck_assert_int_eq(e.r, STORE_OK);

	/* Watching an ended saga replays everything and ends. */
	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-ev", ev_cb, &e);
	wait_for(base, &e.ended, 3000, "the replay of an ended saga");
	ck_assert_int_eq(e.n, 4);
	ck_assert(e.final);
	run_ms(base, 50);
	ck_assert_int_eq(e.calls_after_end, 0);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(watch_follows_a_saga_written_by_another_store)
{
	struct event_base *base = event_base_new();
	struct up u1, u2;
	struct store *reader = open_store(base, &u1, 0);
	struct store *writer = open_store(base, &u2, 0);
	struct tsaga t, t2;
	struct res x;
	struct evs e, e2, e3;

	tsaga_init(&t, "s-remote", "v");
	create_ok(base, writer, &t);
	tsaga_init(&t2, "s-other", "v");
	create_ok(base, writer, &t2);
	memset(&e, 0, sizeof(e));
	memset(&e2, 0, sizeof(e2));
	memset(&e3, 0, sizeof(e3));
	e.w = store_watch(reader, "s-remote", ev_cb, &e);
	e2.w = store_watch(reader, "s-remote", ev_cb, &e2);
	wait_for(base, &e.n, 3000, "the first event");
	/* Joins while the first two block in XREAD. */
	run_ms(base, 100);
	e3.w = store_watch(reader, "s-other", ev_cb, &e3);
	wait_for(base, &e3.n, 800, "the other saga's first event");

	step_event(&t, "CreateOrder", SAGA__V1__STATE__STATE_RUNNING);
	update(base, writer, &t, 1, &x);
	WAIT_UNTIL(base, e.n >= 2 && e2.n >= 2, 3000, "followed events");
	t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPENSATED);
	update(base, writer, &t, 2, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	wait_for(base, &e.ended, 3000, "watch 1 to end");
	wait_for(base, &e2.ended, 3000, "watch 2 to end");
	ck_assert_int_eq(e.n, 3);
	ck_assert_int_eq(e2.n, 3);
	ck_assert(e.final && e2.final);
	ck_assert_int_eq(e.states[2], SAGA__V1__STATE__STATE_COMPENSATED);
	ck_assert(!e3.ended);
	store_watch_cancel(e3.w);
	run_ms(base, 50);
	ck_assert_int_eq(e3.calls_after_end, 0);
	store_free(reader);
	store_free(writer);
	event_base_free(base);
}
END_TEST

START_TEST(watch_of_an_unknown_saga_is_not_found)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct evs e;

	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-none", ev_cb, &e);
	ck_assert(!e.ended);		/* never inside the call */
	wait_for(base, &e.ended, 3000, "NOT_FOUND");
	ck_assert_int_eq(e.r, STORE_NOT_FOUND);
	ck_assert_int_eq(e.n, 0);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(watch_cancel_stops_callbacks_even_from_inside_one)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	struct evs e, e2;

	tsaga_init(&t, "s-cancel", "v");
	create_ok(base, st, &t);
	step_event(&t, "CreateOrder", SAGA__V1__STATE__STATE_RUNNING);
	update(base, st, &t, 1, &x);
	memset(&e, 0, sizeof(e));
	memset(&e2, 0, sizeof(e2));
	e.cancel_at = 1;
	e.w = store_watch(st, "s-cancel", ev_cb, &e);
	e2.w = store_watch(st, "s-cancel", ev_cb, &e2);
	store_watch_cancel(e2.w);	/* before its EXISTS is answered */
	wait_for(base, &e.ended, 3000, "the first event");
	run_ms(base, 200);
	ck_assert_int_eq(e.n, 1);
	ck_assert_int_eq(e.calls_after_end, 0);
	ck_assert_int_eq(e2.n, 0);
	ck_assert(!e2.ended);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(watches_beyond_the_bound_are_busy)
{
	struct event_base *base = event_base_new();
	struct store_params p;
	struct store *st;
	struct tsaga t;
	struct up u;
	struct evs e, e2;
	char err[SAGAD_ERRLEN];

	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = redis_port;
	p.max_watches = 1;
	st = store_new(base, &p, err, sizeof(err));
	ck_assert_ptr_nonnull(st);
	memset(&u, 0, sizeof(u));
	store_set_status_cb(st, status_cb, &u);
	wait_for(base, &u.up, 3000, "connect");
	tsaga_init(&t, "s-busy", "v");
	create_ok(base, st, &t);
	memset(&e, 0, sizeof(e));
	memset(&e2, 0, sizeof(e2));
	e.w = store_watch(st, "s-busy", ev_cb, &e);
	e2.w = store_watch(st, "s-busy", ev_cb, &e2);
	wait_for(base, &e2.ended, 3000, "BUSY");
	ck_assert_int_eq(e2.r, STORE_BUSY);
	wait_for(base, &e.n, 3000, "the first watch's event");
	ck_assert(!e.ended);
	store_free(st);		/* ends the open watch */
	ck_assert(e.ended);
	ck_assert_int_eq(e.r, STORE_UNAVAILABLE);
	event_base_free(base);
}
END_TEST

/* --- ends and leases ---------------------------------------------------- */

START_TEST(terminal_state_sets_ttl_and_drops_the_lease)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	redisContext *rc = rsync();
	redisReply *rep;
	long long ttl;

	tsaga_init(&t, "s-end", "v");
	create_ok(base, st, &t);
	rep = redisCommand(rc, "ZSCORE %s s-end", lease_key("s-end"));
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	freeReplyObject(rep);
	ck_assert_int_eq(rint_cmd(rc, "TTL %s", "saga:{s-end}"), -1);

	t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
	t.s.error = "CreatePayment: ABORTED: no";
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPENSATED);
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ttl = rint_cmd(rc, "TTL %s", "saga:{s-end}");
	ck_assert_msg(ttl > 590 && ttl <= 600, "hash ttl %lld", ttl);
	ck_assert_int_eq(rint_cmd(rc, "EXISTS %s", "saga:{s-end}:events"), 0);
	rep = redisCommand(rc, "ZSCORE %s s-end", lease_key("s-end"));
	ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	/* Every value fits a listpack: the hash stays compact. */
	rep = redisCommand(rc, "OBJECT ENCODING saga:{s-end}");
	ck_assert_str_eq(rep->str, "listpack");
	freeReplyObject(rep);
	redisFree(rc);
	get_one(base, st, "s-end", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_str_eq(x.saga->error, "CreatePayment: ABORTED: no");
	res_free(&x);
	store_free(st);
	event_base_free(base);
}
END_TEST

static void
count_cb(enum store_result r, size_t n, const char *err, void *arg)
{
	struct res *x = arg;

	(void)err;
	x->n++;
	x->r = r;
	x->rev = (int64_t)n;
}

/* What a List callback saw: the ids in order, and the cursor. */
struct page {
	int			 n;
	enum store_result	 r;
	char			*ids[64];
	size_t			 nids;
	int			 more;
	int64_t			 last_ms;
	char			 last_id[64];
};

static void
page_cb(enum store_result r, Saga__V1__Saga *const *sagas, size_t n,
    int more, int64_t last_ms, const char *last_id, const char *err,
    void *arg)
{
	struct page *p = arg;

	(void)err;
	p->n++;
	p->r = r;
	for (size_t i = 0; i < n && p->nids < 64; i++)
		p->ids[p->nids++] = util_xstrdup(sagas[i]->id);
	p->more = more;
	p->last_ms = last_ms;
	snprintf(p->last_id, sizeof(p->last_id), "%s", last_id != NULL ?
	    last_id : "");
}

/* Every page of q, limit a page; the ids as one comma list. */
static void
list_all(struct event_base *base, struct store *st,
    struct store_list_query *q, char *out, size_t len)
{
	struct page	p;
	char		cursor[64];

	*out = '\0';
	q->after_id = NULL;
	for (;;) {
		memset(&p, 0, sizeof(p));
		store_list(st, q, page_cb, &p);
		wait_for(base, &p.n, 3000, "list");
		ck_assert_int_eq(p.r, STORE_OK);
		for (size_t i = 0; i < p.nids; i++) {
			if (*out != '\0')
				strncat(out, ",", len - strlen(out) - 1);
			strncat(out, p.ids[i], len - strlen(out) - 1);
			free(p.ids[i]);
		}
		if (!p.more)
			return;
		snprintf(cursor, sizeof(cursor), "%s", p.last_id);
		q->after_ms = p.last_ms;
		q->after_id = cursor;
	}
}

START_TEST(list_pages_newest_first_ties_by_id_and_filters)
{
	struct event_base	*base = event_base_new();
	struct up		 u;
	struct store		*st = open_store(base, &u, 0);
	struct tsaga		 t;
	struct res		 x;
	struct store_list_query	 q;
	const char		*failed[] = { "STATE_FAILED" },
				*two[] = { "STATE_FAILED", "STATE_RUNNING" };
	static char		 ids[12][16];
	char			 got[1024];

	/* i-00..i-11: created at 5000 + i / 3 ms, so three share each ms. */
	for (int i = 0; i < 12; i++) {
		snprintf(ids[i], sizeof(ids[i]), "i-%02d", i);
		tsaga_init(&t, ids[i], "v");
		t.s.flow = i % 2 ? "IdxA" : "IdxB";
		t.s.created_unix_ms = 5000 + i / 3;
		t.w.lease_ms = 0;
		create_ok(base, st, &t);
		if (i % 4 == 0) {
			t.s.state = SAGA__V1__STATE__STATE_FAILED;
			update(base, st, &t, 1, &x);
			ck_assert_int_eq(x.r, STORE_OK);
		}
	}
	memset(&q, 0, sizeof(q));
	q.since_ms = 5000;
	q.until_ms = 5004;
	q.limit = 5;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "i-11,i-10,i-09,i-08,i-07,i-06,i-05,i-04,i-03,"
	    "i-02,i-01,i-00");
	q.limit = 1;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "i-11,i-10,i-09,i-08,i-07,i-06,i-05,i-04,i-03,"
	    "i-02,i-01,i-00");
	q.limit = 2;
	q.states = failed;
	q.nstates = 1;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "i-08,i-04,i-00");
	/* A state change moves it: FAILED, then RUNNING ones merged. */
	q.states = two;
	q.nstates = 2;
	q.flow = "IdxB";
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "i-10,i-08,i-06,i-04,i-02,i-00");
	q.states = NULL;
	q.nstates = 0;
	q.flow = "IdxA";
	q.since_ms = 5001;	/* inclusive */
	q.until_ms = 5003;	/* exclusive */
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "i-07,i-05,i-03");
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(cancel_marks_a_running_saga_and_its_next_write_says_so)
{
	struct event_base	*base = event_base_new();
	struct up		 u;
	struct store		*st = open_store(base, &u, 0);
	struct tsaga		 t;
	struct res		 x;

	tsaga_init(&t, "c-1", "v");
	create_ok(base, st, &t);
	memset(&x, 0, sizeof(x));
	store_cancel(st, "c-1", "customer left", saga_cb, &x);
	wait_for(base, &x.n, 3000, "cancel");
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_str_eq(x.cancel, "customer left");
	res_free(&x);
	/* The driver's next write goes through and learns it. */
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_str_eq(x.cancel, "customer left");
	get_one(base, st, "c-1", &x);
	ck_assert_str_eq(x.cancel, "customer left");
	res_free(&x);
	/* Compensating: the mark is no longer news, and Cancel is a no-op. */
	t.s.state = SAGA__V1__STATE__STATE_COMPENSATING;
	update(base, st, &t, 2, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_str_eq(x.cancel, "");
	memset(&x, 0, sizeof(x));
	store_cancel(st, "c-1", "again", saga_cb, &x);
	wait_for(base, &x.n, 3000, "cancel");
	ck_assert_int_eq(x.r, STORE_UNCHANGED);
	res_free(&x);
	t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
	update(base, st, &t, 3, &x);
	memset(&x, 0, sizeof(x));
	store_cancel(st, "c-1", "late", saga_cb, &x);
	wait_for(base, &x.n, 3000, "cancel");
	ck_assert_int_eq(x.r, STORE_ENDED);
	ck_assert_int_eq(x.saga->state, SAGA__V1__STATE__STATE_COMPENSATED);
	res_free(&x);
	memset(&x, 0, sizeof(x));
	store_cancel(st, "c-none", "x", saga_cb, &x);
	wait_for(base, &x.n, 3000, "cancel");
	ck_assert_int_eq(x.r, STORE_NOT_FOUND);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(expired_sagas_leave_the_index)
{
	struct event_base	*base = event_base_new();
	struct store_params	 p;
	struct store		*st;
	struct up		 u;
	struct tsaga		 t;
	struct res		 x;
	struct store_list_query	 q;
	struct res		 e;
	char			 got[256], err[SAGAD_ERRLEN];
	redisContext		*rc = rsync();

	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = redis_port;
	p.saga_ttl = 1;
	st = store_new(base, &p, err, sizeof(err));
	ck_assert_ptr_nonnull(st);
	memset(&u, 0, sizeof(u));
	store_set_status_cb(st, status_cb, &u);
	wait_for(base, &u.up, 3000, "the store to connect");
	tsaga_init(&t, "x-1", "v");
	t.s.flow = "ExpFlow";
	create_ok(base, st, &t);
	t.s.state = SAGA__V1__STATE__STATE_COMPLETED;
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	memset(&q, 0, sizeof(q));
	q.flow = "ExpFlow";
	q.limit = 10;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "x-1");
	usleep(1300 * 1000);
	memset(&e, 0, sizeof(e));
	store_index_expire(st, 100, count_cb, &e);
	wait_for(base, &e.n, 3000, "expire");
	ck_assert_int_eq(e.r, STORE_OK);
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "");
	ck_assert_int_eq(rint_cmd(rc, "ZCARD %s",
	    "saga:idx:ExpFlow:STATE_COMPLETED"), 0);
	ck_assert_int_eq(e.rev, 1);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(reopening_an_ended_saga_drops_its_expiry_and_old_events)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	struct evs e;
	redisContext *rc = rsync();
	redisReply *rep;

	tsaga_init(&t, "s-re", "v");
	t.w.lease_ms = 0;
	create_ok(base, st, &t);
	t.s.state = SAGA__V1__STATE__STATE_FAILED;
	t.s.error = "never queued";
	step_event(&t, "", SAGA__V1__STATE__STATE_FAILED);
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	/* FAILED waits for an operator: it never expires. */
	ck_assert_int_eq(rint_cmd(rc, "TTL %s", "saga:{s-re}"), -1);

	/* Queued again: running, so no expiry, and a history of this run. */
	t.s.state = SAGA__V1__STATE__STATE_PENDING;
	t.s.error = "";
	step_event(&t, "", SAGA__V1__STATE__STATE_PENDING);
	t.w.reopen = 1;
	update(base, st, &t, 2, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(rint_cmd(rc, "TTL %s", "saga:{s-re}"), -1);
	/* This run's events: e3 (e1 and e2 were the old run's). */
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e1", "saga:{s-re}"), 0);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e2", "saga:{s-re}"), 0);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e3", "saga:{s-re}"), 1);
	rep = redisCommand(rc, "HGET saga:{s-re} eb");
	ck_assert_str_eq(rep->str, "3");
	freeReplyObject(rep);

	/* A watch replays the new run and keeps following it. */
	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-re", ev_cb, &e);
	WAIT_UNTIL(base, e.n >= 1 || e.ended, 3000, "the replay");
	run_ms(base, 100);
	ck_assert_int_eq(e.n, 1);
	ck_assert_int_eq(e.states[0], SAGA__V1__STATE__STATE_PENDING);
	ck_assert(!e.ended);

	/* Its end expires it again and ends the watch. */
	t.w.reopen = 0;
	t.s.state = SAGA__V1__STATE__STATE_COMPLETED;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPLETED);
	update(base, st, &t, 3, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	wait_for(base, &e.ended, 3000, "the final event");
	ck_assert(e.final);
	ck_assert_int_gt(rint_cmd(rc, "TTL %s", "saga:{s-re}"), 0);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(expired_leases_are_claimed_exactly_once_across_stores)
{
	struct event_base *base = event_base_new();
	struct up u1, u2;
	struct store *a = open_store(base, &u1, 0);
	struct store *b = open_store(base, &u2, 0);
	struct tsaga t;
	struct ids ia, ib;
	struct res x;
	char id[32];
	int i, total;

	for (i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "exp-%d", i);
		tsaga_init(&t, id, "v");
		t.w.owner = "pod-dead";
		t.w.lease_ms = 1;
		create_ok(base, a, &t);
	}
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "live-%d", i);
		tsaga_init(&t, id, "v");
		t.w.lease_ms = 60000;
		create_ok(base, a, &t);
	}
	run_ms(base, 20);
	memset(&ia, 0, sizeof(ia));
	memset(&ib, 0, sizeof(ib));
	/* Both ask at once, on two connections; each may take 15. */
	store_lease_claim(a, "pod-a", 15, 30000, 30000, ids_cb, &ia);
	store_lease_claim(b, "pod-b", 15, 30000, 30000, ids_cb, &ib);
	wait_for(base, &ia.n, 3000, "claim a");
	wait_for(base, &ib.n, 3000, "claim b");
	ck_assert_int_eq(ia.r, STORE_OK);
	ck_assert_int_eq(ib.r, STORE_OK);
	total = (int)(ia.nids + ib.nids);
	ck_assert_int_eq(total, 20);
	for (i = 0; i < (int)ia.nids; i++) {
		ck_assert_msg(!ids_has(&ib, ia.ids[i]), "%s claimed twice",
		    ia.ids[i]);
		ck_assert_msg(strncmp(ia.ids[i], "exp-", 4) == 0,
		    "%s was not expired", ia.ids[i]);
	}
	for (i = 0; i < (int)ib.nids; i++)
		ck_assert(strncmp(ib.ids[i], "exp-", 4) == 0);

	/* The claimer owns it now and the old owner's revision is stale. */
	if (ia.nids > 0) {
		get_one(base, a, ia.ids[0], &x);
		ck_assert_str_eq(x.owner, "pod-a");
		ck_assert_int_eq(x.rev, 2);
		res_free(&x);
		tsaga_init(&t, ia.ids[0], "v");
		update(base, a, &t, 1, &x);
		ck_assert_int_eq(x.r, STORE_CONFLICT);
	}
	ids_free(&ia);
	ids_free(&ib);

	/* Nothing is left to claim: the new leases run. */
	store_lease_claim(b, "pod-b", 100, 30000, 30000, ids_cb, &ib);
	wait_for(base, &ib.n, 3000, "claim again");
	ck_assert_int_eq(ib.nids, 0);
	store_free(a);
	store_free(b);
	event_base_free(base);
}
END_TEST

/* One beat of the pods' registry; its reply split at the empty id. */
static void
pods_beat_ok(struct event_base *base, struct store *st, const char *me,
    int lease_ms, int max, const char *const *release, size_t nrelease,
    const char *const *reclaim, size_t nreclaim, struct ids *taken,
    struct ids *gone)
{
	struct store_pods_beat	b;
	struct ids		x;
	size_t			i = 0;

	memset(&b, 0, sizeof(b));
	memset(&x, 0, sizeof(x));
	b.me = me;
	b.lease_ms = lease_ms;
	b.max = max;
	b.gone_keep_ms = 60000;
	b.renew = &me;
	b.nrenew = 1;
	b.release = release;
	b.nrelease = nrelease;
	b.reclaim = reclaim;
	b.nreclaim = nreclaim;
	store_pods(st, &b, ids_cb, &x);
	wait_for(base, &x.n, 3000, "a beat of the pods' registry");
	ck_assert_int_eq(x.r, STORE_OK);
	memset(taken, 0, sizeof(*taken));
	memset(gone, 0, sizeof(*gone));
	for (; i < x.nids && x.ids[i][0] != '\0'; i++)
		taken->ids[taken->nids++] = util_xstrdup(x.ids[i]);
	ck_assert_msg(i < x.nids, "no empty id between taken and gone");
	for (i++; i < x.nids; i++)
		gone->ids[gone->nids++] = util_xstrdup(x.ids[i]);
	ids_free(&x);
}

START_TEST(a_gone_pod_is_taken_back_once_and_forgotten_when_it_renews)
{
	struct event_base *base = event_base_new();
	struct up u1, u2, u3;
	struct store *a = open_store(base, &u1, 0);
	struct store *b = open_store(base, &u2, 0);
	struct store *c = open_store(base, &u3, 0);
	redisContext *rc = rsync();
	redisReply *rep;
	const char *pa = "pa";
	struct ids t1, g1, t2, g2;

	freeReplyObject(redisCommand(rc, "DEL saga:pods saga:pods:gone"));
	/* pa registers with a short lease and dies; pb takes it. */
	pods_beat_ok(base, a, "pa", 50, 4, NULL, 0, NULL, 0, &t1, &g1);
	ck_assert_int_eq(t1.nids + g1.nids, 0);
	run_ms(base, 120);
	pods_beat_ok(base, b, "pb", 5000, 4, NULL, 0, NULL, 0, &t1, &g1);
	ck_assert_int_eq(t1.nids, 1);
	ck_assert_str_eq(t1.ids[0], "pa");
	ids_free(&t1);

	/* Its adoption over, pb lets it go: pa is gone, for every pod. */
	pods_beat_ok(base, b, "pb", 5000, 4, &pa, 1, NULL, 0, &t1, &g1);
	ck_assert_int_eq(t1.nids, 0);
	ck_assert_int_eq(g1.nids, 1);
	ck_assert_str_eq(g1.ids[0], "pa");
	ids_free(&g1);
	rep = redisCommand(rc, "ZSCORE saga:pods pa");
	ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);

	/* Two pods find work on it: one takes it back, the other nothing. */
	pods_beat_ok(base, b, "pb", 5000, 4, NULL, 0, &pa, 1, &t1, &g1);
	pods_beat_ok(base, c, "pc", 5000, 4, NULL, 0, &pa, 1, &t2, &g2);
	ck_assert_int_eq(t1.nids, 1);
	ck_assert_str_eq(t1.ids[0], "pa");
	ck_assert_int_eq(t2.nids, 0);
	ck_assert_int_eq(g1.nids + g2.nids, 0);
	ids_free(&t1);

	/* Let go again, then pa comes back under its own id: not gone. */
	pods_beat_ok(base, b, "pb", 5000, 4, &pa, 1, NULL, 0, &t1, &g1);
	ck_assert_int_eq(g1.nids, 1);
	ids_free(&g1);
	pods_beat_ok(base, a, "pa", 5000, 4, NULL, 0, NULL, 0, &t1, &g1);
	ck_assert_int_eq(t1.nids + g1.nids, 0);
	pods_beat_ok(base, c, "pc", 5000, 4, NULL, 0, &pa, 1, &t2, &g2);
	ck_assert_int_eq(t2.nids + g2.nids, 0);

	freeReplyObject(redisCommand(rc, "DEL saga:pods saga:pods:gone"));
	redisFree(rc);
	store_free(a);
	store_free(b);
	store_free(c);
	event_base_free(base);
}
END_TEST

START_TEST(only_the_owner_renews_a_lease)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct ids r;
	const char *ids[] = { "s-lease", "s-gone" };
	redisContext *rc = rsync();
	redisReply *rep;
	double before, after;

	tsaga_init(&t, "s-lease", "v");
	t.w.lease_ms = 1000;
	create_ok(base, st, &t);
	rep = redisCommand(rc, "ZSCORE %s s-lease", lease_key("s-lease"));
	before = atof(rep->str);
	freeReplyObject(rep);

	memset(&r, 0, sizeof(r));
	store_lease_renew(st, "pod-a", ids, 2, 60000, ids_cb, &r);
	wait_for(base, &r.n, 3000, "renew");
	ck_assert_int_eq(r.r, STORE_OK);
	ck_assert_int_eq(r.nids, 1);
	ck_assert_str_eq(r.ids[0], "s-gone");
	ids_free(&r);
	rep = redisCommand(rc, "ZSCORE %s s-lease", lease_key("s-lease"));
	after = atof(rep->str);
	freeReplyObject(rep);
	ck_assert_msg(after >= before + 58000, "%f -> %f", before, after);

	memset(&r, 0, sizeof(r));
	store_lease_renew(st, "pod-b", ids, 1, 60000, ids_cb, &r);
	wait_for(base, &r.n, 3000, "renew by another");
	ck_assert_int_eq(r.nids, 1);
	ck_assert_str_eq(r.ids[0], "s-lease");
	ids_free(&r);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

/* --- connection -------------------------------------------------------- */

START_TEST(flushed_script_cache_falls_back_to_eval)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	redisContext *rc = rsync();
	redisReply *rep;

	tsaga_init(&t, "s-flush", "v");
	run_ms(base, 50);		/* SCRIPT LOADs answered */
	create_ok(base, st, &t);
	rep = redisCommand(rc, "SCRIPT FLUSH");
	freeReplyObject(rep);
	update(base, st, &t, 1, &x);
	ck_assert_msg(x.r == STORE_OK, "%s %s", store_result_name(x.r), x.err);
	ck_assert_int_eq(x.rev, 2);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

/* --- batches ----------------------------------------------------------- */

#define NBATCH	100	/* more than one batch holds */

static long long
evalsha_calls(redisContext *rc)
{
	redisReply *rep;
	const char *p;
	long long n = 0;

	rep = redisCommand(rc, "INFO commandstats");
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	p = strstr(rep->str, "cmdstat_evalsha:calls=");
	if (p != NULL)
		n = atoll(p + strlen("cmdstat_evalsha:calls="));
	freeReplyObject(rep);
	return n;
}

/*
 * Writes issued in one turn of the loop share a few script calls, yet each
 * keeps its own revision check and gets its own result, exactly once: new
 * sagas, a create of an existing one, two updates on one revision (the
 * first wins, the second conflicts), an unknown saga, and a write that
 * Redis refuses (the saga's key holds a string) next to ones it accepts.
 */
START_TEST(writes_of_one_turn_share_a_batch_but_keep_their_own_results)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	redisContext *rc = rsync();
	redisReply *rep;
	static struct tsaga t[NBATCH];
	static char ids[NBATCH][32];
	static struct res x[NBATCH];
	struct tsaga te, tu, tn, tw;
	struct res xe, xu1, xu2, xn, xw, xg;
	long long before;
	int i, all;

	tsaga_init(&te, "s-there", "v");
	create_ok(base, st, &te);
	tsaga_init(&tu, "s-upd", "v");
	create_ok(base, st, &tu);
	tsaga_init(&tn, "s-none", "v");
	tsaga_init(&tw, "s-wrongtype", "v");
	rep = redisCommand(rc, "SET saga:{s-wrongtype} x");
	freeReplyObject(rep);
	run_ms(base, 50);
	before = evalsha_calls(rc);

	memset(&xe, 0, sizeof(xe));
	memset(&xu1, 0, sizeof(xu1));
	memset(&xu2, 0, sizeof(xu2));
	memset(&xn, 0, sizeof(xn));
	memset(&xw, 0, sizeof(xw));
	for (i = 0; i < NBATCH; i++) {
		snprintf(ids[i], sizeof(ids[i]), "s-batch-%d", i);
		tsaga_init(&t[i], ids[i], ids[i]);
		memset(&x[i], 0, sizeof(x[i]));
		store_create(st, &t[i].w, saga_cb, &x[i]);
		if (i == 10)
			store_create(st, &te.w, saga_cb, &xe);
		if (i == 20) {
			tu.w.rev = 1;
			tu.w.step = 1;
			store_update(st, &tu.w, rev_cb, &xu1);
			tu.w.step = 0;
			store_update(st, &tu.w, rev_cb, &xu2);
		}
		if (i == 70) {
			tn.w.rev = 1;
			store_update(st, &tn.w, rev_cb, &xn);
			tw.w.rev = 1;
			store_update(st, &tw.w, rev_cb, &xw);
		}
	}
	ck_assert_int_eq(x[0].n, 0);	/* never from inside the call */
	ck_assert_int_eq(xe.n, 0);
	WAIT_UNTIL(base, x[NBATCH - 1].n && xw.n && xn.n, 3000,
	    "the batch's results");
	run_ms(base, 100);

	all = 1;
	for (i = 0; i < NBATCH; i++)
		if (x[i].n != 1 || x[i].r != STORE_OK || x[i].rev != 1)
			all = 0;
	ck_assert_msg(all, "every new saga created once at rev 1");
	ck_assert_int_eq(xe.n, 1);
	ck_assert_int_eq(xe.r, STORE_EXISTS);
	ck_assert_ptr_nonnull(xe.saga);
	ck_assert_str_eq(xe.saga->id, "s-there");
	res_free(&xe);
	ck_assert_int_eq(xu1.n, 1);
	ck_assert_int_eq(xu1.r, STORE_OK);
	ck_assert_int_eq(xu1.rev, 2);
	ck_assert_int_eq(xu2.n, 1);
	ck_assert_int_eq(xu2.r, STORE_CONFLICT);
	ck_assert_int_eq(xu2.rev, 2);
	ck_assert_int_eq(xn.n, 1);
	ck_assert_int_eq(xn.r, STORE_NOT_FOUND);
	ck_assert_int_eq(xw.n, 1);
	ck_assert_int_eq(xw.r, STORE_ERROR);
	ck_assert_msg(strstr(xw.err, "WRONGTYPE") != NULL, "err: %s", xw.err);
	/* 105 writes in at most three calls: 64, then the rest. */
	ck_assert_int_le(evalsha_calls(rc) - before, 3);

	get_one(base, st, "s-upd", &xg);
	ck_assert_int_eq(xg.r, STORE_OK);
	ck_assert_int_eq(xg.rev, 2);
	ck_assert_int_eq(xg.step, 1);
	res_free(&xg);
	get_one(base, st, ids[NBATCH - 1], &xg);
	ck_assert_int_eq(xg.r, STORE_OK);
	ck_assert_int_eq(xg.saga->context[1]->value.len,
	    strlen(ids[NBATCH - 1]));
	ck_assert(memcmp(xg.saga->context[1]->value.data, ids[NBATCH - 1],
	    strlen(ids[NBATCH - 1])) == 0);
	res_free(&xg);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e1", "saga:{s-batch-42}"),
	    1);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

/*
 * Redis drops the connection while a batch waits for its reply: every write
 * in it fails UNAVAILABLE, once, and none of them is applied later.
 */
START_TEST(a_batch_cut_off_by_a_lost_connection_fails_each_write_once)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	redisContext *rc = rsync();
	redisReply *rep;
	struct tsaga t[10], tu;
	char ids[10][32];
	struct res x[10], xu;
	int i;

	tsaga_init(&tu, "s-cut", "v");
	create_ok(base, st, &tu);
	/* Scripts wait while writes are paused; CLIENT KILL does not. */
	rep = redisCommand(rc, "CLIENT PAUSE 3000 WRITE");
	ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	for (i = 0; i < 10; i++) {
		snprintf(ids[i], sizeof(ids[i]), "s-cut-%d", i);
		tsaga_init(&t[i], ids[i], "v");
		memset(&x[i], 0, sizeof(x[i]));
		store_create(st, &t[i].w, saga_cb, &x[i]);
	}
	memset(&xu, 0, sizeof(xu));
	tu.w.rev = 1;
	store_update(st, &tu.w, rev_cb, &xu);
	run_ms(base, 200);	/* sent, not answered */
	ck_assert_int_eq(x[0].n, 0);
	ck_assert_int_eq(xu.n, 0);
	rep = redisCommand(rc, "CLIENT KILL TYPE normal SKIPME yes");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	WAIT_UNTIL(base, xu.n && x[9].n, 2000, "the batch to fail");
	run_ms(base, 200);
	for (i = 0; i < 10; i++) {
		ck_assert_int_eq(x[i].n, 1);
		ck_assert_int_eq(x[i].r, STORE_UNAVAILABLE);
	}
	ck_assert_int_eq(xu.n, 1);
	ck_assert_int_eq(xu.r, STORE_UNAVAILABLE);
	rep = redisCommand(rc, "CLIENT UNPAUSE");
	freeReplyObject(rep);
	ck_assert_int_eq(rint_cmd(rc, "EXISTS %s", "saga:{s-cut-0}"), 0);
	ck_assert_int_eq(rint_cmd(rc, "EXISTS %s", "saga:{s-cut-9}"), 0);
	/* The store comes back and the same writes go through. */
	wait_for(base, &u.up, 3000, "the store to reconnect");
	WAIT_UNTIL(base, store_is_up(st), 3000, "the store to be up");
	memset(&xu, 0, sizeof(xu));
	store_update(st, &tu.w, rev_cb, &xu);
	wait_for(base, &xu.n, 3000, "the update");
	ck_assert_int_eq(xu.r, STORE_OK);
	ck_assert_int_eq(xu.rev, 2);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

/* Writes still queued for their batch when the store closes fail once. */
START_TEST(store_free_fails_queued_writes_once)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	redisContext *rc = rsync();
	struct tsaga t;
	struct res x, y;

	tsaga_init(&t, "s-queued", "v");
	memset(&x, 0, sizeof(x));
	memset(&y, 0, sizeof(y));
	store_create(st, &t.w, saga_cb, &x);
	t.w.rev = 1;
	store_update(st, &t.w, rev_cb, &y);
	store_free(st);
	ck_assert_int_eq(x.n, 1);
	ck_assert_int_eq(x.r, STORE_UNAVAILABLE);
	ck_assert_int_eq(y.n, 1);
	ck_assert_int_eq(y.r, STORE_UNAVAILABLE);
	run_ms(base, 50);
	ck_assert_int_eq(x.n, 1);
	ck_assert_int_eq(y.n, 1);
	ck_assert_int_eq(rint_cmd(rc, "EXISTS %s", "saga:{s-queued}"), 0);
	redisFree(rc);
	event_base_free(base);
}
END_TEST

START_TEST(calls_fail_unavailable_from_the_loop_when_redis_is_down)
{
	struct event_base *base = event_base_new();
	struct store_params p;
	struct store *st;
	struct res x;
	struct evs e;
	char err[SAGAD_ERRLEN];

	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = 1;		/* nothing listens there */
	st = store_new(base, &p, err, sizeof(err));
	ck_assert_ptr_nonnull(st);
	ck_assert(!store_is_up(st));
	memset(&x, 0, sizeof(x));
	memset(&e, 0, sizeof(e));
	store_get(st, "s-1", saga_cb, &x);
	e.w = store_watch(st, "s-1", ev_cb, &e);
	ck_assert_int_eq(x.n, 0);
	ck_assert(!e.ended);
	wait_for(base, &x.n, 1000, "get");
	wait_for(base, &e.ended, 1000, "watch");
	ck_assert_int_eq(x.r, STORE_UNAVAILABLE);
	ck_assert_int_eq(e.r, STORE_UNAVAILABLE);
	run_ms(base, 300);	/* a few failed reconnects */
	ck_assert_int_eq(x.n, 1);
	store_free(st);

	memset(&p, 0, sizeof(p));
	ck_assert_ptr_null(store_new(base, &p, err, sizeof(err)));
	ck_assert(strstr(err, "host") != NULL);
	event_base_free(base);
}
END_TEST

START_TEST(store_free_fails_pending_calls_once)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct res x, y;

	memset(&x, 0, sizeof(x));
	memset(&y, 0, sizeof(y));
	store_get(st, "s-1", saga_cb, &x);	/* in flight */
	store_free(st);
	ck_assert_int_eq(x.n, 1);
	ck_assert_int_eq(x.r, STORE_UNAVAILABLE);
	run_ms(base, 50);
	ck_assert_int_eq(x.n, 1);
	event_base_free(base);
	(void)y;
}
END_TEST

START_TEST(hung_redis_times_out_and_the_store_recovers)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 300);
	struct res x;
	redisContext *rc = rsync();
	redisReply *rep;
	int64_t t0;
	int ok = 0;

	run_ms(base, 50);
	rep = redisCommand(rc, "CLIENT PAUSE 1500 ALL");
	ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	t0 = util_mono_ms();
	memset(&x, 0, sizeof(x));
	store_get(st, "s-1", saga_cb, &x);
	wait_for(base, &x.n, 1200, "the timeout");
	ck_assert_int_eq(x.r, STORE_UNAVAILABLE);
	ck_assert_msg(util_mono_ms() - t0 < 1000, "took %lld ms",
	    (long long)(util_mono_ms() - t0));
	ck_assert_int_ge(u.down, 1);
	/* After the pause the store answers again by itself. */
	while (!ok && util_mono_ms() - t0 < 6000) {
		get_one(base, st, "s-1", &x);
		ok = x.r == STORE_NOT_FOUND;
		if (!ok)
			run_ms(base, 100);
	}
	ck_assert_msg(ok, "the store did not recover");
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

/*
 * Redis restarts: t/store.sh runs it in a loop that starts it again on the
 * same port after it exits (REDIS_RESTARTS=1).
 */
START_TEST(redis_restart_fails_calls_then_the_store_reconnects)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	struct evs e;
	redisContext *rc;
	redisReply *rep;

	if (getenv("REDIS_RESTARTS") == NULL) {
		store_free(st);
		event_base_free(base);
		return;
	}
	tsaga_init(&t, "s-before", "v");
	create_ok(base, st, &t);
	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-before", ev_cb, &e);
	wait_for(base, &e.n, 3000, "the first event");

	rc = rsync();
	rep = redisCommand(rc, "SHUTDOWN NOSAVE");
	if (rep != NULL)
		freeReplyObject(rep);
	redisFree(rc);
	wait_for(base, &u.down, 3000, "the store to see Redis go");
	ck_assert(!store_is_up(st));
	u.up = 0;
	wait_for(base, &e.ended, 3000, "the watch to fail");
	ck_assert_int_eq(e.r, STORE_UNAVAILABLE);

	get_one(base, st, "s-before", &x);
	ck_assert_int_eq(x.r, STORE_UNAVAILABLE);

	wait_for(base, &u.up, 10000, "the store to reconnect");
	ck_assert(store_is_up(st));
	tsaga_init(&t, "s-after", "v");
	create_ok(base, st, &t);
	get_one(base, st, "s-after", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	res_free(&x);
	store_free(st);
	event_base_free(base);
}
END_TEST

/* --- the layout of issue 18 ---------------------------------------------- */

START_TEST(long_values_keep_the_hash_a_listpack_and_read_back_whole)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct res x;
	struct evs e;
	redisContext *rc = rsync();
	redisReply *rep;
	static char big[1025], err[201];

	memset(big, 'k', sizeof(big) - 1);
	memset(err, 'e', sizeof(err) - 1);
	memcpy(err, "CreatePayment: ", 15);
	tsaga_init(&t, "s-long", big);
	create_ok(base, st, &t);
	t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
	t.s.error = err;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPENSATED);
	t.ev.error = err;
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	/* Every value is 64 bytes at most: a listpack, not a hashtable. */
	rep = redisCommand(rc, "OBJECT ENCODING saga:{s-long}");
	ck_assert_str_eq(rep->str, "listpack");
	freeReplyObject(rep);
	get_one(base, st, "s-long", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_str_eq(x.saga->error, err);
	ck_assert_int_eq(x.saga->context[1]->value.len, 1024);
	ck_assert(memcmp(x.saga->context[1]->value.data, big, 1024) == 0);
	res_free(&x);

	/* A shorter record leaves no stale piece behind. */
	tsaga_init(&t, "s-long", "v");
	t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
	t.w.nevents = 0;
	update(base, st, &t, 2, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s p.2", "saga:{s-long}"), 0);
	get_one(base, st, "s-long", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_str_eq(x.saga->context[1]->key, "val");
	res_free(&x);

	/* A big record goes whole, and back to pieces when it shrinks. */
	{
		static char huge[300001];

		memset(huge, 'h', sizeof(huge) - 1);
		tsaga_init(&t, "s-long", huge);
		t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
		t.w.nevents = 0;
		update(base, st, &t, 3, &x);
		ck_assert_int_eq(x.r, STORE_OK);
		get_one(base, st, "s-long", &x);
		ck_assert_int_eq(x.r, STORE_OK);
		ck_assert_int_eq(x.saga->context[1]->value.len, 300000);
		res_free(&x);
		ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s p.1", "saga:{s-long}"),
		    0);
		tsaga_init(&t, "s-long", big);
		t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
		t.w.nevents = 0;
		update(base, st, &t, 4, &x);
		ck_assert_int_eq(x.r, STORE_OK);
		get_one(base, st, "s-long", &x);
		ck_assert_int_eq(x.r, STORE_OK);
		ck_assert_int_eq(x.saga->context[1]->value.len, 1024);
		res_free(&x);
	}

	/* Watch gives the long event back whole, with its saga id. */
	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-long", ev_cb, &e);
	wait_for(base, &e.ended, 3000, "the replay");
	ck_assert(e.final);
	ck_assert_int_eq(e.n, 2);
	ck_assert_str_eq(e.error, err);
	ck_assert_str_eq(e.saga_id, "s-long");
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(completed_ttl_applies_to_completed_sagas_only)
{
	struct event_base *base;
	struct up u;
	struct store *st;
	struct tsaga t;
	struct res x;
	redisContext *rc = rsync();
	long long ttl;

	completed_ttl = 60;
	base = event_base_new();
	st = open_store(base, &u, 0);
	tsaga_init(&t, "s-ok", "v");
	create_ok(base, st, &t);
	t.s.state = SAGA__V1__STATE__STATE_COMPLETED;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPLETED);
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	tsaga_init(&t, "s-undone", "v");
	create_ok(base, st, &t);
	t.s.state = SAGA__V1__STATE__STATE_COMPENSATED;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPENSATED);
	update(base, st, &t, 1, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ttl = rint_cmd(rc, "TTL %s", "saga:{s-ok}");
	ck_assert_msg(ttl > 50 && ttl <= 60, "completed ttl %lld", ttl);
	ttl = rint_cmd(rc, "TTL %s", "saga:{s-undone}");
	ck_assert_msg(ttl > 590 && ttl <= 600, "compensated ttl %lld", ttl);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(leases_land_in_the_bucket_the_scripts_compute)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t;
	struct ids r;
	static char idv[40][16];
	const char *ids[40];
	redisContext *rc = rsync();
	redisReply *rep;
	int used[STORE_BUCKETS] = { 0 }, nused = 0;

	for (int i = 0; i < 40; i++) {
		snprintf(idv[i], sizeof(idv[i]), "s-b-%d", i);
		ids[i] = idv[i];
		tsaga_init(&t, idv[i], "v");
		create_ok(base, st, &t);
		rep = redisCommand(rc, "ZSCORE %s %s", lease_key(idv[i]),
		    idv[i]);
		ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
		freeReplyObject(rep);
		if (!used[store_bucket(idv[i])]++)
			nused++;
	}
	ck_assert_int_ge(nused, 4);	/* spread, not one key */
	/* The renew script finds each lease where the write put it. */
	memset(&r, 0, sizeof(r));
	store_lease_renew(st, "pod-a", ids, 40, 60000, ids_cb, &r);
	wait_for(base, &r.n, 3000, "renew");
	ck_assert_int_eq(r.r, STORE_OK);
	ck_assert_int_eq(r.nids, 0);
	ids_free(&r);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(an_async_saga_pending_past_its_launch_lease_is_claimed_unbumped)
{
	struct event_base *base = event_base_new();
	struct up u;
	struct store *st = open_store(base, &u, 0);
	struct tsaga t, t2;
	struct res x;
	struct ids r;
	redisContext *rc = rsync();
	redisReply *rep;

	tsaga_init(&t, "s-launch", "v");
	t.s.mode = SAGA__V1__MODE__MODE_ASYNC;
	t.s.state = SAGA__V1__STATE__STATE_PENDING;
	t.w.lease_ms = 1000;
	create_ok(base, st, &t);
	/* One that moved on: its lease only leaves the set. */
	tsaga_init(&t2, "s-moved", "v");
	t2.s.mode = SAGA__V1__MODE__MODE_ASYNC;
	t2.w.lease_ms = 1000;
	create_ok(base, st, &t2);
	run_ms(base, 1200);
	memset(&r, 0, sizeof(r));
	store_lease_claim(st, "pod-b", 10, 30000, 60000, ids_cb, &r);
	wait_for(base, &r.n, 3000, "claim");
	ck_assert_int_eq(r.r, STORE_OK);
	ck_assert_int_eq(r.nids, 1);
	ck_assert_str_eq(r.ids[0], "s-launch");
	ids_free(&r);
	get_one(base, st, "s-launch", &x);
	ck_assert_int_eq(x.rev, 1);		/* no bump */
	ck_assert_str_eq(x.owner, "pod-b");
	res_free(&x);
	rep = redisCommand(rc, "ZSCORE %s s-launch", lease_key("s-launch"));
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	freeReplyObject(rep);
	rep = redisCommand(rc, "ZSCORE %s s-moved", lease_key("s-moved"));
	ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

/* A saga as the previous layout stored it, written by hand. */
static void
legacy_saga(redisContext *rc, struct tsaga *t, int64_t lease_at)
{
	uint8_t		 pb[4096], ev[256];
	size_t		 n, m;
	redisReply	*rep;
	char		 h[64], k[64];

	n = saga__v1__saga__pack(&t->s, pb);
	snprintf(h, sizeof(h), "saga:{%s}", t->s.id);
	rep = redisCommand(rc, "HSET %s flow %s mode MODE_SYNC created "
	    "1700000000123 id %s state STATE_RUNNING step 1 undo 0 attempt 1 "
	    "error %s updated 1700000000456 pod pod-a owner pod-a rev 3 pb %b",
	    h, t->s.flow, t->s.id, "", pb, n);
	ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
	freeReplyObject(rep);
	snprintf(k, sizeof(k), "saga:{%s}:events", t->s.id);
	t->ev.saga_id = t->s.id;
	t->ev.step = "";
	t->ev.state = SAGA__V1__STATE__STATE_RUNNING;
	m = saga__v1__saga_event__pack(&t->ev, ev);
	freeReplyObject(redisCommand(rc, "XADD %s * step %s state "
	    "STATE_RUNNING pb %b", k, "", ev, m));
	t->ev.step = "CreateOrder";
	m = saga__v1__saga_event__pack(&t->ev, ev);
	/* Two events in one entry, as one write of the old script made. */
	freeReplyObject(redisCommand(rc, "XADD %s * step CreateOrder state "
	    "STATE_RUNNING pb %b step CreateOrder state STATE_RUNNING pb %b",
	    k, ev, m, ev, m));
	freeReplyObject(redisCommand(rc, "ZADD saga:leases %lld %s",
	    (long long)lease_at, t->s.id));
	freeReplyObject(redisCommand(rc, "ZADD saga:idx:%s:STATE_RUNNING "
	    "1700000000123 %s", t->s.flow, t->s.id));
	freeReplyObject(redisCommand(rc, "SADD saga:idx:flows %s", t->s.flow));
}

START_TEST(a_saga_of_the_previous_layout_is_read_and_converted)
{
	struct event_base	*base = event_base_new();
	struct up		 u;
	struct store		*st = open_store(base, &u, 0);
	struct tsaga		 t, t2;
	struct res		 x;
	struct evs		 e;
	struct ids		 r;
	struct store_list_query	 q;
	const char		*running[] = { "STATE_RUNNING" },
				*completed[] = { "STATE_COMPLETED" };
	redisContext		*rc = rsync();
	redisReply		*rep;
	char			 got[256];

	tsaga_init(&t, "s-old", "v");
	legacy_saga(rc, &t, 4102444800000LL);	/* a lease far ahead */
	tsaga_init(&t2, "s-old-dead", "v");
	legacy_saga(rc, &t2, 1000);		/* its master died */

	/* Get, List and Watch read it as it is. */
	get_one(base, st, "s-old", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(x.rev, 3);
	ck_assert_str_eq(x.saga->id, "s-old");
	res_free(&x);
	memset(&q, 0, sizeof(q));
	q.limit = 10;
	q.states = running;
	q.nstates = 1;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "s-old-dead,s-old");
	memset(&e, 0, sizeof(e));
	e.w = store_watch(st, "s-old", ev_cb, &e);
	WAIT_UNTIL(base, e.n >= 3 || e.ended, 3000, "the old events");
	ck_assert_int_eq(e.n, 3);
	ck_assert_str_eq(e.steps[1], "CreateOrder");
	ck_assert(!e.ended);

	/* The sweeper claims the old lease that ran out, into its bucket. */
	memset(&r, 0, sizeof(r));
	store_lease_claim(st, "pod-b", 10, 30000, 30000, ids_cb, &r);
	wait_for(base, &r.n, 3000, "claim");
	ck_assert_int_eq(r.nids, 1);
	ck_assert_str_eq(r.ids[0], "s-old-dead");
	ids_free(&r);
	rep = redisCommand(rc, "ZSCORE %s s-old-dead", lease_key("s-old-dead"));
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	freeReplyObject(rep);

	/* Its first write converts it; the watch goes on to its end. */
	t.s.state = SAGA__V1__STATE__STATE_COMPLETED;
	step_event(&t, "", SAGA__V1__STATE__STATE_COMPLETED);
	t.ev.saga_id = "s-old";
	update(base, st, &t, 3, &x);
	ck_assert_int_eq(x.r, STORE_OK);
	wait_for(base, &e.ended, 5000, "the final event");
	ck_assert(e.final);
	ck_assert_int_eq(e.n, 4);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s pb", "saga:{s-old}"), 0);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s flow", "saga:{s-old}"), 0);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e0", "saga:{s-old}"), 1);
	ck_assert_int_eq(rint_cmd(rc, "HEXISTS %s e4", "saga:{s-old}"), 1);
	ck_assert_int_eq(rint_cmd(rc, "EXISTS %s", "saga:{s-old}:events") == 0 ||
	    rint_cmd(rc, "EXISTS %s", "saga:{s-old}:w") == 1, 1);
	rep = redisCommand(rc, "ZSCORE saga:leases s-old");
	ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	ck_assert_int_eq(rint_cmd(rc, "ZCARD %s",
	    "saga:idx:Booking:STATE_RUNNING"), 1);	/* s-old-dead's */
	q.states = completed;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "s-old");
	q.states = running;
	list_all(base, st, &q, got, sizeof(got));
	ck_assert_str_eq(got, "s-old-dead");
	get_one(base, st, "s-old", &x);
	ck_assert_int_eq(x.r, STORE_OK);
	ck_assert_int_eq(x.saga->state, SAGA__V1__STATE__STATE_COMPLETED);
	res_free(&x);
	redisFree(rc);
	store_free(st);
	event_base_free(base);
}
END_TEST

int
main(void)
{
	Suite *s;
	TCase *tc;
	const char *port = getenv("REDIS_PORT");

	if (port == NULL || *port == '\0') {
		fprintf(stderr, "REDIS_PORT is not set: skipped (run "
		    "t/store.sh)\n");
		return 77;
	}
	redis_port = atoi(port);
	s = suite_create("store");
	tc = tcase_create("redis");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, create_then_get_round_trips_the_saga);
	tcase_add_test(tc, second_create_returns_exists_with_the_first_saga);
	tcase_add_test(tc,
	    update_with_current_rev_wins_and_stale_rev_conflicts);
	tcase_add_test(tc, concurrent_updates_on_one_rev_have_one_winner);
	tcase_add_test(tc, update_keeps_the_pending_phase_and_its_attempts);
	tcase_add_test(tc,
	    events_are_appended_in_order_and_readable_from_the_start);
	tcase_add_test(tc, watch_follows_a_saga_written_by_another_store);
	tcase_add_test(tc, watch_of_an_unknown_saga_is_not_found);
	tcase_add_test(tc, watch_cancel_stops_callbacks_even_from_inside_one);
	tcase_add_test(tc, watches_beyond_the_bound_are_busy);
	tcase_add_test(tc, terminal_state_sets_ttl_and_drops_the_lease);
	tcase_add_test(tc,
	    reopening_an_ended_saga_drops_its_expiry_and_old_events);
	tcase_add_test(tc, list_pages_newest_first_ties_by_id_and_filters);
	tcase_add_test(tc,
	    cancel_marks_a_running_saga_and_its_next_write_says_so);
	tcase_add_test(tc, expired_sagas_leave_the_index);
	tcase_add_test(tc,
	    expired_leases_are_claimed_exactly_once_across_stores);
	tcase_add_test(tc, only_the_owner_renews_a_lease);
	tcase_add_test(tc, flushed_script_cache_falls_back_to_eval);
	tcase_add_test(tc,
	    calls_fail_unavailable_from_the_loop_when_redis_is_down);
	tcase_add_test(tc, store_free_fails_pending_calls_once);
	tcase_add_test(tc, hung_redis_times_out_and_the_store_recovers);
	tcase_add_test(tc,
	    writes_of_one_turn_share_a_batch_but_keep_their_own_results);
	tcase_add_test(tc,
	    a_batch_cut_off_by_a_lost_connection_fails_each_write_once);
	tcase_add_test(tc, store_free_fails_queued_writes_once);
	tcase_add_test(tc,
	    redis_restart_fails_calls_then_the_store_reconnects);
	tcase_add_test(tc,
	    long_values_keep_the_hash_a_listpack_and_read_back_whole);
	tcase_add_test(tc, completed_ttl_applies_to_completed_sagas_only);
	tcase_add_test(tc, leases_land_in_the_bucket_the_scripts_compute);
	tcase_add_test(tc,
	    a_gone_pod_is_taken_back_once_and_forgotten_when_it_renews);
	tcase_add_test(tc,
	    a_saga_of_the_previous_layout_is_read_and_converted);
	tcase_add_test(tc,
	    an_async_saga_pending_past_its_launch_lease_is_claimed_unbumped);
	suite_add_tcase(s, tc);
	return check_run(s);
}
