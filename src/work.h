/*
 * work.h - how async and throttling work travels on the bus, written once
 * for the master (which publishes a saga's first step and waits for the
 * end of throttling sagas) and the workers (which run steps and publish the
 * next): subject and consumer names, message ids, the Work and Done
 * envelopes (proto/sagad/v1/work.proto). No I/O.
 *
 * Subjects, in the stream (work-queue retention, so no two consumers'
 * filters overlap), shown with the default nats.subject_prefix "saga": every
 * subject starts with the prefix, so deployments that share a NATS (each
 * with its own stream and prefix) never see each other's work:
 *   saga.work.async.<flow>.<node>.<do|undo>          async sagas
 *   saga.work.pod.<pod>.<flow>.<node>.<do|undo>      throttling sagas of a pod
 *   saga.work.callback                               callback deliveries
 * Outside the stream (core NATS): saga.done.<pod> wakes held calls and
 * saga.cancel carries Cancel notices.
 * A message's Nats-Msg-Id is <saga>:<node>:<do|undo> (":callback" for a
 * callback), so publishing the same work again is deduplicated.
 */
#ifndef SAGAD_WORK_H
#define SAGAD_WORK_H

#include <stddef.h>
#include <stdint.h>

#include "saga_mode.h"
#include "saga/v1/saga.pb-c.h"

#define WORK_PREFIX_DEFAULT	"saga"	/* nats.subject_prefix; NULL means it */
#define WORK_CALLBACK_TOPIC	"callbacks"	/* the supervisor's topic name */
/* Work of sagas on an older definition of their flow (flowdef.h). */
#define WORK_LEGACY_TOPIC	"legacy"
#define WORK_SUBJECT_MAX	512

/*
 * A record's snapshot travels with the work only when the write that
 * stored it is what started the call (the create of a saga, or the write of
 * the result before): that publisher is the first of that call's work, so
 * no other message can have seen the call done before the first delivery
 * of this one, and the worker decides from it without reading Redis. A
 * republish, a redelivery and a saga larger than WORK_RECORD_MAX go through
 * Redis (see wengine.c).
 */
#define WORK_RECORD_MAX	16384	/* packed saga bytes carried at most */

struct work_record {
	int64_t			 rev;
	const Saga__V1__Saga	*saga;
	uint32_t		 step;	/* the pending call */
	int			 compensate;
	int			 attempt;
	const char		*pod;
	const char		*callback;
};

struct work {
	char		*saga_id;
	char		*flow;
	uint32_t	 step;
	int		 compensate;
	char		*pod;		/* "" for async */
	enum saga_mode	 mode;
	char		*traceparent;	/* NULL if none */
	char		*tracestate;	/* NULL if none */
	char		*baggage;	/* NULL if none */
	uint8_t		 trace_parent[8];	/* the Run's span, with */
	int		 has_trace_parent;	/* tracing on */
	int		 round;		/* Retry rounds of the saga */
	/*
	 * work_pack: the record to carry, or NULL. work_unpack: the record
	 * carried, or NULL; valid until work_clear().
	 */
	const struct work_record *record;
	struct work_record	 rec_;	/* storage of an unpacked record */
	void			*pb_;	/* the unpacked message behind it */
};

/*
 * Subjects under a prefix (nats.subject_prefix, NULL for the default); each
 * returns -1 if it does not fit in buf. The subject of a step's work:
 */
int	 work_subject(char *buf, size_t len, const char *prefix,
	    enum saga_mode, const char *pod, const char *flow,
	    const char *node, int compensate);
/* The filter of the consumer of (flow, node): both do and undo. */
int	 work_filter(char *buf, size_t len, const char *prefix,
	    enum saga_mode, const char *pod, const char *flow,
	    const char *node);
/* The stream's subjects, callback deliveries, Cancel notices. */
int	 work_stream_subjects(char *buf, size_t len, const char *prefix);
int	 work_callback_subject(char *buf, size_t len, const char *prefix);
int	 work_legacy_subject(char *buf, size_t len, const char *prefix);
int	 work_cancel_subject(char *buf, size_t len, const char *prefix);
/* A durable consumer name (letters, digits, '-', '_' only). */
int	 work_durable(char *buf, size_t len, enum saga_mode, const char *pod,
	    const char *flow, const char *node);
int	 work_msg_id(char *buf, size_t len, const char *saga_id,
	    const char *node, int compensate, int round);
int	 work_done_subject(char *buf, size_t len, const char *prefix,
	    const char *pod);

uint8_t	*work_pack(const struct work *, size_t *len);
/* Returns 0, or -1 with a sentence in err. Free with work_clear(). */
int	 work_unpack(struct work *, const uint8_t *, size_t, char *err,
	    size_t errlen);
void	 work_clear(struct work *);

uint8_t	*work_done_pack(const char *saga_id, int state, size_t *len);
/* The Cancel notice; unpack fills id and reason (truncated to fit). */
uint8_t	*work_cancel_pack(const char *saga_id, const char *reason,
	    size_t *len);
int	 work_cancel_unpack(const uint8_t *, size_t, char *id, size_t idlen,
	    char *reason, size_t reasonlen);
int	 work_done_unpack(const uint8_t *, size_t, char *id, size_t idlen,
	    int *state);

#endif
