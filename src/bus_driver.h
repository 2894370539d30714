/*
 * bus_driver.h - what src/bus.c shares with the bus drivers (bus_nats.c,
 * bus_rabbitmq.c), and nothing else includes. bus.c owns the objects,
 * the hand-over of work from driver threads to the caller's loop, the
 * concurrency slots of consumers and every callback to the caller; a driver
 * only speaks to its broker and fills or posts these objects.
 *
 * Locking: bus->mu protects the hand-over queue, the consumers' slot counts,
 * their lists of live messages, and the list of unanswered publishes.
 */
#ifndef SAGAD_BUS_DRIVER_H
#define SAGAD_BUS_DRIVER_H

#include <sys/queue.h>

#include <pthread.h>

#include "bus.h"

enum bus_item_kind {
	BUS_IT_STATE,		/* a connection state change */
	BUS_IT_MSG,		/* a fetched message for its consumer */
	BUS_IT_PUB,		/* a publish got its answer */
	BUS_IT_NOTE,		/* a core notification for a listener */
	BUS_IT_EXITED,		/* a consumer's fetch thread has ended */
	BUS_IT_DRAINED,		/* a stopped consumer has nothing in flight */
	BUS_IT_WARN		/* a driver's warning, for the process's log */
};

/* Something a driver thread hands to the loop; embedded first in each. */
struct bus_item {
	TAILQ_ENTRY(bus_item)	 entry;
	enum bus_item_kind	 kind;
	int			 queued;
};
TAILQ_HEAD(bus_items, bus_item);

struct bus_state_item {
	struct bus_item		 item;
	enum bus_state		 state;
	char			 why[256];	/* the broker's reason, or "" */
};

struct bus_warn_item {
	struct bus_item		 item;
	char			 msg[384];
};

struct bus_msg {
	struct bus_item		 item;
	TAILQ_ENTRY(bus_msg)	 live;		/* in its consumer's list */
	struct bus_consumer	*c;
	const char		*subject;	/* owned by drv */
	const void		*data;
	size_t			 len;
	int			 delivered;
	int			 handed;	/* given to the callback */
	void			*drv;
};
TAILQ_HEAD(bus_msgs, bus_msg);

struct bus_consumer {
	LIST_ENTRY(bus_consumer) entry;
	struct bus		*bus;
	char			*durable;
	char			*filter;
	int			 concurrency;
	int			 max_ack_pending;
	int			 ack_wait_ms;
	int			 max_deliver;
	int			 fetch_wait_ms;
	int			 fetch_min;	/* free slots worth a fetch */
	bus_msg_cb		 cb;
	void			*arg;
	bus_drain_cb		 drain_cb;
	void			*drain_arg;

	pthread_t		 thread;
	int			 started;	/* thread runs; joined when 0 again */
	pthread_cond_t		 cv;		/* a slot freed, or stop */
	int			 inflight;	/* fetched, not finished (mu) */
	int			 stopping;	/* (mu) */
	int			 exited;	/* the loop saw the thread end */
	struct bus_msgs		 msgs;		/* live messages (mu) */
	struct bus_msg		**batch;	/* the fetch thread's buffer */
	struct bus_item		 exit_item;
	struct bus_item		 drain_item;
	void			*drv;
};

struct bus_pub {
	struct bus_item		 item;
	TAILQ_ENTRY(bus_pub)	 pending;	/* in bus->pubs until answered */
	int			 answered;
	bus_pub_cb		 cb;
	void			*arg;
	struct bus_pub_result	 res;
	char			 errbuf[160];
	void			*drv;		/* the driver's message, a key */
};
TAILQ_HEAD(bus_pubs, bus_pub);

struct bus_note {
	struct bus_item		 item;
	struct bus_listener	*l;
	char			*subject;
	size_t			 len;
	unsigned char		 data[];
};

struct bus_listener {
	LIST_ENTRY(bus_listener) entry;
	struct bus		*bus;
	char			*subject;
	bus_note_cb		 cb;
	void			*arg;
	void			*drv;
};

struct bus {
	const struct bus_driver	*drv;
	void			*drv_data;
	struct event_base	*base;
	struct event		*wake;
	pthread_mutex_t		 mu;
	struct bus_items	 items;		/* (mu) */
	struct bus_pubs		 pubs;		/* (mu) */
	enum bus_state		 state;		/* as the loop saw it */
	int			 closing;
	bus_state_cb		 state_cb;
	bus_warn_cb		 warn_cb;
	void			*state_arg;
	LIST_HEAD(, bus_consumer) consumers;
	LIST_HEAD(, bus_listener) listeners;

	char			*stream;
	char			*queue_type;	/* "quorum" or "classic" */
	int			 replicas;
	int			 timeout_ms;
	int			 publish_timeout_ms;
	int			 reconnect_wait_ms;
	int			 reconnect_max_ms;
	int			 dedupe_window_ms;
	int			 consumer_ttl_s;
	char			*stream_subject; /* "" unknown */
	char			*creds;		/* NATS: see bus_opts */
	char			*user;
	char			*password;	/* wiped at close */
	char			*password_file;
	char			 why[256];	/* of the last state change */
	int			 tls;		/* bus_opts' TLS (NATS) */
	char			*tls_ca, *tls_cert, *tls_key;
};

enum bus_finish { BUS_ACK, BUS_NAK, BUS_TERM, BUS_PROGRESS };

/*
 * A driver. Functions run on the loop thread unless said otherwise; fetch
 * runs on the consumer's own thread and may block up to wait_ms.
 */
struct bus_driver {
	const char	*scheme;		/* matched against the URL */
	int	(*init)(char *, size_t);
	void	(*fini)(void);
	int	(*open)(struct bus *, const char *url, const char *name,
		    char *, size_t);
	/* After consumers and listeners are gone: no driver thread remains. */
	void	(*close)(struct bus *);
	int	(*declare)(struct bus *, const char *const *, size_t,
		    char *, size_t);
	int	(*depth)(struct bus *, uint64_t *, char *, size_t);
	/* Every durable consumer of the stream; NULL: the driver cannot. */
	int	(*consumers)(struct bus *, bus_consumer_each *, void *,
		    char *, size_t);
	/* Messages a durable consumer has not finished (0 if it is unknown). */
	int	(*backlog)(struct bus *, const char *durable, const char *filter,
		    uint64_t *, char *, size_t);
	int	(*consumer_open)(struct bus_consumer *, char *, size_t);
	void	(*consumer_free)(struct bus_consumer *);
	/* Fills up to max messages; returns their count, or -1 on error. */
	int	(*fetch)(struct bus_consumer *, struct bus_msg **, int max,
		    int wait_ms);
	int	(*finish)(struct bus_msg *, enum bus_finish, int delay_ms);
	const char *(*header)(const struct bus_msg *, const char *);
	void	(*msg_free)(struct bus_msg *);
	int	(*publish)(struct bus *, struct bus_pub *, const char *,
		    const void *, size_t, const char *, char *, size_t);
	int	(*notify)(struct bus *, const char *, const void *, size_t,
		    char *, size_t);
	int	(*listen)(struct bus_listener *, char *, size_t);
	/* Returns when the driver will not call for this listener again. */
	void	(*unlisten)(struct bus_listener *);
};

extern const struct bus_driver bus_nats_driver;
extern const struct bus_driver bus_rabbitmq_driver;

/* For drivers, from any thread: hand an item to the loop. */
void	bus_post(struct bus *, struct bus_item *);
void	bus_post_state(struct bus *, enum bus_state);
/* The same with the reason the broker gave (an auth refusal...). */
void	bus_post_state_why(struct bus *, enum bus_state, const char *why);
/* Any thread: a publish got its answer; finds it by the driver's key. */
struct bus_pub *bus_pub_take(struct bus *, void *drv);
void	bus_post_note(struct bus_listener *, const char *, const void *,
	    size_t);
/* Any thread: a warning, logged by the process through its warn_cb. */
void	bus_post_warn(struct bus *, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
