/*
 * driver.h - one saga being driven, and every move an engine makes on it,
 * written once for the master's sync engine (src/orch_sync.c) and
 * sagad-worker's engine (src/wengine.c).
 *
 * A driver holds the saga, the flow and config it runs (a reference: a
 * reload never changes a saga under way), its revision in the store, the
 * call at hand and the events its next write carries. It asks saga.c what
 * comes next and turns the answer into what an engine sends: the store
 * write with its events, the step's request and metadata, the Work message
 * of a call for the bus. It decodes a step's reply, and it decides where a
 * saga read back from the store stands (after a crash, or in a worker that
 * never saw it).
 *
 * What it is not: it does no I/O, keeps no timer and logs nothing. The
 * engines own the store, the gRPC client and the bus, and the order of
 * effects (write, then call or publish, then ack); the driver only says
 * what those effects carry. So t/check_driver.c drives every transition
 * without a server and asserts what would be written, called and published.
 */
#ifndef SAGAD_DRIVER_H
#define SAGAD_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "grpc/grpc.h"
#include "saga.h"
#include "store.h"
#include "trace.h"
#include "work.h"

/*
 * Events a write carries without an allocation. A move makes at most four
 * (a step's result, the saga's new state, the next call's start and a state
 * change of that start); more collect only when writes fail and moves go
 * on, and then they are kept, never dropped.
 */
#define DRIVER_EVENTS_INLINE	8

struct driver_event {
	const char	*step;		/* "" = the saga; else a step name of
					   the driver's saga, not a copy */
	enum saga_state	 state;
	char		*error;
	int		 attempt;
	int64_t		 ms;
};

struct driver {
	struct config		*cfg;		/* a reference: config_ref */
	const struct config_flow *flow;
	struct saga		*s;		/* owned */
	int64_t			 rev;		/* as the store last answered */
	struct saga_action	 a;		/* the call at hand, or END */
	struct saga_action	 wrote;		/* the pending call the write
						   being built records: step,
						   compensate, attempt */
	int			 carry;		/* that write starts a: its
						   Work may carry the record */
	char			*pod;		/* throttling: whose subjects */
	char			*callback;	/* async: the callback URL */
	char			*traceparent;	/* the caller's, forwarded; with
						   tracing, the saga span's */
	char			*tracestate;	/* the caller's, forwarded */
	char			*baggage;	/* the caller's, forwarded */
	struct trace_ctx	 tr;		/* tracing: the saga's spans */
	int			 round;		/* Retry rounds: part of the
						   Work's dedupe id */
	struct driver_event	*evs;		/* nevs of them */
	int			 nevs;
	int			 evcap;
	uint64_t		*rng;		/* backoff jitter: the engine's */
	int64_t			 call_us;	/* the call at hand was sent
						   (metrics_now_us), or 0 */
	int			 retried;	/* a Retry not yet written */
};

/*
 * Takes s (freed by driver_clear) and a reference to cfg. flow may be NULL
 * for a saga read back whose flow is gone: see driver_flow_gone().
 */
void	 driver_init(struct driver *, struct config *,
	    const struct config_flow *, struct saga *, uint64_t *rng);
void	 driver_clear(struct driver *);
/* Copies of the strings; NULL or "" leaves the field unset. */
void	 driver_set(struct driver *, const char *pod, const char *callback,
	    const char *traceparent);

/*
 * The trace context a Work brought (a worker's saga), or another driver's
 * (copied): tracestate and baggage forwarded as they came; with
 * cfg->tracing on, d->tr from d->traceparent (the saga's span) and parent
 * (the Run's span, NULL: unknown), a fresh trace when it is missing or
 * invalid.
 */
void	 driver_set_trace(struct driver *, const char *tracestate,
	    const char *baggage, const uint8_t *parent);
void	 driver_copy_trace(struct driver *, const struct driver *from);

/* The node of step i of the driver's flow. */
const struct config_node *driver_node(const struct driver *, size_t step);

/*
 * Moves. Each one updates the saga, sets d->a to what comes next, sets
 * d->wrote to what the next write records and adds the events that write
 * carries; the engine writes, then acts on d->a.kind.
 *
 * driver_start: a new sync saga, created with its first call started.
 * driver_queue: a new async or throttling saga: PENDING, its first call
 *   counted as started in the record only (the worker that gets the work
 *   makes it without a write first; saga_resume catches the saga up).
 * driver_requeue: the first work of a queued saga, published again
 *   (its first may be lost); nothing changes and nothing is written.
 * driver_begin: the call in d->a (after a WAIT) starts now.
 * driver_result: the call in d->a ended with status (a gRPC code), msg and
 *   the reply's bytes; a reply that is not a StepReply is INTERNAL. When
 *   another call follows, its start shares the result's write.
 * driver_unreached: the call in d->a ended with status and msg without ever
 *   leaving sagad (no connection carried it): an action none of whose
 *   attempts left has nothing to undo.
 * driver_unsent: the call in d->a could not be built (raw mode, its context
 *   entry missing): nothing was sent.
 * Each returns d->a.kind.
 */
void	 driver_start(struct driver *, int64_t now_ms);
void	 driver_queue(struct driver *, int64_t now_ms);
void	 driver_requeue(struct driver *);
void	 driver_begin(struct driver *, int64_t now_ms);
enum saga_action_kind driver_result(struct driver *, int status,
	    const char *msg, const uint8_t *reply, size_t len, int64_t now_ms);
enum saga_action_kind driver_unreached(struct driver *, int status,
	    const char *msg, int64_t now_ms);
enum saga_action_kind driver_unsent(struct driver *, const char *why,
	    int64_t now_ms);

/*
 * A saga read back from the store whose flow is no longer configured as it
 * was when it started (gone, or another number of steps): nothing is safe
 * to call. Returns 1 after ending it FAILED with why (d->a is END), else 0.
 */
int	 driver_flow_gone(struct driver *, const char *why, int64_t now_ms);

/*
 * An operator's moves. driver_cancel: a Cancel reached the driver of a
 * PENDING or RUNNING saga; no further action starts and every started step
 * (the one whose call was in flight or only recorded included) is
 * compensated; a saga compensating already goes on as it was. Returns
 * d->a.kind, CALL or END. driver_retry: a FAILED saga's compensations not
 * done are tried again with a fresh budget. driver_resolve: a FAILED saga
 * was repaired by hand: RESOLVED, with the note as its event's error.
 */
enum saga_action_kind driver_cancel(struct driver *, const char *reason,
	    int64_t now_ms);
enum saga_action_kind driver_retry(struct driver *, int64_t now_ms);
void	 driver_resolve(struct driver *, const char *note, int64_t now_ms);

/*
 * A sync saga claimed from a master that died: compensated from its last
 * started step, or its compensation resumed (saga_recover). Returns
 * d->a.kind.
 */
enum saga_action_kind driver_recover(struct driver *, int64_t now_ms);

/*
 * A worker holds work for call (step, compensate) of a saga whose record
 * says the pending call is rec_step/rec_compensate with rec_attempts made.
 * redelivered: the bus delivered this message before; cancel: the
 * record's cancel reason ("" or NULL: none). Where it stands:
 */
enum driver_resume {
	DRIVER_RESUME_CALL,	/* make d->a, this message's call (after the
				   write when *write) */
	DRIVER_RESUME_PASS,	/* the record is elsewhere: make sure the
				   Work of d->a is out (after the write when
				   *write), and let this message go */
	DRIVER_RESUME_END	/* the saga has ended or ends now: write it
				   when *write, then its end's effects */
};
enum driver_resume driver_resume(struct driver *, size_t rec_step,
	    int rec_compensate, int rec_attempts, size_t step, int compensate,
	    int redelivered, const char *cancel, int64_t now_ms, int *write);

/*
 * The store write of the saga as it stands: revision, pending call, the
 * events collected. The caller sets pod, owner, callback, lease_ms and
 * reopen as its role needs, sends dw->w, then driver_write_free(). When the
 * store answers OK, driver_written() takes the new revision and drops the
 * events; on a failure the same write can be built again.
 */
struct driver_write {
	struct store_write	 w;
	struct saga_pb		 v;
	Saga__V1__SagaEvent	 ev_[DRIVER_EVENTS_INLINE];
	Saga__V1__SagaEvent	*evp_[DRIVER_EVENTS_INLINE];
	Saga__V1__SagaEvent	*ev, **evp;	/* ev_ or the heap */
};
void	 driver_write(const struct driver *, struct driver_write *);
void	 driver_write_free(struct driver_write *);
void	 driver_written(struct driver *, int64_t rev);
void	 driver_events_clear(struct driver *);

/*
 * The call in d->a: its method's path, its request (malloc'd) and the
 * metadata every upstream call carries; the engine sends it at once (its
 * duration, for metrics, counts from here). NULL with err when it cannot be
 * built: pass err to driver_unsent().
 */
uint8_t	*driver_request(struct driver *, const char **path,
	    size_t *len, struct grpc_metadata *md, char *err, size_t errlen);

/*
 * The Work message of call a for the bus: its subject (the legacy topic's
 * for a saga driven on a view of an older definition), its dedupe id and
 * its packed bytes (malloc'd). It carries the record the last write made
 * when that write started a (d->carry) and the store took it, so the
 * worker that gets it needs no read. -1 with err when a name is too long.
 */
struct driver_work {
	char		 subject[WORK_SUBJECT_MAX];
	char		 msg_id[WORK_SUBJECT_MAX];
	uint8_t		*buf;
	size_t		 len;
};
int	 driver_work(const struct driver *, const struct saga_action *,
	    struct driver_work *, char *err, size_t errlen);

#endif
