/*
 * bus_rabbitmq_int.h - what the files of the RabbitMQ driver share, and
 * nothing else includes: bus_rabbitmq.c (the driver's functions, called
 * from the loop and bus.c's fetch threads), bus_rabbitmq_thread.c (the
 * connection thread: connecting, running commands, reconnecting),
 * bus_rabbitmq_topology.c (exchanges, queues, the retry ladder, consuming)
 * and bus_rabbitmq_recv.c (what the broker sends: confirms, deliveries,
 * returns). See bus_rabbitmq.c for how the driver works.
 *
 * Locking: rmq_bus.mu guards the fields marked (mu); those under "the
 * thread's own" belong to the connection thread while it runs (rmq_open
 * connects once before starting it, rmq_close frees them after joining it).
 */
#ifndef SAGAD_BUS_RABBITMQ_INT_H
#define SAGAD_BUS_RABBITMQ_INT_H

#include <sys/queue.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

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

/* bus_rabbitmq.c */
void		 bus_rmq_cmd_free(struct rmq_cmd *);

/* bus_rabbitmq_thread.c */
void		*bus_rmq_main(void *);
int		 bus_rmq_connect(struct rmq_bus *, char *, size_t);
void		 bus_rmq_drop(struct rmq_bus *, const char *);
void		 bus_rmq_reply_error(amqp_rpc_reply_t, const char *, char *,
		    size_t);
int		 bus_rmq_rpc_ok(struct rmq_bus *, const char *, char *, size_t);
/* err NULL: confirmed; refused: the broker said no (nothing stored). */
void		 bus_rmq_answer(struct rmq_bus *, struct bus_pub *,
		    const char *, int refused, uint64_t);
void		 bus_rmq_pend_free(struct rmq_pend *);

/* bus_rabbitmq_topology.c */
extern const int bus_rmq_ladder[];
int		 bus_rmq_ladder_index(int);
int		 bus_rmq_exchanges(struct rmq_bus *, char *, size_t);
int		 bus_rmq_retry_queue(struct rmq_bus *, int, char *, size_t);
int		 bus_rmq_start_consumer(struct rmq_bus *, struct rmq_consumer *,
		    char *, size_t);
int		 bus_rmq_start_listener(struct rmq_bus *, struct rmq_listener *,
		    char *, size_t);

/* bus_rabbitmq_recv.c */
int		 bus_rmq_read(struct rmq_bus *, char *, size_t);
void		 bus_rmq_expire(struct rmq_bus *);
int		 bus_rmq_tainted(struct rmq_bus *, const char *);
char		*bus_rmq_strndup(const void *, size_t);
void		 bus_rmq_rmsg_free(struct rmq_msg *);

#endif
