/*
 * store.h - the saga store: sagas, their event streams and their leases in
 * Redis, spoken to asynchronously (hiredis on the caller's libevent loop).
 *
 * It is what the saga engine builds on; it knows nothing of flows, steps or
 * gRPC. Every state change is one compare-and-set on the saga's revision done
 * by a Lua script inside Redis, so two writers never both advance one saga,
 * and the change, its events, the lease and the expiry of an ended saga are
 * written together or not at all.
 *
 * Rules of use:
 * - Everything runs on the loop thread of the event_base given to store_new.
 * - Every call that takes a callback calls it exactly once, and never from
 *   inside the call itself (a failure found at once is delivered from the
 *   loop). Watches call theirs once per event and end with one last call.
 * - While Redis is unreachable calls fail at once with STORE_UNAVAILABLE; the
 *   store reconnects by itself with exponential backoff.
 * - store_free() runs the callbacks still pending with STORE_UNAVAILABLE; it
 *   must not be called from inside a store callback.
 * - The store keeps one persistent timer on the base (timeouts, reconnects)
 *   until store_free(), so the loop does not run out of events while it lives.
 * - Creates and updates issued during one turn of the loop reach Redis
 *   together, as one call of the write script (at most 64 a call), once
 *   the turn is over. Each keeps its own revision check, its own result and
 *   its own callback; a lost connection fails each of them once.
 * - With sentinels or min_replicas_ack (store_failover.c), a write whose
 *   outcome a lost connection or a short WAIT left unknown is not failed
 *   at once: it is sent again, under the same expected revision, until it
 *   is settled or twice cmd_timeout has passed (then STORE_UNAVAILABLE).
 *   Its callback still runs exactly once, and STORE_OK means the replicas
 *   asked for have it.
 * - Recording a step as started before calling its action is an ordinary
 *   store_update: the engine sets steps[i] to RUNNING, bumps its attempts and
 *   passes the matching SagaEvent; the revision check makes it a claim too.
 *
 * Redis layout (store_lua.c has it whole, the README says why): the hash
 * saga:{ID} holds the saga, its packed record and its events, in fields of
 * at most 64 bytes; the zsets saga:leases:{bN} (member saga id, score lease
 * expiry in ms of the Redis clock) and the List index saga:idx:{bN}:... are
 * cut in STORE_BUCKETS buckets by a hash of the id; saga:{ID}:w and the
 * stream saga:{ID}:events live only while a Watch follows the saga. Lease
 * times come from Redis' own clock so that masters with skewed clocks
 * agree on expiry. Sagas written by the previous layout are read and
 * finished: their first write converts them.
 */
#ifndef SAGAD_STORE_H
#define SAGAD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "saga/v1/saga.pb-c.h"

struct event_base;
struct store;
struct store_watch;

enum store_result {
	STORE_OK = 0,
	STORE_EXISTS,		/* create: a saga with that id is there */
	STORE_NOT_FOUND,	/* no such saga (never created, or expired) */
	STORE_CONFLICT,		/* the expected revision is not the current */
	STORE_UNAVAILABLE,	/* Redis is down or the call timed out */
	STORE_BUSY,		/* a bound was hit (too many watches) */
	STORE_UNCHANGED,	/* cancel: the saga compensates already */
	STORE_ENDED,		/* cancel: the saga has ended */
	STORE_ERROR,		/* anything else; the error string says what */
};

#define STORE_ID_MAX	256	/* longest saga id the store accepts */

struct store_params {
	const char	*host;
	int		 port;
	int		 saga_ttl;	/* s an ended saga is kept; <= 0: forever */
	int		 completed_ttl;	/* s a COMPLETED one is; 0: saga_ttl */
	int		 events_max;	/* writes whose events a saga keeps at
					   most (the latest); 0: 256 */
	int		 backoff_min_ms;	/* first reconnect delay; 0: 100 */
	int		 backoff_max_ms;	/* longest reconnect delay; 0: 5000 */
	int		 cmd_timeout_ms;	/* a reply later than this drops the
					   connection; 0: 5000 */
	int		 max_watches;	/* open watches at most; 0: 1024 */
	int		 watch_block_ms;	/* XREAD BLOCK of the watcher; 0: 2000 */
	/*
	 * Redis behind Sentinel (store_failover.c): with sentinels, host and
	 * port are only the first guess; the primary named master_name is
	 * asked of them at every connect.
	 */
	const char *const *sentinels;	/* "host:port", NULL-ended; NULL: none */
	const char	*master_name;	/* NULL: "sagad" */
	int		 min_replicas_ack; /* a write counts once WAIT says this
					   many replicas have it; 0: no WAIT */
	int		 ack_timeout_ms;	/* WAIT's timeout; 0: 200 */
	/*
	 * Sent on every (re)connection, the watcher's too, before the PING
	 * that brings it up: AUTH [username] password, then SELECT db. A
	 * refusal reaches the status callback once per change of reason,
	 * and never holds the password.
	 */
	const char	*username;	/* an ACL user; NULL: "default" */
	const char	*password;	/* NULL: no AUTH */
	const char	*password_file;	/* read at store_new, if no password */
	int		 db;
};

/*
 * A saga as stored. Valid only during the callback that hands it over; the
 * callback may keep saga by setting the field to NULL and later free it with
 * saga__v1__saga__free_unpacked(saga, NULL).
 */
struct store_saga {
	Saga__V1__Saga	*saga;		/* decoded from the hash's pb */
	int64_t		 rev;		/* pass back to store_update */
	int		 step;		/* current step index */
	int		 compensate;	/* the step's pending call is its undo */
	int		 attempt;	/* calls of that phase made so far */
	const char	*pod;		/* "" when not set */
	const char	*owner;		/* holder of the lease, "" if none */
	const char	*callback;	/* callback URL, "" if none */
	const char	*cancel;	/* an operator's cancel reason, "" if
					   none (see store_cancel) */
	int		 round;		/* Retry rounds (0: never retried) */
};

/*
 * One write: the whole new saga plus what goes with it. The saga's state
 * decides the rest: a terminal state (COMPLETED, COMPENSATED, FAILED,
 * RESOLVED) drops the lease and sets the expiry: completed_ttl (or
 * saga_ttl) for COMPLETED, saga_ttl for the others, none for FAILED.
 */
struct store_write {
	const Saga__V1__Saga		*saga;	/* id, flow, state... required */
	int64_t				 rev;	/* expected revision (update) */
	int				 step;	/* current step index */
	int				 compensate; /* step's phase: undo */
	int				 attempt; /* calls made in that phase */
	const char			*pod;	/* NULL: unchanged */
	const char			*owner;	/* NULL: unchanged */
	const char			*callback; /* NULL: unchanged */
	int				 lease_ms; /* >0: lease until Redis now +
						     lease_ms; 0: unchanged;
						     <0: drop the lease */
	Saga__V1__SagaEvent *const	*events; /* appended to its events */
	size_t				 nevents;
	int				 round;	/* >0: Retry rounds so far;
						   0: unchanged */
	int				 reopen; /* an ended saga runs again:
						    its expiry and its old
						    events are dropped */
};

/* err is NULL on STORE_OK and a sentence otherwise. */
typedef void	store_saga_cb(enum store_result, struct store_saga *,
		    const char *err, void *arg);
/*
 * An update's answer. cancel is NULL, or the reason of an operator's Cancel
 * when the saga, as written, is still PENDING or RUNNING: the driver must
 * start no further action and compensate instead.
 */
typedef void	store_rev_cb(enum store_result, int64_t rev, const char *cancel,
		    const char *err, void *arg);
typedef void	store_ids_cb(enum store_result, char *const *ids, size_t n,
		    const char *err, void *arg);
/*
 * A watch's callback: once per event with STORE_OK (ev valid during the call
 * only; final set on the saga's terminal event, which ends the watch), or
 * once with another result and ev NULL, which ends the watch too.
 */
typedef void	store_event_cb(enum store_result, const Saga__V1__SagaEvent *ev,
		    int final, const char *err, void *arg);
typedef void	store_status_cb(int up, const char *why, void *arg);

/* Returns NULL with err filled when params are unusable. Connects at once. */
struct store	*store_new(struct event_base *, const struct store_params *,
		    char *err, size_t errlen);
void		 store_free(struct store *);
/*
 * At start, blocking up to timeout_ms: connects once with p's credentials
 * and says whether Redis refuses them (wrong password, unknown user, a db
 * out of range, a password missing): -1 with the reason in err. Redis
 * not reachable is 0 (store_new keeps trying).
 */
int		 store_probe(const struct store_params *, int timeout_ms,
		    char *err, size_t errlen);

/* Called on every change between connected and not. */
void		 store_set_status_cb(struct store *, store_status_cb *, void *);
int		 store_is_up(const struct store *);
const char	*store_result_name(enum store_result);

/*
 * Creates the saga if its id is unknown: STORE_OK with rec->rev == 1 and
 * rec->saga NULL; else STORE_EXISTS with the stored saga. w->rev is ignored.
 */
void	 store_create(struct store *, const struct store_write *,
	    store_saga_cb *, void *);
/*
 * Replaces the saga if its revision is still w->rev: STORE_OK with the new
 * revision, STORE_CONFLICT with the current one, or STORE_NOT_FOUND.
 */
void	 store_update(struct store *, const struct store_write *,
	    store_rev_cb *, void *);
/* STORE_OK with the saga, or STORE_NOT_FOUND. */
void	 store_get(struct store *, const char *id, store_saga_cb *, void *);

/*
 * Extends the leases of ids held by owner to Redis now + lease_ms. Hands the
 * ids it could not renew (claimed by another owner, ended or gone) to cb.
 */
void	 store_lease_renew(struct store *, const char *owner,
	    const char *const *ids, size_t nids, int lease_ms,
	    store_ids_cb *, void *);
/*
 * Atomically takes up to max sagas whose lease expired and hands their ids
 * to cb; no two claimers ever get the same saga for one expiry. A sync saga
 * gets claimer as its owner, a lease of lease_ms and a revision bump (so
 * the old owner's next update conflicts). An async or throttling saga still
 * PENDING (its first work may never have been queued) gets claimer and a
 * lease of launch_lease_ms, no bump; one that moved on only leaves the set.
 */
void	 store_lease_claim(struct store *, const char *claimer, int max,
	    int lease_ms, int launch_lease_ms, store_ids_cb *, void *);

/*
 * The pods' registry, saga:pods (pod id -> lease expiry), and the pods gone
 * from it, saga:pods:gone (pod id -> when its adoption ended). One beat:
 * renews the lease of every pod of renew (the caller's own, and those it
 * adopted) to Redis now + lease_ms, and takes them off the gone; moves
 * those of release (adoptions over) to the gone; takes back each pod of
 * reclaim that is still gone (work landed on its subjects after its
 * adoption ended); takes up to max pods whose lease ran out; forgets the
 * pods gone for more than gone_keep_ms. Each pod taken is taken by one
 * caller only (its lease is then the caller's to renew). cb gets the ids
 * taken, then an empty string, then the ids gone (at most 256, oldest
 * first).
 */
struct store_pods_beat {
	const char		*me;
	int			 lease_ms;
	int			 max;		/* lapsed pods to take, at most */
	int64_t			 gone_keep_ms;
	const char *const	*renew;
	size_t			 nrenew;
	const char *const	*release;
	size_t			 nrelease;
	const char *const	*reclaim;
	size_t			 nreclaim;
};
void	 store_pods(struct store *, const struct store_pods_beat *,
	    store_ids_cb *, void *);

/*
 * An operator's Cancel of a PENDING or RUNNING saga: marks it with reason
 * (STORE_OK); the process driving it learns it from its next write or read
 * (store_rev_cb's cancel, store_saga's cancel). STORE_UNCHANGED when it
 * compensates already, STORE_ENDED when it has ended (both with the saga
 * as it stands), or STORE_NOT_FOUND.
 */
void	 store_cancel(struct store *, const char *id, const char *reason,
	    store_saga_cb *, void *);

/*
 * List: sagas from the index, newest first by creation time, ties by id in
 * reverse. The index is kept by the write script in the call that changes
 * a saga's state, so it never disagrees with the records, and a page costs
 * the same whatever the number of sagas stored.
 */
struct store_list_query {
	const char *const *states;	/* "STATE_FAILED"...; none: all */
	size_t		   nstates;
	const char	  *flow;	/* NULL or "": every flow */
	int64_t		   since_ms;	/* created at or after; 0: no bound */
	int64_t		   until_ms;	/* created before; 0: no bound */
	int64_t		   after_ms;	/* the cursor: the last saga of the */
	const char	  *after_id;	/* previous page; NULL: first page */
	int		   limit;	/* sagas at most, 1 to 1000 */
};
/*
 * sagas[n] (valid during the call), more set when a next page exists, and
 * then the cursor of the next page (last_ms, last_id).
 */
typedef void	store_list_cb(enum store_result, Saga__V1__Saga *const *sagas,
		    size_t n, int more, int64_t last_ms, const char *last_id,
		    const char *err, void *arg);
void	 store_list(struct store *, const struct store_list_query *,
	    store_list_cb *, void *);

/*
 * Takes sagas that expired out of the index of the ended states (a
 * master's cron calls it), at most max a set; cb gets how many it removed.
 */
typedef void	store_count_cb(enum store_result, size_t n, const char *err,
		    void *arg);
void	 store_index_expire(struct store *, int max, store_count_cb *, void *);

/*
 * Flow definitions by version (flowdef.h), their bytes in hex: put writes
 * saga:def:<version> unless it is there (cb gets n = 1); get hands cb the
 * hex as the one id, or no id when Redis has none.
 */
void	 store_def_put(struct store *, const char *version, const char *hex,
	    store_count_cb *, void *);
void	 store_def_get(struct store *, const char *version, store_ids_cb *,
	    void *);

/*
 * Replays the saga's events from the start, then follows new ones until its
 * terminal event. STORE_NOT_FOUND when there is no such saga. Never returns
 * NULL. The handle is valid until the last callback has returned or until
 * store_watch_cancel, which stops it without any further callback (and may
 * be called from inside the watch's callback).
 */
struct store_watch *store_watch(struct store *, const char *id,
	    store_event_cb *, void *);
void	 store_watch_cancel(struct store_watch *);

/*
 * Fills rec from the reply to HGETALL saga:{ID}; strings point into the
 * reply, rec->saga is the caller's to free. Returns 0, or -1 with err.
 * Exposed for the fuzz target of Redis records (t/fuzz/fuzz_store.c).
 */
struct redisReply;
int		 store_parse_hash(const struct redisReply *, struct store_saga *,
		    char *err, size_t errlen);

#endif
