/*
 * orch_int.h - what the files of the Orchestrator service share, and
 * nothing outside them includes. The service is split by concern, each
 * file one role:
 *
 *   orch.c         the gRPC handlers of Run and ListFlows, the checks of a
 *                  request, the object's life and its cron
 *   orch_sync.c    the sync engine: a saga driven on the master's loop
 *   orch_admit.c   per-service admission (max_inflight, max_queue)
 *   orch_launch.c  async and throttling Runs: the launch on the bus, and
 *                  the holds of throttling calls until their saga ends
 *   orch_follow.c  callers of sagas run elsewhere (joins), Get and Watch
 *   orch_sweep.c   leases of the sagas in flight, and the sweeper that
 *                  claims those of a master that died
 *   orch_pods.c    the pods' registry, and the adoption of a dead pod's
 *                  throttling work
 *
 * The rules of a saga are saga.c's and the moves on one are driver.c's.
 */
#ifndef SAGAD_ORCH_INT_H
#define SAGAD_ORCH_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "driver.h"
#include "idtable.h"
#include "orch.h"
#include "saga/v1/saga.pb-c.h"
#include "store.h"
#include "work.h"

struct bus;
struct bus_listener;
struct event;
struct grpc_call;
struct grpc_channel;
struct grpc_client_call;

#define ORCH_ID_MAX		128	/* longest saga id a caller may give */
#define ORCH_SWEEP_MS		1000	/* sweeper period */
#define ORCH_SWEEP_BATCH	64	/* sagas claimed at most per sweep */
/*
 * An async or throttling saga's launch lease: from its create to its first
 * result. Long enough for its first work to wait its turn in a queue;
 * when it runs out with the saga still PENDING, a sweeper queues the first
 * work again (the dedupe id and the revision checks make that harmless if
 * the first one was there after all).
 */
#define ORCH_LAUNCH_LEASE_MS(cfg)	(6 * (cfg)->redis.lease_ms)
#define ORCH_RETRY_MIN_MS	50	/* first retry of a failed write */
#define ORCH_RETRY_MAX_MS	2000
#define ORCH_POLL_MS		1000	/* held sagas looked up in the store */
#define ORCH_POLL_BATCH		512	/* lookups at most per poll */
#define ORCH_URL_MAX		2048	/* longest callback_url */

struct run;
TAILQ_HEAD(runq, run);

/* What the master knows of one upstream service, across reloads. */
struct svc {
	char			*name;
	int			 max_inflight;
	int			 max_queue;
	int			 inflight;
	int			 queued;
	int			 starting;	/* admitted, first call not made */
	struct grpc_channel	*ch;	/* NULL: its TLS files did not load */
	char			 host[256];
	int			 port;
	struct tls		*tls;		/* from o->tls; NULL: h2c */
	char			*tls_sn;	/* its services.NAME.tls.server_name */
	char			 tls_err[SAGAD_ERRLEN]; /* why ch is NULL */
	struct runq		 waiting;
	struct svc		*next;
};

/* A caller waiting for a saga's end: its Run call. */
struct waiter {
	struct grpc_call	*call;
	struct run		*run;
	struct waiter		*next;
};

/* A sync saga this master drives. */
struct run {
	struct orch		*o;
	struct driver		 d;
	struct waiter		*waiters;
	struct svc		*svc;		/* queued for a slot of this one */
	struct svc		*slot;		/* holds a slot of this one */
	struct svc		*first;		/* counted in its starting */
	struct grpc_client_call	*call;
	struct event		*timer;
	void			(*timer_fn)(struct run *);
	void			(*then)(struct run *);	/* after a write */
	int			 retry_ms;
	int			 store_busy;	/* a store call is pending */
	int			 creating;	/* store_create not answered */
	int			 ended;
	int			 lost;		/* another master owns it now */
	char			*cancel;	/* a Cancel waiting for a write */
	struct idtable_entry	 ent;		/* o->runs_by_id */
	TAILQ_ENTRY(run)	 qlink;		/* svc->waiting */
	TAILQ_ENTRY(run)	 all;
};

/* A caller of Run or Get for a saga another process is running. */
struct join {
	struct orch		*o;
	struct grpc_call	*call;
	struct store_watch	*watch;
	char			*id;
	int			 getting;
};

/* A caller of Run held until its throttling saga ends. */
struct holder {
	struct grpc_call	*call;
	struct hold		*h;
	struct holder		*next;
};

/* Sagas of one flow this master holds calls for: what max_queue bounds. */
struct flowq {
	char			*name;
	size_t			 held;
	struct flowq		*next;
};

/*
 * A throttling saga this master holds calls for until it ends: the end is
 * heard on saga.done.<pod_id>, or found by the poll of the store that
 * catches notices lost while the bus was away. It stays while its saga
 * runs, callers or not, since it counts against its flow's max_queue.
 */
struct hold {
	struct orch		*o;
	char			*id;
	struct flowq		*fq;
	struct holder		*callers;
	int			 launching;	/* launches not done with it */
	int			 getting;	/* a store_get is pending */
	struct idtable_entry	 ent;		/* o->holds_by_id */
	TAILQ_ENTRY(hold)	 all;
};

/*
 * An async or throttling Run from its first write to its answer: create
 * the saga (PENDING), publish its first work and wait for the broker's
 * acknowledgement. Async callers are answered then; throttling callers
 * wait in the saga's hold.
 */
struct launch {
	struct orch		*o;
	struct grpc_call	*call;		/* async: NULL once gone */
	struct hold		*h;		/* throttling */
	struct driver		 d;
	char			*why;		/* why it was not queued */
	int			 reopen;	/* the record ended: run again */
	struct saga		*failed;	/* Retry: the saga as it was */
	TAILQ_ENTRY(launch)	 all;
};

/*
 * A warning that an outage repeats for every saga: the first of each second
 * is logged as a warning (with how many were held back since), the rest at
 * debug level (orch_burst_level).
 */
struct orch_burst {
	int64_t		 last_ms;
	unsigned	 held;
};

/*
 * A first work the bus did not confirm (orch_launch.c): published again
 * with its dedupe id, with a growing delay, a few times, while this master
 * runs; the sweeper's requeue is the backstop.
 */
struct unconfirmed {
	TAILQ_ENTRY(unconfirmed) all;
	struct orch		*o;
	char			*subject;
	char			*msg_id;
	uint8_t			*buf;
	size_t			 len;
	int			 tries;
	int			 busy;		/* a publish in flight */
	int64_t			 next_ms;	/* monotonic */
};

#define ORCH_REPUBLISH_TRIES	6
#define ORCH_REPUBLISH_MAX	10000	/* kept at most; then the sweeper's */

/* A dead pod this master adopted (orch_pods.c). */
struct orch_adopted {
	char		*pod;
	char		**topics;	/* "Flow/Node@POD" */
	int		*conc;		/* each one's concurrency */
	size_t		 ntopics;
	int		 empty;		/* backlog checks found nothing, in a row */
};

/* A topic a reload removed, read until its queued work is done. */
struct orch_linger {
	char		*name;		/* "Flow/Node~MODE" */
	char		 topic[2 * CONFIG_NAME_MAX + 2];	/* "Flow/Node" */
	char		 durable[WORK_SUBJECT_MAX];
	char		 filter[WORK_SUBJECT_MAX];
	int		 concurrency;
	int		 empty;
};

#define ORCH_POD_SEP	'@'	/* a topic of another pod: supervisor.h */
#define ORCH_LINGER_SEP	'~'	/* a topic gone from the config */

struct orch {
	struct event_base	*base;
	struct config		*cfg;
	struct defs		*defs;		/* flow definitions by version */
	struct grpc_server	*srv;
	struct grpc_client	*client;
	struct store		*store;
	char			*owner;
	struct svc		*svcs;
	struct tls_cache	*tls;		/* the services' TLS contexts */
	struct idtable		 runs_by_id;
	TAILQ_HEAD(, run)	 runs;
	uint64_t		 rng;
	int			 draining;
	int			 closing;
	int64_t			 last_renew_ms;
	int64_t			 last_sweep_ms;
	int			 sweeping;
	int			 renewing;
	int			 expiring;	/* the index expiry runs */
	struct bus		*bus;
	struct bus_listener	*done_l;
	struct bus_listener	*cancel_l;	/* saga.cancel */
	char			*done_subject;
	char			*cancel_subject;	/* <prefix>.cancel */
	struct idtable		 holds_by_id;
	size_t			 nholders;	/* callers in all holds */
	TAILQ_HEAD(, hold)	 holds;
	struct flowq		*flowqs;
	TAILQ_HEAD(, launch)	 launches;
	size_t			 nlaunches;
	int64_t			 last_poll_ms;
	int64_t			 drain_ms;	/* when orch_drain ran */
	int			 listen_failed;	/* logged once */
	struct orch_adopted	*adopted;	/* dead pods whose work runs here */
	size_t			 nadopted;
	struct orch_linger	*lingers;	/* topics gone, still read */
	int			 orphans_scanned; /* the stream's, at start */
	size_t			 nlingers;
	char			**releasing;	/* adoptions over, to let go */
	size_t			 nreleasing;
	size_t			 releasing_sent; /* the first ones, in the beat */
	char			**gone;		/* pods whose adoption ended */
	size_t			 ngone;
	size_t			 gone_next;	/* the next one to look at */
	char			**reclaim;	/* gone pods with work again */
	size_t			 nreclaim;
	size_t			 reclaim_sent;	/* the first ones, in the beat */
	int64_t			 last_gone_check_ms;
	unsigned		 adopt_gen;	/* bumped when adopted changes */
	int			 pods_busy;
	int64_t			 last_pods_ms;
	int64_t			 last_adopt_check_ms;
	struct orch_burst	 unconfirmed;	/* launches the bus left unknown */
	TAILQ_HEAD(, unconfirmed) republish;	/* their work, sent again */
	size_t			 nrepublish;
	struct orch_burst	 requeued;	/* launch leases run out */
	struct orch_stats	 st;
	util_log_fn		 log;
	void			*log_arg;
};

void	 orch_log(struct orch *, enum util_level, const char *id,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* UTIL_WARN once a second, else UTIL_DEBUG; *held: the warnings held back. */
enum util_level orch_burst_level(struct orch_burst *, unsigned *held);

/*
 * The config and flow to drive a saga read back from the store with: the
 * definition it started with (flowdefs.h). NULL while that is being
 * fetched: the caller gives up for now (a sweep or the operator tries
 * again). A definition the store does not have is the running config's
 * flow (or none): the saga is one whose flow changed.
 */
struct config	*orch_saga_config(struct orch *, const Saga__V1__Saga *,
		    const struct config_flow **);

/* A saga id from a request: 1, or 0 with a sentence naming field. */
int	 orch_valid_id(const char *field, const char *id, char *err,
	    size_t errlen);

/*
 * A Run of a known id: 1 if it asked for the flow the saga runs (it joins
 * the saga), or 0 with the sentence of its ALREADY_EXISTS.
 */
int	 orch_same_flow(const char *id, const char *asked, const char *runs,
	    char *err, size_t errlen);

/* The Run's context into a new saga. */
void	 orch_context_load(struct saga *, const Saga__V1__RunRequest *);

/* orch_admit.c */
struct svc *admit_svc(struct orch *, const struct config_service *);
void	 admit_configure(struct orch *);
int	 admit_run(struct orch *, const struct config_flow *, char *err,
	    size_t errlen);
void	 admit_release(struct svc *);
void	 admit_free(struct orch *);

/* orch_sync.c */
struct run *sync_find(struct orch *, const char *id);
void	 sync_wait(struct run *, struct grpc_call *);
void	 sync_start(struct orch *, struct grpc_call *,
	    const struct config_flow *, const char *id,
	    const Saga__V1__RunRequest *);
void	 sync_recover(struct orch *, struct store_saga *);
void	 sync_call(struct run *);
void	 sync_cancel(struct orch *, const char *id, const char *reason);
int	 sync_retry(struct orch *, struct grpc_call *, struct store_saga *,
	    char *err, size_t errlen);
void	 sync_close(struct orch *);
void	 sync_free(struct orch *);

/* orch_pods.c */
void	 pods_cron(struct orch *, int64_t now_ms);
void	 pods_reload(struct orch *, const struct config *old,
	    const struct config *cfg);
void	 pods_free(struct orch *);

/* orch_launch.c */
struct hold *launch_find_hold(struct orch *, const char *id);
void	 launch_wait(struct hold *, struct grpc_call *);
void	 launch_start(struct orch *, struct grpc_call *,
	    const struct config_flow *, enum saga_mode, const char *id,
	    const Saga__V1__RunRequest *);
void	 launch_cron(struct orch *, int64_t now_ms);
void	 launch_give_up(struct orch *);
void	 launch_close(struct orch *);
void	 launch_free_all(struct orch *);

/* orch_follow.c */
void	 follow_start(struct orch *, struct grpc_call *, const char *id);
void	 follow_get(struct grpc_call *, void *orch);
void	 follow_watch(struct grpc_call *, void *orch);

/* orch_operate.c */
void	 operate_list(struct grpc_call *, void *orch);
void	 operate_cancel(struct grpc_call *, void *orch);
void	 operate_retry(struct grpc_call *, void *orch);
void	 operate_resolve(struct grpc_call *, void *orch);
void	 operate_cancel_heard(struct bus_listener *, const char *subject,
	    const void *data, size_t len, void *orch);

/* orch_launch.c (async and throttling) */
void	 launch_retry(struct orch *, struct grpc_call *, struct store_saga *);
void	 launch_requeue(struct orch *, struct store_saga *);

/* orch_sweep.c */
void	 sweep_cron(struct orch *, int64_t now_ms);

#endif
