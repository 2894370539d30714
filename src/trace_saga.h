/*
 * trace_saga.h - what a saga tells the world besides its record: the spans
 * it makes (issue 14: one server span per Run, one span per saga, one
 * client span per step call) and the one log line of its end. The engines
 * call these at the moments they name; each is a no-op for a saga that is
 * not traced (d->tr.on clear).
 */
#ifndef SAGAD_TRACE_SAGA_H
#define SAGAD_TRACE_SAGA_H

#include <stdint.h>

#include "driver.h"
#include "grpc/server.h"

/*
 * A Run starts saga d (driver_set done): its traceparent, tracestate and
 * baggage read from the call's metadata. An invalid traceparent is
 * dropped. With tracing on, the Run's span (parented on the caller's) ends
 * when the call is answered; the saga's span is its child, and d carries
 * both to every call and Work.
 */
void	 trace_run(struct grpc_call *, struct driver *, uint64_t *rng);

/* Before driver_request: the call at hand's span starts (its id is the
   traceparent the participant receives). */
void	 trace_call_start(struct driver *, uint64_t *rng);
/* The call at hand ended with status and msg; before driver_result. */
void	 trace_call_end(const struct driver *, int status, const char *msg);

/* The saga has ended (its final write done): its span and its log line. */
void	 trace_saga_end(const struct driver *);

#endif
