/*
 * check_failover.c - the saga store beyond one Redis (store_failover.c),
 * against real servers that t/cluster.sh starts and names in the
 * environment (without them the suite is skipped):
 *   SENTINEL_PORT, SENTINEL_PRIMARY_PORT  a sentinel and the primary it
 *                                         watches as "sagad" (read only)
 *   WAIT_PORT, WAIT_REPLICA_PORT          a primary of our own and a spare
 *                                         server the tests make its replica
 *                                         or not
 * The tests prove that the primary is asked of the sentinels, and that a
 * write counts only once WAIT says a replica has it: one never acknowledged
 * fails as unknown and was applied once; one acknowledged late is sent
 * again, refused by its revision check, found to be its own and counts.
 */
#include "autoconf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "check_run.h"
#include "store.h"
#include "util.h"

static int sentinel_port, sentinel_primary, wait_port, replica_port;

static redisContext *
rsync(int port)
{
	struct timeval	 tv = { 5, 0 };
	redisContext	*rc = redisConnectWithTimeout("127.0.0.1", port, tv);

	ck_assert_msg(rc != NULL && rc->err == 0, "connect to %d", port);
	return rc;
}

static void
redis_do(int port, const char *cmd)
{
	redisContext	*rc = rsync(port);
	redisReply	*rep = redisCommand(rc, cmd);

	ck_assert_msg(rep != NULL && rep->type != REDIS_REPLY_ERROR,
	    "%s: %s", cmd, rep != NULL ? rep->str : rc->errstr);
	freeReplyObject(rep);
	redisFree(rc);
}

/* HGET saga:{id} rev on port, 0 if none. */
static long long
stored_rev(int port, const char *id)
{
	redisContext	*rc = rsync(port);
	redisReply	*rep = redisCommand(rc, "HGET saga:{%s} rev", id);
	long long	 v = 0;

	ck_assert_ptr_nonnull(rep);
	if (rep->type == REDIS_REPLY_STRING)
		v = strtoll(rep->str, NULL, 10);
	freeReplyObject(rep);
	redisFree(rc);
	return v;
}

static void
replica_of(int primary)
{
	char cmd[64];

	if (primary == 0)
		snprintf(cmd, sizeof(cmd), "REPLICAOF NO ONE");
	else
		snprintf(cmd, sizeof(cmd), "REPLICAOF 127.0.0.1 %d", primary);
	redis_do(replica_port, cmd);
}

static void
run_ms(struct event_base *base, int ms)
{
	int64_t end = util_mono_ms() + ms;

	while (util_mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

#define WAIT_UNTIL(base, cond, ms, what) do {				\
	int64_t end_ = util_mono_ms() + (ms);				\
									\
	while (!(cond) && util_mono_ms() < end_)			\
		event_base_loop((base), EVLOOP_ONCE);			\
	ck_assert_msg((cond), "timed out after %d ms waiting for %s",	\
	    (ms), (what));						\
} while (0)

struct res {
	int			 n;
	enum store_result	 r;
	int64_t			 rev;
	char			 err[256];
};

static void
saga_cb(enum store_result r, struct store_saga *rec, const char *err,
    void *arg)
{
	struct res *x = arg;

	x->n++;
	x->r = r;
	x->rev = rec != NULL ? rec->rev : 0;
	snprintf(x->err, sizeof(x->err), "%s", err != NULL ? err : "");
}

static void
rev_cb(enum store_result r, int64_t rev, const char *cancel SAGAD_UNUSED,
    const char *err, void *arg)
{
	struct res *x = arg;

	x->n++;
	x->r = r;
	x->rev = rev;
	snprintf(x->err, sizeof(x->err), "%s", err != NULL ? err : "");
}

struct tsaga {
	Saga__V1__Saga		 s;
	struct store_write	 w;
};

static void
tsaga_init(struct tsaga *t, char *id, int64_t updated)
{
	memset(t, 0, sizeof(*t));
	saga__v1__saga__init(&t->s);
	t->s.id = id;
	t->s.flow = "Booking";
	t->s.mode = SAGA__V1__MODE__MODE_SYNC;
	t->s.state = SAGA__V1__STATE__STATE_RUNNING;
	t->s.created_unix_ms = 1700000000000LL;
	t->s.updated_unix_ms = updated;
	t->w.saga = &t->s;
	t->w.pod = "pod-f";
	t->w.owner = "pod-f";
}

static struct store *
open_store(struct event_base *base, struct store_params *p)
{
	struct store	*st;
	char		 err[SAGAD_ERRLEN];

	p->saga_ttl = 600;
	p->backoff_min_ms = 50;
	p->backoff_max_ms = 200;
	st = store_new(base, p, err, sizeof(err));
	ck_assert_msg(st != NULL, "store_new: %s", err);
	return st;
}

/* A plain store on port: creates id at revision 1. */
static void
create_plain(int port, char *id)
{
	struct event_base	*base = event_base_new();
	struct store_params	 p;
	struct store		*st;
	struct tsaga		 t;
	struct res		 x;

	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = port;
	st = open_store(base, &p);
	WAIT_UNTIL(base, store_is_up(st), 3000, "a plain store");
	tsaga_init(&t, id, 1700000000001LL);
	memset(&x, 0, sizeof(x));
	store_create(st, &t.w, saga_cb, &x);
	WAIT_UNTIL(base, x.n == 1, 3000, "the create");
	ck_assert_msg(x.r == STORE_OK, "create: %s", x.err);
	store_free(st);
	event_base_free(base);
}

START_TEST(the_primary_is_asked_of_the_sentinels)
{
	struct event_base	*base = event_base_new();
	struct store_params	 p;
	struct store		*st;
	struct tsaga		 t;
	struct res		 x;
	char			 s1[32], s2[32];
	const char		*sentinels[3] = { s1, s2, NULL };
	char			 id[] = "failover-sentinel";

	/* A wrong guess, a dead sentinel first: the live one is asked. */
	snprintf(s1, sizeof(s1), "127.0.0.1:%d", 1);
	snprintf(s2, sizeof(s2), "127.0.0.1:%d", sentinel_port);
	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = 1;
	p.sentinels = sentinels;
	p.master_name = "sagad";
	st = open_store(base, &p);
	WAIT_UNTIL(base, store_is_up(st), 5000, "the store on the primary");
	tsaga_init(&t, id, 1700000000001LL);
	memset(&x, 0, sizeof(x));
	store_create(st, &t.w, saga_cb, &x);
	WAIT_UNTIL(base, x.n == 1, 3000, "the create");
	ck_assert_msg(x.r == STORE_OK, "create: %s", x.err);
	ck_assert_int_eq(stored_rev(sentinel_primary, id), 1);
	redis_do(sentinel_primary, "DEL saga:{failover-sentinel} "
	    "saga:{failover-sentinel}:events");
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(an_unknown_primary_name_keeps_the_store_down)
{
	struct event_base	*base = event_base_new();
	struct store_params	 p;
	struct store		*st;
	struct tsaga		 t;
	struct res		 x;
	char			 s1[32];
	const char		*sentinels[2] = { s1, NULL };
	char			 id[] = "failover-nobody";

	snprintf(s1, sizeof(s1), "127.0.0.1:%d", sentinel_port);
	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = sentinel_primary;	/* reachable, but not asked for */
	p.sentinels = sentinels;
	p.master_name = "nosuchprimary";
	st = open_store(base, &p);
	run_ms(base, 600);
	ck_assert(!store_is_up(st));
	tsaga_init(&t, id, 1700000000001LL);
	memset(&x, 0, sizeof(x));
	store_create(st, &t.w, saga_cb, &x);
	WAIT_UNTIL(base, x.n == 1, 3000, "the create to fail");
	ck_assert_int_eq(x.r, STORE_UNAVAILABLE);
	ck_assert_int_eq(stored_rev(sentinel_primary, id), 0);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(a_write_no_replica_acknowledges_fails_unknown_and_lands_once)
{
	struct event_base	*base = event_base_new();
	struct store_params	 p;
	struct store		*st;
	struct tsaga		 t;
	struct res		 x;
	char			 id[] = "failover-unacked";
	int64_t			 t0;

	replica_of(0);
	redis_do(wait_port, "DEL saga:{failover-unacked}");
	create_plain(wait_port, id);
	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = wait_port;
	p.cmd_timeout_ms = 400;
	p.min_replicas_ack = 1;
	p.ack_timeout_ms = 50;
	st = open_store(base, &p);
	WAIT_UNTIL(base, store_is_up(st), 3000, "the WAIT store");
	tsaga_init(&t, id, 1700000000002LL);
	t.w.rev = 1;
	memset(&x, 0, sizeof(x));
	t0 = util_mono_ms();
	store_update(st, &t.w, rev_cb, &x);
	WAIT_UNTIL(base, x.n == 1, 5000, "the update's answer");
	/* Never done: unknown, after being sent again for 2 x cmd_timeout. */
	ck_assert_msg(x.r == STORE_UNAVAILABLE, "got %s %s",
	    store_result_name(x.r), x.err);
	ck_assert_msg(strstr(x.err, "WAIT") != NULL, "%s", x.err);
	ck_assert_int_ge(util_mono_ms() - t0, 700);
	run_ms(base, 200);
	ck_assert_int_eq(x.n, 1);
	/* Sent several times, applied once. */
	ck_assert_int_eq(stored_rev(wait_port, id), 2);
	store_free(st);
	event_base_free(base);
}
END_TEST

START_TEST(a_write_acknowledged_late_is_sent_again_and_counts_once)
{
	struct event_base	*base = event_base_new();
	struct store_params	 p;
	struct store		*st;
	struct tsaga		 t;
	struct res		 x;
	char			 id[] = "failover-late";

	replica_of(0);
	redis_do(wait_port, "CONFIG SET repl-diskless-sync no");
	redis_do(wait_port, "DEL saga:{failover-late}");
	create_plain(wait_port, id);
	memset(&p, 0, sizeof(p));
	p.host = "127.0.0.1";
	p.port = wait_port;
	p.cmd_timeout_ms = 4000;
	p.min_replicas_ack = 1;
	p.ack_timeout_ms = 100;
	st = open_store(base, &p);
	WAIT_UNTIL(base, store_is_up(st), 3000, "the WAIT store");
	tsaga_init(&t, id, 1700000000003LL);
	t.w.rev = 1;
	memset(&x, 0, sizeof(x));
	store_update(st, &t.w, rev_cb, &x);
	/* WAIT finds no replica; the write goes again and again... */
	run_ms(base, 500);
	ck_assert_int_eq(x.n, 0);
	ck_assert_int_eq(stored_rev(wait_port, id), 2);
	/* ...until one syncs: then the write is found to be ours. */
	replica_of(wait_port);
	WAIT_UNTIL(base, x.n == 1, 7000, "the update's answer");
	ck_assert_msg(x.r == STORE_OK, "got %s %s", store_result_name(x.r),
	    x.err);
	ck_assert_int_eq(x.rev, 2);
	ck_assert_int_eq(stored_rev(wait_port, id), 2);
	ck_assert_int_eq(stored_rev(replica_port, id), 2);
	/* A write acknowledged in time counts at once. */
	tsaga_init(&t, id, 1700000000004LL);
	t.w.rev = 2;
	memset(&x, 0, sizeof(x));
	store_update(st, &t.w, rev_cb, &x);
	WAIT_UNTIL(base, x.n == 1, 3000, "the second update");
	ck_assert_msg(x.r == STORE_OK, "got %s %s", store_result_name(x.r),
	    x.err);
	ck_assert_int_eq(x.rev, 3);
	store_free(st);
	event_base_free(base);
	replica_of(0);
}
END_TEST

static int
env_port(const char *name)
{
	const char *v = getenv(name);

	return v != NULL ? atoi(v) : 0;
}

int
main(void)
{
	Suite	*s;
	TCase	*tc;

	sentinel_port = env_port("SENTINEL_PORT");
	sentinel_primary = env_port("SENTINEL_PRIMARY_PORT");
	wait_port = env_port("WAIT_PORT");
	replica_port = env_port("WAIT_REPLICA_PORT");
	if (sentinel_port == 0 || sentinel_primary == 0 || wait_port == 0 ||
	    replica_port == 0) {
		fprintf(stderr, "SENTINEL_PORT... not set: skipped (run "
		    "t/cluster.sh)\n");
		return 77;
	}
	s = suite_create("failover");
	tc = tcase_create("redis");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, the_primary_is_asked_of_the_sentinels);
	tcase_add_test(tc, an_unknown_primary_name_keeps_the_store_down);
	tcase_add_test(tc,
	    a_write_no_replica_acknowledges_fails_unknown_and_lands_once);
	tcase_add_test(tc,
	    a_write_acknowledged_late_is_sent_again_and_counts_once);
	suite_add_tcase(s, tc);
	return check_run(s);
}
