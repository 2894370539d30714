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
 *
 * Files: this one holds the driver's functions (struct bus_driver), which
 * run on the caller's loop (and fetch on bus.c's fetch threads): they hand
 * commands to the thread and wait for the synchronous ones.
 * bus_rabbitmq_thread.c is the connection thread (connecting, running the
 * commands, reconnecting); bus_rabbitmq_topology.c what it declares on the
 * broker (exchanges, queues, the retry ladder) and how it starts consuming;
 * bus_rabbitmq_recv.c what the broker sends it (confirms, deliveries,
 * returns); bus_rabbitmq_int.h what they share.
 */
#include "autoconf.h"

#include <sys/eventfd.h>
#include <sys/queue.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>

#include "bus.h"
#include "bus_driver.h"
#include "bus_rabbitmq_int.h"
#include "util.h"

/* --- small helpers ------------------------------------------------------------ */

static void
rmq_wake(struct rmq_bus *rb)
{
	uint64_t	one = 1;

	(void)!write(rb->wakefd, &one, sizeof(one));
}

void
bus_rmq_cmd_free(struct rmq_cmd *cmd)
{
	free(cmd->subject);
	free(cmd->msg_id);
	free(cmd->data);
	free(cmd);
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
	if (bus_rmq_connect(rb, rb->lasterr, sizeof(rb->lasterr)) == 0) {
		bus->state = BUS_CONNECTED;
		rb->connected = 1;
		rb->ever = 1;
	}
	if ((rc = pthread_create(&rb->thread, NULL, bus_rmq_main, rb)) != 0) {
		snprintf(err, errlen, "rabbitmq: pthread_create: %s",
		    strerror(rc));
		if (rb->conn != NULL)
			bus_rmq_drop(rb, NULL);
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
		bus_rmq_cmd_free(cmd);
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
	bus_rmq_cmd_free(cmd);
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

/* The ready messages of the consumer's queue (named after its filter). */
static int
rmq_backlog(struct bus *bus, const char *durable, const char *filter,
    uint64_t *msgs, char *err, size_t errlen)
{
	struct rmq_cmd *cmd = rmq_cmd_new(RC_DEPTH);

	(void)durable;
	cmd->subject = util_xstrdup(filter);
	return rmq_call(bus->drv_data, cmd, msgs, err, errlen);
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
	bus_rmq_rmsg_free(m->drv);
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

const struct bus_driver bus_rabbitmq_driver = {
	.scheme = "amqp",
	.init = rmq_init,
	.fini = rmq_fini,
	.open = rmq_open,
	.close = rmq_close,
	.declare = rmq_declare,
	.depth = rmq_depth,
	.backlog = rmq_backlog,
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
