/*
 * store_int.h - what the files of the saga store share, and nothing else
 * includes: store.c (connections, requests, writes and reads), store_lua.c
 * (the scripts Redis runs) and store_watch.c (Watch: following a saga's
 * event stream). See store.c for how the store works.
 */
#ifndef SAGAD_STORE_INT_H
#define SAGAD_STORE_INT_H

#include <sys/queue.h>

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "store.h"
#include "util.h"

#define XREAD_COUNT	256	/* entries per stream per XREAD */

/*
 * The lease and List index keys are cut in this many buckets by a hash of
 * the saga id (store_bucket, and bucket() in the scripts), each bucket
 * with its own hash tag. Part of the layout: changing it strands the
 * entries of the buckets that go away.
 */
#define STORE_BUCKETS	8
#define WATCH_FLAG_MS	10000	/* a watch's mark on its saga lasts this */
#define WATCH_REFRESH_MS 3000	/* and is renewed (and read) this often */

enum {
	SCRIPT_WRITE, SCRIPT_RENEW, SCRIPT_CLAIM, SCRIPT_CANCEL, SCRIPT_LIST,
	SCRIPT_EXPIRE, SCRIPT_PODS, SCRIPT_DEFPUT, SCRIPT_DEFGET, SCRIPT_WATCH,
	NSCRIPTS
};
extern const char *const store_scripts[NSCRIPTS];

struct event;

/*
 * HELLO: connected, but not up until Redis answers PING; a server that is
 * still loading its data set accepts connections and answers -LOADING.
 */
enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_HELLO, CONN_UP };

enum req_kind {
	REQ_CREATE, REQ_UPDATE, REQ_GET, REQ_RENEW, REQ_CLAIM,
	REQ_WCHECK,	/* the watch script: the saga's events */
	REQ_XREAD, REQ_CLIENTID, REQ_UNBLOCK, REQ_LOAD, REQ_PING,
	REQ_BATCH,	/* carries REQ_CREATE and REQ_UPDATE requests */
	REQ_CANCEL, REQ_LIST, REQ_EXPIRE,
	REQ_WAIT,	/* WAIT after a batch (store_failover.c) */
	REQ_VERIFY,	/* did a retried write land before (ditto) */
	REQ_AUTH,	/* AUTH or SELECT before the PING of a new connection */
};

/*
 * Arguments already in the protocol's form ("$LEN\r\nDATA\r\n" each), so
 * that sending a command is one copy into the output buffer and building
 * one costs no allocation per argument.
 */
struct seg {
	char			*p;
	size_t			 len;
	size_t			 cap;
	int			 n;		/* arguments in it */
};

struct req;
TAILQ_HEAD(reqlist, req);

struct conn {
	struct store		*st;
	int			 watch;		/* the watcher connection */
	redisAsyncContext	*ac;
	enum conn_state		 state;
	struct reqlist		 inflight;	/* oldest first, as replies come */
	int64_t			 since;		/* mono ms of the last connect */
	int64_t			 retry_at;	/* mono ms of the next attempt */
	int64_t			 backoff;
	int			 killed;	/* we shut its socket down */
	long long		 client_id;	/* watch: for CLIENT UNBLOCK */
	int			 pinging;	/* HELLO: a PING is in flight */
	int			 refused;	/* this connection's setup was refused */
	int64_t			 ping_at;	/* HELLO: mono ms of the next */
};

struct req {
	TAILQ_ENTRY(req)	 entry;
	struct store		*st;
	struct conn		*conn;
	enum req_kind		 kind;
	int			 script;	/* SCRIPT_* or -1 */
	int			 load;		/* REQ_LOAD: which script */
	int64_t			 sent;		/* mono ms */
	int64_t			 timeout;	/* ms the reply may take */
	struct seg		 keys;		/* script: its KEYS */
	struct seg		 args;		/* the command, or ARGV */
	struct reqlist		 batch;		/* REQ_BATCH: its writes */
	int			 nbatch;
	union {
		store_saga_cb	*saga;
		store_rev_cb	*rev;
		store_ids_cb	*ids;
		store_list_cb	*list;
		store_count_cb	*count;
	}			 cb;
	void			*arg;
	struct store_watch	*w;
	enum store_result	 fail;		/* deferred failure */
	char			*failerr;
	/* store_failover.c */
	int64_t			 exp_rev;	/* write: the expected revision */
	size_t			 pb_off;	/* write: its pb within args */
	size_t			 pb_len;
	int			 again;		/* write: sent before, outcome
						   unknown */
	int64_t			 deadline;	/* write: retried until */
	struct req		*peer;		/* a batch's WAIT, and back */
	redisReply		*held;		/* batch: its reply, until WAIT */
	struct req		*orig;		/* REQ_VERIFY: the write */
};

enum watch_state { WATCH_CHECK, WATCH_FOLLOW, WATCH_FAIL };

struct store_watch {
	TAILQ_ENTRY(store_watch) entry;
	struct store		*st;
	enum watch_state	 state;
	char			*id;
	char			*key;		/* saga:{ID}:events */
	uint64_t		 last_ms;	/* last stream entry seen */
	uint64_t		 last_seq;
	int64_t			 seq;		/* last event delivered: its
						   write's rev << 16 | its
						   place in it; -1: none */
	int64_t			 fetched;	/* mono ms of the last read */
	int			 refetch;	/* woken during a read */
	store_event_cb		*cb;
	void			*arg;
	int			 cancelled;	/* by the caller */
	int			 ended;		/* last callback made */
	int			 busy;		/* a request points at it */
	enum store_result	 fail;
	char			 failerr[128];
};

TAILQ_HEAD(watchlist, store_watch);

struct store {
	struct event_base	*base;
	char			*host;
	int			 port;
	int			 saga_ttl;
	int			 completed_ttl;
	int			 events_max;
	int			 backoff_min;
	int			 backoff_max;
	int			 cmd_timeout;
	int			 max_watches;
	int			 block_ms;
	char			*username;	/* AUTH username password */
	char			*password;	/* NULL: no AUTH; never shown */
	int			 db;		/* SELECT, when not 0 */
	char			 refusal[SAGAD_ERRLEN]; /* the last one said */

	struct conn		 main;
	struct conn		 wconn;
	char			 sha[NSCRIPTS][41];

	struct event		*cron;
	struct event		*defer;		/* delivers deferred failures */
	struct reqlist		 deferred;
	struct event		*flush;		/* sends the queued writes */
	struct reqlist		 queued;	/* writes for the next batch */
	int			 nqueued;
	struct reqlist		 spare;		/* freed requests to reuse */
	int			 nspare;
	struct seg		 out;		/* the command being sent */

	struct watchlist	 watches;
	int			 wdepth;	/* inside watch callbacks */
	int			 wdirty;	/* the XREAD misses a stream */
	int			 xreading;	/* an XREAD is in flight */
	int			 unblocking;	/* a CLIENT UNBLOCK is */
	int			 closing;

	store_status_cb		*status_cb;
	void			*status_arg;

	/* store_failover.c: Sentinel, WAIT, writes sent again */
	char			**sentinels;	/* NULL-ended */
	int			 nsentinels;
	int			 scur;		/* the one asked first */
	char			*master_name;
	int			 min_acks;
	int			 ack_timeout;
	redisAsyncContext	*sub;		/* SUBSCRIBE +switch-master */
	int64_t			 sub_retry_at;
	struct reqlist		 retryq;	/* writes to send again */
	uint64_t		 failovers;	/* primary changes followed */
	int			 waits;		/* WAITs in flight on main */
	char			 down_said[SAGAD_ERRLEN]; /* "": up */
};


/* store.c: building and sending requests */
void		 store_seg_arg(struct seg *, const void *, size_t);
char		*store_seg_open(struct seg *, size_t);
void		 store_req_defer(struct req *, enum store_result, const char *);
void		 store_req_submit(struct req *);
void		 store_batch_add(struct req *);
const char	*store_enum_name(const ProtobufCEnumDescriptor *, int);
enum store_result store_error_result(const char *);

/* store_cmd.c: the replies of the calls */
void		 store_reply_get(struct req *, const redisReply *);
void		 store_reply_batch(struct req *, const redisReply *);
void		 store_reply_ids(struct req *, const redisReply *);
void		 store_reply_cancel(struct req *, const redisReply *);
void		 store_reply_list(struct req *, const redisReply *);

/* store.c */
struct req	*store_req_new(struct store *, struct conn *, enum req_kind);
void		 store_req_arg(struct req *, const void *, size_t);
void		 store_req_str(struct req *, const char *);
void		 store_req_int(struct req *, long long);
void		 store_req_free(struct req *);
int		 store_req_send(struct req *);
void		 store_req_fail(struct req *, enum store_result, const char *);
void		 store_conn_connect(struct conn *);
int		 store_state_terminal(int state);
unsigned	 store_bucket(const char *id);

/* store.c, for store_failover.c */
void		 store_conn_kill(struct conn *);
void		 store_batch_flush(struct store *);

/* store_failover.c */
int		 store_failover_init(struct store *, const struct store_params *,
		    char *, size_t);
void		 store_failover_free(struct store *);
int		 store_failover_on(const struct store *);
int		 store_sentinel_resolve(struct store *, char *, size_t);
void		 store_failover_cron(struct store *);
void		 store_failover_ready(struct store *);
int		 store_failover_error(struct conn *, const redisReply *);
void		 store_wait_send(struct req *);
void		 store_reply_wait(struct req *, const redisReply *);
int		 store_batch_held(struct req *, const redisReply *);
int		 store_batch_lost(struct req *, const char *);
int		 store_write_retried(struct req *, const redisReply *);
void		 store_reply_verify(struct req *, const redisReply *);
void		 store_failover_fail(struct req *, const char *);
void		 store_req_unlink(struct req *);

/* store_watch.c */
void		 store_reply_xread(struct store *, const redisReply *);
void		 store_reply_watch(struct req *, const redisReply *);
void		 store_watch_refresh(struct store *);
void		 store_watch_kick(struct store *);
void		 store_watch_end(struct store_watch *, enum store_result,
		    const char *);
void		 store_watch_sweep(struct store *);
int		 store_watch_live(const struct store_watch *);
void		 store_watch_free(struct store_watch *);
void		 store_watches_fail(struct store *, enum watch_state,
		    enum store_result, const char *);

#endif
