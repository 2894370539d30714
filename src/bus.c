/*
 * bus.c - the driver-neutral half of the message bus (see bus.h): picks the
 * driver by URL scheme, runs one fetch thread per consumer that asks the
 * driver for at most the free concurrency slots, and hands everything the
 * drivers' threads produce (messages, publish answers, notifications,
 * connection state) to the caller's libevent loop through one locked queue
 * and one event made active from those threads. All callbacks to the caller
 * start here, on the loop. No broker library is called in this file.
 */
#include "autoconf.h"

#include <sys/queue.h>

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"
#include "bus.h"
#include "bus_driver.h"
#include "util.h"

#define BUS_WAKE_BATCH	256	/* items per loop wake-up, then yield */
#define BUS_RETRY_MS	200	/* fetch thread pause after a failed fetch */
/*
 * At most this many messages a fetch: cnats allocates (and zeroes) a list of
 * the batch's size for every pull, and an allocation past glibc's small
 * bins (1 KB) first consolidates its fast bins: with a concurrency of 2,000
 * that was a 16 KB calloc per fetch and a fifth of a worker's malloc time.
 * A fetch of 64 still empties a backlog at tens of thousands a second.
 */
#define BUS_FETCH_MAX	64
#define BUS_MAX_CONCURRENCY 65536

static const struct bus_driver *const drivers[] = {
	&bus_nats_driver, &bus_rabbitmq_driver
};
static int	bus_inited;

static void	bus_wake(evutil_socket_t, short, void *);
static void	bus_consumer_free(struct bus_consumer *);
static void	bus_finished(struct bus_msg *);

int
bus_init(char *err, size_t errlen)
{
	size_t	i;

	if (evthread_use_pthreads() == -1) {
		snprintf(err, errlen, "libevent has no pthread support");
		return -1;
	}
	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (drivers[i]->init(err, errlen) == -1)
			return -1;
	bus_inited = 1;
	return 0;
}

void
bus_fini(void)
{
	size_t	i;

	if (!bus_inited)
		return;
	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		drivers[i]->fini();
	bus_inited = 0;
}

static const struct bus_driver *
bus_driver_for(const char *url)
{
	const char	*colon;
	size_t		 i, n;

	if ((colon = strstr(url, "://")) == NULL)
		return &bus_nats_driver;	/* a bare host:port */
	n = (size_t)(colon - url);
	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (strlen(drivers[i]->scheme) == n &&
		    strncmp(url, drivers[i]->scheme, n) == 0)
			return drivers[i];
	return NULL;
}

static void
bus_free_creds(struct bus *bus)
{
	if (bus->password != NULL)
		auth_wipe(bus->password, strlen(bus->password));
	free(bus->password);
	free(bus->creds);
	free(bus->user);
	free(bus->password_file);
	bus->password = bus->creds = bus->user = bus->password_file = NULL;
}

struct bus *
bus_open(struct event_base *base, const struct bus_opts *o, char *err,
    size_t errlen)
{
	const struct bus_driver	*drv;
	struct bus		*bus;

	if (o->url == NULL || *o->url == '\0') {
		snprintf(err, errlen, "bus: no URL");
		return NULL;
	}
	if ((drv = bus_driver_for(o->url)) == NULL) {
		/* Not the URL: it may hold a password. */
		snprintf(err, errlen, "bus: unknown URL scheme, expected "
		    "nats:// or amqp://");
		return NULL;
	}
	if (o->stream == NULL || *o->stream == '\0' ||
	    strpbrk(o->stream, ". *>") != NULL) {
		snprintf(err, errlen, "bus: stream name \"%s\" must be a word "
		    "without '.', '*', '>' or spaces",
		    o->stream == NULL ? "" : o->stream);
		return NULL;
	}
	if (o->replicas < 0 || o->replicas > 5) {
		snprintf(err, errlen, "bus: replicas %d, expected 1 to 5",
		    o->replicas);
		return NULL;
	}
	if (o->queue_type != NULL && strcmp(o->queue_type, "quorum") != 0 &&
	    strcmp(o->queue_type, "classic") != 0) {
		snprintf(err, errlen, "bus: queue type \"%s\", expected "
		    "quorum or classic", o->queue_type);
		return NULL;
	}
	bus = util_xcalloc(1, sizeof(*bus));
	bus->drv = drv;
	bus->base = base;
	pthread_mutex_init(&bus->mu, NULL);
	TAILQ_INIT(&bus->items);
	TAILQ_INIT(&bus->pubs);
	LIST_INIT(&bus->consumers);
	LIST_INIT(&bus->listeners);
	bus->state = BUS_DISCONNECTED;
	bus->state_cb = o->state_cb;
	bus->warn_cb = o->warn_cb;
	bus->state_arg = o->state_arg;
	bus->stream = util_xstrdup(o->stream);
	bus->queue_type = util_xstrdup(o->queue_type != NULL ? o->queue_type :
	    "quorum");
	bus->replicas = o->replicas > 0 ? o->replicas : 1;
	bus->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
	bus->publish_timeout_ms = o->publish_timeout_ms > 0 ?
	    o->publish_timeout_ms : 5000;
	bus->reconnect_wait_ms = o->reconnect_wait_ms > 0 ?
	    o->reconnect_wait_ms : 100;
	bus->reconnect_max_ms = o->reconnect_max_ms > 0 ?
	    o->reconnect_max_ms : 2000;
	if (bus->reconnect_max_ms < bus->reconnect_wait_ms)
		bus->reconnect_max_ms = bus->reconnect_wait_ms;
	bus->dedupe_window_ms = o->dedupe_window_ms > 0 ?
	    o->dedupe_window_ms : 120000;
	bus->consumer_ttl_s = o->consumer_ttl_s;
	bus->stream_subject = util_xstrdup(o->stream_subject);
	bus->creds = o->creds != NULL ? util_xstrdup(o->creds) : NULL;
	bus->user = o->user != NULL ? util_xstrdup(o->user) : NULL;
	bus->password = o->password != NULL ? util_xstrdup(o->password) : NULL;
	bus->password_file = o->password_file != NULL ?
	    util_xstrdup(o->password_file) : NULL;
	bus->tls = o->tls;
	bus->tls_ca = o->tls_ca != NULL ? util_xstrdup(o->tls_ca) : NULL;
	bus->tls_cert = o->tls_cert != NULL ? util_xstrdup(o->tls_cert) : NULL;
	bus->tls_key = o->tls_key != NULL ? util_xstrdup(o->tls_key) : NULL;
	if ((bus->wake = event_new(base, -1, 0, bus_wake, bus)) == NULL) {
		snprintf(err, errlen, "bus: event_new failed");
		goto fail;
	}
	if (drv->open(bus, o->url, o->name, err, errlen) == -1)
		goto fail;
	return bus;
fail:
	if (bus->wake != NULL)
		event_free(bus->wake);
	pthread_mutex_destroy(&bus->mu);
	free(bus->tls_ca);
	free(bus->tls_cert);
	free(bus->tls_key);
	free(bus->stream);
	free(bus->stream_subject);
	free(bus->queue_type);
	bus_free_creds(bus);
	free(bus);
	return NULL;
}

enum bus_state
bus_state(const struct bus *bus)
{
	return bus->state;
}

int
bus_is_connected(const struct bus *bus)
{
	return bus->state == BUS_CONNECTED || bus->state == BUS_RECONNECTED;
}

int
bus_declare_stream(struct bus *bus, const char *const *subjects, size_t n,
    char *err, size_t errlen)
{
	if (n == 0) {
		snprintf(err, errlen, "bus: stream %s needs subjects",
		    bus->stream);
		return -1;
	}
	return bus->drv->declare(bus, subjects, n, err, errlen);
}

int
bus_stream_depth(struct bus *bus, uint64_t *msgs, char *err, size_t errlen)
{
	return bus->drv->depth(bus, msgs, err, errlen);
}

int
bus_consumers(struct bus *bus, bus_consumer_each *each, void *arg, char *err,
    size_t errlen)
{
	if (bus->drv->consumers == NULL)
		return 0;
	return bus->drv->consumers(bus, each, arg, err, errlen);
}

int
bus_consumer_backlog(struct bus *bus, const char *durable, const char *filter,
    uint64_t *msgs, char *err, size_t errlen)
{
	return bus->drv->backlog(bus, durable, filter, msgs, err, errlen);
}

/* --- the hand-over to the loop ------------------------------------------- */

void
bus_post(struct bus *bus, struct bus_item *it)
{
	pthread_mutex_lock(&bus->mu);
	TAILQ_INSERT_TAIL(&bus->items, it, entry);
	it->queued = 1;
	pthread_mutex_unlock(&bus->mu);
	event_active(bus->wake, 0, 0);
}

void
bus_post_state(struct bus *bus, enum bus_state state)
{
	bus_post_state_why(bus, state, NULL);
}

void
bus_post_state_why(struct bus *bus, enum bus_state state, const char *why)
{
	struct bus_state_item	*si;

	si = util_xcalloc(1, sizeof(*si));
	si->item.kind = BUS_IT_STATE;
	si->state = state;
	if (why != NULL)
		snprintf(si->why, sizeof(si->why), "%s", why);
	bus_post(bus, &si->item);
}

void
bus_post_warn(struct bus *bus, const char *fmt, ...)
{
	struct bus_warn_item	*wi;
	va_list			 ap;

	wi = util_xcalloc(1, sizeof(*wi));
	wi->item.kind = BUS_IT_WARN;
	va_start(ap, fmt);
	vsnprintf(wi->msg, sizeof(wi->msg), fmt, ap);
	va_end(ap);
	bus_post(bus, &wi->item);
}

const char *
bus_state_why(const struct bus *bus)
{
	return bus->why;
}

void
bus_post_note(struct bus_listener *l, const char *subject, const void *data,
    size_t len)
{
	struct bus_note	*n;

	n = util_xcalloc(1, sizeof(*n) + len + 1);
	n->item.kind = BUS_IT_NOTE;
	n->l = l;
	n->subject = util_xstrdup(subject);
	n->len = len;
	if (len > 0)
		memcpy(n->data, data, len);
	bus_post(l->bus, &n->item);
}

struct bus_pub *
bus_pub_take(struct bus *bus, void *drv)
{
	struct bus_pub	*p;

	/* Answers come mostly in order: the match is near the head. */
	pthread_mutex_lock(&bus->mu);
	TAILQ_FOREACH(p, &bus->pubs, pending)
		if (p->drv == drv)
			break;
	if (p != NULL) {
		TAILQ_REMOVE(&bus->pubs, p, pending);
		p->answered = 1;
	}
	pthread_mutex_unlock(&bus->mu);
	return p;
}

static void
bus_unqueue(struct bus *bus, struct bus_item *it)
{
	if (it->queued) {
		TAILQ_REMOVE(&bus->items, it, entry);
		it->queued = 0;
	}
}

static void
bus_note_free(struct bus_note *n)
{
	free(n->subject);
	free(n);
}

static void
bus_consumer_check_drained(struct bus_consumer *c)
{
	struct bus	*bus = c->bus;

	pthread_mutex_lock(&bus->mu);
	if (c->stopping && c->exited && c->inflight == 0 &&
	    !c->drain_item.queued) {
		TAILQ_INSERT_TAIL(&bus->items, &c->drain_item, entry);
		c->drain_item.queued = 1;
		pthread_mutex_unlock(&bus->mu);
		event_active(bus->wake, 0, 0);
		return;
	}
	pthread_mutex_unlock(&bus->mu);
}

static void
bus_dispatch(struct bus *bus, struct bus_item *it)
{
	struct bus_state_item	*si;
	struct bus_msg		*m;
	struct bus_pub		*p;
	struct bus_note		*n;
	struct bus_consumer	*c;

	switch (it->kind) {
	case BUS_IT_STATE:
		si = (struct bus_state_item *)it;
		bus->state = si->state;
		memcpy(bus->why, si->why, sizeof(bus->why));
		free(si);
		if (bus->state_cb != NULL)
			bus->state_cb(bus, bus->state, bus->state_arg);
		break;
	case BUS_IT_MSG:
		m = (struct bus_msg *)it;
		if (m->c->stopping) {
			/* Not started: give it back for another worker. */
			bus->drv->finish(m, BUS_NAK, 0);
			bus_finished(m);
			break;
		}
		m->handed = 1;
		m->c->cb(m, m->c->arg);
		break;
	case BUS_IT_PUB:
		p = (struct bus_pub *)it;
		p->res.error = p->errbuf[0] != '\0' ? p->errbuf : NULL;
		p->cb(bus, &p->res, p->arg);
		free(p);
		break;
	case BUS_IT_NOTE:
		n = (struct bus_note *)it;
		n->l->cb(n->l, n->subject, n->data, n->len, n->l->arg);
		bus_note_free(n);
		break;
	case BUS_IT_EXITED:
		c = (struct bus_consumer *)((char *)it -
		    offsetof(struct bus_consumer, exit_item));
		pthread_join(c->thread, NULL);
		c->started = 0;
		c->exited = 1;
		bus_consumer_check_drained(c);
		break;
	case BUS_IT_WARN:
		if (bus->warn_cb != NULL)
			bus->warn_cb(bus, ((struct bus_warn_item *)it)->msg,
			    bus->state_arg);
		free(it);
		break;
	case BUS_IT_DRAINED:
		c = (struct bus_consumer *)((char *)it -
		    offsetof(struct bus_consumer, drain_item));
		if (c->drain_cb != NULL)
			c->drain_cb(c, c->drain_arg);
		LIST_REMOVE(c, entry);
		bus_consumer_free(c);
		break;
	}
}

/*
 * The loop side of the hand-over. One item at a time, so that a callback
 * may close a listener or stop a consumer whose items are still queued.
 */
static void
bus_wake(evutil_socket_t fd, short ev, void *arg)
{
	struct bus	*bus = arg;
	struct bus_item	*it;
	int		 n;

	(void)fd;
	(void)ev;
	for (n = 0; n < BUS_WAKE_BATCH; n++) {
		pthread_mutex_lock(&bus->mu);
		if ((it = TAILQ_FIRST(&bus->items)) != NULL) {
			TAILQ_REMOVE(&bus->items, it, entry);
			it->queued = 0;
		}
		pthread_mutex_unlock(&bus->mu);
		if (it == NULL)
			return;
		bus_dispatch(bus, it);
	}
	event_active(bus->wake, 0, 0);	/* more: after other events */
}

/* --- consumers --------------------------------------------------------------- */

/* Waits up to ms or until stopped; returns 1 when stopping. mu is held. */
static int
bus_consumer_pause(struct bus_consumer *c, int ms)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	if (!c->stopping)
		pthread_cond_timedwait(&c->cv, &c->bus->mu, &ts);
	return c->stopping;
}

/*
 * The fetch thread: asks the driver for at most the free slots, so that no
 * more than `concurrency` messages are ever out of the broker's hands and in
 * this process; the broker keeps the rest for other workers. Once every
 * slot is taken it waits for fetch_min of them to come free, not one: with
 * a backlog, refilling slot by slot cost a wake-up of this thread and a
 * pull request per message.
 */
static void *
bus_fetch_main(void *arg)
{
	struct bus_consumer	*c = arg;
	struct bus		*bus = c->bus;
	int			 i, n, nfree;

	pthread_mutex_lock(&bus->mu);
	for (;;) {
		if (c->inflight >= c->concurrency)
			while (!c->stopping &&
			    c->concurrency - c->inflight < c->fetch_min)
				pthread_cond_wait(&c->cv, &bus->mu);
		if (c->stopping)
			break;
		nfree = c->concurrency - c->inflight;
		if (nfree > BUS_FETCH_MAX)
			nfree = BUS_FETCH_MAX;
		pthread_mutex_unlock(&bus->mu);
		n = bus->drv->fetch(c, c->batch, nfree, c->fetch_wait_ms);
		pthread_mutex_lock(&bus->mu);
		if (n == -1) {
			if (bus_consumer_pause(c, BUS_RETRY_MS))
				break;
			continue;
		}
		for (i = 0; i < n; i++) {
			c->batch[i]->item.kind = BUS_IT_MSG;
			c->batch[i]->c = c;
			TAILQ_INSERT_TAIL(&c->msgs, c->batch[i], live);
			TAILQ_INSERT_TAIL(&bus->items, &c->batch[i]->item,
			    entry);
			c->batch[i]->item.queued = 1;
			c->inflight++;
		}
		if (n > 0) {
			pthread_mutex_unlock(&bus->mu);
			event_active(bus->wake, 0, 0);
			pthread_mutex_lock(&bus->mu);
		}
	}
	TAILQ_INSERT_TAIL(&bus->items, &c->exit_item, entry);
	c->exit_item.queued = 1;
	pthread_mutex_unlock(&bus->mu);
	event_active(bus->wake, 0, 0);
	return NULL;
}

static int
bus_check_subject(const char *what, const char *s, char *err, size_t errlen)
{
	if (s == NULL || *s == '\0' || strchr(s, ' ') != NULL ||
	    s[0] == '.' || s[strlen(s) - 1] == '.' || strstr(s, "..")) {
		snprintf(err, errlen, "bus: %s \"%s\" is not a subject", what,
		    s == NULL ? "" : s);
		return -1;
	}
	return 0;
}

struct bus_consumer *
bus_consume(struct bus *bus, const struct bus_consumer_opts *o, bus_msg_cb cb,
    void *arg, char *err, size_t errlen)
{
	struct bus_consumer	*c;
	int			 rc;

	if (o->durable == NULL || *o->durable == '\0' ||
	    strpbrk(o->durable, ". *>") != NULL) {
		snprintf(err, errlen, "bus: consumer name \"%s\" must be a word "
		    "without '.', '*', '>' or spaces",
		    o->durable == NULL ? "" : o->durable);
		return NULL;
	}
	if (bus_check_subject("filter", o->filter, err, errlen) == -1)
		return NULL;
	if (o->concurrency < 1 || o->concurrency > BUS_MAX_CONCURRENCY) {
		snprintf(err, errlen, "bus: concurrency %d, expected 1 to %d",
		    o->concurrency, BUS_MAX_CONCURRENCY);
		return NULL;
	}
	if (o->max_ack_pending < 0 || o->ack_wait_ms < 0 ||
	    o->max_deliver < 0 || o->fetch_wait_ms < 0) {
		snprintf(err, errlen, "bus: negative consumer option");
		return NULL;
	}
	c = util_xcalloc(1, sizeof(*c));
	c->bus = bus;
	c->durable = util_xstrdup(o->durable);
	c->filter = util_xstrdup(o->filter);
	c->concurrency = o->concurrency;
	c->max_ack_pending = o->max_ack_pending > 0 ? o->max_ack_pending :
	    o->concurrency;
	c->ack_wait_ms = o->ack_wait_ms > 0 ? o->ack_wait_ms : 30000;
	c->max_deliver = o->max_deliver;
	c->fetch_wait_ms = o->fetch_wait_ms > 0 ? o->fetch_wait_ms : 500;
	c->fetch_min = c->concurrency / 8 > 64 ? 64 : c->concurrency / 8;
	if (c->fetch_min < 1)
		c->fetch_min = 1;
	c->cb = cb;
	c->arg = arg;
	c->exit_item.kind = BUS_IT_EXITED;
	c->drain_item.kind = BUS_IT_DRAINED;
	TAILQ_INIT(&c->msgs);
	pthread_cond_init(&c->cv, NULL);
	c->batch = util_xcalloc((size_t)c->concurrency, sizeof(*c->batch));
	if (bus->drv->consumer_open(c, err, errlen) == -1) {
		bus_consumer_free(c);
		return NULL;
	}
	if ((rc = pthread_create(&c->thread, NULL, bus_fetch_main, c)) != 0) {
		snprintf(err, errlen, "bus: pthread_create: %s", strerror(rc));
		bus_consumer_free(c);
		return NULL;
	}
	c->started = 1;
	LIST_INSERT_HEAD(&bus->consumers, c, entry);
	return c;
}

void
bus_consumer_stop(struct bus_consumer *c, bus_drain_cb cb, void *arg)
{
	pthread_mutex_lock(&c->bus->mu);
	c->drain_cb = cb;
	c->drain_arg = arg;
	c->stopping = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->bus->mu);
}

int
bus_consumer_inflight(const struct bus_consumer *c)
{
	struct bus_msg	*m;
	int		 n = 0;

	/* Only the loop sets `handed`; the list is shared with the fetcher. */
	pthread_mutex_lock(&c->bus->mu);
	TAILQ_FOREACH(m, &c->msgs, live)
		n += m->handed;
	pthread_mutex_unlock(&c->bus->mu);
	return n;
}

/* Frees a consumer whose thread is joined; its messages are dropped. */
static void
bus_consumer_free(struct bus_consumer *c)
{
	struct bus	*bus = c->bus;
	struct bus_msg	*m;

	pthread_mutex_lock(&bus->mu);
	while ((m = TAILQ_FIRST(&c->msgs)) != NULL) {
		TAILQ_REMOVE(&c->msgs, m, live);
		bus_unqueue(bus, &m->item);
		bus->drv->msg_free(m);
		free(m);
	}
	bus_unqueue(bus, &c->exit_item);
	bus_unqueue(bus, &c->drain_item);
	pthread_mutex_unlock(&bus->mu);
	bus->drv->consumer_free(c);
	pthread_cond_destroy(&c->cv);
	free(c->batch);
	free(c->durable);
	free(c->filter);
	free(c);
}

/* --- messages ---------------------------------------------------------------- */

const char *
bus_msg_subject(const struct bus_msg *m)
{
	return m->subject;
}

const void *
bus_msg_data(const struct bus_msg *m, size_t *len)
{
	if (len != NULL)
		*len = m->len;
	return m->data;
}

const char *
bus_msg_header(const struct bus_msg *m, const char *key)
{
	return m->c->bus->drv->header(m, key);
}

const char *
bus_msg_id(const struct bus_msg *m)
{
	return bus_msg_header(m, "Nats-Msg-Id");
}

int
bus_msg_delivered(const struct bus_msg *m)
{
	return m->delivered;
}

struct bus_consumer *
bus_msg_consumer(const struct bus_msg *m)
{
	return m->c;
}

/* The message is done with: free its slot and wake the fetcher. */
static void
bus_finished(struct bus_msg *m)
{
	struct bus_consumer	*c = m->c;
	struct bus		*bus = c->bus;

	pthread_mutex_lock(&bus->mu);
	TAILQ_REMOVE(&c->msgs, m, live);
	/* Only the slot that makes fetch_min free ones wakes the fetcher. */
	if (c->concurrency - --c->inflight == c->fetch_min)
		pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&bus->mu);
	bus->drv->msg_free(m);
	free(m);
	if (c->stopping)
		bus_consumer_check_drained(c);
}

static int
bus_end(struct bus_msg *m, enum bus_finish how, int delay_ms)
{
	int	rc;

	rc = m->c->bus->drv->finish(m, how, delay_ms < 0 ? 0 : delay_ms);
	bus_finished(m);
	return rc;
}

int
bus_ack(struct bus_msg *m)
{
	return bus_end(m, BUS_ACK, 0);
}

int
bus_nak(struct bus_msg *m, int delay_ms)
{
	return bus_end(m, BUS_NAK, delay_ms);
}

int
bus_term(struct bus_msg *m)
{
	return bus_end(m, BUS_TERM, 0);
}

int
bus_in_progress(struct bus_msg *m)
{
	return m->c->bus->drv->finish(m, BUS_PROGRESS, 0);
}

/* --- publishing and notifications ------------------------------------------ */

int
bus_publish(struct bus *bus, const char *subject, const void *data,
    size_t len, const char *msg_id, bus_pub_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct bus_pub	*p;

	if (bus_check_subject("subject", subject, err, errlen) == -1)
		return -1;
	if (cb == NULL) {
		snprintf(err, errlen, "bus: publish needs a callback");
		return -1;
	}
	p = util_xcalloc(1, sizeof(*p));
	p->item.kind = BUS_IT_PUB;
	p->cb = cb;
	p->arg = arg;
	if (bus->drv->publish(bus, p, subject, data, len, msg_id, err,
	    errlen) == -1) {
		free(p);
		return -1;
	}
	return 0;
}

int
bus_notify(struct bus *bus, const char *subject, const void *data, size_t len,
    char *err, size_t errlen)
{
	if (bus_check_subject("subject", subject, err, errlen) == -1)
		return -1;
	return bus->drv->notify(bus, subject, data, len, err, errlen);
}

struct bus_listener *
bus_listen(struct bus *bus, const char *subject, bus_note_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct bus_listener	*l;

	if (bus_check_subject("subject", subject, err, errlen) == -1)
		return NULL;
	l = util_xcalloc(1, sizeof(*l));
	l->bus = bus;
	l->subject = util_xstrdup(subject);
	l->cb = cb;
	l->arg = arg;
	if (bus->drv->listen(l, err, errlen) == -1) {
		free(l->subject);
		free(l);
		return NULL;
	}
	LIST_INSERT_HEAD(&bus->listeners, l, entry);
	return l;
}

void
bus_listener_close(struct bus_listener *l)
{
	struct bus	*bus = l->bus;
	struct bus_item	*it, *next;
	struct bus_note	*n;

	bus->drv->unlisten(l);
	pthread_mutex_lock(&bus->mu);
	for (it = TAILQ_FIRST(&bus->items); it != NULL; it = next) {
		next = TAILQ_NEXT(it, entry);
		n = (struct bus_note *)it;
		if (it->kind == BUS_IT_NOTE && n->l == l) {
			TAILQ_REMOVE(&bus->items, it, entry);
			bus_note_free(n);
		}
	}
	pthread_mutex_unlock(&bus->mu);
	LIST_REMOVE(l, entry);
	free(l->subject);
	free(l);
}

/* --- closing ----------------------------------------------------------------- */

void
bus_close(struct bus *bus)
{
	struct bus_consumer	*c;
	struct bus_item		*it;
	struct bus_pub		*p;

	if (bus == NULL)
		return;
	bus->closing = 1;
	LIST_FOREACH(c, &bus->consumers, entry) {
		pthread_mutex_lock(&bus->mu);
		c->stopping = 1;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&bus->mu);
	}
	while ((c = LIST_FIRST(&bus->consumers)) != NULL) {
		if (c->started)
			pthread_join(c->thread, NULL);
		LIST_REMOVE(c, entry);
		bus_consumer_free(c);
	}
	while (!LIST_EMPTY(&bus->listeners))
		bus_listener_close(LIST_FIRST(&bus->listeners));
	bus->drv->close(bus);

	/* No driver thread is left: answer what is queued, then the rest. */
	while ((it = TAILQ_FIRST(&bus->items)) != NULL) {
		TAILQ_REMOVE(&bus->items, it, entry);
		if (it->kind == BUS_IT_PUB) {
			p = (struct bus_pub *)it;
			p->res.error = p->errbuf[0] != '\0' ? p->errbuf : NULL;
			p->cb(bus, &p->res, p->arg);
		}
		free(it);	/* state items, warnings, answered publishes */
	}
	while ((p = TAILQ_FIRST(&bus->pubs)) != NULL) {
		TAILQ_REMOVE(&bus->pubs, p, pending);
		memset(&p->res, 0, sizeof(p->res));
		p->res.error = "bus closed before the publish was confirmed";
		p->cb(bus, &p->res, p->arg);
		free(p);
	}
	event_free(bus->wake);
	pthread_mutex_destroy(&bus->mu);
	free(bus->tls_ca);
	free(bus->tls_cert);
	free(bus->tls_key);
	free(bus->stream);
	free(bus->stream_subject);
	free(bus->queue_type);
	bus_free_creds(bus);
	free(bus);
}
