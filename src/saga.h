/*
 * saga.h - the rules of a saga, written once: which step runs next, what a
 * step's gRPC status means, how long to back off, when to compensate and how
 * a saga ends. The master (sync mode) and sagad-worker (async, throttling)
 * both drive sagas through these functions, so the rules cannot drift apart.
 * Nothing here does I/O, logs or reads a clock: callers pass "now" and a
 * random state, so every rule is unit-tested.
 */
#ifndef SAGAD_SAGA_H
#define SAGAD_SAGA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "saga/v1/saga.pb-c.h"

/* Values match saga.v1.State. */
enum saga_state {
	SAGA_STATE_UNSPECIFIED = 0,
	SAGA_STATE_PENDING = 1,
	SAGA_STATE_RUNNING = 2,
	SAGA_STATE_COMPENSATING = 3,
	SAGA_STATE_COMPLETED = 4,
	SAGA_STATE_COMPENSATED = 5,
	SAGA_STATE_FAILED = 6,
	SAGA_STATE_RESOLVED = 7,	/* FAILED, then repaired by an operator */
};
#define SAGA_STATE_IS_FINAL(s)	((s) >= SAGA_STATE_COMPLETED)
#define SAGA_STATE_MAX		SAGA_STATE_RESOLVED

struct saga_kv {
	char		*key;
	uint8_t		*value;
	size_t		 len;
};

struct saga_step {
	char		*name;
	enum saga_state	 state;
	int		 attempts;	/* calls made, action and compensation */
	int		 unsent;	/* action calls that never left sagad */
	char		*error;
	int64_t		 started_ms;
	int64_t		 finished_ms;
};

struct saga {
	char		*id;
	char		*flow;
	char		*version;	/* its flow's definition (flowdef.h) */
	enum saga_mode	 mode;
	enum saga_state	 state;
	struct saga_kv	*ctx;		/* in insertion order */
	size_t		 nctx;
	size_t		 ctx_cap;	/* room in ctx */
	uint32_t	*ctx_idx;	/* open-addressing index: position + 1 */
	size_t		 ctx_idx_cap;	/* a power of two, or 0 */
	struct saga_step *steps;
	size_t		 nsteps;
	char		*error;
	int64_t		 created_ms;
	int64_t		 updated_ms;
};

/* What a step's gRPC status means (DESIGN.md, step outcome). */
enum saga_verdict {
	SAGA_VERDICT_OK,
	SAGA_VERDICT_RETRY,	/* transient: retry while retries last */
	SAGA_VERDICT_FAIL,	/* business failure: never retried */
};

/* What the driver must do next. */
enum saga_action_kind {
	SAGA_ACT_CALL,		/* call step's action, or its compensation */
	SAGA_ACT_WAIT,		/* back off delay_ms, then SAGA_ACT_CALL */
	SAGA_ACT_END,		/* the saga has ended in saga->state */
};

struct saga_action {
	enum saga_action_kind	 kind;
	size_t			 step;
	int			 compensate;
	int			 attempt;	/* 1 for the first call */
	int64_t			 delay_ms;
	int			 begun;		/* its start is recorded */
};

struct saga	*saga_new(const char *id, const struct config *,
		    const struct config_flow *, enum saga_mode, int64_t now_ms);
void		 saga_free(struct saga *);
struct saga	*saga_dup(const struct saga *);

void		 saga_ctx_set(struct saga *, const char *key,
		    const void *value, size_t len);
const struct saga_kv *saga_ctx_get(const struct saga *, const char *key);
/* How many of the keys are not in the context yet. */
size_t		 saga_ctx_new_keys(const struct saga *,
		    const struct saga_kv *, size_t n);

/*
 * A saga.v1.Saga that points into a struct saga, for packing or handing to
 * the store without copying; valid while the saga is unchanged.
 */
struct saga_pb {
	Saga__V1__Saga			 pb;
	Saga__V1__Saga__ContextEntry	*ce, **cep;
	Saga__V1__StepResult		*sr, **srp;
};
void		 saga_pb_view(const struct saga *, struct saga_pb *);
void		 saga_pb_view_free(struct saga_pb *);
struct saga	*saga_from_pb(const Saga__V1__Saga *);

/* saga.v1.Saga encoding: what the store keeps and Get returns. */
uint8_t		*saga_pack(const struct saga *, size_t *len);
struct saga	*saga_unpack(const uint8_t *, size_t, char *err, size_t errlen);

const char	*saga_state_name(enum saga_state);	/* "COMPLETED" */

/*
 * The saga as JSON in protobuf's canonical proto3 mapping (lowerCamelCase
 * names, enums by their proto names such as "STATE_COMPLETED", bytes in
 * base64, int64 as strings), every field present. What async callbacks POST
 * and `sagactl --json` prints. Returns a malloc'd NUL-terminated string.
 */
char		*saga_to_json(const struct saga *, size_t *len);

enum saga_verdict saga_classify(int grpc_status);

/*
 * Exponential backoff with jitter: base * 2^(attempt-1), capped at max_ms,
 * then a uniform draw from its upper half so retries of many sagas spread
 * out but never come sooner than half the nominal delay. rng is
 * util_rng_next() state owned by the caller.
 */
int64_t		 saga_backoff_ms(int base_ms, int attempt, int64_t max_ms,
		    uint64_t *rng);

/*
 * The first action of a saga that has just been created: call step 0. A
 * flow is never empty (the config loader refuses it).
 */
struct saga_action saga_first(struct saga *);

/*
 * Record that a call starts: the step moves to RUNNING (action) or
 * COMPENSATING (compensation), its attempts grow, and on its first call its
 * start time is set. The driver persists the saga before it calls, so a crash
 * after this point is seen by recovery as "this step may have run".
 */
void		 saga_step_begin(struct saga *, const struct saga_action *,
		    int64_t now_ms);

/*
 * Record a call's result and decide what comes next. reply holds the context
 * entries the participant returned (merged into the saga's context on success
 * of an action); message is the grpc-message. node gives retries, backoff and
 * compensation for the step.
 */
struct saga_action saga_step_end(struct saga *, const struct config *,
		    const struct config_flow *, const struct saga_action *,
		    int grpc_status, const char *message,
		    const struct saga_kv *reply, size_t nreply,
		    int64_t now_ms, uint64_t *rng);

/*
 * saga_step_end for a call that provably never left sagad (no connection
 * carried it): an action's such attempts are counted, and an action whose
 * every attempt was such a call reached nobody, so when it fails for good
 * it has nothing to undo (its step ends COMPENSATED, "never reached").
 */
struct saga_action saga_step_unreached(struct saga *, const struct config *,
		    const struct config_flow *, const struct saga_action *,
		    int grpc_status, const char *message, int64_t now_ms,
		    uint64_t *rng);

/*
 * A call that could not even be built (a raw request whose context entry is
 * missing): nothing was sent, so no retry can help and, for an action,
 * there is nothing to undo at that step; the steps before it are
 * compensated. A compensation that cannot be built has failed for good.
 */
struct saga_action saga_step_unsent(struct saga *, const struct config *,
		    const struct config_flow *, const struct saga_action *,
		    const char *why, int64_t now_ms);

/*
 * Where a saga stands after a crash of the process that ran it: a RUNNING
 * saga is compensated from its last started step (its action may or may not
 * have run: participants treat "nothing to undo" as success), a COMPENSATING
 * saga resumes its compensation. Returns the action to take, or END.
 */
struct saga_action saga_recover(struct saga *, const struct config *,
		    const struct config_flow *, int64_t now_ms);

/*
 * An operator's Cancel reached the process driving a PENDING or RUNNING
 * saga: no further action starts; every started step (the one whose call
 * was in flight included) is compensated in reverse, and the saga's error
 * says "cancelled: <reason>". A saga already compensating (or ended) is
 * left as it is: returns END when ended, else the compensation under way
 * goes on. Returns what to do next.
 */
struct saga_action saga_cancel(struct saga *, const struct config *,
		    const struct config_flow *, const char *reason,
		    int64_t now_ms);

/*
 * Retry of a FAILED saga: the compensations not done (its FAILED steps)
 * are tried again with a fresh compensate_retries budget; the saga is
 * COMPENSATING again. Returns the first compensation to call.
 */
struct saga_action saga_retry(struct saga *, const struct config *,
		    const struct config_flow *, int64_t now_ms);

/*
 * Where a stored saga stands for a process that picks it up from the store
 * without having run it (sagad-worker, on a delivered or redelivered bus
 * message). The store names the pending call (step, compensate) and how
 * many calls of that phase were started (attempts, 0 if none). Whoever
 * publishes the work of a call records its start first, in the same write
 * as what came before; fresh says that start may not have been made yet
 * (the caller holds the first delivery of that work, or work of another
 * call), while a redelivery counts it as made. Returns:
 * - END when the saga is final (s unchanged), or when what the record
 *   implies ends it (s updated);
 * - CALL of the pending call with begun set when fresh and the record shows
 *   it started without a result: make attempt `attempts` as recorded;
 * - CALL of the pending call with the attempt to make next: attempts + 1
 *   while the phase's retries last. A call that was made but whose outcome
 *   was never recorded (its process died) counts as made; when it was the
 *   last one allowed, it counts as a transient failure and the rules go on
 *   (compensation, or the next compensation);
 * - CALL of what follows the pending call when the record already holds its
 *   result.
 * A PENDING saga becomes RUNNING. *changed says s differs from the record in
 * a way that must be written before acting on the answer (a CALL of the
 * pending call is written by its own saga_step_begin anyway).
 */
struct saga_action saga_resume(struct saga *, const struct config *,
		    const struct config_flow *, size_t step, int compensate,
		    int attempts, int fresh, int64_t now_ms, uint64_t *rng,
		    int *changed);

#endif
