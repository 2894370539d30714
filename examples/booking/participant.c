/*
 * participant.c - the example saga participants: an in-memory service with
 * an action (Create), its compensation (Cancel) and an inspection method
 * (List), served on sagad's own gRPC server. It is what the saga engine's
 * tests, the demo and the benchmarks call, so it behaves like a careful
 * upstream: Create and Cancel are idempotent per saga id, a Cancel with
 * nothing to undo succeeds and leaves a tombstone so that a late Create cannot
 * leave an orphan, and every call can be slowed down (--latency, --jitter),
 * bounded (--max-inflight with --overload reject|crash) or made to fail
 * through the request's context (fault, flaky, fault_undo, delay,
 * delay_undo). It is not a template for a real service's storage: records
 * live in one hash table in memory, bounded by --max-records.
 *
 * A call's effect is decided when it is answered, after its latency, not when
 * it arrives; the work goes on even when the client gives up (deadline,
 * RST_STREAM), as a real upstream's would, and only the answer is lost.
 */
#include "autoconf.h"

#include <sys/types.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "grpc/server.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#include "saga/v1/saga.pb-c.h"
#include "booking.pb-c.h"
#include "participant.h"

#define SAGA_ID_MAX		256	/* longer ids are INVALID_ARGUMENT */
#define STEP_MAX		128
#define AMOUNT_MAX		64
#define LATENCY_MAX_MS		600000
#define COUNT_MAX		1000000000
#define RECORDS_DEFAULT		100000
#define RECORDS_MAX		100000000
#define TABLE_MIN		1024
#define SHUTDOWN_GRACE_MS	10000
#define EXIT_USAGE		64

const struct participant_kind participant_order = {
	"order", "booking.Order", "ord", "order_id", "127.0.0.1:50051",
};
const struct participant_kind participant_payment = {
	"payment", "booking.Payment", "pay", "payment_id", "127.0.0.1:50052",
};

enum method { M_CREATE, M_CANCEL, M_LIST, M_COUNT };
static const char *method_names[M_COUNT] = { "Create", "Cancel", "List" };

enum rec_state { REC_FAILED, REC_ACTIVE, REC_CANCELLED, REC_TOMBSTONE,
	REC_NSTATES };

/*
 * One saga as this service knows it. Records sit in a hash table keyed by
 * saga id and on a list ordered from least to most recently used, which is
 * the eviction order when --max-records is reached.
 */
struct record {
	char		*saga_id;
	char		*step;
	char		 id[32];
	char		 amount[AMOUNT_MAX + 1];
	enum rec_state	 state;
	int		 creates;
	int		 cancels;
	int		 flaky_failures;	/* UNAVAILABLE given to Create */
	int		 undo_failures;		/* UNAVAILABLE given to Cancel */
	int64_t		 created_ms;
	int64_t		 updated_ms;
	uint32_t	 hash;
	struct record	*hnext;
	struct record	*prev;
	struct record	*next;
};

struct table {
	struct record	**buckets;
	size_t		  nbuckets;
	size_t		  n;
	struct record	 *head;		/* least recently used */
	struct record	 *tail;
};

struct participant;

struct method_ctx {
	struct participant	*p;
	enum method		 m;
	char			 path[96];
	uint64_t		 calls;
	uint64_t		 ok;
	uint64_t		 rejected;
};

/*
 * What a Create or Cancel needs once its latency has passed, copied out of
 * the request because the call may be gone by then. The injection fields
 * hold how many calls of this saga should fail: 0 none, INT_MAX every one.
 */
struct work {
	struct participant	*p;
	enum method		 m;
	struct grpc_call	*call;		/* NULL once the client left */
	struct event		*timer;
	char			*saga_id;
	char			*step;
	char			 amount[AMOUNT_MAX + 1];
	int			 attempt;
	int			 fault;
	int			 flaky;
	int			 undo_fail;
	int64_t			 started_ms;
	int64_t			 delay_ms;
	struct work		*prev;
	struct work		*next;
};

struct participant {
	const struct participant_kind	*kind;
	struct event_base		*base;
	struct grpc_server		*srv;
	struct method_ctx		 methods[M_COUNT];
	struct table			 records;
	uint64_t			 nstate[REC_NSTATES];
	uint64_t			 evicted;
	uint64_t			 next_id;
	struct work			*works;		/* in flight */
	unsigned int			 inflight;
	unsigned int			 peak;
	/* Flags. */
	unsigned int			 max_inflight;	/* 0: no bound */
	int				 overload_crash;
	int64_t				 latency_ms;
	int64_t				 jitter_ms;
	size_t				 max_records;
	int64_t				 started_ms;
	int64_t				 reset_ms;
	int				 stopping;
	struct event			*grace;
};

/* --- records ------------------------------------------------------------ */

static uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static void
table_init(struct table *t)
{
	t->nbuckets = TABLE_MIN;
	t->buckets = util_xcalloc(t->nbuckets, sizeof(*t->buckets));
	t->n = 0;
	t->head = t->tail = NULL;
}

static void
table_grow(struct table *t)
{
	struct record	**nb, *r, *next;
	size_t		  i, n = t->nbuckets * 2;

	nb = util_xcalloc(n, sizeof(*nb));
	for (i = 0; i < t->nbuckets; i++) {
		for (r = t->buckets[i]; r != NULL; r = next) {
			next = r->hnext;
			r->hnext = nb[r->hash & (n - 1)];
			nb[r->hash & (n - 1)] = r;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->nbuckets = n;
}

static struct record *
table_get(struct table *t, const char *saga_id)
{
	struct record	*r;
	uint32_t	 h = hash_str(saga_id);

	for (r = t->buckets[h & (t->nbuckets - 1)]; r != NULL; r = r->hnext)
		if (r->hash == h && strcmp(r->saga_id, saga_id) == 0)
			return r;
	return NULL;
}

static void
lru_unlink(struct table *t, struct record *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		t->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		t->tail = r->prev;
	r->prev = r->next = NULL;
}

static void
lru_append(struct table *t, struct record *r)
{
	r->prev = t->tail;
	r->next = NULL;
	if (t->tail != NULL)
		t->tail->next = r;
	else
		t->head = r;
	t->tail = r;
}

static void
record_touch(struct participant *p, struct record *r)
{
	lru_unlink(&p->records, r);
	lru_append(&p->records, r);
}

static void
record_set_state(struct participant *p, struct record *r, enum rec_state s)
{
	p->nstate[r->state]--;
	p->nstate[s]++;
	r->state = s;
	r->updated_ms = util_now_ms();
}

static void
record_free(struct record *r)
{
	free(r->saga_id);
	free(r->step);
	free(r);
}

static void
record_remove(struct participant *p, struct record *r)
{
	struct table	 *t = &p->records;
	struct record	**pp;

	for (pp = &t->buckets[r->hash & (t->nbuckets - 1)]; *pp != r;
	    pp = &(*pp)->hnext)
		;
	*pp = r->hnext;
	lru_unlink(t, r);
	t->n--;
	p->nstate[r->state]--;
	record_free(r);
}

/* A new record in state s; evicts the least recently used one when full. */
static struct record *
record_new(struct participant *p, const char *saga_id, const char *step,
    enum rec_state s)
{
	struct table	*t = &p->records;
	struct record	*r;

	while (t->n >= p->max_records && t->head != NULL) {
		log_debug("%s: evicting saga %s (--max-records %zu)",
		    p->kind->name, t->head->saga_id, p->max_records);
		record_remove(p, t->head);
		p->evicted++;
	}
	if (t->n >= t->nbuckets)
		table_grow(t);
	r = util_xcalloc(1, sizeof(*r));
	r->saga_id = util_xstrdup(saga_id);
	r->step = util_xstrdup(step);
	r->state = s;
	r->created_ms = r->updated_ms = util_now_ms();
	r->hash = hash_str(saga_id);
	r->hnext = t->buckets[r->hash & (t->nbuckets - 1)];
	t->buckets[r->hash & (t->nbuckets - 1)] = r;
	lru_append(t, r);
	t->n++;
	p->nstate[s]++;
	return r;
}

static void
table_free(struct table *t)
{
	struct record	*r, *next;

	for (r = t->head; r != NULL; r = next) {
		next = r->next;
		record_free(r);
	}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

/* --- the request's context ------------------------------------------------ */

static const ProtobufCBinaryData *
ctx_get(const Saga__V1__StepRequest *req, const char *key)
{
	size_t i;

	for (i = 0; i < req->n_context; i++)
		if (strcmp(req->context[i]->key, key) == 0)
			return &req->context[i]->value;
	return NULL;
}

/*
 * Reads a failure injection value: a comma-separated list of "service" or
 * "service:N" items. Returns N for the item naming this service (INT_MAX
 * without ":N"), 0 when none names it, -1 when the value is malformed.
 */
static int
directive(const struct participant *p, const Saga__V1__StepRequest *req,
    const char *key, int max)
{
	const ProtobufCBinaryData	*v;
	const char			*s, *end, *item, *colon;
	size_t				 namelen = strlen(p->kind->name);
	long long			 n;
	char				 num[16], *ep;
	size_t				 len;

	if ((v = ctx_get(req, key)) == NULL)
		return 0;
	s = (const char *)v->data;
	end = s + v->len;
	while (s < end) {
		item = s;
		while (s < end && *s != ',')
			s++;
		len = (size_t)(s - item);
		if (s < end)
			s++;
		while (len > 0 && *item == ' ') {
			item++;
			len--;
		}
		colon = memchr(item, ':', len);
		if ((size_t)((colon != NULL ? colon : item + len) - item) !=
		    namelen || memcmp(item, p->kind->name, namelen) != 0)
			continue;
		if (colon == NULL)
			return INT_MAX;
		len -= namelen + 1;
		if (len == 0 || len >= sizeof(num))
			return -1;
		memcpy(num, colon + 1, len);
		num[len] = '\0';
		errno = 0;
		n = strtoll(num, &ep, 10);
		if (errno != 0 || *ep != '\0' || n < 0 || n > max)
			return -1;
		return (int)n;
	}
	return 0;
}

/* --- Create and Cancel ------------------------------------------------------ */

struct outcome {
	int	 status;
	char	 message[160];
	char	 id[32];	/* the reply's context[id_key], if any */
};

/*
 * The action. Its order of checks is the participant's contract: a record
 * that exists answers for the saga (the same reply for an active one, a
 * refusal for a cancelled one or a tombstone), and only then are injected
 * failures considered.
 */
static void
create_apply(struct participant *p, const struct work *w, struct outcome *o)
{
	struct record	*r;

	if ((r = table_get(&p->records, w->saga_id)) != NULL) {
		record_touch(p, r);
		switch (r->state) {
		case REC_ACTIVE:
			r->creates++;
			snprintf(o->id, sizeof(o->id), "%s", r->id);
			o->status = GRPC_STATUS_OK;
			snprintf(o->message, sizeof(o->message), "exists");
			return;
		case REC_CANCELLED:
		case REC_TOMBSTONE:
			r->creates++;
			o->status = GRPC_STATUS_ABORTED;
			snprintf(o->message, sizeof(o->message),
			    "saga %s already cancelled", w->saga_id);
			return;
		default:
			break;
		}
	} else
		r = record_new(p, w->saga_id, w->step, REC_FAILED);
	r->creates++;
	if (w->fault > 0) {
		o->status = GRPC_STATUS_ABORTED;
		snprintf(o->message, sizeof(o->message), "injected fault");
		return;
	}
	if (w->flaky > r->flaky_failures) {
		r->flaky_failures++;
		o->status = GRPC_STATUS_UNAVAILABLE;
		snprintf(o->message, sizeof(o->message),
		    "injected flaky failure %d", r->flaky_failures);
		return;
	}
	snprintf(r->id, sizeof(r->id), "%s-%" PRIu64, p->kind->id_prefix,
	    ++p->next_id);
	snprintf(r->amount, sizeof(r->amount), "%s", w->amount);
	record_set_state(p, r, REC_ACTIVE);
	snprintf(o->id, sizeof(o->id), "%s", r->id);
	o->status = GRPC_STATUS_OK;
	snprintf(o->message, sizeof(o->message), "created");
}

/*
 * The compensation: active becomes cancelled; nothing to undo (no record, or
 * only failed Creates) becomes a tombstone, which refuses a Create that
 * arrives later; an ended record stays as it is. All of these answer OK.
 */
static void
cancel_apply(struct participant *p, const struct work *w, struct outcome *o)
{
	struct record	*r;

	if ((r = table_get(&p->records, w->saga_id)) != NULL)
		record_touch(p, r);
	else
		r = record_new(p, w->saga_id, w->step, REC_FAILED);
	r->cancels++;
	if (w->undo_fail > r->undo_failures) {
		r->undo_failures++;
		o->status = GRPC_STATUS_UNAVAILABLE;
		snprintf(o->message, sizeof(o->message),
		    "injected undo failure %d", r->undo_failures);
		return;
	}
	o->status = GRPC_STATUS_OK;
	switch (r->state) {
	case REC_ACTIVE:
		record_set_state(p, r, REC_CANCELLED);
		snprintf(o->message, sizeof(o->message), "cancelled %s",
		    r->id);
		break;
	case REC_FAILED:
		record_set_state(p, r, REC_TOMBSTONE);
		snprintf(o->message, sizeof(o->message),
		    "nothing to undo: tombstone");
		break;
	default:
		snprintf(o->message, sizeof(o->message), "already cancelled");
		break;
	}
}

static void
work_free(struct participant *p, struct work *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		p->works = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	if (w->timer != NULL)
		event_free(w->timer);
	free(w->saga_id);
	free(w->step);
	free(w);
}

/* Applies the call's effect, answers it if its client is still there. */
static void
work_finish(struct work *w)
{
	struct participant		*p = w->p;
	struct method_ctx		*mc = &p->methods[w->m];
	struct outcome			 o;
	Saga__V1__StepReply		 reply;
	Saga__V1__StepReply__ContextEntry entry, *entries[1];
	char				 key[32];
	const char			*answered = "";

	memset(&o, 0, sizeof(o));
	if (w->m == M_CREATE)
		create_apply(p, w, &o);
	else
		cancel_apply(p, w, &o);
	if (o.status == GRPC_STATUS_OK)
		mc->ok++;

	if (w->call == NULL)
		answered = " (client gone, not answered)";
	else if (o.status != GRPC_STATUS_OK)
		grpc_call_finish(w->call, o.status, o.message);
	else {
		saga__v1__step_reply__init(&reply);
		if (o.id[0] != '\0') {
			saga__v1__step_reply__context_entry__init(&entry);
			snprintf(key, sizeof(key), "%s", p->kind->id_key);
			entry.key = key;
			entry.value.data = (uint8_t *)o.id;
			entry.value.len = strlen(o.id);
			entries[0] = &entry;
			reply.n_context = 1;
			reply.context = entries;
		}
		if (grpc_call_reply(w->call, &reply.base) != GRPC_CALL_OK)
			answered = " (reply not sent)";
	}
	log_debug("%s: %s saga=%s step=%s attempt=%d -> %s: %s%s%s%s "
	    "(%" PRId64 " ms)", p->kind->name, method_names[w->m], w->saga_id,
	    w->step, w->attempt, grpc_status_name(o.status), o.message,
	    o.id[0] != '\0' ? " " : "", o.id, answered,
	    util_mono_ms() - w->started_ms);

	p->inflight--;
	work_free(p, w);
}

static void
on_work_timer(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	work_finish(arg);
}

static void
on_work_cancel(struct grpc_call *call SAGAD_UNUSED, void *arg)
{
	struct work *w = arg;

	log_debug("%s: %s saga=%s: the client went away; finishing the work",
	    w->p->kind->name, method_names[w->m], w->saga_id);
	w->call = NULL;
}

static int64_t
work_delay(struct participant *p, const Saga__V1__StepRequest *req,
    enum method m)
{
	int	d;

	d = directive(p, req, m == M_CREATE ? "delay" : "delay_undo",
	    LATENCY_MAX_MS);
	if (d > 0 && d != INT_MAX)
		return d;
	if (p->jitter_ms > 0)
		return p->latency_ms + random() % (p->jitter_ms + 1);
	return p->latency_ms;
}

static void
on_step(struct grpc_call *call, void *arg)
{
	struct method_ctx		*mc = arg;
	struct participant		*p = mc->p;
	const Saga__V1__StepRequest	*req;
	const ProtobufCBinaryData	*amount;
	const struct grpc_md		*md;
	struct work			*w;
	struct timeval			 tv;
	char				 saga_id[SAGA_ID_MAX + 1];
	int				 fault, flaky, undo_fail;

	mc->calls++;
	req = (const Saga__V1__StepRequest *)grpc_call_request(call);
	saga_id[0] = '\0';
	if (req->saga_id[0] != '\0') {
		if (strlen(req->saga_id) > SAGA_ID_MAX)
			goto too_long;
		snprintf(saga_id, sizeof(saga_id), "%s", req->saga_id);
	} else if ((md = grpc_md_get(grpc_call_metadata(call),
	    "x-request-id")) != NULL && md->len > 0) {
		if (md->len > SAGA_ID_MAX)
			goto too_long;
		memcpy(saga_id, md->value, md->len);
		saga_id[md->len] = '\0';
		if (strlen(saga_id) != md->len)
			saga_id[0] = '\0';
	}
	if (saga_id[0] == '\0') {
		log_debug("%s: %s without a saga id: INVALID_ARGUMENT",
		    p->kind->name, method_names[mc->m]);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "saga_id is empty and there is no x-request-id");
		return;
	}
	if (strlen(req->step) > STEP_MAX) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "step is too long");
		return;
	}
	amount = ctx_get(req, "amount");
	if (amount != NULL && amount->len > AMOUNT_MAX) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "context[\"amount\"] is too long");
		return;
	}
	fault = directive(p, req, "fault", COUNT_MAX);
	flaky = directive(p, req, "flaky", COUNT_MAX);
	undo_fail = directive(p, req, "fault_undo", COUNT_MAX);
	if (fault < 0 || flaky < 0 || undo_fail < 0 ||
	    directive(p, req, "delay", LATENCY_MAX_MS) < 0 ||
	    directive(p, req, "delay_undo", LATENCY_MAX_MS) < 0) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed fault injection: expected \"service\" or "
		    "\"service:N\" items separated by commas");
		return;
	}

	if (p->max_inflight > 0 && p->inflight >= p->max_inflight) {
		if (p->overload_crash) {
			log_warnx("%s: %s saga=%s: %u calls in flight, "
			    "--max-inflight %u: crashing (--overload crash)",
			    p->kind->name, method_names[mc->m], saga_id,
			    p->inflight + 1, p->max_inflight);
			raise(SIGKILL);
			_exit(3);
		}
		mc->rejected++;
		log_debug("%s: %s saga=%s -> RESOURCE_EXHAUSTED: %u calls in "
		    "flight", p->kind->name, method_names[mc->m], saga_id,
		    p->inflight);
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "too many calls in flight");
		return;
	}

	w = util_xcalloc(1, sizeof(*w));
	w->p = p;
	w->m = mc->m;
	w->call = call;
	w->saga_id = util_xstrdup(saga_id);
	w->step = util_xstrdup(req->step);
	if (amount != NULL) {
		memcpy(w->amount, amount->data, amount->len);
		w->amount[amount->len] = '\0';
	}
	w->attempt = req->attempt;
	w->fault = fault;
	w->flaky = flaky;
	w->undo_fail = undo_fail;
	w->started_ms = util_mono_ms();
	w->delay_ms = work_delay(p, req, mc->m);
	w->next = p->works;
	if (p->works != NULL)
		p->works->prev = w;
	p->works = w;
	if (++p->inflight > p->peak)
		p->peak = p->inflight;

	if (w->delay_ms == 0) {
		work_finish(w);
		return;
	}
	grpc_call_on_cancel(call, on_work_cancel, w);
	w->timer = evtimer_new(p->base, on_work_timer, w);
	if (w->timer == NULL)
		fatalx("%s: evtimer_new failed", p->kind->name);
	/* From now, not from when the loop last woke up. */
	event_base_update_cache_time(p->base);
	tv.tv_sec = (time_t)(w->delay_ms / 1000);
	tv.tv_usec = (suseconds_t)(w->delay_ms % 1000) * 1000;
	evtimer_add(w->timer, &tv);
	return;

too_long:
	grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
	    "saga id is too long");
}

/* --- List ------------------------------------------------------------------ */

static Booking__V1__RecordState
record_state_pb(enum rec_state s)
{
	switch (s) {
	case REC_ACTIVE:
		return BOOKING__V1__RECORD_STATE__RECORD_STATE_ACTIVE;
	case REC_CANCELLED:
		return BOOKING__V1__RECORD_STATE__RECORD_STATE_CANCELLED;
	case REC_TOMBSTONE:
		return BOOKING__V1__RECORD_STATE__RECORD_STATE_TOMBSTONE;
	case REC_FAILED:
	default:
		return BOOKING__V1__RECORD_STATE__RECORD_STATE_FAILED;
	}
}

static void
record_pb(Booking__V1__Record *out, struct record *r)
{
	booking__v1__record__init(out);
	out->saga_id = r->saga_id;
	out->step = r->step;
	out->id = r->id;
	out->state = record_state_pb(r->state);
	out->amount = r->amount;
	out->creates = r->creates;
	out->cancels = r->cancels;
	out->created_unix_ms = r->created_ms;
	out->updated_unix_ms = r->updated_ms;
}

static void
on_list(struct grpc_call *call, void *arg)
{
	struct method_ctx		*mc = arg;
	struct participant		*p = mc->p;
	const Booking__V1__ListRequest	*req;
	Booking__V1__ListResponse	 resp;
	Booking__V1__Record		*recs = NULL, **recp = NULL;
	Booking__V1__MethodStats	 stats[M_COUNT], *statp[M_COUNT];
	struct record			*r;
	char				 service[32];
	size_t				 i, n = 0;
	int				 rc;

	mc->calls++;
	req = (const Booking__V1__ListRequest *)grpc_call_request(call);
	booking__v1__list_response__init(&resp);
	snprintf(service, sizeof(service), "%s", p->kind->name);
	resp.service = service;

	if (!req->counters_only && req->saga_id[0] != '\0') {
		if ((r = table_get(&p->records, req->saga_id)) != NULL) {
			recs = util_xcalloc(1, sizeof(*recs));
			recp = util_xcalloc(1, sizeof(*recp));
			record_pb(&recs[0], r);
			recp[0] = &recs[0];
			n = 1;
		}
	} else if (!req->counters_only && p->records.n > 0) {
		recs = util_xcalloc(p->records.n, sizeof(*recs));
		recp = util_xcalloc(p->records.n, sizeof(*recp));
		for (r = p->records.head; r != NULL; r = r->next, n++) {
			record_pb(&recs[n], r);
			recp[n] = &recs[n];
		}
	}
	resp.n_records = n;
	resp.records = recp;

	for (i = 0; i < M_COUNT; i++) {
		booking__v1__method_stats__init(&stats[i]);
		stats[i].method = p->methods[i].path;
		stats[i].calls = p->methods[i].calls;
		stats[i].ok = p->methods[i].ok;
		stats[i].rejected = p->methods[i].rejected;
		statp[i] = &stats[i];
	}
	/* This List call counts as answered OK in its own reply. */
	stats[M_LIST].ok++;
	resp.n_methods = M_COUNT;
	resp.methods = statp;
	resp.inflight = p->inflight;
	resp.peak_inflight = p->peak;
	resp.max_inflight = p->max_inflight;
	resp.active = p->nstate[REC_ACTIVE];
	resp.cancelled = p->nstate[REC_CANCELLED];
	resp.tombstones = p->nstate[REC_TOMBSTONE];
	resp.failed = p->nstate[REC_FAILED];
	resp.evicted = p->evicted;
	resp.started_unix_ms = p->started_ms;
	resp.reset_unix_ms = p->reset_ms;

	rc = grpc_call_reply(call, &resp.base);
	if (rc == GRPC_CALL_OK)
		mc->ok++;
	log_debug("%s: List saga=%s -> %s, %zu records%s", p->kind->name,
	    req->saga_id[0] != '\0' ? req->saga_id : "*",
	    rc == GRPC_CALL_OK ? "OK" : "not sent", n,
	    req->reset ? ", counters reset" : "");
	free(recs);
	free(recp);

	if (req->reset) {
		for (i = 0; i < M_COUNT; i++)
			p->methods[i].calls = p->methods[i].ok =
			    p->methods[i].rejected = 0;
		p->peak = p->inflight;
		p->evicted = 0;
		p->reset_ms = util_now_ms();
	}
}

/* --- the process ------------------------------------------------------------ */

static void
usage(FILE *f, const struct participant_kind *k)
{
	fprintf(f,
"usage: %s [-v] [-l host:port] [-L ms] [-j ms] [-m n] [-o reject|crash]\n"
"       [-r n] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n"
"The %s service of the sagad booking example: a saga participant with\n"
"/%s/Create, /%s/Cancel and /%s/List.\n"
"\n"
"  -l, --listen HOST:PORT   listen here (default %s)\n"
"  -L, --latency MS         answer each Create and Cancel after MS (default 0)\n"
"  -j, --jitter MS          add 0..MS at random to the latency (default 0)\n"
"  -m, --max-inflight N     at most N Create/Cancel calls at once (default 0:\n"
"                           no bound)\n"
"  -o, --overload ACTION    above --max-inflight: reject (RESOURCE_EXHAUSTED,\n"
"                           the default) or crash (die on SIGKILL)\n"
"  -r, --max-records N      keep at most N records, evicting the least\n"
"                           recently used (default %d)\n"
"  --tls-cert FILE, --tls-key FILE\n"
"                           serve gRPC over TLS with this certificate (PEM)\n"
"  --tls-client-ca FILE     and require client certificates signed by it\n"
"  -v, --verbose            log one line per call\n"
"  -h, --help               show this help\n"
"\n"
"Failure injection through the request's context (values are comma lists):\n"
"  fault=%s           Create answers ABORTED\n"
"  flaky=%s:N         the first N Creates of the saga answer UNAVAILABLE\n"
"  fault_undo=%s[:N]  Cancel answers UNAVAILABLE (the first N times)\n"
"  delay=%s:MS, delay_undo=%s:MS   this call's latency instead of -L\n",
	    k->name, k->name,
	    k->service, k->service, k->service, k->default_listen,
	    RECORDS_DEFAULT, k->name, k->name, k->name, k->name, k->name);
}

static int
parse_num(const struct participant_kind *k, const char *flag, const char *s,
    long long min, long long max, long long *out)
{
	char		*ep;
	long long	 n;

	errno = 0;
	n = strtoll(s, &ep, 10);
	if (errno != 0 || ep == s || *ep != '\0' || n < min || n > max) {
		fprintf(stderr, "%s: %s: expected a number from %lld to %lld, "
		    "got \"%s\"\n", k->name, flag, min, max, s);
		return -1;
	}
	*out = n;
	return 0;
}

static void
on_shutdown_done(struct grpc_server *srv SAGAD_UNUSED, void *arg)
{
	struct participant *p = arg;

	log_info("%s: stopped", p->kind->name);
	event_base_loopexit(p->base, NULL);
}

static void
on_grace(evutil_socket_t fd SAGAD_UNUSED, short ev SAGAD_UNUSED, void *arg)
{
	struct participant *p = arg;

	log_warnx("%s: connections still open after %d ms: closing them",
	    p->kind->name, SHUTDOWN_GRACE_MS);
	event_base_loopexit(p->base, NULL);
}

static void
on_signal(evutil_socket_t sig, short ev SAGAD_UNUSED, void *arg)
{
	struct participant	*p = arg;
	struct timeval		 tv = { SHUTDOWN_GRACE_MS / 1000, 0 };

	if (p->stopping) {
		log_info("%s: signal %d again: stopping now", p->kind->name,
		    (int)sig);
		event_base_loopexit(p->base, NULL);
		return;
	}
	p->stopping = 1;
	log_info("%s: signal %d: shutting down, %u calls in flight",
	    p->kind->name, (int)sig, p->inflight);
	p->grace = evtimer_new(p->base, on_grace, p);
	if (p->grace != NULL)
		evtimer_add(p->grace, &tv);
	grpc_server_shutdown(p->srv, on_shutdown_done, p);
}

/* The example serves TLS when given a certificate: sagad's services.X.tls. */
struct serve_tls {
	const char	*cert, *key, *client_ca;
};

static int
serve(struct participant *p, const char *listen, const struct serve_tls *st)
{
	struct grpc_method	 gm;
	struct event_config	*cfg;
	struct event		*sigterm, *sigint;
	char			 err[SAGAD_ERRLEN], host[256];
	int			 port, i;

	if (util_parse_hostport(listen, host, sizeof(host), &port, err,
	    sizeof(err)) == -1) {
		log_warnx("%s: --listen: %s", p->kind->name, err);
		return EXIT_USAGE;
	}
	/*
	 * A precise clock: libevent's default on Linux is the coarse one,
	 * whose timers may fire a few milliseconds before --latency is up.
	 */
	if ((cfg = event_config_new()) == NULL ||
	    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == -1 ||
	    (p->base = event_base_new_with_config(cfg)) == NULL)
		fatalx("%s: event_base_new failed", p->kind->name);
	event_config_free(cfg);
	if ((p->srv = grpc_server_new(p->base, NULL, err, sizeof(err))) ==
	    NULL)
		fatalx("%s: %s", p->kind->name, err);
	for (i = 0; i < M_COUNT; i++) {
		memset(&gm, 0, sizeof(gm));
		gm.path = p->methods[i].path;
		if (i == M_LIST) {
			gm.req = &booking__v1__list_request__descriptor;
			gm.resp = &booking__v1__list_response__descriptor;
			gm.handler = on_list;
		} else {
			gm.req = &saga__v1__step_request__descriptor;
			gm.resp = &saga__v1__step_reply__descriptor;
			gm.handler = on_step;
		}
		gm.arg = &p->methods[i];
		if (grpc_server_register(p->srv, &gm, err, sizeof(err)) == -1)
			fatalx("%s: %s", p->kind->name, err);
	}
	if (st->cert != NULL) {
		struct tls *t = tls_server_new(st->cert, st->key,
		    st->client_ca, err, sizeof(err));

		if (t == NULL) {
			log_warnx("%s: %s", p->kind->name, err);
			grpc_server_free(p->srv);
			event_base_free(p->base);
			return EXIT_USAGE;
		}
		grpc_server_set_tls(p->srv, t);
		tls_free(t);
	}
	if (grpc_server_listen(p->srv, host, port, err, sizeof(err)) == -1) {
		log_warnx("%s: listen %s: %s", p->kind->name, listen, err);
		grpc_server_free(p->srv);
		event_base_free(p->base);
		return 1;
	}
	sigterm = evsignal_new(p->base, SIGTERM, on_signal, p);
	sigint = evsignal_new(p->base, SIGINT, on_signal, p);
	if (sigterm == NULL || sigint == NULL)
		fatalx("%s: evsignal_new failed", p->kind->name);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	signal(SIGPIPE, SIG_IGN);

	log_info("%s: listening on %s:%d%s (latency %" PRId64 "+%" PRId64
	    " ms, max-inflight %u%s)", p->kind->name, host,
	    grpc_server_port(p->srv), st->cert == NULL ? "" :
	    st->client_ca != NULL ? " over mTLS" : " over TLS",
	    p->latency_ms, p->jitter_ms,
	    p->max_inflight, p->max_inflight == 0 ? "" :
	    p->overload_crash ? " crash" : " reject");
	event_base_dispatch(p->base);

	/* Calls still open get their cancel callback here; then the work. */
	grpc_server_free(p->srv);
	while (p->works != NULL) {
		p->inflight--;
		work_free(p, p->works);
	}
	event_free(sigterm);
	event_free(sigint);
	if (p->grace != NULL)
		event_free(p->grace);
	event_base_free(p->base);
	return 0;
}

int
participant_main(int argc, char *argv[], const struct participant_kind *k)
{
	static const struct option longopts[] = {
		{ "listen",		required_argument,	NULL, 'l' },
		{ "latency",		required_argument,	NULL, 'L' },
		{ "jitter",		required_argument,	NULL, 'j' },
		{ "max-inflight",	required_argument,	NULL, 'm' },
		{ "overload",		required_argument,	NULL, 'o' },
		{ "max-records",	required_argument,	NULL, 'r' },
		{ "verbose",		no_argument,		NULL, 'v' },
		{ "help",		no_argument,		NULL, 'h' },
		{ "tls-cert",		required_argument,	NULL, 1000 },
		{ "tls-key",		required_argument,	NULL, 1001 },
		{ "tls-client-ca",	required_argument,	NULL, 1002 },
		{ NULL,			0,			NULL, 0 }
	};
	struct participant	 p;
	struct serve_tls	 st = { NULL, NULL, NULL };
	const char		*listen = k->default_listen;
	long long		 n;
	int			 ch, verbose = 0, rc, i;

	memset(&p, 0, sizeof(p));
	p.kind = k;
	p.max_records = RECORDS_DEFAULT;
	while ((ch = getopt_long(argc, argv, "l:L:j:m:o:r:vh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'l':
			listen = optarg;
			break;
		case 'L':
			if (parse_num(k, "--latency", optarg, 0,
			    LATENCY_MAX_MS, &n) == -1)
				return EXIT_USAGE;
			p.latency_ms = n;
			break;
		case 'j':
			if (parse_num(k, "--jitter", optarg, 0,
			    LATENCY_MAX_MS, &n) == -1)
				return EXIT_USAGE;
			p.jitter_ms = n;
			break;
		case 'm':
			if (parse_num(k, "--max-inflight", optarg, 0,
			    1000000, &n) == -1)
				return EXIT_USAGE;
			p.max_inflight = (unsigned int)n;
			break;
		case 'o':
			if (strcmp(optarg, "reject") == 0)
				p.overload_crash = 0;
			else if (strcmp(optarg, "crash") == 0)
				p.overload_crash = 1;
			else {
				fprintf(stderr, "%s: --overload: expected "
				    "reject or crash, got \"%s\"\n", k->name,
				    optarg);
				return EXIT_USAGE;
			}
			break;
		case 'r':
			if (parse_num(k, "--max-records", optarg, 1,
			    RECORDS_MAX, &n) == -1)
				return EXIT_USAGE;
			p.max_records = (size_t)n;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout, k);
			return 0;
		case 1000:
			st.cert = optarg;
			break;
		case 1001:
			st.key = optarg;
			break;
		case 1002:
			st.client_ca = optarg;
			break;
		default:
			usage(stderr, k);
			return EXIT_USAGE;
		}
	}
	if ((st.cert == NULL) != (st.key == NULL) ||
	    (st.client_ca != NULL && st.cert == NULL)) {
		fprintf(stderr, "%s: --tls-cert and --tls-key go together "
		    "(and --tls-client-ca needs them)\n", k->name);
		return EXIT_USAGE;
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", k->name,
		    argv[optind]);
		usage(stderr, k);
		return EXIT_USAGE;
	}

	log_init(k->name, LOG_TO_STDERR, verbose);
	srandom((unsigned int)(getpid() ^ time(NULL)));
	for (i = 0; i < M_COUNT; i++) {
		p.methods[i].p = &p;
		p.methods[i].m = (enum method)i;
		snprintf(p.methods[i].path, sizeof(p.methods[i].path),
		    "/%s/%s", k->service, method_names[i]);
	}
	table_init(&p.records);
	p.started_ms = p.reset_ms = util_now_ms();
	rc = serve(&p, listen, &st);
	table_free(&p.records);
	return rc;
}
