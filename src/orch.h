/*
 * orch.h - the Orchestrator service (saga.v1.Orchestrator: Run, Get, Watch,
 * ListFlows) and the engine that runs sync sagas on the master's loop: the
 * steps' gRPC calls through the client, every state change through the store,
 * per-service max_inflight with a bounded wait queue, leases renewed for the
 * sagas it runs and a sweeper that claims and compensates the sagas of a
 * master that died. The rules themselves are saga.c's. Async and throttling
 * Runs are queued on the bus instead (the workers run them): Run creates the
 * saga, publishes its first work and answers once the broker holds it
 * (async), or holds the call until a worker reports the end on
 * saga.done.<pod_id> (throttling). Library code: it logs nothing; the
 * counters and the error callback tell the process layer.
 */
#ifndef SAGAD_ORCH_H
#define SAGAD_ORCH_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct bus;
struct config;
struct event_base;
struct grpc_client;
struct grpc_server;
struct store;
struct orch;

struct orch_stats {
	uint64_t	started;	/* sagas created by this master */
	uint64_t	completed;
	uint64_t	compensated;
	uint64_t	failed;
	uint64_t	recovered;	/* claimed from a dead owner */
	uint64_t	shed;		/* Run refused: a wait queue was full */
	uint64_t	store_retries;	/* writes retried while Redis was down */
	size_t		running;	/* sagas this master drives now */
	uint64_t	queued;		/* async/throttling sagas on the bus */
	size_t		held;		/* throttling sagas with held calls */
};

/*
 * Registers the Orchestrator methods on srv. The orch keeps a reference to
 * cfg (config_ref) and uses client and store, which must outlive it. owner
 * names this master in leases ("pod/pid").
 */
struct orch	*orch_new(struct event_base *, struct config *,
		    struct grpc_server *, struct grpc_client *, struct store *,
		    const char *owner, char *err, size_t errlen);
/*
 * The bus for async and throttling sagas (NULL: they are refused with
 * UNAVAILABLE). It must outlive the orch up to orch_close().
 */
void		 orch_set_bus(struct orch *, struct bus *);
/* New sagas use cfg; those in flight keep the config they started with. */
void		 orch_set_config(struct orch *, struct config *);
void		 orch_set_log(struct orch *, util_log_fn, void *arg);
/*
 * Periodic work: lease renewal, the sweeper, the poll of held throttling
 * sagas, and answering held calls UNAVAILABLE once a drain has lasted
 * shutdown_timeout_ms. Call it about 10 times a second.
 */
void		 orch_cron(struct orch *);
/* Refuse new sagas (UNAVAILABLE); those in flight go on. */
void		 orch_drain(struct orch *);
/* Sagas it drives plus Runs not yet answered (launches, held calls). */
size_t		 orch_running(const struct orch *);
void		 orch_stats(const struct orch *, struct orch_stats *);
/*
 * The topics this pod's supervisor runs besides the config's own
 * (orch_pods.c): a dead pod's throttling topics and the topics a reload
 * removed while they still hold work. Free the array (not the names, which
 * live until the next cron); gen changes whenever the list does.
 */
struct orch_topic {
	const char	*name;		/* "Flow/Node@POD" or "Flow/Node~MODE" */
	int		 concurrency;
};
size_t		 orch_extra_topics(const struct orch *, struct orch_topic **,
		    unsigned *gen);
/*
 * Stopping: orch_close() cancels the calls in flight and answers the waiting
 * callers UNAVAILABLE; each saga stays in the store where it stands, its
 * lease runs out and another master's sweeper compensates it (async and
 * throttling sagas go on with the workers). Then close the bus and free the
 * store (their pending callbacks find the orch closed) and orch_free().
 */
void		 orch_close(struct orch *);
void		 orch_free(struct orch *);

#endif
