/*
 * check_bus.c - the message bus (src/bus.c and a driver) against a real
 * broker whose URL comes from BUS_URL, else NATS_URL: nats-server -js for
 * src/bus_nats.c, rabbitmq-server ("amqp://") for src/bus_rabbitmq.c
 * (t/bus.sh starts the one QUEUE names; without a URL the suite is
 * skipped). Where the brokers differ (RabbitMQ neither deduplicates nor
 * redelivers after an ack wait), a test says which behaviour it expects. Each test runs in its own process with
 * its own event_base, stream and subjects, named after its pid, since
 * work-queue streams may not share subjects. Callbacks are awaited with a
 * deadline, so a lost one fails the test instead of hanging it.
 *
 * Two more modes for t/bus.sh: with BUS_RESTART_DIR set, the "restart" case
 * asks the script (through files in that directory) to restart nats-server
 * on the same port and store; with BUS_BENCH=N it measures publish, consume
 * and ack throughput instead of testing.
 */
#include "autoconf.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "check_run.h"
#include "bus.h"
#include "util.h"

static const char		*nats_url;	/* the broker's, either kind */
static int			 amqp;		/* it is RabbitMQ */
static struct event_base	*base;
static struct bus		*bus;
static char			 stream[32], prefix[32], errbuf[SAGAD_ERRLEN];
static pthread_t		 loop_thread;
static int			 off_loop;	/* a callback ran elsewhere */
static int			 seen_down, seen_up;
static int			 nsetup;	/* unique names with CK_FORK=no */

static void	on_state(struct bus *, enum bus_state, void *);

/* --- helpers ------------------------------------------------------------------- */

static void
check_thread(void)
{
	if (!pthread_equal(pthread_self(), loop_thread))
		off_loop++;
}

/* Runs the loop until *v >= want or ms pass; returns whether it got there. */
static int
run_until(const int *v, int want, int ms)
{
	int64_t		deadline = util_mono_ms() + ms;
	struct timeval	tv = { 0, 20000 };

	while (*v < want && util_mono_ms() < deadline) {
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return *v >= want;
}

static void
run_for(int ms)
{
	int	never = 0;

	run_until(&never, 1, ms);
}

static struct bus_opts
bus_defaults(void)
{
	struct bus_opts	o;

	memset(&o, 0, sizeof(o));
	o.url = nats_url;
	o.stream = stream;
	o.queue_type = getenv("BUS_QUEUE_TYPE");	/* RabbitMQ's */
	o.name = "check_bus";
	o.state_cb = on_state;
	return o;
}

static void
subject(char *buf, size_t len, const char *tail)
{
	snprintf(buf, len, "%s.%s", prefix, tail);
}

/* Opens the bus on this test's stream and declares the stream. */
static void
open_bus(void)
{
	struct bus_opts	 o;
	char		 all[64];
	const char	*subs[1] = { all };

	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	o = bus_defaults();
	bus = bus_open(base, &o, errbuf, sizeof(errbuf));
	ck_assert_msg(bus != NULL, "%s", errbuf);
	ck_assert_int_eq(bus_state(bus), BUS_CONNECTED);
	snprintf(all, sizeof(all), "%s.>", prefix);
	ck_assert_msg(bus_declare_stream(bus, subs, 1, errbuf,
	    sizeof(errbuf)) == 0, "%s", errbuf);
}

static void
setup(void)
{
	ck_assert_msg(bus_init(errbuf, sizeof(errbuf)) == 0, "%s", errbuf);
	loop_thread = pthread_self();
	off_loop = seen_down = seen_up = 0;
	snprintf(stream, sizeof(stream), "T%ld_%d", (long)getpid(), ++nsetup);
	snprintf(prefix, sizeof(prefix), "t%ld_%d", (long)getpid(), nsetup);
	open_bus();
}

static void
teardown(void)
{
	bus_close(bus);
	bus = NULL;
	event_base_free(base);
	base = NULL;
}

static uint64_t
depth(void)
{
	uint64_t	n = 0;

	ck_assert_msg(bus_stream_depth(bus, &n, errbuf, sizeof(errbuf)) == 0,
	    "%s", errbuf);
	return n;
}

/* Polls the stream until it holds want messages (acks are asynchronous). */
static int
depth_becomes(uint64_t want, int ms)
{
	int64_t	deadline = util_mono_ms() + ms;

	while (depth() != want && util_mono_ms() < deadline)
		run_for(50);
	return depth() == want;
}

/* Publish results, in order. */
struct pubs {
	int		n;
	int		errors;
	int		dup[64];
	uint64_t	seq[64];
	char		err[256];
};

static void
on_pub(struct bus *b, const struct bus_pub_result *r, void *arg)
{
	struct pubs	*p = arg;

	(void)b;
	check_thread();
	if (r->error != NULL) {
		p->errors++;
		snprintf(p->err, sizeof(p->err), "%s", r->error);
	}
	if (p->n < 64) {
		p->dup[p->n] = r->duplicate;
		p->seq[p->n] = r->seq;
	}
	p->n++;
}

static void
publish(const char *tail, const char *data, const char *id, struct pubs *p)
{
	char	subj[128];

	subject(subj, sizeof(subj), tail);
	ck_assert_msg(bus_publish(bus, subj, data, strlen(data), id, on_pub, p,
	    errbuf, sizeof(errbuf)) == 0, "%s", errbuf);
}

/* Publishes and waits until all answers are in and none failed. */
static void
publish_all(const char *tail, int n, const char *idfmt)
{
	struct pubs	p;
	char		data[32], id[64];
	int		i;

	memset(&p, 0, sizeof(p));
	for (i = 0; i < n; i++) {
		snprintf(data, sizeof(data), "m%d", i);
		snprintf(id, sizeof(id), idfmt != NULL ? idfmt : "x", i);
		publish(tail, data, idfmt != NULL ? id : NULL, &p);
	}
	ck_assert_msg(run_until(&p.n, n, 5000), "%d of %d publish answers",
	    p.n, n);
	ck_assert_msg(p.errors == 0, "%s", p.err);
}

/* A consumer's record of what it got. */
struct got {
	int		 n;
	int		 ack;		/* ack at once */
	int		 nak_ms;	/* >0: nak the first delivery with it */
	int		 nak2_ms;	/* >0: and the second with this */
	struct bus_msg	*held[64];	/* not acked when !ack */
	char		 subject[64][64];
	char		 data[64][32];
	char		 id[64][64];
	int		 delivered[64];
	int64_t		 at[64];
};

static void
on_msg(struct bus_msg *m, void *arg)
{
	struct got	*g = arg;
	const char	*id;
	const void	*d;
	size_t		 len;
	int		 i = g->n++;

	check_thread();
	if (i >= 64) {
		bus_ack(m);
		return;
	}
	d = bus_msg_data(m, &len);
	snprintf(g->subject[i], sizeof(g->subject[i]), "%s",
	    bus_msg_subject(m));
	snprintf(g->data[i], sizeof(g->data[i]), "%.*s", (int)len,
	    (const char *)d);
	id = bus_msg_id(m);
	snprintf(g->id[i], sizeof(g->id[i]), "%s", id != NULL ? id : "");
	g->delivered[i] = bus_msg_delivered(m);
	g->at[i] = util_mono_ms();
	if (g->nak_ms > 0 && bus_msg_delivered(m) == 1)
		ck_assert_int_eq(bus_nak(m, g->nak_ms), 0);
	else if (g->nak2_ms > 0 && bus_msg_delivered(m) == 2)
		ck_assert_int_eq(bus_nak(m, g->nak2_ms), 0);
	else if (g->ack)
		ck_assert_int_eq(bus_ack(m), 0);
	else
		g->held[i] = m;
}

static struct bus_consumer *
consume(const char *name, const char *tail, int concurrency, int ack_wait_ms,
    bus_msg_cb cb, void *arg)
{
	struct bus_consumer_opts	 co;
	struct bus_consumer		*c;
	char				 filter[128];

	subject(filter, sizeof(filter), tail);
	memset(&co, 0, sizeof(co));
	co.durable = name;
	co.filter = filter;
	co.concurrency = concurrency;
	co.ack_wait_ms = ack_wait_ms;
	co.fetch_wait_ms = 200;
	c = bus_consume(bus, &co, cb, arg, errbuf, sizeof(errbuf));
	ck_assert_msg(c != NULL, "%s", errbuf);
	return c;
}

/* consume(), tried again until it opens or ms pass. */
static struct bus_consumer *
consume_retry(const char *name, const char *tail, int concurrency,
    bus_msg_cb cb, void *arg, int ms)
{
	struct bus_consumer_opts	 co;
	struct bus_consumer		*c;
	char				 filter[128];
	int64_t				 deadline = util_mono_ms() + ms;

	subject(filter, sizeof(filter), tail);
	memset(&co, 0, sizeof(co));
	co.durable = name;
	co.filter = filter;
	co.concurrency = concurrency;
	co.fetch_wait_ms = 200;
	while ((c = bus_consume(bus, &co, cb, arg, errbuf,
	    sizeof(errbuf))) == NULL && util_mono_ms() < deadline)
		run_for(500);
	ck_assert_msg(c != NULL, "%s", errbuf);
	return c;
}

/* --- tests ---------------------------------------------------------------------- */

START_TEST(published_message_arrives_once_and_is_gone_after_ack)
{
	struct pubs	p;
	struct got	g;
	char		want[128];

	memset(&p, 0, sizeof(p));
	publish("a", "hello", "saga1:0:do", &p);
	ck_assert(run_until(&p.n, 1, 5000));
	ck_assert_msg(p.errors == 0, "%s", p.err);
	ck_assert_int_eq(p.dup[0], 0);
	ck_assert_uint_eq(p.seq[0], 1);
	ck_assert_uint_eq(depth(), 1);

	memset(&g, 0, sizeof(g));
	g.ack = 1;
	consume("A", "a", 4, 5000, on_msg, &g);
	ck_assert(run_until(&g.n, 1, 5000));
	subject(want, sizeof(want), "a");
	ck_assert_str_eq(g.subject[0], want);
	ck_assert_str_eq(g.data[0], "hello");
	ck_assert_str_eq(g.id[0], "saga1:0:do");
	ck_assert_int_eq(g.delivered[0], 1);
	ck_assert(depth_becomes(0, 3000));
	run_for(500);
	ck_assert_int_eq(g.n, 1);
	ck_assert_int_eq(off_loop, 0);
}
END_TEST

START_TEST(same_msg_id_is_stored_once_and_reported_duplicate)
{
	struct pubs	p;
	struct got	g;

	memset(&p, 0, sizeof(p));
	publish("a", "first", "saga2:1:do", &p);
	publish("a", "second", "saga2:1:do", &p);
	publish("a", "other", "saga2:2:do", &p);
	ck_assert(run_until(&p.n, 3, 5000));
	ck_assert_msg(p.errors == 0, "%s", p.err);
	if (amqp) {
		/*
		 * RabbitMQ stores a republish again: the copy arrives with
		 * the same id, and the consumers' stored state makes it
		 * harmless (README, "RabbitMQ").
		 */
		ck_assert_int_eq(p.dup[1], 0);
		ck_assert_uint_eq(depth(), 3);
		memset(&g, 0, sizeof(g));
		g.ack = 1;
		consume("A", "a", 4, 5000, on_msg, &g);
		ck_assert(run_until(&g.n, 3, 5000));
		ck_assert_str_eq(g.id[0], "saga2:1:do");
		ck_assert_str_eq(g.id[1], "saga2:1:do");
		ck_assert_str_eq(g.data[1], "second");
		ck_assert_str_eq(g.id[2], "saga2:2:do");
		return;
	}
	ck_assert_int_eq(p.dup[0], 0);
	ck_assert_int_eq(p.dup[1], 1);
	ck_assert_int_eq(p.dup[2], 0);
	ck_assert_uint_eq(p.seq[1], p.seq[0]);
	ck_assert_uint_eq(depth(), 2);

	memset(&g, 0, sizeof(g));
	g.ack = 1;
	consume("A", "a", 4, 5000, on_msg, &g);
	ck_assert(run_until(&g.n, 2, 5000));
	run_for(400);
	ck_assert_int_eq(g.n, 2);
	ck_assert_str_eq(g.data[0], "first");
	ck_assert_str_eq(g.data[1], "other");
}
END_TEST

START_TEST(nak_with_delay_redelivers_after_the_delay)
{
	struct got	g;

	publish_all("a", 1, "nak:%d");
	memset(&g, 0, sizeof(g));
	g.ack = 1;
	g.nak_ms = 600;
	consume("A", "a", 2, 5000, on_msg, &g);
	ck_assert(run_until(&g.n, 2, 5000));
	ck_assert_int_eq(g.delivered[0], 1);
	ck_assert_int_eq(g.delivered[1], 2);
	ck_assert_str_eq(g.data[1], "m0");
	ck_assert_msg(g.at[1] - g.at[0] >= 580, "redelivered after %lld ms",
	    (long long)(g.at[1] - g.at[0]));
	ck_assert(depth_becomes(0, 3000));
	run_for(1500);
	ck_assert_int_eq(g.n, 2);	/* once again, not more */
}
END_TEST

/* Two delays in a row: each nak brings the message back once. */
START_TEST(naks_with_two_delays_redeliver_once_each)
{
	struct got	g;

	publish_all("a", 1, "nak2:%d");
	memset(&g, 0, sizeof(g));
	g.ack = 1;
	g.nak_ms = 100;
	g.nak2_ms = 600;
	consume("A", "a", 2, 5000, on_msg, &g);
	ck_assert(run_until(&g.n, 3, 5000));
	ck_assert_int_eq(g.delivered[0], 1);
	ck_assert_int_eq(g.delivered[1], 2);
	ck_assert_int_eq(g.delivered[2], 3);
	ck_assert(depth_becomes(0, 3000));
	run_for(1500);
	ck_assert_int_eq(g.n, 3);
}
END_TEST

START_TEST(unfinished_message_is_redelivered_after_ack_wait)
{
	struct got	g;

	if (amqp)
		return;	/* RabbitMQ redelivers when the connection goes */
	publish_all("a", 1, NULL);
	memset(&g, 0, sizeof(g));
	consume("A", "a", 2, 1000, on_msg, &g);
	ck_assert(run_until(&g.n, 1, 5000));
	ck_assert_int_eq(bus_consumer_inflight(bus_msg_consumer(g.held[0])),
	    1);
	ck_assert(run_until(&g.n, 2, 5000));
	ck_assert_int_eq(g.delivered[1], 2);
	ck_assert_msg(g.at[1] - g.at[0] >= 950, "redelivered after %lld ms",
	    (long long)(g.at[1] - g.at[0]));
	ck_assert_int_eq(bus_ack(g.held[1]), 0);
	ck_assert_int_eq(bus_ack(g.held[0]), 0);	/* stale: harmless */
	ck_assert(depth_becomes(0, 3000));
}
END_TEST

START_TEST(in_progress_keeps_a_long_call_from_redelivery)
{
	struct got	g;
	int		i;

	publish_all("a", 1, NULL);
	memset(&g, 0, sizeof(g));
	consume("A", "a", 2, 800, on_msg, &g);
	ck_assert(run_until(&g.n, 1, 5000));
	for (i = 0; i < 6; i++) {	/* 1.8 s, more than twice ack_wait */
		run_for(300);
		ck_assert_int_eq(bus_in_progress(g.held[0]), 0);
	}
	ck_assert_int_eq(g.n, 1);
	ck_assert_int_eq(bus_ack(g.held[0]), 0);
	ck_assert(depth_becomes(0, 3000));
}
END_TEST

/* The concurrency test: hold each message 15 ms, count what is held. */
struct slow {
	int		 got, done, held, max_held;
	struct event	*timers[64];
};

struct slow_one {
	struct slow	*s;
	struct bus_msg	*m;
	struct event	*ev;
};

static void
slow_ack(evutil_socket_t fd, short ev, void *arg)
{
	struct slow_one	*o = arg;

	(void)fd;
	(void)ev;
	check_thread();
	o->s->held--;
	o->s->done++;
	ck_assert_int_eq(bus_ack(o->m), 0);
	event_free(o->ev);
	free(o);
}

static void
slow_msg(struct bus_msg *m, void *arg)
{
	struct slow	*s = arg;
	struct slow_one	*o;
	struct timeval	 tv = { 0, 15000 };

	check_thread();
	s->got++;
	if (++s->held > s->max_held)
		s->max_held = s->held;
	o = util_xcalloc(1, sizeof(*o));
	o->s = s;
	o->m = m;
	o->ev = evtimer_new(base, slow_ack, o);
	evtimer_add(o->ev, &tv);
}

START_TEST(no_more_than_concurrency_messages_are_in_flight)
{
	struct slow		 s;
	struct bus_consumer	*c;

	publish_all("a", 50, "c:%d");
	memset(&s, 0, sizeof(s));
	c = consume("A", "a", 3, 5000, slow_msg, &s);
	ck_assert_msg(run_until(&s.done, 50, 8000), "%d of 50 done", s.done);
	ck_assert_int_le(s.max_held, 3);
	ck_assert_int_eq(s.max_held, 3);
	ck_assert_int_eq(s.got, 50);
	ck_assert_int_eq(bus_consumer_inflight(c), 0);
	ck_assert(depth_becomes(0, 3000));
	ck_assert_int_eq(off_loop, 0);
}
END_TEST

START_TEST(consumers_with_disjoint_filters_share_one_stream)
{
	struct got	ga, gb;
	char		sa[128], sb[128];
	int		i;

	publish_all("do", 5, "do:%d");
	publish_all("undo", 3, "undo:%d");
	memset(&ga, 0, sizeof(ga));
	memset(&gb, 0, sizeof(gb));
	ga.ack = gb.ack = 1;
	consume("DO", "do", 4, 5000, on_msg, &ga);
	consume("UNDO", "undo", 4, 5000, on_msg, &gb);
	ck_assert(run_until(&ga.n, 5, 5000));
	ck_assert(run_until(&gb.n, 3, 5000));
	run_for(300);
	ck_assert_int_eq(ga.n, 5);
	ck_assert_int_eq(gb.n, 3);
	subject(sa, sizeof(sa), "do");
	subject(sb, sizeof(sb), "undo");
	for (i = 0; i < 5; i++)
		ck_assert_str_eq(ga.subject[i], sa);
	for (i = 0; i < 3; i++)
		ck_assert_str_eq(gb.subject[i], sb);
	ck_assert(depth_becomes(0, 3000));
}
END_TEST

START_TEST(overlapping_consumer_is_refused_with_a_reason)
{
	struct bus_consumer_opts	co;
	struct got			g;
	char				filter[128];

	if (amqp)
		return;	/* each RabbitMQ filter is a queue: overlaps get copies */
	memset(&g, 0, sizeof(g));
	consume("DO", "do", 1, 5000, on_msg, &g);
	subject(filter, sizeof(filter), ">");
	memset(&co, 0, sizeof(co));
	co.durable = "ALL";
	co.filter = filter;
	co.concurrency = 1;
	errbuf[0] = '\0';
	ck_assert_ptr_null(bus_consume(bus, &co, on_msg, &g, errbuf,
	    sizeof(errbuf)));
	ck_assert_msg(strstr(errbuf, "ALL") != NULL, "%s", errbuf);
}
END_TEST

START_TEST(declaring_the_stream_again_is_harmless)
{
	char		 all[64];
	const char	*subs[1] = { all };

	publish_all("a", 2, NULL);
	snprintf(all, sizeof(all), "%s.>", prefix);
	ck_assert_msg(bus_declare_stream(bus, subs, 1, errbuf,
	    sizeof(errbuf)) == 0, "%s", errbuf);
	ck_assert_uint_eq(depth(), 2);
}
END_TEST

/* Notes */
struct notes {
	int	n;
	char	subject[8][64];
	char	data[8][32];
};

static void
on_note(struct bus_listener *l, const char *subj, const void *data,
    size_t len, void *arg)
{
	struct notes	*ns = arg;

	(void)l;
	check_thread();
	if (ns->n < 8) {
		snprintf(ns->subject[ns->n], sizeof(ns->subject[0]), "%s", subj);
		snprintf(ns->data[ns->n], sizeof(ns->data[0]), "%.*s",
		    (int)len, (const char *)data);
	}
	ns->n++;
}

START_TEST(notify_reaches_listeners_on_the_loop_thread)
{
	struct bus_listener	*l;
	struct notes		 ns;
	char			 subj[128];

	memset(&ns, 0, sizeof(ns));
	snprintf(subj, sizeof(subj), "done%ld.pod-a", (long)getpid());
	l = bus_listen(bus, subj, on_note, &ns, errbuf, sizeof(errbuf));
	ck_assert_msg(l != NULL, "%s", errbuf);
	run_for(100);	/* the subscription reaches the server */
	ck_assert_int_eq(bus_notify(bus, subj, "saga-9", 6, errbuf,
	    sizeof(errbuf)), 0);
	ck_assert(run_until(&ns.n, 1, 3000));
	ck_assert_str_eq(ns.subject[0], subj);
	ck_assert_str_eq(ns.data[0], "saga-9");
	bus_listener_close(l);
	ck_assert_int_eq(bus_notify(bus, subj, "again", 5, errbuf,
	    sizeof(errbuf)), 0);
	run_for(300);
	ck_assert_int_eq(ns.n, 1);
	ck_assert_int_eq(off_loop, 0);
	ck_assert_uint_eq(depth(), 0);	/* notes are not in the stream */
}
END_TEST

/* Stopping: the held message is waited for, then the drain callback. */
static int	drained;

static void
on_drained(struct bus_consumer *c, void *arg)
{
	(void)c;
	(void)arg;
	check_thread();
	drained++;
}

START_TEST(stop_waits_for_messages_in_flight)
{
	struct bus_consumer	*c;
	struct got		 g;

	publish_all("a", 1, NULL);
	memset(&g, 0, sizeof(g));
	c = consume("A", "a", 1, 5000, on_msg, &g);
	ck_assert(run_until(&g.n, 1, 5000));
	drained = 0;
	bus_consumer_stop(c, on_drained, NULL);
	run_for(600);
	ck_assert_int_eq(drained, 0);
	ck_assert_int_eq(bus_ack(g.held[0]), 0);
	ck_assert(run_until(&drained, 1, 3000));
	ck_assert(depth_becomes(0, 3000));
	ck_assert_int_eq(off_loop, 0);
}
END_TEST

START_TEST(close_with_messages_held_is_clean_and_they_return)
{
	struct got	g;

	publish_all("a", 3, NULL);
	memset(&g, 0, sizeof(g));
	consume("A", "a", 3, 1000, on_msg, &g);
	ck_assert(run_until(&g.n, 3, 5000));
	teardown();	/* drops the held messages unacknowledged */
	open_bus();
	memset(&g, 0, sizeof(g));
	g.ack = 1;
	consume("A", "a", 3, 1000, on_msg, &g);
	ck_assert(run_until(&g.n, 3, 5000));
	ck_assert_int_eq(g.delivered[0], 2);
	ck_assert(depth_becomes(0, 3000));
}
END_TEST

START_TEST(nats_down_at_open_is_retried_not_an_error)
{
	struct bus_opts	 o;
	struct bus	*down;

	o = bus_defaults();
	/* Nobody listens there. */
	o.url = amqp ? "amqp://127.0.0.1:1" : "nats://127.0.0.1:1";
	o.timeout_ms = 200;
	down = bus_open(base, &o, errbuf, sizeof(errbuf));
	ck_assert_msg(down != NULL, "%s", errbuf);
	ck_assert_int_eq(bus_state(down), BUS_DISCONNECTED);
	ck_assert_int_eq(bus_is_connected(down), 0);
	run_for(300);
	bus_close(down);
}
END_TEST

START_TEST(bad_options_are_refused_with_a_reason)
{
	struct bus_opts			 o;
	struct bus_consumer_opts	 co;

	o = bus_defaults();
	o.url = "http://127.0.0.1";
	ck_assert_ptr_null(bus_open(base, &o, errbuf, sizeof(errbuf)));
	ck_assert_msg(strstr(errbuf, "scheme") != NULL, "%s", errbuf);
	o = bus_defaults();
	o.queue_type = "lazy";
	ck_assert_ptr_null(bus_open(base, &o, errbuf, sizeof(errbuf)));
	ck_assert_msg(strstr(errbuf, "quorum") != NULL, "%s", errbuf);
	o = bus_defaults();
	o.stream = "SA.GA";
	ck_assert_ptr_null(bus_open(base, &o, errbuf, sizeof(errbuf)));
	memset(&co, 0, sizeof(co));
	co.durable = "X";
	co.filter = "a..b";
	co.concurrency = 1;
	ck_assert_ptr_null(bus_consume(bus, &co, on_msg, NULL, errbuf,
	    sizeof(errbuf)));
	co.filter = "a.b";
	co.concurrency = 0;
	ck_assert_ptr_null(bus_consume(bus, &co, on_msg, NULL, errbuf,
	    sizeof(errbuf)));
	ck_assert_msg(strstr(errbuf, "concurrency") != NULL, "%s", errbuf);
}
END_TEST

/* --- restart: t/bus.sh restarts nats-server when asked -------------------- */

static void
on_state(struct bus *b, enum bus_state st, void *arg)
{
	(void)b;
	(void)arg;
	check_thread();
	if (st == BUS_DISCONNECTED)
		seen_down++;
	else if (st == BUS_RECONNECTED && seen_down > 0)
		seen_up++;
}

START_TEST(restarted_nats_keeps_pending_work_and_the_bus_reconnects)
{
	const char	*dir = getenv("BUS_RESTART_DIR");
	struct got	 ga, gb;
	char		 path[512];
	FILE		*f;

	if (dir == NULL)
		return;		/* only t/bus.sh can restart the server */

	/* Before: three done and acked, two waiting for a consumer. */
	memset(&ga, 0, sizeof(ga));
	memset(&gb, 0, sizeof(gb));
	ga.ack = gb.ack = 1;
	publish_all("a", 3, "a:%d");
	consume("A", "a", 4, 5000, on_msg, &ga);
	ck_assert(run_until(&ga.n, 3, 5000));
	publish_all("b", 2, "b:%d");
	ck_assert(depth_becomes(2, 3000));

	snprintf(path, sizeof(path), "%s/restart", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fclose(f);
	ck_assert_msg(run_until(&seen_down, 1, 10000), "no disconnect seen");
	ck_assert_msg(run_until(&seen_up, 1, 20000), "no reconnect seen");
	ck_assert(bus_is_connected(bus));

	/*
	 * After: the waiting two arrive, the acked three do not come back.
	 * A broker that restarted may take a while to open its queues again
	 * (RabbitMQ recovers quorum queues after a kill -9): like a worker,
	 * try the consumer again until it opens.
	 */
	consume_retry("B", "b", 4, on_msg, &gb, 30000);
	ck_assert(run_until(&gb.n, 2, 8000));
	ck_assert_str_eq(gb.data[0], "m0");
	ck_assert_str_eq(gb.data[1], "m1");
	publish_all("a", 1, "a-after:%d");
	ck_assert(run_until(&ga.n, 4, 8000));
	ck_assert_str_eq(ga.id[3], "a-after:0");
	run_for(500);
	ck_assert_int_eq(ga.n, 4);
	ck_assert_int_eq(gb.n, 2);
	ck_assert(depth_becomes(0, 3000));
	ck_assert_int_eq(off_loop, 0);
}
END_TEST

/* --- benchmark (no Check macros: it runs outside of a test) ------------------ */

struct bench {
	int	sent, published, consumed, inflight, window, total, errors;
	char	subj[128];
	char	payload[256];
};

static void bench_publish_more(struct bench *);

static void
bench_die(const char *what)
{
	fprintf(stderr, "bus bench: %s: %s\n", what, errbuf);
	exit(1);
}

static void
bench_pub(struct bus *b, const struct bus_pub_result *r, void *arg)
{
	struct bench	*bn = arg;

	(void)b;
	if (r->error != NULL)
		bn->errors++;
	bn->published++;
	bn->inflight--;
	bench_publish_more(bn);
}

static void
bench_publish_more(struct bench *bn)
{
	char	id[64];

	while (bn->sent < bn->total && bn->inflight < bn->window) {
		snprintf(id, sizeof(id), "bench:%d", bn->sent);
		if (bus_publish(bus, bn->subj, bn->payload, sizeof(bn->payload),
		    id, bench_pub, bn, errbuf, sizeof(errbuf)) == -1)
			bench_die("publish");
		bn->sent++;
		bn->inflight++;
	}
}

static void
bench_msg(struct bus_msg *m, void *arg)
{
	struct bench	*bn = arg;

	bn->consumed++;
	bus_ack(m);
}

static void
bench_open(struct bench *bn, const char *name, int total)
{
	struct bus_opts	 o;
	char		 all[64];
	const char	*subs[1] = { all };

	if (bus_init(errbuf, sizeof(errbuf)) == -1)
		bench_die("init");
	base = event_base_new();
	snprintf(stream, sizeof(stream), "%s%ld", name, (long)getpid());
	snprintf(prefix, sizeof(prefix), "%s%ld", name, (long)getpid());
	o = bus_defaults();
	if ((bus = bus_open(base, &o, errbuf, sizeof(errbuf))) == NULL)
		bench_die("open");
	snprintf(all, sizeof(all), "%s.>", prefix);
	if (bus_declare_stream(bus, subs, 1, errbuf, sizeof(errbuf)) == -1)
		bench_die("declare");
	memset(bn, 0, sizeof(*bn));
	memset(bn->payload, 'x', sizeof(bn->payload));
	bn->total = total;
	bn->window = 1000;
	subject(bn->subj, sizeof(bn->subj), "bench");
}

static void
bench_consume(struct bench *bn, int concurrency)
{
	struct bus_consumer_opts	co;

	memset(&co, 0, sizeof(co));
	co.durable = "BENCH";
	co.filter = bn->subj;
	co.concurrency = concurrency;
	co.ack_wait_ms = 30000;
	if (bus_consume(bus, &co, bench_msg, bn, errbuf, sizeof(errbuf)) ==
	    NULL)
		bench_die("consume");
}

static double
rate(int n, int64_t ms)
{
	return n * 1000.0 / (double)(ms > 0 ? ms : 1);
}

static int
bench(int total)
{
	struct bench	 bn;
	int64_t		 t0, t1, t2;
	const char	*env = getenv("BUS_BENCH_CONCURRENCY");
	int		 c = env != NULL ? atoi(env) : 64, ok;

	/* Publish alone, then consume alone, on one stream. */
	bench_open(&bn, "BA", total);
	t0 = util_mono_ms();
	bench_publish_more(&bn);
	run_until(&bn.published, total, 120000);
	t1 = util_mono_ms();
	bench_consume(&bn, c);
	run_until(&bn.consumed, total, 120000);
	t2 = util_mono_ms();
	printf("bus bench: %d messages of %zu bytes, file storage, one "
	    "consumer of concurrency %d\n", total, sizeof(bn.payload), c);
	printf("  publish (1000 in flight, PubAck each): %8.0f msg/s\n",
	    rate(total, t1 - t0));
	printf("  consume + ack:                         %8.0f msg/s\n",
	    rate(total, t2 - t1));
	ok = bn.published == total && bn.consumed == total && bn.errors == 0;
	teardown();

	/* Both at once on a fresh stream: the steady state of a worker. */
	bench_open(&bn, "BB", total);
	bench_consume(&bn, c);
	t0 = util_mono_ms();
	bench_publish_more(&bn);
	run_until(&bn.consumed, total, 120000);
	t1 = util_mono_ms();
	printf("  publish + consume + ack together:      %8.0f msg/s\n",
	    rate(total, t1 - t0));
	ok = ok && bn.consumed == total && bn.errors == 0;
	teardown();
	bus_fini();
	if (!ok)
		fprintf(stderr, "bus bench: lost messages or publish errors\n");
	return ok ? 0 : 1;
}

/* --- main --------------------------------------------------------------------- */

static Suite *
bus_suite(void)
{
	Suite	*s = suite_create("bus");
	TCase	*tc = tcase_create("nats");
	TCase	*tr = tcase_create("restart");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 15);
	tcase_add_test(tc, published_message_arrives_once_and_is_gone_after_ack);
	tcase_add_test(tc, same_msg_id_is_stored_once_and_reported_duplicate);
	tcase_add_test(tc, nak_with_delay_redelivers_after_the_delay);
	tcase_add_test(tc, naks_with_two_delays_redeliver_once_each);
	tcase_add_test(tc, unfinished_message_is_redelivered_after_ack_wait);
	tcase_add_test(tc, in_progress_keeps_a_long_call_from_redelivery);
	tcase_add_test(tc, no_more_than_concurrency_messages_are_in_flight);
	tcase_add_test(tc, consumers_with_disjoint_filters_share_one_stream);
	tcase_add_test(tc, overlapping_consumer_is_refused_with_a_reason);
	tcase_add_test(tc, declaring_the_stream_again_is_harmless);
	tcase_add_test(tc, notify_reaches_listeners_on_the_loop_thread);
	tcase_add_test(tc, stop_waits_for_messages_in_flight);
	tcase_add_test(tc, close_with_messages_held_is_clean_and_they_return);
	tcase_add_test(tc, nats_down_at_open_is_retried_not_an_error);
	tcase_add_test(tc, bad_options_are_refused_with_a_reason);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tr, setup, teardown);
	tcase_set_timeout(tr, 45);
	tcase_add_test(tr,
	    restarted_nats_keeps_pending_work_and_the_bus_reconnects);
	suite_add_tcase(s, tr);
	return s;
}

int
main(void)
{
	const char	*b;
	int		 rc;

	if ((nats_url = getenv("BUS_URL")) == NULL &&
	    (nats_url = getenv("NATS_URL")) == NULL) {
		fprintf(stderr, "BUS_URL or NATS_URL is not set: skipped\n");
		return 77;
	}
	amqp = strncmp(nats_url, "amqp://", 7) == 0;
	if ((b = getenv("BUS_BENCH")) != NULL && *b != '\0')
		return bench(atoi(b));
	rc = check_run(bus_suite());
	bus_fini();	/* with CK_FORK=no, for valgrind */
	return rc;
}
