/*
 * saga.c - the rules of a saga as pure functions over struct saga (see
 * saga.h). Steps run in order; a failed step and every step started before it
 * are compensated in reverse; the saga ends COMPLETED, COMPENSATED, or FAILED
 * when a compensation could not be done and an operator must look. Also the
 * saga's saga.v1.Saga encoding. No I/O, no clock, no logging.
 */
#include "autoconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "json.h"
#include "saga.h"
#include "saga/v1/saga.pb-c.h"
#include "util.h"

static const char *state_names[] = {
	"UNSPECIFIED", "PENDING", "RUNNING", "COMPENSATING", "COMPLETED",
	"COMPENSATED", "FAILED", "RESOLVED",
};

const char *
saga_state_name(enum saga_state s)
{
	if ((int)s < 0 || s > SAGA_STATE_MAX)
		return "UNSPECIFIED";
	return state_names[s];
}

struct saga *
saga_new(const char *id, const struct config *cfg,
    const struct config_flow *flow, enum saga_mode mode, int64_t now_ms)
{
	struct saga *s = util_xcalloc(1, sizeof(*s));

	s->id = util_xstrdup(id);
	s->flow = util_xstrdup(flow->name);
	s->version = util_xstrdup(flow->version);
	s->mode = mode != SAGA_MODE_UNSPECIFIED ? mode : flow->mode;
	s->state = SAGA_STATE_PENDING;
	s->nsteps = flow->nsteps;
	s->steps = util_xcalloc(flow->nsteps, sizeof(*s->steps));
	for (size_t i = 0; i < flow->nsteps; i++) {
		s->steps[i].name = util_xstrdup(cfg->nodes[flow->steps[i]].name);
		s->steps[i].state = SAGA_STATE_PENDING;
	}
	s->created_ms = s->updated_ms = now_ms;
	return s;
}

void
saga_free(struct saga *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nctx; i++) {
		free(s->ctx[i].key);
		free(s->ctx[i].value);
	}
	for (size_t i = 0; i < s->nsteps; i++) {
		free(s->steps[i].name);
		free(s->steps[i].error);
	}
	free(s->ctx);
	free(s->ctx_idx);
	free(s->steps);
	free(s->id);
	free(s->flow);
	free(s->version);
	free(s->error);
	free(s);
}

static void	ctx_reindex(struct saga *, size_t);

struct saga *
saga_dup(const struct saga *s)
{
	struct saga *d = util_xcalloc(1, sizeof(*d));

	*d = *s;
	d->id = util_xstrdup(s->id);
	d->flow = util_xstrdup(s->flow);
	d->version = s->version != NULL ? util_xstrdup(s->version) : NULL;
	d->error = s->error != NULL ? util_xstrdup(s->error) : NULL;
	d->ctx = util_xcalloc(s->nctx, sizeof(*d->ctx));
	d->ctx_cap = s->nctx;
	d->ctx_idx = NULL;
	d->ctx_idx_cap = 0;
	for (size_t i = 0; i < s->nctx; i++) {
		d->ctx[i].key = util_xstrdup(s->ctx[i].key);
		d->ctx[i].value = util_xcalloc(1, s->ctx[i].len + 1);
		memcpy(d->ctx[i].value, s->ctx[i].value, s->ctx[i].len);
	}
	if (d->nctx > 0) {
		size_t cap = 16;

		while (cap < 2 * d->nctx)
			cap *= 2;
		ctx_reindex(d, cap);
	}
	d->steps = util_xcalloc(s->nsteps, sizeof(*d->steps));
	for (size_t i = 0; i < s->nsteps; i++) {
		d->steps[i] = s->steps[i];
		d->steps[i].name = util_xstrdup(s->steps[i].name);
		d->steps[i].error = s->steps[i].error != NULL ?
		    util_xstrdup(s->steps[i].error) : NULL;
	}
	return d;
}

/*
 * The context is a vector in insertion order (what the Saga message shows)
 * plus an open-addressing index over it, so that setting a key costs O(1)
 * whatever the number of keys: a Run with 100k keys must not cost a scan
 * per key.
 */
static uint32_t
ctx_hash(const char *key)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* The index slot of key: where it is, or the empty one where it would go. */
static size_t
ctx_slot(const struct saga *s, const char *key)
{
	size_t mask = s->ctx_idx_cap - 1, i = ctx_hash(key) & mask;

	while (s->ctx_idx[i] != 0 &&
	    strcmp(s->ctx[s->ctx_idx[i] - 1].key, key) != 0)
		i = (i + 1) & mask;
	return i;
}

static void
ctx_reindex(struct saga *s, size_t cap)
{
	free(s->ctx_idx);
	s->ctx_idx = util_xcalloc(cap, sizeof(*s->ctx_idx));
	s->ctx_idx_cap = cap;
	for (size_t i = 0; i < s->nctx; i++)
		s->ctx_idx[ctx_slot(s, s->ctx[i].key)] = (uint32_t)(i + 1);
}

const struct saga_kv *
saga_ctx_get(const struct saga *s, const char *key)
{
	size_t i;

	if (s->ctx_idx_cap == 0)
		return NULL;
	i = ctx_slot(s, key);
	return s->ctx_idx[i] != 0 ? &s->ctx[s->ctx_idx[i] - 1] : NULL;
}

size_t
saga_ctx_new_keys(const struct saga *s, const struct saga_kv *kv, size_t n)
{
	size_t fresh = 0;

	for (size_t i = 0; i < n; i++) {
		int dup = saga_ctx_get(s, kv[i].key) != NULL;

		/* A key the reply repeats counts once. */
		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(kv[j].key, kv[i].key) == 0;
		fresh += !dup;
	}
	return fresh;
}

void
saga_ctx_set(struct saga *s, const char *key, const void *value, size_t len)
{
	struct saga_kv	*kv;
	size_t		 slot;

	/* Keep the index at most half full. */
	if (2 * (s->nctx + 1) > s->ctx_idx_cap)
		ctx_reindex(s, s->ctx_idx_cap ? 2 * s->ctx_idx_cap : 16);
	slot = ctx_slot(s, key);
	if (s->ctx_idx[slot] == 0) {
		if (s->nctx == s->ctx_cap) {
			s->ctx_cap = s->ctx_cap ? 2 * s->ctx_cap : 8;
			s->ctx = util_xrealloc(s->ctx,
			    s->ctx_cap * sizeof(*s->ctx));
		}
		kv = &s->ctx[s->nctx++];
		kv->key = util_xstrdup(key);
		s->ctx_idx[slot] = (uint32_t)s->nctx;
	} else {
		kv = &s->ctx[s->ctx_idx[slot] - 1];
		free(kv->value);
	}
	/* One spare NUL so text values print without a copy. */
	kv->value = util_xcalloc(1, len + 1);
	if (len > 0)
		memcpy(kv->value, value, len);
	kv->len = len;
}

static void set_error(char **, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
set_error(char **dst, const char *fmt, ...)
{
	char	buf[1024];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(*dst);
	*dst = util_xstrdup(buf);
}

/*
 * Issue 11: the step whose action failed the saga keeps that failure as its
 * error once it is undone, so that steps[] tells it apart from the steps
 * undone because of it (whose error is empty). It is read back from the
 * saga's error, "<step>: <failure>[; compensation of ...]", which every
 * record carries, and only for the last step that started: the one whose
 * failure started the compensation.
 */
static void
keep_action_error(struct saga *s, size_t i)
{
	const char	*name = s->steps[i].name, *e = s->error, *end;
	size_t		 n = strlen(name);

	for (size_t j = i + 1; j < s->nsteps; j++)
		if (s->steps[j].started_ms != 0)
			return;
	if (e == NULL || strncmp(e, name, n) != 0 || e[n] != ':' ||
	    e[n + 1] != ' ')
		return;
	e += n + 2;
	end = strstr(e, "; compensation of ");
	set_error(&s->steps[i].error, "%.*s", end != NULL ? (int)(end - e) :
	    (int)strlen(e), e);
}

enum saga_verdict
saga_classify(int status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return SAGA_VERDICT_OK;
	case GRPC_STATUS_ABORTED:
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_NOT_FOUND:
	case GRPC_STATUS_ALREADY_EXISTS:
	case GRPC_STATUS_FAILED_PRECONDITION:
	case GRPC_STATUS_PERMISSION_DENIED:
	case GRPC_STATUS_UNAUTHENTICATED:
	case GRPC_STATUS_OUT_OF_RANGE:
	case GRPC_STATUS_UNIMPLEMENTED:
		return SAGA_VERDICT_FAIL;
	default:
		/* UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ... */
		return SAGA_VERDICT_RETRY;
	}
}

int64_t
saga_backoff_ms(int base_ms, int attempt, int64_t max_ms, uint64_t *rng)
{
	int64_t d = base_ms > 0 ? base_ms : 1;

	for (int i = 1; i < attempt && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	return d - d / 2 +
	    (int64_t)(util_rng_next(rng) % (uint64_t)(d / 2 + 1));
}

static const struct config_node *
node_of(const struct config *cfg, const struct config_flow *flow, size_t i)
{
	return &cfg->nodes[flow->steps[i]];
}

static struct saga_action
act_end(struct saga *s, enum saga_state final, int64_t now_ms)
{
	struct saga_action a = { .kind = SAGA_ACT_END };

	s->state = final;
	s->updated_ms = now_ms;
	return a;
}

static struct saga_action
act_call(size_t step, int compensate)
{
	struct saga_action a = { .kind = SAGA_ACT_CALL, .step = step,
	    .compensate = compensate, .attempt = 1 };

	return a;
}

/*
 * The next compensation at or below step `from`, skipping steps that never
 * started or are already undone. A step without a compensation method has
 * nothing to undo and is marked done here without a call.
 */
static struct saga_action
next_compensation(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, long from, int64_t now_ms)
{
	int failed = 0;

	for (long i = from; i >= 0; i--) {
		struct saga_step *st = &s->steps[i];

		if (st->state == SAGA_STATE_PENDING ||
		    st->state == SAGA_STATE_COMPENSATED)
			continue;
		if (node_of(cfg, flow, i)->compensate == NULL) {
			st->state = SAGA_STATE_COMPENSATED;
			st->finished_ms = now_ms;
			continue;
		}
		return act_call((size_t)i, 1);
	}
	for (size_t i = 0; i < s->nsteps; i++)
		if (s->steps[i].state == SAGA_STATE_FAILED)
			failed = 1;
	return act_end(s, failed ? SAGA_STATE_FAILED : SAGA_STATE_COMPENSATED,
	    now_ms);
}

struct saga_action
saga_first(struct saga *s)
{
	s->state = SAGA_STATE_RUNNING;
	return act_call(0, 0);
}

void
saga_step_begin(struct saga *s, const struct saga_action *a, int64_t now_ms)
{
	struct saga_step *st = &s->steps[a->step];

	st->state = a->compensate ? SAGA_STATE_COMPENSATING :
	    SAGA_STATE_RUNNING;
	st->attempts++;
	if (st->started_ms == 0)
		st->started_ms = now_ms;
	if (a->compensate)
		s->state = SAGA_STATE_COMPENSATING;
	s->updated_ms = now_ms;
}

struct saga_action
saga_step_end(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, const struct saga_action *a, int status,
    const char *message, const struct saga_kv *reply, size_t nreply,
    int64_t now_ms, uint64_t *rng)
{
	const struct config_node	*node = node_of(cfg, flow, a->step);
	struct saga_step		*st = &s->steps[a->step];
	enum saga_verdict		 v = saga_classify(status);
	int				 retries;
	struct saga_action		 next;

	s->updated_ms = now_ms;
	if (message == NULL)
		message = "";
	if (v == SAGA_VERDICT_OK) {
		st->finished_ms = now_ms;
		free(st->error);
		st->error = NULL;
		if (a->compensate) {
			st->state = SAGA_STATE_COMPENSATED;
			keep_action_error(s, a->step);
			return next_compensation(s, cfg, flow,
			    (long)a->step - 1, now_ms);
		}
		if (cfg->limits.max_context_entries > 0 && nreply > 0 &&
		    s->nctx + saga_ctx_new_keys(s, reply, nreply) >
		    (size_t)cfg->limits.max_context_entries) {
			char why[160];

			/*
			 * A reply that would grow the context past the limit
			 * is a failed step: it is compensated with the rest.
			 */
			snprintf(why, sizeof(why), "the step's reply would "
			    "take the context past limits.max_context_entries"
			    " (%d)", cfg->limits.max_context_entries);
			return saga_step_end(s, cfg, flow, a,
			    GRPC_STATUS_OUT_OF_RANGE, why, NULL, 0, now_ms, rng);
		}
		st->state = SAGA_STATE_COMPLETED;
		for (size_t i = 0; i < nreply; i++)
			saga_ctx_set(s, reply[i].key, reply[i].value,
			    reply[i].len);
		if (a->step + 1 < s->nsteps)
			return act_call(a->step + 1, 0);
		return act_end(s, SAGA_STATE_COMPLETED, now_ms);
	}

	set_error(&st->error, "%s: %s", grpc_status_name(status), message);
	/*
	 * A compensation must be done whatever the participant says, so every
	 * failure of one is retried while compensate_retries lasts; an action
	 * is retried only on transient statuses.
	 */
	retries = a->compensate ? node->compensate_retries : node->retries;
	if ((a->compensate || v == SAGA_VERDICT_RETRY) &&
	    a->attempt <= retries) {
		next = *a;
		next.kind = SAGA_ACT_WAIT;
		next.attempt = a->attempt + 1;
		next.delay_ms = saga_backoff_ms(node->backoff_ms, a->attempt,
		    30000, rng);
		return next;
	}

	st->state = SAGA_STATE_FAILED;
	st->finished_ms = now_ms;
	if (a->compensate) {
		char prev[512];

		snprintf(prev, sizeof(prev), "%s", s->error ? s->error : "");
		set_error(&s->error, "%s%scompensation of %s failed: %s",
		    prev, *prev ? "; " : "", st->name, st->error);
		return next_compensation(s, cfg, flow, (long)a->step - 1,
		    now_ms);
	}
	set_error(&s->error, "%s: %s", st->name, st->error);
	s->state = SAGA_STATE_COMPENSATING;
	if (st->unsent >= st->attempts) {
		/* No attempt ever left sagad: nothing to undo here. */
		char why[512];

		snprintf(why, sizeof(why), "%s (never reached the "
		    "participant)", st->error);
		set_error(&st->error, "%s", why);
		set_error(&s->error, "%s: %s", st->name, st->error);
		st->state = SAGA_STATE_COMPENSATED;
		return next_compensation(s, cfg, flow, (long)a->step - 1,
		    now_ms);
	}
	return next_compensation(s, cfg, flow, (long)a->step, now_ms);
}

struct saga_action
saga_step_unreached(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, const struct saga_action *a, int status,
    const char *message, int64_t now_ms, uint64_t *rng)
{
	if (!a->compensate)
		s->steps[a->step].unsent++;
	return saga_step_end(s, cfg, flow, a, status, message, NULL, 0, now_ms,
	    rng);
}

struct saga_action
saga_step_unsent(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, const struct saga_action *a,
    const char *why, int64_t now_ms)
{
	struct saga_step *st = &s->steps[a->step];

	s->updated_ms = now_ms;
	st->finished_ms = now_ms;
	set_error(&st->error, "%s: %s (not sent)",
	    grpc_status_name(GRPC_STATUS_INVALID_ARGUMENT), why);
	if (a->compensate) {
		char prev[512];

		st->state = SAGA_STATE_FAILED;
		snprintf(prev, sizeof(prev), "%s", s->error ? s->error : "");
		set_error(&s->error, "%s%scompensation of %s failed: %s",
		    prev, *prev ? "; " : "", st->name, st->error);
		return next_compensation(s, cfg, flow, (long)a->step - 1,
		    now_ms);
	}
	/* Never sent, so nothing to undo here: it counts as compensated. */
	st->state = SAGA_STATE_COMPENSATED;
	set_error(&s->error, "%s: %s", st->name, st->error);
	s->state = SAGA_STATE_COMPENSATING;
	return next_compensation(s, cfg, flow, (long)a->step - 1, now_ms);
}

/* The highest step that started and is not undone, or -1. */
static long
top_started(const struct saga *s)
{
	for (long i = (long)s->nsteps - 1; i >= 0; i--)
		if (s->steps[i].state != SAGA_STATE_PENDING &&
		    s->steps[i].state != SAGA_STATE_COMPENSATED)
			return i;
	return -1;
}

struct saga_action
saga_cancel(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, const char *reason, int64_t now_ms)
{
	if (SAGA_STATE_IS_FINAL(s->state))
		return act_end(s, s->state, s->updated_ms);
	if (s->state == SAGA_STATE_COMPENSATING)
		return saga_recover(s, cfg, flow, now_ms);
	set_error(&s->error, "cancelled: %s", reason != NULL && *reason ?
	    reason : "by an operator");
	s->state = SAGA_STATE_COMPENSATING;
	s->updated_ms = now_ms;
	return next_compensation(s, cfg, flow, top_started(s), now_ms);
}

struct saga_action
saga_retry(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, int64_t now_ms)
{
	s->state = SAGA_STATE_COMPENSATING;
	s->updated_ms = now_ms;
	return next_compensation(s, cfg, flow, top_started(s), now_ms);
}

struct saga_action
saga_recover(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, int64_t now_ms)
{
	long	top = -1;

	if (SAGA_STATE_IS_FINAL(s->state))
		return act_end(s, s->state, now_ms);
	if (s->state == SAGA_STATE_COMPENSATING) {
		/* A compensation that was under way goes first. */
		for (long i = (long)s->nsteps - 1; i >= 0; i--)
			if (s->steps[i].state == SAGA_STATE_COMPENSATING)
				return act_call((size_t)i, 1);
		for (long i = (long)s->nsteps - 1; i >= 0 && top < 0; i--)
			if (s->steps[i].state != SAGA_STATE_PENDING &&
			    s->steps[i].state != SAGA_STATE_COMPENSATED)
				top = i;
		return next_compensation(s, cfg, flow, top, now_ms);
	}
	/* PENDING or RUNNING: its owner died; undo what may have run. */
	if (s->error == NULL)
		s->error = util_xstrdup("the process running the saga died; "
		    "compensated by recovery");
	s->state = SAGA_STATE_COMPENSATING;
	for (long i = (long)s->nsteps - 1; i >= 0 && top < 0; i--)
		if (s->steps[i].state != SAGA_STATE_PENDING)
			top = i;
	return next_compensation(s, cfg, flow, top, now_ms);
}

struct saga_action
saga_resume(struct saga *s, const struct config *cfg,
    const struct config_flow *flow, size_t step, int compensate, int attempts,
    int fresh, int64_t now_ms, uint64_t *rng, int *changed)
{
	const struct config_node	*node;
	struct saga_step		*st;
	struct saga_action		 a;
	int				 retries;

	*changed = 0;
	if (SAGA_STATE_IS_FINAL(s->state))
		return act_end(s, s->state, s->updated_ms);
	if (step >= s->nsteps) {
		/* Not a call this flow has: undo what may have run. */
		*changed = 1;
		return saga_recover(s, cfg, flow, now_ms);
	}
	st = &s->steps[step];
	node = node_of(cfg, flow, step);
	if (attempts > 0 && !compensate && st->state == SAGA_STATE_PENDING) {
		/*
		 * The create records the first call's start in the record
		 * alone (a queued saga reads PENDING until its first result):
		 * the saga catches up here.
		 */
		a = act_call(step, 0);
		a.attempt = attempts;
		s->state = SAGA_STATE_RUNNING;
		saga_step_begin(s, &a, now_ms);
		st->attempts = attempts;
	} else if (s->state == SAGA_STATE_PENDING) {
		s->state = SAGA_STATE_RUNNING;
		*changed = 1;
	}
	/* The record holds the pending call's result: what follows it. */
	if (!compensate && st->state == SAGA_STATE_COMPLETED) {
		if (step + 1 < s->nsteps)
			return act_call(step + 1, 0);
		*changed = 1;
		return act_end(s, SAGA_STATE_COMPLETED, now_ms);
	}
	/*
	 * A FAILED step with its undo pending is a failed action waiting for
	 * its compensation; an undo is done only once COMPENSATED.
	 */
	if ((compensate && st->state == SAGA_STATE_COMPENSATED) ||
	    (!compensate && st->state == SAGA_STATE_FAILED)) {
		*changed = 1;
		s->state = SAGA_STATE_COMPENSATING;
		return next_compensation(s, cfg, flow, compensate ?
		    (long)step - 1 : (long)step, now_ms);
	}
	if (fresh && attempts > 0 && st->state == (compensate ?
	    SAGA_STATE_COMPENSATING : SAGA_STATE_RUNNING) &&
	    s->state == (compensate ? SAGA_STATE_COMPENSATING :
	    SAGA_STATE_RUNNING)) {
		/* Started by whoever queued it, maybe not yet made. */
		a = act_call(step, compensate);
		a.attempt = attempts;
		a.begun = 1;
		return a;
	}
	retries = compensate ? node->compensate_retries : node->retries;
	if (attempts > retries) {
		/* Every call allowed was made; the last one's end is unknown. */
		a = act_call(step, compensate);
		a.attempt = attempts;
		*changed = 1;
		return saga_step_end(s, cfg, flow, &a, GRPC_STATUS_UNAVAILABLE,
		    "the worker making the call stopped; its outcome is "
		    "unknown", NULL, 0, now_ms, rng);
	}
	a = act_call(step, compensate);
	a.attempt = attempts > 0 ? attempts + 1 : 1;
	return a;
}

void
saga_pb_view(const struct saga *s, struct saga_pb *v)
{
	Saga__V1__Saga *pb = &v->pb;
	char *block;

	/*
	 * One allocation for the four arrays (the structs first, then the
	 * pointers to them, all of pointer alignment): a view is made for
	 * every store write, so it is on the hot path. v->ce owns the block.
	 */
	block = util_xcalloc(1, s->nctx * sizeof(*v->ce) +
	    s->nsteps * sizeof(*v->sr) + s->nctx * sizeof(*v->cep) +
	    s->nsteps * sizeof(*v->srp) + 1);
	v->ce = (Saga__V1__Saga__ContextEntry *)(void *)block;
	v->sr = (Saga__V1__StepResult *)(void *)(v->ce + s->nctx);
	v->cep = (Saga__V1__Saga__ContextEntry **)(void *)(v->sr + s->nsteps);
	v->srp = (Saga__V1__StepResult **)(void *)(v->cep + s->nctx);

	saga__v1__saga__init(pb);
	pb->id = s->id;
	pb->flow = s->flow;
	pb->flow_version = s->version != NULL ? s->version : (char *)"";
	pb->mode = (Saga__V1__Mode)s->mode;
	pb->state = (Saga__V1__State)s->state;
	pb->error = s->error;	/* protobuf-c packs NULL as "" */
	pb->created_unix_ms = s->created_ms;
	pb->updated_unix_ms = s->updated_ms;
	for (size_t i = 0; i < s->nctx; i++) {
		saga__v1__saga__context_entry__init(&v->ce[i]);
		v->ce[i].key = s->ctx[i].key;
		v->ce[i].value.data = s->ctx[i].value;
		v->ce[i].value.len = s->ctx[i].len;
		v->cep[i] = &v->ce[i];
	}
	pb->n_context = s->nctx;
	pb->context = v->cep;
	for (size_t i = 0; i < s->nsteps; i++) {
		saga__v1__step_result__init(&v->sr[i]);
		v->sr[i].name = s->steps[i].name;
		v->sr[i].state = (Saga__V1__State)s->steps[i].state;
		v->sr[i].attempts = s->steps[i].attempts;
		v->sr[i].unsent_attempts = s->steps[i].unsent;
		v->sr[i].error = s->steps[i].error;
		v->sr[i].started_unix_ms = s->steps[i].started_ms;
		v->sr[i].finished_unix_ms = s->steps[i].finished_ms;
		v->srp[i] = &v->sr[i];
	}
	pb->n_steps = s->nsteps;
	pb->steps = v->srp;
}

void
saga_pb_view_free(struct saga_pb *v)
{
	free(v->ce);		/* the block of all four */
	memset(v, 0, sizeof(*v));
}

uint8_t *
saga_pack(const struct saga *s, size_t *len)
{
	struct saga_pb	 v;
	uint8_t		*buf;

	saga_pb_view(s, &v);
	*len = saga__v1__saga__get_packed_size(&v.pb);
	buf = util_xcalloc(1, *len);
	saga__v1__saga__pack(&v.pb, buf);
	saga_pb_view_free(&v);
	return buf;
}

struct saga *
saga_from_pb(const Saga__V1__Saga *pb)
{
	struct saga	*s;

	s = util_xcalloc(1, sizeof(*s));
	s->id = util_xstrdup(pb->id);
	s->flow = util_xstrdup(pb->flow);
	s->version = pb->flow_version != NULL && *pb->flow_version ?
	    util_xstrdup(pb->flow_version) : NULL;
	s->mode = (enum saga_mode)pb->mode;
	s->state = (enum saga_state)pb->state;
	s->error = pb->error != NULL && *pb->error ?
	    util_xstrdup(pb->error) : NULL;
	s->created_ms = pb->created_unix_ms;
	s->updated_ms = pb->updated_unix_ms;
	for (size_t i = 0; i < pb->n_context; i++)
		saga_ctx_set(s, pb->context[i]->key, pb->context[i]->value.data,
		    pb->context[i]->value.len);
	s->nsteps = pb->n_steps;
	s->steps = util_xcalloc(pb->n_steps, sizeof(*s->steps));
	for (size_t i = 0; i < pb->n_steps; i++) {
		const Saga__V1__StepResult *r = pb->steps[i];

		s->steps[i].name = util_xstrdup(r->name);
		s->steps[i].state = (enum saga_state)r->state;
		s->steps[i].attempts = r->attempts;
		s->steps[i].unsent = r->unsent_attempts;
		s->steps[i].error = r->error != NULL && *r->error ?
		    util_xstrdup(r->error) : NULL;
		s->steps[i].started_ms = r->started_unix_ms;
		s->steps[i].finished_ms = r->finished_unix_ms;
	}
	return s;
}

struct saga *
saga_unpack(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	Saga__V1__Saga	*pb;
	struct saga	*s;

	pb = saga__v1__saga__unpack(NULL, len, buf);
	if (pb == NULL) {
		snprintf(err, errlen, "saga record of %zu bytes is not a "
		    "saga.v1.Saga", len);
		return NULL;
	}
	s = saga_from_pb(pb);
	saga__v1__saga__free_unpacked(pb, NULL);
	return s;
}

static const char *mode_names[] = {
	"MODE_UNSPECIFIED", "MODE_SYNC", "MODE_ASYNC", "MODE_THROTTLING",
};

/* Written into a growing buffer: it is a callback's body, once per saga. */
char *
saga_to_json(const struct saga *s, size_t *len)
{
	struct json_buf	 b = { NULL, 0, 0 };
	char		*b64;

	json_buf_puts(&b, "{\"id\":");
	json_buf_str(&b, s->id);
	json_buf_puts(&b, ",\"flow\":");
	json_buf_str(&b, s->flow);
	if (s->version != NULL && *s->version != '\0') {
		json_buf_puts(&b, ",\"flowVersion\":");
		json_buf_str(&b, s->version);
	}
	json_buf_puts(&b, ",\"mode\":\"");
	json_buf_puts(&b, (unsigned)s->mode <= SAGA_MODE_THROTTLING ?
	    mode_names[s->mode] : mode_names[0]);
	json_buf_puts(&b, "\",\"state\":\"STATE_");
	json_buf_puts(&b, saga_state_name(s->state));
	json_buf_puts(&b, "\",\"context\":{");
	for (size_t i = 0; i < s->nctx; i++) {
		if (i > 0)
			json_buf_put(&b, ",", 1);
		json_buf_str(&b, s->ctx[i].key);
		b64 = grpc_b64_encode(s->ctx[i].value, s->ctx[i].len, NULL);
		json_buf_put(&b, ":\"", 2);
		json_buf_puts(&b, b64);
		json_buf_put(&b, "\"", 1);
		free(b64);
	}
	json_buf_puts(&b, "},\"steps\":[");
	for (size_t i = 0; i < s->nsteps; i++) {
		const struct saga_step *st = &s->steps[i];

		json_buf_puts(&b, i > 0 ? ",{\"name\":" : "{\"name\":");
		json_buf_str(&b, st->name);
		json_buf_puts(&b, ",\"state\":\"STATE_");
		json_buf_puts(&b, saga_state_name(st->state));
		json_buf_puts(&b, "\",\"attempts\":");
		json_buf_int(&b, st->attempts);
		json_buf_put(&b, ",", 1);
		if (st->unsent > 0) {
			json_buf_puts(&b, "\"unsentAttempts\":");
			json_buf_int(&b, st->unsent);
			json_buf_put(&b, ",", 1);
		}
		json_buf_puts(&b, "\"error\":");
		json_buf_str(&b, st->error);
		json_buf_puts(&b, ",\"startedUnixMs\":\"");
		json_buf_int(&b, st->started_ms);
		json_buf_puts(&b, "\",\"finishedUnixMs\":\"");
		json_buf_int(&b, st->finished_ms);
		json_buf_puts(&b, "\"}");
	}
	json_buf_puts(&b, "],\"error\":");
	json_buf_str(&b, s->error);
	json_buf_puts(&b, ",\"createdUnixMs\":\"");
	json_buf_int(&b, s->created_ms);
	json_buf_puts(&b, "\",\"updatedUnixMs\":\"");
	json_buf_int(&b, s->updated_ms);
	json_buf_puts(&b, "\"}");
	if (len != NULL)
		*len = b.len;
	return b.p;
}
