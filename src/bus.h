/*
 * bus.h - the message bus: durable work queues consumed with a concurrency
 * bound, deduplicated publishing with a durable-acceptance callback, and
 * fire-and-forget notifications between pods. It is one small interface with
 * drivers behind it, picked by the URL's scheme: NATS JetStream ("nats://",
 * src/bus_nats.c) and RabbitMQ ("amqp://", src/bus_rabbitmq.c). Nothing
 * outside the drivers talks to a broker library.
 *
 * Threads: broker libraries run their own threads. Every callback of this
 * interface runs on the thread that runs the caller's libevent loop, and
 * every function here must be called from that thread, so that the caller
 * keeps nghttp2 and hiredis objects on one thread. The hand-over uses
 * event_active() from other threads, which needs libevent's pthread support:
 * call bus_init() once, BEFORE event_base_new() creates the loop's base.
 *
 * Not here: what messages mean (the saga envelope), retries of business
 * logic, logging. Errors come back in a caller-owned buffer (SAGAD_ERRLEN)
 * or in a callback's argument.
 */
#ifndef SAGAD_BUS_H
#define SAGAD_BUS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bus;
struct bus_consumer;
struct bus_listener;
struct bus_msg;

/* What the connection to the broker is doing, as the loop last heard. */
enum bus_state {
	BUS_DISCONNECTED = 0,	/* not connected: reconnecting in the background */
	BUS_CONNECTED,		/* connected for the first time */
	BUS_RECONNECTED,	/* connected again after a loss */
	BUS_CLOSED		/* given up for good (bad credentials...) */
};

typedef void	(*bus_state_cb)(struct bus *, enum bus_state, void *arg);
/* Something the broker did that the process should log (on the loop). */
typedef void	(*bus_warn_cb)(struct bus *, const char *msg, void *arg);

struct bus_opts {
	const char	*url;		/* "nats://host:port", a comma list allowed,
					   or "amqp://user:pass@host:port/vhost" */
	const char	*stream;	/* the durable stream of work, "SAGA";
					   RabbitMQ: its exchanges' prefix */
	const char	*queue_type;	/* RabbitMQ: "quorum" (NULL) or "classic" */
	int		 replicas;	/* copies of the stream; 0: 1 */
	const char	*name;		/* how the broker names this client; may be NULL */
	int		 timeout_ms;	/* connect and management calls; 0: 5000 */
	int		 publish_timeout_ms; /* unconfirmed publish fails after; 0: 5000 */
	int		 reconnect_wait_ms; /* first reconnect delay; 0: 100 */
	int		 reconnect_max_ms;  /* the delay doubles up to this; 0: 2000 */
	int		 dedupe_window_ms;  /* same message id dropped within; 0: 120000 */
	int		 consumer_ttl_s;    /* NATS: a durable consumer nobody reads
					       this long is deleted; 0: never */
	/* NATS: the stream's subject, for a worker that finds the stream gone
	   to declare it again; "": it does not. */
	char		 stream_subject[128];
	/* NATS over TLS (issue 15): also with tls:// URLs. */
	int		 tls;		/* 1: TLS, the server's certificate verified */
	const char	*tls_ca;	/* PEM CAs; NULL: the system's */
	const char	*tls_cert;	/* with tls_key: a client certificate */
	const char	*tls_key;
	bus_state_cb	 state_cb;	/* may be NULL */
	bus_warn_cb	 warn_cb;	/* may be NULL; given state_arg too */
	void		*state_arg;
	/* NATS credentials (issue 15); never logged. RabbitMQ's are in url. */
	const char	*creds;		/* a .creds file: JWT and nkey seed */
	const char	*user;
	const char	*password;
	const char	*password_file;	/* read at bus_open, if no password */
};

/*
 * Once per process, before event_base_new(): enables libevent's pthread
 * locking and initializes the broker libraries. Returns 0 or -1 with err.
 */
int		 bus_init(char *err, size_t errlen);

/*
 * At exit, after every bus_close: stops the broker libraries' own threads
 * and frees their memory, so that a process ends clean under valgrind.
 */
void		 bus_fini(void);

/*
 * Connects. A broker that is down is not an error: the bus keeps retrying
 * forever with a doubling delay and reports BUS_CONNECTED through state_cb
 * when it gets there. Returns NULL with err only for bad options.
 */
struct bus	*bus_open(struct event_base *, const struct bus_opts *,
		    char *err, size_t errlen);

/*
 * Stops every consumer and listener, joins the driver's threads and frees
 * everything. Messages still held by handlers are released unacknowledged
 * (the broker redelivers them) and their pointers become invalid; publishes
 * without an answer get their callback with an error first. Not from inside
 * a bus callback.
 */
void		 bus_close(struct bus *);

enum bus_state	 bus_state(const struct bus *);
/* Why the last state change happened, as the broker said ("" if unsaid). */
const char	*bus_state_why(const struct bus *);
int		 bus_is_connected(const struct bus *);

/*
 * Creates or updates the stream that holds the work subjects: work-queue
 * retention (a message is gone once acked), file storage, opts->replicas
 * copies and the dedupe window. Blocks up to timeout_ms: call it at start.
 */
int		 bus_declare_stream(struct bus *, const char *const *subjects,
		    size_t nsubjects, char *err, size_t errlen);

/*
 * How many messages the durable consumer (of that filter) has not finished:
 * waiting, or handed out and not acked (blocking: a master's cron asks it of
 * an adopted or gone pod's topics). A consumer that does not exist has none;
 * messages handed out that the stream no longer stores are not counted
 * (what a nats-server killed -9 can leave in a consumer's state).
 */
int		 bus_consumer_backlog(struct bus *, const char *durable,
		    const char *filter, uint64_t *msgs, char *err,
		    size_t errlen);

/*
 * Calls each for every durable consumer of the stream, with its filter and
 * what it has not finished (blocking: a master asks it once at start, to
 * find topics its config no longer has); then, with an empty durable, for
 * each subject that stores messages no consumer reads (its consumer gone),
 * with the filter that would read it. 0 (and no call when the driver
 * cannot list them: RabbitMQ), or -1 with err.
 */
typedef void	 bus_consumer_each(const char *durable, const char *filter,
		    uint64_t backlog, void *arg);
int		 bus_consumers(struct bus *, bus_consumer_each *, void *arg,
		    char *err, size_t errlen);

/* How many messages the stream holds now (blocking, for tests and stats). */
int		 bus_stream_depth(struct bus *, uint64_t *msgs,
		    char *err, size_t errlen);

/*
 * Consuming. A consumer is durable (it outlives the process, by name) and
 * reads one filter subject; filters of consumers on one stream must not
 * overlap. At most `concurrency` messages are handed to the callback and not
 * yet finished; each one must be finished by exactly one of bus_ack,
 * bus_nak or bus_term, which frees it.
 */
typedef void	(*bus_msg_cb)(struct bus_msg *, void *arg);
typedef void	(*bus_drain_cb)(struct bus_consumer *, void *arg);

struct bus_consumer_opts {
	const char	*durable;	/* the consumer's name */
	const char	*filter;	/* its subject, e.g. "saga.work.async.F.N.do" */
	int		 concurrency;	/* unfinished messages in this process; >= 1 */
	int		 max_ack_pending; /* over all processes; 0: concurrency */
	int		 ack_wait_ms;	/* unfinished this long: redelivered; 0: 30000 */
	int		 max_deliver;	/* deliveries before giving up; 0: unlimited */
	int		 fetch_wait_ms;	/* one pull's wait; bounds stop time; 0: 500 */
};

struct bus_consumer *bus_consume(struct bus *, const struct bus_consumer_opts *,
		    bus_msg_cb, void *arg, char *err, size_t errlen);

/*
 * Stops fetching; messages fetched but not yet handed over go back to the
 * broker; messages with the handler are waited for. Then drain_cb runs on
 * the loop and the consumer is freed after it returns. The durable consumer
 * stays on the broker.
 */
void		 bus_consumer_stop(struct bus_consumer *, bus_drain_cb,
		    void *arg);

/* Messages handed to the callback and not yet finished. */
int		 bus_consumer_inflight(const struct bus_consumer *);

const char	*bus_msg_subject(const struct bus_msg *);
const void	*bus_msg_data(const struct bus_msg *, size_t *len);
const char	*bus_msg_header(const struct bus_msg *, const char *key);
const char	*bus_msg_id(const struct bus_msg *);	/* its dedupe id or NULL */
int		 bus_msg_delivered(const struct bus_msg *); /* 1 the first time */
struct bus_consumer *bus_msg_consumer(const struct bus_msg *);

/* Done: the broker forgets it. -1: the ack may be lost (then redelivered). */
int		 bus_ack(struct bus_msg *);
/* Failed for now: deliver it again after delay_ms (0: at once). */
int		 bus_nak(struct bus_msg *, int delay_ms);
/* Never deliver it again. */
int		 bus_term(struct bus_msg *);
/* Still working on it: restarts the ack_wait clock. Does not finish it. */
int		 bus_in_progress(struct bus_msg *);

/*
 * Publishing into the stream. The message carries `msg_id` (may be NULL) as
 * its dedupe id: a second publish with the same id inside the dedupe window
 * is accepted but not stored again, and says so in `duplicate`. cb runs
 * exactly once on the loop: when the broker has stored the message (error
 * NULL) or when it failed or was not confirmed in publish_timeout_ms
 * (error set; it may still have been stored, so republish with the same
 * id). Returns -1 with err, and no callback, if it could not be sent at all.
 */
struct bus_pub_result {
	const char	*error;		/* NULL: durably accepted */
	int		 refused;	/* with error: the broker said no, so it
					   is not stored; without: unknown
					   (a timeout, a lost connection) */
	int		 duplicate;	/* already stored under this msg_id */
	uint64_t	 seq;		/* its position in the stream */
};
typedef void	(*bus_pub_cb)(struct bus *, const struct bus_pub_result *,
		    void *arg);

int		 bus_publish(struct bus *, const char *subject, const void *data,
		    size_t len, const char *msg_id, bus_pub_cb cb, void *arg,
		    char *err, size_t errlen);

/*
 * Notifications outside the stream: fire and forget, lost when nobody
 * listens (e.g. saga.done.<pod_id>). Listener callbacks run on the loop.
 */
typedef void	(*bus_note_cb)(struct bus_listener *, const char *subject,
		    const void *data, size_t len, void *arg);

int		 bus_notify(struct bus *, const char *subject, const void *data,
		    size_t len, char *err, size_t errlen);
struct bus_listener *bus_listen(struct bus *, const char *subject,
		    bus_note_cb, void *arg, char *err, size_t errlen);
void		 bus_listener_close(struct bus_listener *);

#endif
