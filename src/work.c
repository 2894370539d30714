/*
 * work.c - names and envelopes of the bus's saga work (see work.h).
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sagad/v1/work.pb-c.h"
#include "util.h"
#include "work.h"

static int
fits(int n, size_t len)
{
	return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* A config built in memory (tests) may leave the prefix unset. */
#define PFX(p)	((p) != NULL ? (p) : WORK_PREFIX_DEFAULT)

int
work_subject(char *buf, size_t len, const char *prefix, enum saga_mode mode,
    const char *pod, const char *flow, const char *node, int compensate)
{
	const char *way = compensate ? "undo" : "do";

	if (mode == SAGA_MODE_THROTTLING)
		return fits(snprintf(buf, len, "%s.work.pod.%s.%s.%s.%s",
		    PFX(prefix), pod, flow, node, way), len);
	return fits(snprintf(buf, len, "%s.work.async.%s.%s.%s", PFX(prefix),
	    flow, node, way), len);
}

int
work_filter(char *buf, size_t len, const char *prefix, enum saga_mode mode,
    const char *pod, const char *flow, const char *node)
{
	if (mode == SAGA_MODE_THROTTLING)
		return fits(snprintf(buf, len, "%s.work.pod.%s.%s.%s.*",
		    PFX(prefix), pod, flow, node), len);
	return fits(snprintf(buf, len, "%s.work.async.%s.%s.*", PFX(prefix),
	    flow, node), len);
}

int
work_stream_subjects(char *buf, size_t len, const char *prefix)
{
	return fits(snprintf(buf, len, "%s.work.>", PFX(prefix)), len);
}

int
work_callback_subject(char *buf, size_t len, const char *prefix)
{
	return fits(snprintf(buf, len, "%s.work.callback", PFX(prefix)), len);
}

int
work_legacy_subject(char *buf, size_t len, const char *prefix)
{
	return fits(snprintf(buf, len, "%s.work.legacy", PFX(prefix)), len);
}

int
work_cancel_subject(char *buf, size_t len, const char *prefix)
{
	return fits(snprintf(buf, len, "%s.cancel", PFX(prefix)), len);
}

int
work_durable(char *buf, size_t len, enum saga_mode mode, const char *pod,
    const char *flow, const char *node)
{
	int n;

	/* Config names are letters, digits, '-' and '_': safe as they are. */
	if (mode == SAGA_MODE_THROTTLING)
		n = snprintf(buf, len, "pod_%s_%s_%s", pod, flow, node);
	else
		n = snprintf(buf, len, "async_%s_%s", flow, node);
	return fits(n, len);
}

int
work_msg_id(char *buf, size_t len, const char *saga_id, const char *node,
    int compensate, int round)
{
	if (round > 0)
		return fits(snprintf(buf, len, "%s:%s:%s:r%d", saga_id, node,
		    compensate ? "undo" : "do", round), len);
	return fits(snprintf(buf, len, "%s:%s:%s", saga_id, node,
	    compensate ? "undo" : "do"), len);
}

int
work_done_subject(char *buf, size_t len, const char *prefix, const char *pod)
{
	return fits(snprintf(buf, len, "%s.done.%s", PFX(prefix),
	    pod), len);
}

uint8_t *
work_pack(const struct work *w, size_t *len)
{
	Sagad__V1__Work	 pb;
	Sagad__V1__Record rec;
	uint8_t		*buf;

	sagad__v1__work__init(&pb);
	if (w->record != NULL && saga__v1__saga__get_packed_size(
	    w->record->saga) <= WORK_RECORD_MAX) {
		sagad__v1__record__init(&rec);
		rec.rev = w->record->rev;
		rec.saga = (Saga__V1__Saga *)(uintptr_t)w->record->saga;
		rec.step = w->record->step;
		rec.compensate = w->record->compensate ? 1 : 0;
		rec.attempt = w->record->attempt;
		rec.pod = (char *)(uintptr_t)(w->record->pod != NULL ?
		    w->record->pod : "");
		rec.callback = (char *)(uintptr_t)(w->record->callback !=
		    NULL ? w->record->callback : "");
		pb.record = &rec;
	}
	pb.saga_id = w->saga_id;
	pb.flow = w->flow;
	pb.step = w->step;
	pb.compensate = w->compensate ? 1 : 0;
	pb.pod = w->pod;
	pb.mode = (int32_t)w->mode;
	pb.traceparent = w->traceparent;
	pb.tracestate = w->tracestate;
	pb.baggage = w->baggage;
	if (w->has_trace_parent) {
		pb.trace_parent_span.data = (uint8_t *)(uintptr_t)
		    w->trace_parent;
		pb.trace_parent_span.len = sizeof(w->trace_parent);
	}
	pb.round = (uint32_t)(w->round > 0 ? w->round : 0);
	*len = sagad__v1__work__get_packed_size(&pb);
	buf = util_xcalloc(1, *len + 1);
	sagad__v1__work__pack(&pb, buf);
	return buf;
}

int
work_unpack(struct work *w, const uint8_t *buf, size_t len, char *err,
    size_t errlen)
{
	Sagad__V1__Work *pb = sagad__v1__work__unpack(NULL, len, buf);

	memset(w, 0, sizeof(*w));
	if (pb == NULL || pb->saga_id == NULL || *pb->saga_id == '\0') {
		snprintf(err, errlen, "a work message of %zu bytes that is "
		    "not a sagad.v1.Work", len);
		if (pb != NULL)
			sagad__v1__work__free_unpacked(pb, NULL);
		return -1;
	}
	w->saga_id = util_xstrdup(pb->saga_id);
	w->flow = util_xstrdup(pb->flow);
	w->step = pb->step;
	w->compensate = pb->compensate;
	w->pod = util_xstrdup(pb->pod);
	w->mode = (enum saga_mode)pb->mode;
	w->traceparent = pb->traceparent != NULL && *pb->traceparent ?
	    util_xstrdup(pb->traceparent) : NULL;
	w->tracestate = pb->tracestate != NULL && *pb->tracestate ?
	    util_xstrdup(pb->tracestate) : NULL;
	w->baggage = pb->baggage != NULL && *pb->baggage ?
	    util_xstrdup(pb->baggage) : NULL;
	if (pb->trace_parent_span.len == sizeof(w->trace_parent)) {
		memcpy(w->trace_parent, pb->trace_parent_span.data,
		    sizeof(w->trace_parent));
		w->has_trace_parent = 1;
	}
	w->round = pb->round > 1000000 ? 1000000 : (int)pb->round;
	if (pb->record == NULL || pb->record->saga == NULL ||
	    pb->record->rev <= 0) {
		sagad__v1__work__free_unpacked(pb, NULL);
		return 0;
	}
	/* The record's strings and saga stay in the message until cleared. */
	w->rec_.rev = pb->record->rev;
	w->rec_.saga = pb->record->saga;
	w->rec_.step = pb->record->step;
	w->rec_.compensate = pb->record->compensate;
	w->rec_.attempt = pb->record->attempt;
	w->rec_.pod = pb->record->pod;
	w->rec_.callback = pb->record->callback;
	w->record = &w->rec_;
	w->pb_ = pb;
	return 0;
}

void
work_clear(struct work *w)
{
	free(w->saga_id);
	free(w->flow);
	free(w->pod);
	free(w->traceparent);
	free(w->tracestate);
	free(w->baggage);
	if (w->pb_ != NULL)
		sagad__v1__work__free_unpacked(w->pb_, NULL);
	memset(w, 0, sizeof(*w));
}

uint8_t *
work_done_pack(const char *saga_id, int state, size_t *len)
{
	Sagad__V1__Done	 pb;
	uint8_t		*buf;

	sagad__v1__done__init(&pb);
	pb.saga_id = (char *)(uintptr_t)saga_id;
	pb.state = state;
	*len = sagad__v1__done__get_packed_size(&pb);
	buf = util_xcalloc(1, *len + 1);
	sagad__v1__done__pack(&pb, buf);
	return buf;
}

int
work_done_unpack(const uint8_t *buf, size_t len, char *id, size_t idlen,
    int *state)
{
	Sagad__V1__Done *pb = sagad__v1__done__unpack(NULL, len, buf);

	if (pb == NULL)
		return -1;
	snprintf(id, idlen, "%s", pb->saga_id);
	*state = pb->state;
	sagad__v1__done__free_unpacked(pb, NULL);
	return 0;
}

uint8_t *
work_cancel_pack(const char *saga_id, const char *reason, size_t *len)
{
	Sagad__V1__Cancel	 pb;
	uint8_t			*buf;

	sagad__v1__cancel__init(&pb);
	pb.saga_id = (char *)(uintptr_t)saga_id;
	pb.reason = (char *)(uintptr_t)(reason != NULL ? reason : "");
	*len = sagad__v1__cancel__get_packed_size(&pb);
	buf = util_xcalloc(1, *len + 1);
	sagad__v1__cancel__pack(&pb, buf);
	return buf;
}

int
work_cancel_unpack(const uint8_t *buf, size_t len, char *id, size_t idlen,
    char *reason, size_t reasonlen)
{
	Sagad__V1__Cancel *pb = sagad__v1__cancel__unpack(NULL, len, buf);

	if (pb == NULL)
		return -1;
	snprintf(id, idlen, "%s", pb->saga_id);
	snprintf(reason, reasonlen, "%s", pb->reason);
	sagad__v1__cancel__free_unpacked(pb, NULL);
	return *id != '\0' ? 0 : -1;
}
