/*
 * step.h - what a step's call sends and what its reply means, written once
 * for the master (sync sagas) and the workers (async and throttling): the
 * saga.v1.StepRequest or, in raw mode, the context entry sent verbatim; the
 * StepReply's context or the raw reply kept under its key; the metadata
 * every upstream call carries. No I/O.
 */
#ifndef SAGAD_STEP_H
#define SAGAD_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "grpc/grpc.h"
#include "saga.h"

/*
 * The request for action a of saga s at node: malloc'd bytes, or NULL with
 * a sentence in err (raw mode with its context key missing: a failure no
 * retry can mend). A compensation always gets a StepRequest.
 */
uint8_t	*step_request(const struct saga *, const struct config_node *,
	    const struct saga_action *, size_t *len, char *err, size_t errlen);

/*
 * The context entries a successful action's reply brings; 0, or -1 when
 * the reply is not a saga.v1.StepReply (the caller treats it as INTERNAL).
 */
int	 step_reply(const struct config_node *, const uint8_t *, size_t,
	    struct saga_kv **out, size_t *nout);
void	 step_kv_free(struct saga_kv *, size_t);

/*
 * Whether s is a W3C traceparent: version-traceid-parentid-flags in
 * lowercase hex (2-32-16-2), version not ff, ids not all zero; a version
 * after 00 may carry more fields after a '-'.
 */
int	 step_traceparent_valid(const char *s);

/*
 * x-request-id = the saga id, and traceparent when the caller sent one and
 * it is valid: an invalid one is dropped, never forwarded.
 */
void	 step_metadata(struct grpc_metadata *, const struct saga *,
	    const char *traceparent);

#endif
