/*
 * bus_rabbitmq.c - the RabbitMQ driver of the message bus (bus.h), and the
 * only file of sagad that calls rabbitmq-c. It gives the engines what the
 * NATS driver gives them, with AMQP 0-9-1 building blocks:
 *
 *   - work: a durable topic exchange "<stream>.work"; each consumer's filter
 *     is a durable queue of that name (x-queue-type quorum or classic),
 *     bound with the filter as its pattern (NATS' ">" is AMQP's "#"), and
 *     a message is published with its subject as routing key. Publishes are
 *     persistent and count only once the broker confirmed them (publisher
 *     confirms).
 *   - work no queue takes yet (its workers never ran) goes, through the
 *     work exchange's alternate exchange "<stream>.unrouted" (fanout), to
 *     the durable queue of that name; a consumer that starts moves what
 *     waits there back through the work exchange, so that nothing published
 *     before its workers existed is lost, as a NATS stream would keep it.
 *   - consuming: basic.consume with a prefetch of the consumer's
 *     concurrency (so workers x concurrency over a topic), manual acks.
 *   - nak with a delay: the message is published again, with its delivery
 *     count in a header, to the headers exchange "<stream>.retry", which
 *     routes it to the classic queue "<stream>.retry.<ms>" of the next step
 *     of a fixed ladder of delays; that queue's message TTL dead-letters it
 *     back to "<stream>.work" under its own subject. The original is acked
 *     only once the broker confirmed the copy. No plugin is needed.
 *   - notifications: the direct exchange "<stream>.notify"; each listener is
 *     an exclusive, auto-deleted, server-named queue bound to its subject.
 *
 * RabbitMQ does not deduplicate: the message id travels as the AMQP
 * message-id and a republish is stored twice. A second copy must not pass
 * for a first delivery (a consumer trusts a first delivery's record and
 * the start it implies), and copies come from work handled again: so when
 * this process gets a message delivered more than once, what it publishes
 * for the same unit of work (ids that share their first ':'-field) in the
 * next minute carries a header that makes its consumer count it as a
 * second delivery. The consumers' stored-state checks do the rest (see
 * README, "RabbitMQ").
 *
 * Threads: rabbitmq-c is blocking and a connection is not thread-safe, so
 * one thread per bus owns the connection and its one channel. The loop
 * hands it commands (publish, ack, consume...) through a locked queue and
 * an eventfd; it hands the loop confirms, notifications and state through
 * bus_post(); deliveries wait in their consumer's queue until bus.c's fetch
 * thread takes them. After a loss the thread reconnects with a doubling
 * delay, declares the topology again and consumes again; work delivered on
 * the old connection is the broker's again (its acks are dropped).
 */
#include "autoconf.h"

#include <sys/eventfd.h>
#include <sys/queue.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "bus.h"
#include "bus_driver.h"
#include "util.h"

#define RMQ_CHANNEL	1
#define RMQ_MOVE_CHANNEL 2	/* moves unrouted work; nothing else on it */
#define RMQ_HEARTBEAT_S	10
#define RMQ_FRAME_MAX	131072
#define RMQ_POLL_MS	500	/* the longest the thread sleeps in poll */
#define RMQ_CLOSE_WAIT_MS 5000	/* for confirms still due at close */
#define RMQ_NAME_MAX	256	/* AMQP short strings */
#define RMQ_HDR_DELIVERED "x-sagad-delivered"
#define RMQ_HDR_DELAY	"sagad-delay"	/* no x-: headers exchanges skip those */
#define RMQ_HDR_AGAIN	"x-sagad-again"	/* maybe a copy: not a first delivery */
#define RMQ_TAINT_SLOTS	4096		/* units of work handled again */
#define RMQ_TAINT_PROBE	8
#define RMQ_TAINT_MS	60000

/* The retry delays a nak is rounded up to: one queue each, made on use. */
static const int rmq_ladder[] = {
	50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 300000,
	600000
};
#define RMQ_NLADDER	(int)(sizeof(rmq_ladder) / sizeof(rmq_ladder[0]))

enum rmq_cmd_kind {
	RC_PUBLISH,		/* work, confirmed, answered through bus_pub */
	RC_NOTIFY,		/* a notification, not answered */
	RC_ACK,
	RC_REQUEUE,		/* basic.nack, requeue */
	RC_DROP,		/* basic.nack, no requeue */
	RC_RETRY,		/* copy to the retry queue, then ack */
	RC_CONSUME,		/* sync */
	RC_CANCEL,		/* sync */
	RC_LISTEN,		/* sync */
	RC_UNLISTEN,		/* sync */
	RC_DECLARE,		/* sync */
	RC_DEPTH		/* sync */
};

struct rmq_msg;
struct rmq_consumer;
struct rmq_listener;

struct rmq_cmd {
	TAILQ_ENTRY(rmq_cmd)	 entry;
	enum rmq_cmd_kind	 kind;
	struct bus_pub		*pub;
	char			*subject;
	char			*msg_id;
	void			*data;
	size_t			 len;
	uint64_t		 tag;		/* delivery tag to finish */
	uint64_t		 epoch;		/* of the connection it came on */
	int			 delivered;	/* RC_RETRY: the count so far */
	int			 delay_ms;
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	/* Synchronous commands: the caller waits for done. */
	int			 sync;
	int			 done;		/* (mu) */
	int			 abandoned;	/* (mu) the caller gave up */
	int			 rc_;
	uint64_t		 count;
	char			 err[SAGAD_ERRLEN];
};
TAILQ_HEAD(rmq_cmds, rmq_cmd);

/* A unit of work this process handled again lately (by its id's hash). */
struct rmq_taint {
	uint64_t		 h;
	int64_t			 until;		/* mono ms */
};

/* A publish waiting for its confirm, in channel sequence order. */
struct rmq_pend {
	TAILQ_ENTRY(rmq_pend)	 entry;
	uint64_t		 seq;
	int64_t			 deadline;	/* mono ms */
	struct bus_pub		*pub;		/* RC_PUBLISH, else NULL */
	uint64_t		 ack_tag;	/* RC_RETRY: ack this after */
	int			 returned;	/* came back unroutable */
	char			*subject;
};
TAILQ_HEAD(rmq_pends, rmq_pend);

/* What bus_msg->drv points to. */
struct rmq_msg {
	TAILQ_ENTRY(rmq_msg)	 entry;		/* in its consumer's queue */
	struct bus_msg		*m;
	uint64_t		 tag;
	uint64_t		 epoch;
	char			*subject;
	char			*msg_id;
	void			*body;
	size_t			 len;
	int			 delivered;
};
TAILQ_HEAD(rmq_msgs, rmq_msg);

struct rmq_consumer {
	LIST_ENTRY(rmq_consumer) entry;
	struct bus_consumer	*c;
	char			 tag[32];
	int			 active;	/* consuming on this connection */
	struct rmq_msgs		 ready;		/* (mu) delivered, not fetched */
	pthread_cond_t		 cv;		/* (mu) ready got one */
};

struct rmq_listener {
	LIST_ENTRY(rmq_listener) entry;
	struct bus_listener	*l;
	char			 tag[32];
	int			 active;
};

/* The delivery or returned message being read, frame by frame. */
struct rmq_incoming {
	int			 kind;		/* 0 none, 1 deliver, 2 return */
	char			 ctag[32];
	uint64_t		 tag;
	int			 redelivered;
	int			 again;		/* carried RMQ_HDR_AGAIN */
	char			*rkey;
	char			*msg_id;
	uint64_t		 seq;		/* return: its correlation id */
	int			 delivered;
	unsigned char		*body;
	size_t			 size, got;
};

struct rmq_bus {
	struct bus		*bus;
	char			*host;
	int			 port;
	char			*user;
	char			*pass;
	char			*vhost;
	char			*name;
	char			 where[200];	/* host:port/vhost, for errors */
	char			 xwork[RMQ_NAME_MAX];
	char			 xretry[RMQ_NAME_MAX];
	char			 xnotify[RMQ_NAME_MAX];
	char			 unrouted[RMQ_NAME_MAX];	/* exchange and queue */

	pthread_t		 thread;
	int			 started;
	int			 wakefd;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;		/* a sync command is done */
	struct rmq_cmds		 cmds;		/* (mu) */
	int			 stop;		/* (mu) */
	int			 connected;	/* (mu) the thread's view */
	LIST_HEAD(, rmq_consumer) consumers;	/* (mu) */
	LIST_HEAD(, rmq_listener) listeners;	/* (mu) */
	unsigned		 ntags;		/* (mu) */

	/* The thread's own. */
	amqp_connection_state_t	 conn;
	uint64_t		 epoch;		/* bumped at every connection */
	uint64_t		 next_seq;
	struct rmq_pends	 pends;
	struct rmq_incoming	 in;
	char			**queues;	/* work queues declared on conn */
	size_t			 nqueues;
	char			**known;	/* every work queue ever: depth */
	size_t			 nknown;
	unsigned		 retry_made;	/* ladder bits declared on conn */
	int			 ever;		/* connected once */
	int			 wait_ms;	/* the next reconnect delay */
	int			 declared;	/* exchanges made on conn */
	uint64_t		 move_seq;	/* publishes on the move channel */
	uint64_t		 move_acked;	/* confirmed there, in order */
	int			 move_nacked;
	struct rmq_taint	 taint[RMQ_TAINT_SLOTS];
	char			 lasterr[SAGAD_ERRLEN];
};

static int	rmq_connect(struct rmq_bus *, char *, size_t);
static void	rmq_drop(struct rmq_bus *, const char *);

/* --- small helpers ------------------------------------------------------------ */

static char *
rmq_strndup(const void *p, size_t n)
{
	char	*s = util_xcalloc(1, n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static int
rmq_bytes_eq(amqp_bytes_t b, const char *s)
{
	return b.len == strlen(s) && memcmp(b.bytes, s, b.len) == 0;
}

static void
rmq_wake(struct rmq_bus *rb)
{
	uint64_t	one = 1;

	(void)!write(rb->wakefd, &one, sizeof(one));
}

/* What went wrong with the last RPC, in words, with the broker's text. */
static void
rmq_reply_error(amqp_rpc_reply_t r, const char *what, char *err,
    size_t errlen)
{
	amqp_connection_close_t	*cc;
	amqp_channel_close_t	*ch;

	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		snprintf(err, errlen, "rabbitmq: %s: failed", what);
		break;
	case AMQP_RESPONSE_NONE:
		snprintf(err, errlen, "rabbitmq: %s: no reply", what);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		snprintf(err, errlen, "rabbitmq: %s: %s", what,
		    amqp_error_string2(r.library_error));
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			cc = r.reply.decoded;
			snprintf(err, errlen, "rabbitmq: %s: %u %.*s", what,
			    cc->reply_code, (int)cc->reply_text.len,
			    (const char *)cc->reply_text.bytes);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			ch = r.reply.decoded;
			snprintf(err, errlen, "rabbitmq: %s: %u %.*s", what,
			    ch->reply_code, (int)ch->reply_text.len,
			    (const char *)ch->reply_text.bytes);
		} else
			snprintf(err, errlen, "rabbitmq: %s: broker method "
			    "0x%08x", what, (unsigned)r.reply.id);
		break;
	}
}

/* After a synchronous call on the thread: 0, or -1 with err. */
static int
rmq_rpc_ok(struct rmq_bus *rb, const char *what, char *err, size_t errlen)
{
	amqp_rpc_reply_t	r = amqp_get_rpc_reply(rb->conn);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	rmq_reply_error(r, what, err, errlen);
	return -1;
}

static int
rmq_ladder_index(int ms)
{
	int	i;

	for (i = 0; i < RMQ_NLADDER - 1; i++)
		if (ms <= rmq_ladder[i])
			break;
	return i;
}

/* FNV-1a of a message id up to its first ':', its unit of work. */
static uint64_t
rmq_unit_hash(const char *id)
{
	uint64_t	h = 1469598103934665603ULL;

	for (; *id != '\0' && *id != ':'; id++) {
		h ^= (unsigned char)*id;
		h *= 1099511628211ULL;
	}
	return h | 1;	/* 0 marks a free slot */
}

static void
rmq_taint_add(struct rmq_bus *rb, const char *id)
{
	struct rmq_taint	*t, *old = NULL;
	uint64_t		 h;
	int64_t			 now = util_mono_ms();
	int			 i;

	if (id == NULL)
		return;
	h = rmq_unit_hash(id);
	for (i = 0; i < RMQ_TAINT_PROBE; i++) {
		t = &rb->taint[(h + (uint64_t)i) % RMQ_TAINT_SLOTS];
		if (t->h == h || t->until <= now) {
			old = t;
			break;
		}
		if (old == NULL || t->until < old->until)
			old = t;
	}
	old->h = h;
	old->until = now + RMQ_TAINT_MS;
}

static int
rmq_tainted(struct rmq_bus *rb, const char *id)
{
	struct rmq_taint	*t;
	uint64_t		 h;
	int64_t			 now;
	int			 i;

	if (id == NULL)
		return 0;
	h = rmq_unit_hash(id);
	now = util_mono_ms();
	for (i = 0; i < RMQ_TAINT_PROBE; i++) {
		t = &rb->taint[(h + (uint64_t)i) % RMQ_TAINT_SLOTS];
		if (t->h == h && t->until > now)
			return 1;
	}
	return 0;
}

static void
rmq_pend_free(struct rmq_pend *pd)
{
	free(pd->subject);
	free(pd);
}

static void
rmq_cmd_free(struct rmq_cmd *cmd)
{
	free(cmd->subject);
	free(cmd->msg_id);
	free(cmd->data);
	free(cmd);
}

static void
rmq_rmsg_free(struct rmq_msg *rm)
{
	if (rm == NULL)
		return;
	free(rm->subject);
	free(rm->msg_id);
	free(rm->body);
	free(rm);
}

/* Answers a publish: with an error when err is not NULL. */
static void
rmq_answer(struct rmq_bus *rb, struct bus_pub *pub, const char *err,
    uint64_t seq)
{
	struct bus_pub	*p;

	if (pub == NULL || (p = bus_pub_take(rb->bus, pub)) == NULL)
		return;		/* bus_close answered it */
	p->res.seq = seq;	/* its place on the channel, not a stream */
	if (err != NULL)
		snprintf(p->errbuf, sizeof(p->errbuf), "%.*s",
		    (int)sizeof(p->errbuf) - 1, err);
	bus_post(rb->bus, &p->item);
}

/* --- init, open and close (loop thread) ------------------------------------- */

static int
rmq_init(char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return 0;
}

static void
rmq_fini(void)
{
}

static void	*rmq_main(void *);

static int
rmq_open(struct bus *bus, const char *url, const char *name, char *err,
    size_t errlen)
{
	struct amqp_connection_info	 ci;
	struct rmq_bus			*rb;
	char				*copy;
	int				 rc;

	copy = util_xstrdup(url);
	amqp_default_connection_info(&ci);
	if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK || ci.ssl) {
		/* Never the URL itself: it may hold a password. */
		snprintf(err, errlen, "rabbitmq: the URL is not "
		    "amqp://[user[:password]@]host[:port][/vhost]");
		free(copy);
		return -1;
	}
	rb = util_xcalloc(1, sizeof(*rb));
	rb->bus = bus;
	rb->host = util_xstrdup(ci.host);
	rb->port = ci.port;
	rb->user = util_xstrdup(ci.user);
	rb->pass = util_xstrdup(ci.password);
	rb->vhost = util_xstrdup(ci.vhost);
	free(copy);
	rb->name = util_xstrdup(name != NULL ? name : "sagad");
	snprintf(rb->where, sizeof(rb->where), "%.100s:%d/%.80s", rb->host,
	    rb->port, rb->vhost);
	snprintf(rb->xwork, sizeof(rb->xwork), "%s.work", bus->stream);
	snprintf(rb->xretry, sizeof(rb->xretry), "%s.retry", bus->stream);
	snprintf(rb->xnotify, sizeof(rb->xnotify), "%s.notify", bus->stream);
	snprintf(rb->unrouted, sizeof(rb->unrouted), "%s.unrouted",
	    bus->stream);
	rb->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&rb->mu, NULL);
	pthread_cond_init(&rb->cv, NULL);
	TAILQ_INIT(&rb->cmds);
	TAILQ_INIT(&rb->pends);
	LIST_INIT(&rb->consumers);
	LIST_INIT(&rb->listeners);
	rb->wait_ms = bus->reconnect_wait_ms;
	bus->drv_data = rb;
	if (rb->wakefd == -1) {
		snprintf(err, errlen, "rabbitmq: eventfd: %s", strerror(errno));
		goto fail;
	}
	/* The first attempt here, so that a broker that is up is up now. */
	if (rmq_connect(rb, rb->lasterr, sizeof(rb->lasterr)) == 0) {
		bus->state = BUS_CONNECTED;
		rb->connected = 1;
		rb->ever = 1;
	}
	if ((rc = pthread_create(&rb->thread, NULL, rmq_main, rb)) != 0) {
		snprintf(err, errlen, "rabbitmq: pthread_create: %s",
		    strerror(rc));
		if (rb->conn != NULL)
			rmq_drop(rb, NULL);
		goto fail;
	}
	rb->started = 1;
	return 0;
fail:
	if (rb->wakefd != -1)
		close(rb->wakefd);
	pthread_cond_destroy(&rb->cv);
	pthread_mutex_destroy(&rb->mu);
	free(rb->host);
	free(rb->user);
	free(rb->pass);
	free(rb->vhost);
	free(rb->name);
	free(rb);
	bus->drv_data = NULL;
	return -1;
}

static void
rmq_close(struct bus *bus)
{
	struct rmq_bus	*rb = bus->drv_data;
	struct rmq_cmd	*cmd;
	size_t		 i;

	pthread_mutex_lock(&rb->mu);
	rb->stop = 1;
	pthread_mutex_unlock(&rb->mu);
	rmq_wake(rb);
	if (rb->started)
		pthread_join(rb->thread, NULL);
	while ((cmd = TAILQ_FIRST(&rb->cmds)) != NULL) {
		TAILQ_REMOVE(&rb->cmds, cmd, entry);
		rmq_cmd_free(cmd);
	}
	for (i = 0; i < rb->nqueues; i++)
		free(rb->queues[i]);
	free(rb->queues);
	for (i = 0; i < rb->nknown; i++)
		free(rb->known[i]);
	free(rb->known);
	close(rb->wakefd);
	pthread_cond_destroy(&rb->cv);
	pthread_mutex_destroy(&rb->mu);
	explicit_bzero(rb->pass, strlen(rb->pass));
	free(rb->host);
	free(rb->user);
	free(rb->pass);
	free(rb->vhost);
	free(rb->name);
	free(rb);
	bus->drv_data = NULL;
}

/* --- commands from the loop ---------------------------------------------------- */

/*
 * Only a command that finds the queue empty wakes the thread: it takes
 * commands until the queue is empty before it sleeps again.
 */
static void
rmq_enqueue(struct rmq_bus *rb, struct rmq_cmd *cmd)
{
	int	was_empty;

	pthread_mutex_lock(&rb->mu);
	was_empty = TAILQ_EMPTY(&rb->cmds);
	TAILQ_INSERT_TAIL(&rb->cmds, cmd, entry);
	pthread_mutex_unlock(&rb->mu);
	if (was_empty)
		rmq_wake(rb);
}

/*
 * Runs cmd on the thread and waits up to the bus's timeout for it. Returns
 * its result; err gets its error. On a timeout the thread frees it later.
 */
static int
rmq_call(struct rmq_bus *rb, struct rmq_cmd *cmd, uint64_t *count, char *err,
    size_t errlen)
{
	struct timespec	ts;
	int		rc;

	cmd->sync = 1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += rb->bus->timeout_ms / 1000 + 1;
	pthread_mutex_lock(&rb->mu);
	TAILQ_INSERT_TAIL(&rb->cmds, cmd, entry);
	rmq_wake(rb);
	while (!cmd->done)
		if (pthread_cond_timedwait(&rb->cv, &rb->mu, &ts) != 0)
			break;
	if (!cmd->done) {
		cmd->abandoned = 1;
		pthread_mutex_unlock(&rb->mu);
		snprintf(err, errlen, "rabbitmq: %s: no answer in %d ms",
		    rb->where, rb->bus->timeout_ms);
		return -1;
	}
	pthread_mutex_unlock(&rb->mu);
	rc = cmd->rc_;
	if (rc == -1)
		snprintf(err, errlen, "%s", cmd->err);
	if (count != NULL)
		*count = cmd->count;
	rmq_cmd_free(cmd);
	return rc;
}

static struct rmq_cmd *
rmq_cmd_new(enum rmq_cmd_kind kind)
{
	struct rmq_cmd	*cmd = util_xcalloc(1, sizeof(*cmd));

	cmd->kind = kind;
	return cmd;
}

static int
rmq_declare(struct bus *bus, const char *const *subjects, size_t n,
    char *err, size_t errlen)
{
	(void)subjects;
	(void)n;
	return rmq_call(bus->drv_data, rmq_cmd_new(RC_DECLARE), NULL, err,
	    errlen);
}

static int
rmq_depth(struct bus *bus, uint64_t *msgs, char *err, size_t errlen)
{
	return rmq_call(bus->drv_data, rmq_cmd_new(RC_DEPTH), msgs, err,
	    errlen);
}

static int
rmq_consumer_open(struct bus_consumer *c, char *err, size_t errlen)
{
	struct rmq_bus		*rb = c->bus->drv_data;
	struct rmq_consumer	*rc;
	struct rmq_cmd		*cmd;

	if (strlen(c->filter) >= RMQ_NAME_MAX) {
		snprintf(err, errlen, "rabbitmq: consumer %s: queue name %s "
		    "is too long", c->durable, c->filter);
		return -1;
	}

	rc = util_xcalloc(1, sizeof(*rc));
	rc->c = c;
	TAILQ_INIT(&rc->ready);
	pthread_cond_init(&rc->cv, NULL);
	pthread_mutex_lock(&rb->mu);
	snprintf(rc->tag, sizeof(rc->tag), "c%u", ++rb->ntags);
	pthread_mutex_unlock(&rb->mu);
	c->drv = rc;
	cmd = rmq_cmd_new(RC_CONSUME);
	cmd->rc = rc;
	if (rmq_call(rb, cmd, NULL, err, errlen) == -1) {
		/* Off the list, its deliveries given back. */
		cmd = rmq_cmd_new(RC_CANCEL);
		cmd->rc = rc;
		(void)rmq_call(rb, cmd, NULL, NULL, 0);
		pthread_cond_destroy(&rc->cv);
		free(rc);
		c->drv = NULL;
		return -1;
	}
	return 0;
}

static void
rmq_consumer_free(struct bus_consumer *c)
{
	struct rmq_bus		*rb = c->bus->drv_data;
	struct rmq_consumer	*rc = c->drv;
	struct rmq_cmd		*cmd;

	if (rc == NULL)
		return;
	/* The thread cancels it and gives its unfetched messages back. */
	cmd = rmq_cmd_new(RC_CANCEL);
	cmd->rc = rc;
	(void)rmq_call(rb, cmd, NULL, NULL, 0);
	pthread_cond_destroy(&rc->cv);
	free(rc);
	c->drv = NULL;
}

/* On bus.c's fetch thread: what the broker delivered, up to max. */
static int
rmq_fetch(struct bus_consumer *c, struct bus_msg **out, int max, int wait_ms)
{
	struct rmq_bus		*rb = c->bus->drv_data;
	struct rmq_consumer	*rc = c->drv;
	struct rmq_msg		*rm;
	struct timespec		 ts;
	int			 n = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += wait_ms / 1000;
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&rb->mu);
	while (TAILQ_EMPTY(&rc->ready) && !rb->stop)
		if (pthread_cond_timedwait(&rc->cv, &rb->mu, &ts) != 0)
			break;
	while (n < max && (rm = TAILQ_FIRST(&rc->ready)) != NULL) {
		TAILQ_REMOVE(&rc->ready, rm, entry);
		out[n++] = rm->m;
	}
	pthread_mutex_unlock(&rb->mu);
	return n;
}

static int
rmq_finish(struct bus_msg *m, enum bus_finish how, int delay_ms)
{
	struct rmq_bus	*rb = m->c->bus->drv_data;
	struct rmq_msg	*rm = m->drv;
	struct rmq_cmd	*cmd;

	if (how == BUS_PROGRESS)
		return 0;	/* no redelivery clock to restart */
	switch (how) {
	case BUS_ACK:
		cmd = rmq_cmd_new(RC_ACK);
		break;
	case BUS_TERM:
		cmd = rmq_cmd_new(RC_DROP);
		break;
	default:
		if (delay_ms <= 0) {
			cmd = rmq_cmd_new(RC_REQUEUE);
			break;
		}
		/* The copy takes the message's body and names. */
		cmd = rmq_cmd_new(RC_RETRY);
		cmd->subject = rm->subject;
		cmd->msg_id = rm->msg_id;
		cmd->data = rm->body;
		cmd->len = rm->len;
		cmd->delivered = rm->delivered;
		cmd->delay_ms = delay_ms;
		rm->subject = rm->msg_id = NULL;
		rm->body = NULL;
		m->subject = "";
		m->data = NULL;
		m->len = 0;
		break;
	}
	cmd->tag = rm->tag;
	cmd->epoch = rm->epoch;
	rmq_enqueue(rb, cmd);
	return 0;
}

static const char *
rmq_header(const struct bus_msg *m, const char *key)
{
	const struct rmq_msg	*rm = m->drv;

	if (rm != NULL && strcmp(key, "Nats-Msg-Id") == 0)
		return rm->msg_id;
	return NULL;
}

static void
rmq_msg_free(struct bus_msg *m)
{
	rmq_rmsg_free(m->drv);
	m->drv = NULL;
}

static int
rmq_publish(struct bus *bus, struct bus_pub *p, const char *subject,
    const void *data, size_t len, const char *msg_id, char *err,
    size_t errlen)
{
	struct rmq_bus	*rb = bus->drv_data;
	struct rmq_cmd	*cmd;
	int		 up;

	if (strlen(subject) >= RMQ_NAME_MAX) {
		snprintf(err, errlen, "rabbitmq: publish %s: subject too long",
		    subject);
		return -1;
	}
	pthread_mutex_lock(&rb->mu);
	up = rb->connected;
	pthread_mutex_unlock(&rb->mu);
	if (!up) {
		snprintf(err, errlen, "rabbitmq: publish %s: not connected to "
		    "%s", subject, rb->where);
		return -1;
	}
	cmd = rmq_cmd_new(RC_PUBLISH);
	cmd->pub = p;
	cmd->subject = util_xstrdup(subject);
	cmd->msg_id = msg_id != NULL ? util_xstrdup(msg_id) : NULL;
	cmd->data = util_xcalloc(1, len > 0 ? len : 1);
	if (len > 0)
		memcpy(cmd->data, data, len);
	cmd->len = len;
	/* Listed before it is sent, as bus_close answers what is listed. */
	p->drv = p;
	pthread_mutex_lock(&bus->mu);
	TAILQ_INSERT_TAIL(&bus->pubs, p, pending);
	pthread_mutex_unlock(&bus->mu);
	rmq_enqueue(rb, cmd);
	return 0;
}

static int
rmq_notify(struct bus *bus, const char *subject, const void *data,
    size_t len, char *err, size_t errlen)
{
	struct rmq_bus	*rb = bus->drv_data;
	struct rmq_cmd	*cmd;
	int		 up;

	pthread_mutex_lock(&rb->mu);
	up = rb->connected;
	pthread_mutex_unlock(&rb->mu);
	if (!up) {
		snprintf(err, errlen, "rabbitmq: notify %s: not connected",
		    subject);
		return -1;
	}
	cmd = rmq_cmd_new(RC_NOTIFY);
	cmd->subject = util_xstrdup(subject);
	cmd->data = util_xcalloc(1, len > 0 ? len : 1);
	if (len > 0)
		memcpy(cmd->data, data, len);
	cmd->len = len;
	rmq_enqueue(rb, cmd);
	return 0;
}

static int
rmq_listen(struct bus_listener *l, char *err, size_t errlen)
{
	struct rmq_bus		*rb = l->bus->drv_data;
	struct rmq_listener	*rl;
	struct rmq_cmd		*cmd;
	int			 up;

	rl = util_xcalloc(1, sizeof(*rl));
	rl->l = l;
	pthread_mutex_lock(&rb->mu);
	snprintf(rl->tag, sizeof(rl->tag), "l%u", ++rb->ntags);
	up = rb->connected;
	pthread_mutex_unlock(&rb->mu);
	l->drv = rl;
	cmd = rmq_cmd_new(RC_LISTEN);
	cmd->rl = rl;
	/* Listed in any case; it is bound at every (re)connection. */
	if (rmq_call(rb, cmd, NULL, err, errlen) == -1 && up) {
		cmd = rmq_cmd_new(RC_UNLISTEN);
		cmd->rl = rl;
		(void)rmq_call(rb, cmd, NULL, NULL, 0);
		free(rl);
		l->drv = NULL;
		return -1;
	}
	return 0;
}

static void
rmq_unlisten(struct bus_listener *l)
{
	struct rmq_bus		*rb = l->bus->drv_data;
	struct rmq_cmd		*cmd;

	if (l->drv == NULL)
		return;
	cmd = rmq_cmd_new(RC_UNLISTEN);
	cmd->rl = l->drv;
	(void)rmq_call(rb, cmd, NULL, NULL, 0);
	free(l->drv);
	l->drv = NULL;
}

/* --- the connection thread: topology ------------------------------------------ */

static amqp_table_t
rmq_queue_args(struct rmq_bus *rb, amqp_table_entry_t *e)
{
	amqp_table_t	t;

	e[0].key = amqp_cstring_bytes("x-queue-type");
	e[0].value.kind = AMQP_FIELD_KIND_UTF8;
	e[0].value.value.bytes = amqp_cstring_bytes(rb->bus->queue_type);
	t.num_entries = 1;
	t.entries = e;
	return t;
}

static int
rmq_exchanges(struct rmq_bus *rb, char *err, size_t errlen)
{
	amqp_table_entry_t	ae[1], qe[1];
	amqp_table_t		aargs;

	if (rb->declared)
		return 0;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->unrouted), amqp_cstring_bytes("fanout"), 0,
	    1, 0, 0, amqp_empty_table);
	if (rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1)
		return -1;
	amqp_queue_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->unrouted), 0, 1, 0, 0,
	    rmq_queue_args(rb, qe));
	if (rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1)
		return -1;
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(rb->unrouted),
	    amqp_cstring_bytes(rb->unrouted), amqp_cstring_bytes(""),
	    amqp_empty_table);
	if (rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1)
		return -1;
	ae[0].key = amqp_cstring_bytes("alternate-exchange");
	ae[0].value.kind = AMQP_FIELD_KIND_UTF8;
	ae[0].value.value.bytes = amqp_cstring_bytes(rb->unrouted);
	aargs.num_entries = 1;
	aargs.entries = ae;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->xwork), amqp_cstring_bytes("topic"), 0, 1,
	    0, 0, aargs);
	if (rmq_rpc_ok(rb, rb->xwork, err, errlen) == -1)
		return -1;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->xretry), amqp_cstring_bytes("headers"), 0,
	    1, 0, 0, amqp_empty_table);
	if (rmq_rpc_ok(rb, rb->xretry, err, errlen) == -1)
		return -1;
	amqp_exchange_declare(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(rb->xnotify), amqp_cstring_bytes("direct"), 0,
	    1, 0, 0, amqp_empty_table);
	if (rmq_rpc_ok(rb, rb->xnotify, err, errlen) == -1)
		return -1;
	rb->declared = 1;
	return 0;
}

static int
rmq_has(char *const *list, size_t n, const char *s)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return 1;
	return 0;
}

static void
rmq_add(char ***list, size_t *n, const char *s)
{
	*list = util_xrealloc(*list, (*n + 1) * sizeof(**list));
	(*list)[(*n)++] = util_xstrdup(s);
}

/*
 * The durable queue of a consumer's filter, bound to the work exchange
 * with the filter as its pattern.
 */
static int
rmq_work_queue(struct rmq_bus *rb, const char *filter, char *err,
    size_t errlen)
{
	amqp_table_entry_t	e[1];
	char			pattern[RMQ_NAME_MAX];
	size_t			i;

	if (rmq_has(rb->queues, rb->nqueues, filter))
		return 0;
	if (rmq_exchanges(rb, err, errlen) == -1)
		return -1;
	snprintf(pattern, sizeof(pattern), "%s", filter);
	for (i = 0; pattern[i] != '\0'; i++)
		if (pattern[i] == '>')
			pattern[i] = '#';
	amqp_queue_declare(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(filter),
	    0, 1, 0, 0, rmq_queue_args(rb, e));
	if (rmq_rpc_ok(rb, filter, err, errlen) == -1)
		return -1;
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(filter),
	    amqp_cstring_bytes(rb->xwork), amqp_cstring_bytes(pattern),
	    amqp_empty_table);
	if (rmq_rpc_ok(rb, filter, err, errlen) == -1)
		return -1;
	rmq_add(&rb->queues, &rb->nqueues, filter);
	if (!rmq_has(rb->known, rb->nknown, filter))
		rmq_add(&rb->known, &rb->nknown, filter);
	return 0;
}

/* The classic queue of one retry delay: TTL, then back to the work. */
static int
rmq_retry_queue(struct rmq_bus *rb, int i, char *err, size_t errlen)
{
	amqp_table_entry_t	qe[3], be[2];
	amqp_table_t		qa, ba;
	char			q[RMQ_NAME_MAX + 32], ms[16];

	if (rb->retry_made & (1u << i))
		return 0;
	if (rmq_exchanges(rb, err, errlen) == -1)
		return -1;
	snprintf(q, sizeof(q), "%s.%d", rb->xretry, rmq_ladder[i]);
	snprintf(ms, sizeof(ms), "%d", rmq_ladder[i]);
	qe[0].key = amqp_cstring_bytes("x-queue-type");
	qe[0].value.kind = AMQP_FIELD_KIND_UTF8;
	qe[0].value.value.bytes = amqp_cstring_bytes("classic");
	qe[1].key = amqp_cstring_bytes("x-message-ttl");
	qe[1].value.kind = AMQP_FIELD_KIND_I32;
	qe[1].value.value.i32 = rmq_ladder[i];
	qe[2].key = amqp_cstring_bytes("x-dead-letter-exchange");
	qe[2].value.kind = AMQP_FIELD_KIND_UTF8;
	qe[2].value.value.bytes = amqp_cstring_bytes(rb->xwork);
	qa.num_entries = 3;
	qa.entries = qe;
	amqp_queue_declare(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(q), 0, 1,
	    0, 0, qa);
	if (rmq_rpc_ok(rb, q, err, errlen) == -1)
		return -1;
	be[0].key = amqp_cstring_bytes("x-match");
	be[0].value.kind = AMQP_FIELD_KIND_UTF8;
	be[0].value.value.bytes = amqp_cstring_bytes("all");
	be[1].key = amqp_cstring_bytes(RMQ_HDR_DELAY);
	be[1].value.kind = AMQP_FIELD_KIND_UTF8;
	be[1].value.value.bytes = amqp_cstring_bytes(ms);
	ba.num_entries = 2;
	ba.entries = be;
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, amqp_cstring_bytes(q),
	    amqp_cstring_bytes(rb->xretry), amqp_cstring_bytes(""), ba);
	if (rmq_rpc_ok(rb, q, err, errlen) == -1)
		return -1;
	rb->retry_made |= 1u << i;
	return 0;
}

/*
 * basic.consume without waiting for consume-ok (nowait): RabbitMQ 3.10 may
 * hold a quorum queue's consume-ok back after a restart while its
 * deliveries flow, and a refusal comes back as a channel.close anyway,
 * which ends the connection. Takes queue (allocated) and frees it.
 */
static int
rmq_consume(struct rmq_bus *rb, char *queue, const char *tag, int no_ack,
    char *err, size_t errlen)
{
	amqp_basic_consume_t	req;
	int			st;

	memset(&req, 0, sizeof(req));
	req.queue = amqp_cstring_bytes(queue);
	req.consumer_tag = amqp_cstring_bytes(tag);
	req.no_ack = no_ack;
	req.exclusive = no_ack;	/* a listener's queue is its own */
	req.nowait = 1;
	req.arguments = amqp_empty_table;
	st = amqp_send_method(rb->conn, RMQ_CHANNEL, AMQP_BASIC_CONSUME_METHOD,
	    &req);
	if (st != AMQP_STATUS_OK)
		snprintf(err, errlen, "rabbitmq: consume %s: %s", queue,
		    amqp_error_string2(st));
	free(queue);
	return st == AMQP_STATUS_OK ? 0 : -1;
}

static int	rmq_read(struct rmq_bus *, char *, size_t);

/*
 * Work that waited in the unrouted queue goes through the work exchange
 * again, now that a queue may take it (what still finds none comes back).
 * On its own channel: get, publish confirmed, then ack the gets. Bounded
 * by what waited when it began.
 */
#define RMQ_MOVE_BATCH	256

struct rmq_moved {
	amqp_bytes_t		 rkey;
	amqp_message_t		 msg;
};

/*
 * Work that waited in the unrouted queue goes through the work exchange
 * again, now that a queue may take it (what still finds none comes back).
 * On its own channel, by batches: get them all (a confirm arriving between
 * a get-ok and its content would confuse rabbitmq-c), publish them
 * confirmed, then ack the gets. Bounded by what waited when it began.
 */
static int
rmq_move_unrouted(struct rmq_bus *rb, char *err, size_t errlen)
{
	amqp_queue_declare_ok_t	*ok;
	amqp_basic_get_ok_t	*g;
	amqp_rpc_reply_t	 r;
	struct rmq_moved	*mv;
	struct pollfd		 pfd;
	uint64_t		 last_tag, want;
	uint32_t		 left;
	int64_t			 end;
	int			 n, i, st, rv = -1;

	ok = amqp_queue_declare(rb->conn, RMQ_MOVE_CHANNEL,
	    amqp_cstring_bytes(rb->unrouted), 1, 0, 0, 0, amqp_empty_table);
	if (rmq_rpc_ok(rb, rb->unrouted, err, errlen) == -1 || ok == NULL)
		return -1;
	left = ok->message_count;
	mv = util_xcalloc(RMQ_MOVE_BATCH, sizeof(*mv));
	while (left > 0) {
		last_tag = 0;
		for (n = 0; n < RMQ_MOVE_BATCH && left > 0; n++, left--) {
			r = amqp_basic_get(rb->conn, RMQ_MOVE_CHANNEL,
			    amqp_cstring_bytes(rb->unrouted), 0);
			if (r.reply_type != AMQP_RESPONSE_NORMAL) {
				rmq_reply_error(r, rb->unrouted, err, errlen);
				goto out;
			}
			if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
				left = 0;	/* another worker took them */
				break;
			}
			g = r.reply.decoded;
			last_tag = g->delivery_tag;
			mv[n].rkey = amqp_bytes_malloc_dup(g->routing_key);
			r = amqp_read_message(rb->conn, RMQ_MOVE_CHANNEL,
			    &mv[n].msg, 0);
			if (r.reply_type != AMQP_RESPONSE_NORMAL) {
				amqp_bytes_free(mv[n].rkey);
				rmq_reply_error(r, rb->unrouted, err, errlen);
				goto out;
			}
		}
		for (i = 0; i < n; i++) {
			st = amqp_basic_publish(rb->conn, RMQ_MOVE_CHANNEL,
			    amqp_cstring_bytes(rb->xwork), mv[i].rkey, 0, 0,
			    &mv[i].msg.properties, mv[i].msg.body);
			if (st != AMQP_STATUS_OK) {
				snprintf(err, errlen, "rabbitmq: move %s: %s",
				    rb->unrouted, amqp_error_string2(st));
				goto out;
			}
			rb->move_seq++;
		}
		for (i = 0; i < n; i++) {
			amqp_bytes_free(mv[i].rkey);
			amqp_destroy_message(&mv[i].msg);
		}
		n = 0;
		if (last_tag == 0)
			break;
		/* The copies confirmed, the originals go. */
		want = rb->move_seq;
		end = util_mono_ms() + rb->bus->publish_timeout_ms;
		while (rb->move_acked < want && !rb->move_nacked &&
		    util_mono_ms() < end) {
			pfd.fd = amqp_get_sockfd(rb->conn);
			pfd.events = POLLIN;
			pfd.revents = 0;
			if (!amqp_frames_enqueued(rb->conn) &&
			    !amqp_data_in_buffer(rb->conn))
				(void)poll(&pfd, 1, 100);
			if (rmq_read(rb, err, errlen) == -1)
				goto out;
		}
		if (rb->move_acked < want || rb->move_nacked) {
			/* The gets return to the queue with the connection. */
			snprintf(err, errlen, "rabbitmq: moving %s: not "
			    "confirmed", rb->unrouted);
			goto out;
		}
		if (amqp_basic_ack(rb->conn, RMQ_MOVE_CHANNEL, last_tag, 1) !=
		    AMQP_STATUS_OK) {
			snprintf(err, errlen, "rabbitmq: ack %s", rb->unrouted);
			goto out;
		}
	}
	n = 0;
	rv = 0;
out:
	for (i = 0; rv == -1 && i < n; i++) {
		amqp_bytes_free(mv[i].rkey);
		amqp_destroy_message(&mv[i].msg);
	}
	free(mv);
	return rv;
}

static int
rmq_start_consumer(struct rmq_bus *rb, struct rmq_consumer *rc, char *err,
    size_t errlen)
{
	int	prefetch = rc->c->concurrency;

	if (rmq_work_queue(rb, rc->c->filter, err, errlen) == -1)
		return -1;
	/* Per consumer: concurrency here, workers x concurrency per topic. */
	amqp_basic_qos(rb->conn, RMQ_CHANNEL, 0,
	    (uint16_t)(prefetch > 65535 ? 65535 : prefetch), 0);
	if (rmq_rpc_ok(rb, "basic.qos", err, errlen) == -1)
		return -1;
	if (rmq_consume(rb, util_xstrdup(rc->c->filter), rc->tag, 0, err,
	    errlen) == -1)
		return -1;
	rc->active = 1;
	return rmq_move_unrouted(rb, err, errlen);
}

static int
rmq_start_listener(struct rmq_bus *rb, struct rmq_listener *rl, char *err,
    size_t errlen)
{
	amqp_queue_declare_ok_t	*ok;
	amqp_bytes_t		 q;
	int			 rv;

	if (rmq_exchanges(rb, err, errlen) == -1)
		return -1;
	ok = amqp_queue_declare(rb->conn, RMQ_CHANNEL, amqp_empty_bytes, 0, 0,
	    1, 1, amqp_empty_table);
	if (rmq_rpc_ok(rb, rl->l->subject, err, errlen) == -1 || ok == NULL)
		return -1;
	q = amqp_bytes_malloc_dup(ok->queue);
	amqp_queue_bind(rb->conn, RMQ_CHANNEL, q,
	    amqp_cstring_bytes(rb->xnotify), amqp_cstring_bytes(rl->l->subject),
	    amqp_empty_table);
	if (rmq_rpc_ok(rb, rl->l->subject, err, errlen) == -1) {
		amqp_bytes_free(q);
		return -1;
	}
	rv = rmq_consume(rb, rmq_strndup(q.bytes, q.len), rl->tag, 1, err,
	    errlen);
	amqp_bytes_free(q);
	if (rv == -1)
		return -1;
	rl->active = 1;
	return 0;
}

/* --- the connection thread: connecting and losing ------------------------------ */

static int
rmq_connect(struct rmq_bus *rb, char *err, size_t errlen)
{
	amqp_socket_t		*sock;
	amqp_table_entry_t	 pe[1];
	amqp_table_t		 props;
	amqp_rpc_reply_t	 r;
	struct timeval		 tv;
	int			 st;

	tv.tv_sec = rb->bus->timeout_ms / 1000;
	tv.tv_usec = (rb->bus->timeout_ms % 1000) * 1000;
	rb->conn = amqp_new_connection();
	if ((sock = amqp_tcp_socket_new(rb->conn)) == NULL) {
		snprintf(err, errlen, "rabbitmq: cannot make a socket");
		goto fail;
	}
	if ((st = amqp_socket_open_noblock(sock, rb->host, rb->port, &tv)) !=
	    AMQP_STATUS_OK) {
		snprintf(err, errlen, "rabbitmq: %s: %s", rb->where,
		    amqp_error_string2(st));
		goto fail;
	}
	amqp_set_handshake_timeout(rb->conn, &tv);
	amqp_set_rpc_timeout(rb->conn, &tv);
	pe[0].key = amqp_cstring_bytes("connection_name");
	pe[0].value.kind = AMQP_FIELD_KIND_UTF8;
	pe[0].value.value.bytes = amqp_cstring_bytes(rb->name);
	props.num_entries = 1;
	props.entries = pe;
	r = amqp_login_with_properties(rb->conn, rb->vhost, 0, RMQ_FRAME_MAX,
	    RMQ_HEARTBEAT_S, &props, AMQP_SASL_METHOD_PLAIN, rb->user,
	    rb->pass);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		rmq_reply_error(r, rb->where, err, errlen);
		goto fail;
	}
	amqp_channel_open(rb->conn, RMQ_CHANNEL);
	if (rmq_rpc_ok(rb, "channel.open", err, errlen) == -1)
		goto fail;
	amqp_confirm_select(rb->conn, RMQ_CHANNEL);
	if (rmq_rpc_ok(rb, "confirm.select", err, errlen) == -1)
		goto fail;
	amqp_channel_open(rb->conn, RMQ_MOVE_CHANNEL);
	if (rmq_rpc_ok(rb, "channel.open", err, errlen) == -1)
		goto fail;
	amqp_confirm_select(rb->conn, RMQ_MOVE_CHANNEL);
	if (rmq_rpc_ok(rb, "confirm.select", err, errlen) == -1)
		goto fail;
	rb->move_seq = rb->move_acked = 0;
	rb->move_nacked = 0;
	rb->epoch++;
	rb->next_seq = 1;
	rb->declared = 0;
	rb->retry_made = 0;
	if (rmq_exchanges(rb, err, errlen) == -1)
		goto fail;
	return 0;
fail:
	amqp_destroy_connection(rb->conn);
	rb->conn = NULL;
	return -1;
}

/*
 * The connection is gone (or being closed): everything tied to it goes.
 * Unanswered publishes fail with why; deliveries not fetched are dropped,
 * as the broker gives them to someone again.
 */
static void
rmq_drop(struct rmq_bus *rb, const char *why)
{
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	struct rmq_pend		*pd;
	struct rmq_msg		*rm;
	struct rmq_msgs		 dead;
	char			 msg[SAGAD_ERRLEN];
	size_t			 i;

	if (rb->conn != NULL) {
		amqp_destroy_connection(rb->conn);
		rb->conn = NULL;
	}
	snprintf(msg, sizeof(msg), "rabbitmq: connection to %s lost before "
	    "the broker confirmed%s%s", rb->where, why != NULL ? ": " : "",
	    why != NULL ? why : "");
	while ((pd = TAILQ_FIRST(&rb->pends)) != NULL) {
		TAILQ_REMOVE(&rb->pends, pd, entry);
		rmq_answer(rb, pd->pub, msg, pd->seq);
		rmq_pend_free(pd);
	}
	for (i = 0; i < rb->nqueues; i++)
		free(rb->queues[i]);
	free(rb->queues);
	rb->queues = NULL;
	rb->nqueues = 0;
	free(rb->in.rkey);
	free(rb->in.msg_id);
	free(rb->in.body);
	memset(&rb->in, 0, sizeof(rb->in));
	TAILQ_INIT(&dead);
	pthread_mutex_lock(&rb->mu);
	rb->connected = 0;
	LIST_FOREACH(rc, &rb->consumers, entry) {
		rc->active = 0;
		TAILQ_CONCAT(&dead, &rc->ready, entry);
	}
	LIST_FOREACH(rl, &rb->listeners, entry)
		rl->active = 0;
	pthread_mutex_unlock(&rb->mu);
	/*
	 * bus.c counted nothing for these yet: they are the driver's own.
	 * Freed here, their bus_msg shells too.
	 */
	while ((rm = TAILQ_FIRST(&dead)) != NULL) {
		TAILQ_REMOVE(&dead, rm, entry);
		free(rm->m);
		rmq_rmsg_free(rm);
	}
}

/* --- the connection thread: commands ------------------------------------------- */

static void
rmq_sync_done(struct rmq_bus *rb, struct rmq_cmd *cmd, int rc)
{
	pthread_mutex_lock(&rb->mu);
	cmd->rc_ = rc;
	cmd->done = 1;
	if (cmd->abandoned) {
		pthread_mutex_unlock(&rb->mu);
		rmq_cmd_free(cmd);
		return;
	}
	pthread_cond_broadcast(&rb->cv);
	pthread_mutex_unlock(&rb->mu);
}

static int
rmq_basic_publish(struct rmq_bus *rb, const char *exchange,
    const char *rkey, const void *data, size_t len, const char *msg_id,
    int delivered, int delay_ms, int confirm)
{
	amqp_basic_properties_t	props;
	amqp_table_entry_t	h[3];
	amqp_bytes_t		body;
	char			corr[24], delay[16];
	int			nh = 0;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
	    AMQP_BASIC_CORRELATION_ID_FLAG;
	props.delivery_mode = confirm ? 2 : 1;
	snprintf(corr, sizeof(corr), "%" PRIu64, rb->next_seq);
	props.correlation_id = amqp_cstring_bytes(corr);
	if (msg_id != NULL) {
		props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		props.message_id = amqp_cstring_bytes(msg_id);
	}
	if (delivered > 0) {
		h[nh].key = amqp_cstring_bytes(RMQ_HDR_DELIVERED);
		h[nh].value.kind = AMQP_FIELD_KIND_I32;
		h[nh++].value.value.i32 = delivered;
	}
	if (confirm && rmq_tainted(rb, msg_id)) {
		h[nh].key = amqp_cstring_bytes(RMQ_HDR_AGAIN);
		h[nh].value.kind = AMQP_FIELD_KIND_I32;
		h[nh++].value.value.i32 = 1;
	}
	if (delay_ms > 0) {
		snprintf(delay, sizeof(delay), "%d", delay_ms);
		h[nh].key = amqp_cstring_bytes(RMQ_HDR_DELAY);
		h[nh].value.kind = AMQP_FIELD_KIND_UTF8;
		h[nh++].value.value.bytes = amqp_cstring_bytes(delay);
	}
	if (nh > 0) {
		props._flags |= AMQP_BASIC_HEADERS_FLAG;
		props.headers.num_entries = nh;
		props.headers.entries = h;
	}
	body.bytes = (void *)(uintptr_t)data;
	body.len = len;
	rb->next_seq++;		/* every publish counts in confirm mode */
	return amqp_basic_publish(rb->conn, RMQ_CHANNEL,
	    amqp_cstring_bytes(exchange), amqp_cstring_bytes(rkey),
	    confirm, 0, &props, body);
}

static struct rmq_pend *
rmq_pend_add(struct rmq_bus *rb, uint64_t seq, struct bus_pub *pub,
    const char *subject)
{
	struct rmq_pend	*pd = util_xcalloc(1, sizeof(*pd));

	pd->seq = seq;
	pd->pub = pub;
	pd->subject = subject != NULL ? util_xstrdup(subject) : NULL;
	pd->deadline = util_mono_ms() + rb->bus->publish_timeout_ms;
	TAILQ_INSERT_TAIL(&rb->pends, pd, entry);
	return pd;
}

/* Runs one command; returns -1 when the connection failed doing it. */
static int
rmq_run(struct rmq_bus *rb, struct rmq_cmd *cmd)
{
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	struct rmq_msg		*rm;
	struct rmq_pend		*pd;
	amqp_queue_declare_ok_t	*ok;
	char			 err[SAGAD_ERRLEN], q[RMQ_NAME_MAX + 32];
	uint64_t		 seq, total;
	int			 st, up = rb->conn != NULL, i, rv;
	size_t			 k;

	err[0] = '\0';
	switch (cmd->kind) {
	case RC_PUBLISH:
		if (!up) {
			snprintf(err, sizeof(err), "rabbitmq: publish %s: not "
			    "connected to %s", cmd->subject, rb->where);
			rmq_answer(rb, cmd->pub, err, 0);
			break;
		}
		seq = rb->next_seq;
		st = rmq_basic_publish(rb, rb->xwork, cmd->subject, cmd->data,
		    cmd->len, cmd->msg_id, 0, 0, 1);
		if (st != AMQP_STATUS_OK) {
			snprintf(err, sizeof(err), "rabbitmq: publish %s: %s",
			    cmd->subject, amqp_error_string2(st));
			rmq_answer(rb, cmd->pub, err, 0);
			return -1;
		}
		rmq_pend_add(rb, seq, cmd->pub, cmd->subject);
		break;
	case RC_NOTIFY:
		if (!up)
			break;
		seq = rb->next_seq;
		if (rmq_basic_publish(rb, rb->xnotify, cmd->subject, cmd->data,
		    cmd->len, NULL, 0, 0, 0) != AMQP_STATUS_OK)
			return -1;
		rmq_pend_add(rb, seq, NULL, NULL);
		break;
	case RC_ACK:
	case RC_REQUEUE:
	case RC_DROP:
		/* From an older connection: the broker took it back. */
		if (!up || cmd->epoch != rb->epoch)
			break;
		if (cmd->kind == RC_ACK)
			st = amqp_basic_ack(rb->conn, RMQ_CHANNEL, cmd->tag, 0);
		else
			st = amqp_basic_nack(rb->conn, RMQ_CHANNEL, cmd->tag, 0,
			    cmd->kind == RC_REQUEUE);
		if (st != AMQP_STATUS_OK)
			return -1;
		break;
	case RC_RETRY:
		if (!up || cmd->epoch != rb->epoch)
			break;
		i = rmq_ladder_index(cmd->delay_ms);
		if (rmq_retry_queue(rb, i, err, sizeof(err)) == -1)
			return -1;
		seq = rb->next_seq;
		if (rmq_basic_publish(rb, rb->xretry, cmd->subject, cmd->data,
		    cmd->len, cmd->msg_id, cmd->delivered + 1, rmq_ladder[i],
		    1) != AMQP_STATUS_OK)
			return -1;
		/* The original is acked once the copy is confirmed. */
		pd = rmq_pend_add(rb, seq, NULL, cmd->subject);
		pd->ack_tag = cmd->tag;
		break;
	case RC_CONSUME:
		rc = cmd->rc;
		rv = -1;
		/* Listed first: its deliveries may come before we return. */
		pthread_mutex_lock(&rb->mu);
		LIST_INSERT_HEAD(&rb->consumers, rc, entry);
		pthread_mutex_unlock(&rb->mu);
		if (!up)
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
		else if (rmq_start_consumer(rb, rc, cmd->err,
		    sizeof(cmd->err)) == 0)
			rv = 0;
		/* A failed one is taken off by the RC_CANCEL that follows. */
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	case RC_CANCEL:
		rc = cmd->rc;
		pthread_mutex_lock(&rb->mu);
		LIST_FOREACH(rc, &rb->consumers, entry)
			if (rc == cmd->rc)
				break;
		if (rc != NULL)
			LIST_REMOVE(rc, entry);
		pthread_mutex_unlock(&rb->mu);
		if (rc != NULL && up && rc->active) {
			amqp_basic_cancel(rb->conn, RMQ_CHANNEL,
			    amqp_cstring_bytes(rc->tag));
			(void)rmq_rpc_ok(rb, "basic.cancel", err, sizeof(err));
		}
		/* Delivered, never fetched: back to the broker. */
		while (rc != NULL && (rm = TAILQ_FIRST(&rc->ready)) != NULL) {
			TAILQ_REMOVE(&rc->ready, rm, entry);
			if (up && rm->epoch == rb->epoch)
				(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL,
				    rm->tag, 0, 1);
			free(rm->m);
			rmq_rmsg_free(rm);
		}
		rmq_sync_done(rb, cmd, 0);
		return 0;
	case RC_LISTEN:
		rl = cmd->rl;
		pthread_mutex_lock(&rb->mu);
		LIST_INSERT_HEAD(&rb->listeners, rl, entry);
		pthread_mutex_unlock(&rb->mu);
		rv = 0;
		if (!up) {
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
			rv = -1;
		} else if (rmq_start_listener(rb, rl, cmd->err,
		    sizeof(cmd->err)) == -1)
			rv = -1;
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	case RC_UNLISTEN:
		pthread_mutex_lock(&rb->mu);
		LIST_FOREACH(rl, &rb->listeners, entry)
			if (rl == cmd->rl)
				break;
		if (rl != NULL)
			LIST_REMOVE(rl, entry);
		pthread_mutex_unlock(&rb->mu);
		if (rl != NULL && up && rl->active) {
			amqp_basic_cancel(rb->conn, RMQ_CHANNEL,
			    amqp_cstring_bytes(rl->tag));
			(void)rmq_rpc_ok(rb, "basic.cancel", err, sizeof(err));
		}
		rmq_sync_done(rb, cmd, 0);
		return 0;
	case RC_DECLARE:
		rv = -1;
		if (!up)
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
		else if (rmq_exchanges(rb, cmd->err, sizeof(cmd->err)) == 0)
			rv = 0;
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	case RC_DEPTH:
		/*
		 * Ready messages of every work queue this bus has known, and
		 * of the unrouted queue.
		 */
		total = 0;
		rv = up ? 0 : -1;
		if (!up)
			snprintf(cmd->err, sizeof(cmd->err), "rabbitmq: not "
			    "connected to %s", rb->where);
		for (k = 0; up && k <= rb->nknown; k++) {
			snprintf(q, sizeof(q), "%s", k < rb->nknown ?
			    rb->known[k] : rb->unrouted);
			ok = amqp_queue_declare(rb->conn, RMQ_CHANNEL,
			    amqp_cstring_bytes(q), 1, 0, 0, 0,
			    amqp_empty_table);
			if (rmq_rpc_ok(rb, q, cmd->err, sizeof(cmd->err)) ==
			    -1 || ok == NULL) {
				rv = -1;
				break;
			}
			total += ok->message_count;
		}
		cmd->count = total;
		rmq_sync_done(rb, cmd, rv);
		return up && rv == -1 ? -1 : 0;
	}
	rmq_cmd_free(cmd);
	return 0;
}

/* --- the connection thread: what the broker sends -------------------------------- */

/*
 * A confirm for seq, and for every one before it when multiple. Confirms
 * may come out of order when messages went to different queues.
 */
static void
rmq_confirmed(struct rmq_bus *rb, uint64_t tag, int multiple, int ok)
{
	struct rmq_pend	*pd, *next;
	char		 err[SAGAD_ERRLEN];

	for (pd = TAILQ_FIRST(&rb->pends); pd != NULL; pd = next) {
		next = TAILQ_NEXT(pd, entry);
		if (pd->seq > tag)
			break;
		if (!multiple && pd->seq != tag)
			continue;
		TAILQ_REMOVE(&rb->pends, pd, entry);
		if (!ok)
			snprintf(err, sizeof(err), "rabbitmq: publish %s: the "
			    "broker refused it (nack)",
			    pd->subject != NULL ? pd->subject : "");
		else if (pd->returned)
			snprintf(err, sizeof(err), "rabbitmq: publish %s: no "
			    "queue took it", pd->subject);
		if (pd->ack_tag != 0) {
			/* A retry copy: only now is the original done. */
			if (ok && !pd->returned)
				(void)amqp_basic_ack(rb->conn, RMQ_CHANNEL,
				    pd->ack_tag, 0);
			else
				(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL,
				    pd->ack_tag, 0, 1);
		} else
			rmq_answer(rb, pd->pub, ok && !pd->returned ? NULL :
			    err, pd->seq);
		rmq_pend_free(pd);
	}
}

static int
rmq_int_value(const amqp_field_value_t *v, int *out)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_I8:
		*out = v->value.i8;
		return 0;
	case AMQP_FIELD_KIND_U8:
		*out = v->value.u8;
		return 0;
	case AMQP_FIELD_KIND_I16:
		*out = v->value.i16;
		return 0;
	case AMQP_FIELD_KIND_U16:
		*out = v->value.u16;
		return 0;
	case AMQP_FIELD_KIND_I32:
		*out = v->value.i32;
		return 0;
	case AMQP_FIELD_KIND_U32:
		*out = (int)v->value.u32;
		return 0;
	case AMQP_FIELD_KIND_I64:
		*out = (int)v->value.i64;
		return 0;
	case AMQP_FIELD_KIND_U64:
		*out = (int)v->value.u64;
		return 0;
	default:
		return -1;
	}
}

/* The whole of a delivery is here: to its consumer or its listener. */
static void
rmq_delivered(struct rmq_bus *rb)
{
	struct rmq_incoming	*in = &rb->in;
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	struct rmq_msg		*rm;
	struct bus_msg		*m;
	int			 handled = 0;

	pthread_mutex_lock(&rb->mu);
	LIST_FOREACH(rl, &rb->listeners, entry)
		if (strcmp(rl->tag, in->ctag) == 0)
			break;
	if (rl != NULL) {
		pthread_mutex_unlock(&rb->mu);
		bus_post_note(rl->l, in->rkey, in->body, in->got);
		return;
	}
	LIST_FOREACH(rc, &rb->consumers, entry)
		if (strcmp(rc->tag, in->ctag) == 0)
			break;
	if (rc != NULL && in->delivered > 1)
		rmq_taint_add(rb, in->msg_id);
	if (rc != NULL && (rc->c->max_deliver == 0 ||
	    in->delivered <= rc->c->max_deliver)) {
		rm = util_xcalloc(1, sizeof(*rm));
		m = util_xcalloc(1, sizeof(*m));
		rm->m = m;
		rm->tag = in->tag;
		rm->epoch = rb->epoch;
		rm->subject = in->rkey;
		rm->msg_id = in->msg_id;
		rm->body = in->body;
		rm->len = in->got;
		rm->delivered = in->delivered;
		in->rkey = in->msg_id = NULL;
		in->body = NULL;
		m->drv = rm;
		m->subject = rm->subject;
		m->data = rm->body != NULL ? rm->body : (void *)"";
		m->len = rm->len;
		m->delivered = rm->delivered;
		TAILQ_INSERT_TAIL(&rc->ready, rm, entry);
		pthread_cond_signal(&rc->cv);
		handled = 1;
	}
	pthread_mutex_unlock(&rb->mu);
	if (!handled)	/* a cancelled consumer's, or delivered too often */
		(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL, in->tag, 0,
		    rc == NULL);
}

static void
rmq_incoming_clear(struct rmq_incoming *in)
{
	free(in->rkey);
	free(in->msg_id);
	free(in->body);
	memset(in, 0, sizeof(*in));
}

/* The end of an incoming message: delivered, or a return noted. */
static void
rmq_incoming_done(struct rmq_bus *rb)
{
	struct rmq_pend	*pd;

	if (rb->in.kind == 1)
		rmq_delivered(rb);
	else if (rb->in.kind == 2)
		TAILQ_FOREACH(pd, &rb->pends, entry)
			if (pd->seq == rb->in.seq) {
				pd->returned = 1;
				break;
			}
	rmq_incoming_clear(&rb->in);
}

static void
rmq_header_frame(struct rmq_bus *rb, amqp_frame_t *f)
{
	struct rmq_incoming	*in = &rb->in;
	amqp_basic_properties_t	*p = f->payload.properties.decoded;
	int			 i, v, sagad = 0, count = 0;

	in->size = (size_t)f->payload.properties.body_size;
	in->got = 0;
	if (p != NULL && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG))
		in->msg_id = rmq_strndup(p->message_id.bytes,
		    p->message_id.len);
	if (in->kind == 2 && p != NULL &&
	    (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)) {
		char	buf[24];

		snprintf(buf, sizeof(buf), "%.*s",
		    (int)(p->correlation_id.len < 23 ? p->correlation_id.len :
		    23), (const char *)p->correlation_id.bytes);
		in->seq = strtoull(buf, NULL, 10);
	}
	if (p != NULL && (p->_flags & AMQP_BASIC_HEADERS_FLAG))
		for (i = 0; i < p->headers.num_entries; i++) {
			amqp_table_entry_t *e = &p->headers.entries[i];

			if (rmq_bytes_eq(e->key, RMQ_HDR_DELIVERED) &&
			    rmq_int_value(&e->value, &v) == 0)
				sagad = v;
			else if (rmq_bytes_eq(e->key, "x-delivery-count") &&
			    rmq_int_value(&e->value, &v) == 0)
				count = v;
			else if (rmq_bytes_eq(e->key, RMQ_HDR_AGAIN))
				in->again = 1;
		}
	/*
	 * The count so far: the retries' header, plus the broker's own
	 * returns (quorum queues count them; classic ones only flag it).
	 */
	in->delivered = sagad > 0 ? sagad : 1;
	if (in->redelivered)
		in->delivered += count > 0 ? count : 1;
	if (in->again && in->delivered < 2)
		in->delivered = 2;	/* maybe a copy of work handled again */
	in->body = util_xcalloc(1, in->size > 0 ? in->size : 1);
	if (in->size == 0)
		rmq_incoming_done(rb);
}

/* Handles one frame; returns -1 when the connection must go. */
static int
rmq_frame(struct rmq_bus *rb, amqp_frame_t *f, char *why, size_t whylen)
{
	struct rmq_incoming	*in = &rb->in;
	amqp_basic_deliver_t	*d;
	amqp_basic_ack_t	*a;
	amqp_basic_nack_t	*n;
	amqp_basic_return_t	*r;
	size_t			 take;

	if (f->channel == RMQ_MOVE_CHANNEL) {
		/* Only the confirms of moved work come on it unasked. */
		if (f->frame_type == AMQP_FRAME_METHOD &&
		    f->payload.method.id == AMQP_BASIC_ACK_METHOD) {
			a = f->payload.method.decoded;
			if (a->delivery_tag > rb->move_acked)
				rb->move_acked = a->delivery_tag;
		} else if (f->frame_type == AMQP_FRAME_METHOD &&
		    f->payload.method.id == AMQP_BASIC_NACK_METHOD)
			rb->move_nacked = 1;
		else if (f->frame_type == AMQP_FRAME_METHOD &&
		    f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
			snprintf(why, whylen, "the broker closed the move "
			    "channel");
			return -1;
		}
		return 0;
	}
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		switch (f->payload.method.id) {
		case AMQP_BASIC_ACK_METHOD:
			a = f->payload.method.decoded;
			rmq_confirmed(rb, a->delivery_tag, a->multiple, 1);
			return 0;
		case AMQP_BASIC_NACK_METHOD:
			n = f->payload.method.decoded;
			rmq_confirmed(rb, n->delivery_tag, n->multiple, 0);
			return 0;
		case AMQP_BASIC_DELIVER_METHOD:
			d = f->payload.method.decoded;
			rmq_incoming_clear(in);
			in->kind = 1;
			snprintf(in->ctag, sizeof(in->ctag), "%.*s",
			    (int)d->consumer_tag.len,
			    (const char *)d->consumer_tag.bytes);
			in->tag = d->delivery_tag;
			in->redelivered = d->redelivered;
			in->rkey = rmq_strndup(d->routing_key.bytes,
			    d->routing_key.len);
			return 0;
		case AMQP_BASIC_RETURN_METHOD:
			r = f->payload.method.decoded;
			rmq_incoming_clear(in);
			in->kind = 2;
			in->rkey = rmq_strndup(r->routing_key.bytes,
			    r->routing_key.len);
			return 0;
		case AMQP_BASIC_CANCEL_METHOD:
			/* The broker cancelled a consumer (queue deleted). */
			snprintf(why, whylen, "the broker cancelled a "
			    "consumer");
			return -1;
		case AMQP_CHANNEL_CLOSE_METHOD:
		case AMQP_CONNECTION_CLOSE_METHOD: {
			amqp_rpc_reply_t	rr;

			memset(&rr, 0, sizeof(rr));
			rr.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
			rr.reply = f->payload.method;
			rmq_reply_error(rr, rb->where, why, whylen);
			return -1;
		}
		default:
			return 0;	/* late replies of cancels and such */
		}
	case AMQP_FRAME_HEADER:
		if (in->kind != 0)
			rmq_header_frame(rb, f);
		return 0;
	case AMQP_FRAME_BODY:
		if (in->kind == 0 || in->body == NULL)
			return 0;
		take = f->payload.body_fragment.len;
		if (take > in->size - in->got)
			take = in->size - in->got;
		memcpy(in->body + in->got, f->payload.body_fragment.bytes,
		    take);
		in->got += take;
		if (in->got == in->size)
			rmq_incoming_done(rb);
		return 0;
	default:
		return 0;
	}
}

/* Publishes that waited past publish_timeout_ms fail (front first). */
static void
rmq_expire(struct rmq_bus *rb)
{
	struct rmq_pend	*pd;
	int64_t		 now = util_mono_ms();
	char		 err[SAGAD_ERRLEN];

	while ((pd = TAILQ_FIRST(&rb->pends)) != NULL && pd->deadline <= now) {
		TAILQ_REMOVE(&rb->pends, pd, entry);
		snprintf(err, sizeof(err), "rabbitmq: publish %s: not confirmed "
		    "in %d ms", pd->subject != NULL ? pd->subject : "",
		    rb->bus->publish_timeout_ms);
		if (pd->ack_tag != 0)
			(void)amqp_basic_nack(rb->conn, RMQ_CHANNEL, pd->ack_tag,
			    0, 1);
		else
			rmq_answer(rb, pd->pub, err, pd->seq);
		rmq_pend_free(pd);
	}
}

/* Reads what is there without waiting; -1 when the connection failed. */
static int
rmq_read(struct rmq_bus *rb, char *why, size_t whylen)
{
	struct timeval	zero = { 0, 0 };
	amqp_frame_t	f;
	int		st, n;

	for (n = 0; n < 4096; n++) {
		st = amqp_simple_wait_frame_noblock(rb->conn, &f, &zero);
		if (st == AMQP_STATUS_TIMEOUT)
			break;
		if (st != AMQP_STATUS_OK) {
			snprintf(why, whylen, "%s", amqp_error_string2(st));
			return -1;
		}
		if (rmq_frame(rb, &f, why, whylen) == -1)
			return -1;
	}
	amqp_maybe_release_buffers(rb->conn);
	return 0;
}

/* Consumers and listeners again, on a new connection. */
static int
rmq_resume(struct rmq_bus *rb, char *err, size_t errlen)
{
	struct rmq_consumer	*rc;
	struct rmq_listener	*rl;
	int			 rv = 0;

	/* The lists change only on this thread: walking them is safe. */
	LIST_FOREACH(rc, &rb->consumers, entry)
		if (rv == 0 && rmq_start_consumer(rb, rc, err, errlen) == -1)
			rv = -1;
	LIST_FOREACH(rl, &rb->listeners, entry)
		if (rv == 0 && rmq_start_listener(rb, rl, err, errlen) == -1)
			rv = -1;
	return rv;
}

/* Sleeps ms unless stopped; returns 1 when stopping. */
static int
rmq_nap(struct rmq_bus *rb, int ms)
{
	struct pollfd	pfd = { rb->wakefd, POLLIN, 0 };
	int64_t		end = util_mono_ms() + ms, now;
	uint64_t	v;
	int		stop;

	for (;;) {
		pthread_mutex_lock(&rb->mu);
		stop = rb->stop;
		pthread_mutex_unlock(&rb->mu);
		if (stop)
			return 1;
		if ((now = util_mono_ms()) >= end)
			return 0;
		if (poll(&pfd, 1, (int)(end - now)) > 0)
			(void)!read(rb->wakefd, &v, sizeof(v));
		/* Commands that cannot wait for the connection: answer them. */
		for (;;) {
			struct rmq_cmd	*cmd;

			pthread_mutex_lock(&rb->mu);
			cmd = TAILQ_FIRST(&rb->cmds);
			if (cmd != NULL)
				TAILQ_REMOVE(&rb->cmds, cmd, entry);
			pthread_mutex_unlock(&rb->mu);
			if (cmd == NULL)
				break;
			(void)rmq_run(rb, cmd);
		}
	}
}

/* At close: what is queued goes out and confirms come, for a while. */
static void
rmq_flush(struct rmq_bus *rb)
{
	struct rmq_cmd	*cmd;
	struct pollfd	 pfd;
	int64_t		 end = util_mono_ms() + RMQ_CLOSE_WAIT_MS;
	char		 why[SAGAD_ERRLEN];

	for (;;) {
		pthread_mutex_lock(&rb->mu);
		cmd = TAILQ_FIRST(&rb->cmds);
		if (cmd != NULL)
			TAILQ_REMOVE(&rb->cmds, cmd, entry);
		pthread_mutex_unlock(&rb->mu);
		if (cmd == NULL)
			break;
		if (rmq_run(rb, cmd) == -1)
			return;
	}
	while (!TAILQ_EMPTY(&rb->pends) && util_mono_ms() < end) {
		pfd.fd = amqp_get_sockfd(rb->conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (!amqp_frames_enqueued(rb->conn) &&
		    !amqp_data_in_buffer(rb->conn))
			(void)poll(&pfd, 1, 100);
		if (rmq_read(rb, why, sizeof(why)) == -1)
			return;
	}
}

static void *
rmq_main(void *arg)
{
	struct rmq_bus	*rb = arg;
	struct rmq_cmd	*cmd;
	struct pollfd	 pfd[2];
	char		 why[SAGAD_ERRLEN];
	uint64_t	 v;
	int		 stop, timeout;

	for (;;) {
		pthread_mutex_lock(&rb->mu);
		stop = rb->stop;
		pthread_mutex_unlock(&rb->mu);
		if (stop)
			break;
		if (rb->conn == NULL) {
			if (rmq_nap(rb, rb->wait_ms))
				break;
			if (rmq_connect(rb, rb->lasterr,
			    sizeof(rb->lasterr)) == -1) {
				rb->wait_ms *= 2;
				if (rb->wait_ms > rb->bus->reconnect_max_ms)
					rb->wait_ms = rb->bus->reconnect_max_ms;
				continue;
			}
			if (rmq_resume(rb, rb->lasterr,
			    sizeof(rb->lasterr)) == -1) {
				rmq_drop(rb, rb->lasterr);
				continue;
			}
			rb->wait_ms = rb->bus->reconnect_wait_ms;
			pthread_mutex_lock(&rb->mu);
			rb->connected = 1;
			pthread_mutex_unlock(&rb->mu);
			bus_post_state(rb->bus, rb->ever ? BUS_RECONNECTED :
			    BUS_CONNECTED);
			rb->ever = 1;
		}
		why[0] = '\0';
		/* Commands first, in order, then whatever came in. */
		for (;;) {
			pthread_mutex_lock(&rb->mu);
			cmd = TAILQ_FIRST(&rb->cmds);
			if (cmd != NULL)
				TAILQ_REMOVE(&rb->cmds, cmd, entry);
			pthread_mutex_unlock(&rb->mu);
			if (cmd == NULL)
				break;
			if (rmq_run(rb, cmd) == -1)
				goto lost;
		}
		if (rmq_read(rb, why, sizeof(why)) == -1)
			goto lost;
		rmq_expire(rb);
		if (amqp_frames_enqueued(rb->conn) ||
		    amqp_data_in_buffer(rb->conn))
			continue;
		pfd[0].fd = amqp_get_sockfd(rb->conn);
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = rb->wakefd;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		timeout = RMQ_POLL_MS;
		if (!TAILQ_EMPTY(&rb->pends)) {
			int64_t left = TAILQ_FIRST(&rb->pends)->deadline -
			    util_mono_ms();

			if (left < timeout)
				timeout = left < 0 ? 0 : (int)left;
		}
		if (poll(pfd, 2, timeout) > 0 && (pfd[1].revents & POLLIN))
			(void)!read(rb->wakefd, &v, sizeof(v));
		continue;
lost:
		rmq_drop(rb, why[0] != '\0' ? why : NULL);
		bus_post_state(rb->bus, BUS_DISCONNECTED);
	}
	if (rb->conn != NULL) {
		rmq_flush(rb);
		if (rb->conn != NULL) {
			(void)amqp_channel_close(rb->conn, RMQ_CHANNEL,
			    AMQP_REPLY_SUCCESS);
			(void)amqp_connection_close(rb->conn,
			    AMQP_REPLY_SUCCESS);
		}
	}
	rmq_drop(rb, "the bus is closing");
	/* Synchronous commands that came too late: answer them. */
	for (;;) {
		pthread_mutex_lock(&rb->mu);
		cmd = TAILQ_FIRST(&rb->cmds);
		if (cmd != NULL)
			TAILQ_REMOVE(&rb->cmds, cmd, entry);
		pthread_mutex_unlock(&rb->mu);
		if (cmd == NULL)
			break;
		(void)rmq_run(rb, cmd);
	}
	return NULL;
}

const struct bus_driver bus_rabbitmq_driver = {
	.scheme = "amqp",
	.init = rmq_init,
	.fini = rmq_fini,
	.open = rmq_open,
	.close = rmq_close,
	.declare = rmq_declare,
	.depth = rmq_depth,
	.consumer_open = rmq_consumer_open,
	.consumer_free = rmq_consumer_free,
	.fetch = rmq_fetch,
	.finish = rmq_finish,
	.header = rmq_header,
	.msg_free = rmq_msg_free,
	.publish = rmq_publish,
	.notify = rmq_notify,
	.listen = rmq_listen,
	.unlisten = rmq_unlisten,
};
