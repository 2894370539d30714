/*
 * trace.h - W3C trace context, the rules without the I/O: a traceparent
 * parsed and checked, formatted back, new ids, the sampling decision, and
 * the context a saga carries from its Run to its last step call (the
 * saga's span, its parent the Run's span, the call at hand's span).
 *
 * What it is not: it exports nothing (src/otlp.c does) and reads no
 * request (src/trace_saga.c does, for the engines).
 */
#ifndef SAGAD_TRACE_H
#define SAGAD_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_LEN		16
#define TRACE_SPAN_LEN		8
#define TRACE_PARENT_LEN	55	/* "00-" 32 "-" 16 "-" 2 */
#define TRACE_SAMPLED		0x01

struct trace_ctx {
	uint8_t		 on;		/* this process traces the saga */
	uint8_t		 flags;		/* W3C trace-flags: TRACE_SAMPLED */
	uint8_t		 has_parent;	/* parent_id is set */
	uint8_t		 trace_id[TRACE_ID_LEN];
	uint8_t		 span_id[TRACE_SPAN_LEN];	/* the saga's span */
	uint8_t		 parent_id[TRACE_SPAN_LEN];	/* the Run's span */
	uint8_t		 call_id[TRACE_SPAN_LEN];	/* the call at hand */
	int64_t		 call_start_ns;
};

/*
 * A traceparent header: 0 with its ids and flags, -1 when it is not one
 * (wrong length or version, upper-case or non-hex digits, an all-zero id).
 * Versions after 00 are read as the spec says: their first four fields.
 */
int	 trace_parse(const char *, uint8_t trace_id[TRACE_ID_LEN],
	    uint8_t span_id[TRACE_SPAN_LEN], uint8_t *flags);
/* out gets TRACE_PARENT_LEN characters and a NUL. */
void	 trace_format(char *out, const uint8_t trace_id[TRACE_ID_LEN],
	    const uint8_t span_id[TRACE_SPAN_LEN], uint8_t flags);
/* Fresh ids from the PRNG, never all zero. */
void	 trace_new_id(uint8_t *id, size_t len, uint64_t *rng);
/* A new trace's sampled flag: kept with probability ratio. */
uint8_t	 trace_sample(double ratio, uint64_t *rng);
/* The wall clock in nanoseconds since the epoch, as OTLP counts it. */
int64_t	 trace_now_ns(void);

/*
 * The saga's context from a traceparent that names the saga's span (a
 * worker's Work) and the Run's span id (NULL: unknown): on, with its ids.
 * An invalid or missing traceparent (a saga recovered, retried, or
 * republished by a sweeper: the context is not stored) starts a trace
 * whose ids and sampling derive from seed, the saga id, so that every
 * process that picks the saga up joins the same one; NULL seed: random.
 * Returns 1 when it started one.
 */
int	 trace_ctx_from(struct trace_ctx *, const char *traceparent,
	    const uint8_t *parent, double ratio, const char *seed,
	    uint64_t *rng);
/* A step call starts: its span id and start time. */
void	 trace_call_begin(struct trace_ctx *, uint64_t *rng);

#endif
