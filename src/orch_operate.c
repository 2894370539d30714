/*
 * orch_operate.c - the operator's calls (see orch_int.h): List finds
 * sagas in the store's index; Cancel marks a PENDING or RUNNING saga in
 * the store and tells every process on saga.cancel, so that whichever
 * drives it (this master, another pod's, a worker) stops at once or at
 * its next write; Retry drives a FAILED saga's compensations again (the
 * sync engine here, or the workers for async and throttling sagas);
 * Resolve ends a FAILED saga RESOLVED with the operator's note. Each call
 * is decoded and checked here, then finished in one place: its store
 * callback.
 */
#include "autoconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "grpc/grpc.h"
#include "grpc/server.h"
#include "orch_int.h"
#include "trace_saga.h"
#include "util.h"
#include "work.h"

#define OP_TEXT_MAX	1024	/* longest reason or note */
#define OP_PAGE_DEFAULT	100
#define OP_PAGE_MAX	1000

/* One operator call waiting for the store. */
struct op {
	struct orch		*o;
	struct grpc_call	*call;		/* NULL once the caller left */
	char			*id;
	char			*text;		/* Cancel's reason, Resolve's note */
	char			*who;		/* the caller, for the log */
	struct driver		 d;		/* Resolve: the saga resolved */
};

static void
op_cancelled(struct grpc_call *call, void *arg)
{
	struct op *op = arg;

	(void)call;
	op->call = NULL;	/* the store's answer frees it */
}

static struct op *
op_new(struct orch *o, struct grpc_call *call, const char *id,
    const char *text)
{
	struct op *op = util_xcalloc(1, sizeof(*op));

	op->o = o;
	op->call = call;
	op->id = util_xstrdup(id);
	op->text = util_xstrdup(text);
	/*
	 * The caller: its token's name, else its TLS client certificate's
	 * subject, else its address.
	 */
	op->who = util_xstrdup(grpc_call_caller(call) != NULL ?
	    grpc_call_caller(call) : grpc_call_peer_name(call) != NULL ?
	    grpc_call_peer_name(call) : grpc_call_peer(call));
	grpc_call_on_cancel(call, op_cancelled, op);
	return op;
}

/* Answers the caller (pb, or status and msg) if still there; frees op. */
static void
op_finish(struct op *op, const Saga__V1__Saga *pb, int status,
    const char *msg)
{
	if (op->call != NULL) {
		grpc_call_on_cancel(op->call, NULL, NULL);
		if (pb != NULL)
			grpc_call_reply(op->call, &pb->base);
		else
			grpc_call_finish(op->call, status, msg);
	}
	if (op->d.cfg != NULL)
		driver_clear(&op->d);
	free(op->id);
	free(op->text);
	free(op->who);
	free(op);
}

/* A store failure as the caller sees it. */
static void
op_store_failed(struct op *op, enum store_result res, const char *err)
{
	if (res == STORE_NOT_FOUND)
		op_finish(op, NULL, GRPC_STATUS_NOT_FOUND, "no saga with that "
		    "id (never run, or expired)");
	else
		op_finish(op, NULL, GRPC_STATUS_UNAVAILABLE, err != NULL ? err :
		    "the saga store (Redis) is unavailable");
}

/*
 * The id and the text of a Cancel, Retry or Resolve, checked, and the store
 * up; else the call is finished with the reason and 0 returned.
 */
static int
op_check(struct orch *o, struct grpc_call *call, const char *id,
    const char *text, const char *text_field)
{
	char err[SAGAD_ERRLEN];

	if (id == NULL || *id == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "id: expected a saga id");
		return 0;
	}
	if (!orch_valid_id("id", id, err, sizeof(err))) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return 0;
	}
	if (text != NULL && strlen(text) > OP_TEXT_MAX) {
		snprintf(err, sizeof(err), "%s: expected at most %d bytes",
		    text_field, OP_TEXT_MAX);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, err);
		return 0;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return 0;
	}
	return 1;
}

static const char *
state_enum_name(int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
	    &saga__v1__state__descriptor, v);

	return ev != NULL ? ev->name : "STATE_UNSPECIFIED";
}

/* --- List --------------------------------------------------------------------------- */

/*
 * A page token is the cursor of the next page: "<created ms>.<id in hex>".
 * Returns 0, or -1 when tok is not one this server gives.
 */
static int
hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
token_decode(const char *tok, int64_t *ms, char *id, size_t idlen)
{
	const char	*dot = strchr(tok, '.'), *h;
	size_t		 n, i;

	if (dot == NULL || dot == tok || dot - tok > 15)
		return -1;
	*ms = 0;
	for (const char *p = tok; p < dot; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		*ms = *ms * 10 + (*p - '0');
	}
	h = dot + 1;
	n = strlen(h);
	if (n == 0 || n % 2 != 0 || n / 2 >= idlen)
		return -1;
	for (i = 0; i < n / 2; i++) {
		int hi = hex_nibble(h[2 * i]), lo = hex_nibble(h[2 * i + 1]);

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		id[i] = (char)(hi << 4 | lo);
	}
	id[i] = '\0';
	return 0;
}

static void
token_encode(char *buf, size_t len, int64_t ms, const char *id)
{
	size_t k = (size_t)snprintf(buf, len, "%lld.", (long long)ms);

	for (; *id != '\0' && k + 3 <= len; id++, k += 2)
		snprintf(buf + k, len - k, "%02x", (unsigned char)*id);
}

static void
list_done(enum store_result res, Saga__V1__Saga *const *sagas, size_t n,
    int more, int64_t last_ms, const char *last_id, const char *err,
    void *arg)
{
	struct op		*op = arg;
	Saga__V1__ListResponse	 resp;
	char			 tok[2 * STORE_ID_MAX + 32];

	if (res != STORE_OK) {
		op_store_failed(op, res, err);
		return;
	}
	saga__v1__list_response__init(&resp);
	resp.n_sagas = n;
	resp.sagas = (Saga__V1__Saga **)(uintptr_t)sagas;
	if (more && last_id != NULL) {
		token_encode(tok, sizeof(tok), last_ms, last_id);
		resp.next_page_token = tok;
	}
	if (op->call != NULL) {
		grpc_call_on_cancel(op->call, NULL, NULL);
		grpc_call_reply(op->call, &resp.base);
		op->call = NULL;
	}
	op_finish(op, NULL, 0, NULL);
}

void
operate_list(struct grpc_call *call, void *arg)
{
	struct orch			*o = arg;
	const Saga__V1__ListRequest	*req;
	struct store_list_query		 q;
	const char			*states[SAGA_STATE_MAX];
	char				 err[SAGAD_ERRLEN], after[STORE_ID_MAX + 1];
	struct op			*op;

	req = (const Saga__V1__ListRequest *)grpc_call_request(call);
	memset(&q, 0, sizeof(q));
	for (size_t i = 0; i < req->n_states; i++) {
		int v = (int)req->states[i], dup = 0;

		if (v <= SAGA_STATE_UNSPECIFIED || v > SAGA_STATE_MAX) {
			snprintf(err, sizeof(err), "states: %d is not a state "
			    "(STATE_PENDING ... STATE_RESOLVED)", v);
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
			    err);
			return;
		}
		for (size_t k = 0; k < q.nstates; k++)
			if (strcmp(states[k], state_enum_name(v)) == 0)
				dup = 1;
		if (!dup)
			states[q.nstates++] = state_enum_name(v);
	}
	q.states = states;
	if (req->flow != NULL && *req->flow != '\0') {
		if (strlen(req->flow) > CONFIG_NAME_MAX ||
		    strpbrk(req->flow, ": {}|") != NULL) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
			    "flow: expected a flow name");
			return;
		}
		q.flow = req->flow;
	}
	if (req->since_unix_ms < 0 || req->until_unix_ms < 0 ||
	    (req->until_unix_ms > 0 && req->since_unix_ms >=
	    req->until_unix_ms)) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "since_unix_ms, until_unix_ms: expected 0 <= since < until "
		    "(0: no bound)");
		return;
	}
	q.since_ms = req->since_unix_ms;
	q.until_ms = req->until_unix_ms;
	if (req->page_size < 0) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "page_size: expected 0 (100) to 1000");
		return;
	}
	q.limit = req->page_size == 0 ? OP_PAGE_DEFAULT :
	    req->page_size > OP_PAGE_MAX ? OP_PAGE_MAX : req->page_size;
	if (req->page_token != NULL && *req->page_token != '\0') {
		if (token_decode(req->page_token, &q.after_ms, after,
		    sizeof(after)) == -1) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
			    "page_token: expected the next_page_token of a "
			    "previous page");
			return;
		}
		q.after_id = after;
	}
	if (!store_is_up(o->store)) {
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE,
		    "the saga store (Redis) is unavailable");
		return;
	}
	op = op_new(o, call, "", NULL);
	store_list(o->store, &q, list_done, op);
}

/* --- Cancel ------------------------------------------------------------------------- */

/* Every process hears it; the one driving the saga stops at once. */
static void
cancel_tell(struct orch *o, const char *id, const char *reason)
{
	uint8_t	*buf;
	size_t	 len;
	char	 err[SAGAD_ERRLEN];

	sync_cancel(o, id, reason);
	if (o->bus == NULL || !bus_is_connected(o->bus))
		return;		/* the driver learns it at its next write */
	buf = work_cancel_pack(id, reason, &len);
	if (bus_notify(o->bus, o->cancel_subject, buf, len, err,
	    sizeof(err)) == -1)
		orch_log(o, UTIL_WARN, id, "cancel notice: %s", err);
	free(buf);
}

void
operate_cancel_heard(struct bus_listener *l, const char *subject,
    const void *data, size_t len, void *arg)
{
	struct orch	*o = arg;
	char		 id[STORE_ID_MAX + 1], reason[OP_TEXT_MAX + 1];

	(void)l;
	(void)subject;
	if (!o->closing && work_cancel_unpack(data, len, id, sizeof(id),
	    reason, sizeof(reason)) == 0)
		sync_cancel(o, id, reason);
}

static void
cancel_done(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct op	*op = arg;
	char		 msg[SAGAD_ERRLEN];

	switch (res) {
	case STORE_OK:
		orch_log(op->o, UTIL_INFO, op->id, "cancel asked by %s: %s",
		    op->who, op->text);
		cancel_tell(op->o, op->id, op->text);
		/* FALLTHROUGH */
	case STORE_UNCHANGED:
		op_finish(op, rec->saga, 0, NULL);
		return;
	case STORE_ENDED:
		snprintf(msg, sizeof(msg), "the saga has ended (%s): there is "
		    "nothing to cancel", state_enum_name(rec->saga->state));
		op_finish(op, NULL, GRPC_STATUS_FAILED_PRECONDITION, msg);
		return;
	default:
		op_store_failed(op, res, err);
		return;
	}
}

void
operate_cancel(struct grpc_call *call, void *arg)
{
	struct orch			*o = arg;
	const Saga__V1__CancelRequest	*req;
	const char			*reason;
	struct op			*op;

	req = (const Saga__V1__CancelRequest *)grpc_call_request(call);
	reason = req->reason != NULL && *req->reason != '\0' ? req->reason :
	    "by an operator";
	if (!op_check(o, call, req->id, reason, "reason"))
		return;
	op = op_new(o, call, req->id, reason);
	store_cancel(o->store, op->id, op->text, cancel_done, op);
}

/* --- Retry -------------------------------------------------------------------------- */

static void
retry_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct op	*op = arg;
	char		 msg[SAGAD_ERRLEN];
	int		 sync;

	if (res != STORE_OK) {
		op_store_failed(op, res, err);
		return;
	}
	if (rec->saga->state != SAGA__V1__STATE__STATE_FAILED) {
		snprintf(msg, sizeof(msg), "only a FAILED saga can be retried; "
		    "this one is %s", state_enum_name(rec->saga->state));
		op_finish(op, NULL, GRPC_STATUS_FAILED_PRECONDITION, msg);
		return;
	}
	if (op->call == NULL || op->o->closing) {
		op_finish(op, NULL, 0, NULL);
		return;
	}
	/* The engine of its mode drives it from here, and answers. */
	grpc_call_on_cancel(op->call, NULL, NULL);
	sync = rec->saga->mode == SAGA__V1__MODE__MODE_SYNC;
	if (sync && sync_retry(op->o, op->call, rec, msg, sizeof(msg)) == -1)
		grpc_call_finish(op->call, GRPC_STATUS_FAILED_PRECONDITION,
		    msg);
	else if (!sync)
		launch_retry(op->o, op->call, rec);
	op->call = NULL;
	op_finish(op, NULL, 0, NULL);
}

void
operate_retry(struct grpc_call *call, void *arg)
{
	struct orch			*o = arg;
	const Saga__V1__RetryRequest	*req;
	struct op			*op;

	req = (const Saga__V1__RetryRequest *)grpc_call_request(call);
	if (!op_check(o, call, req->id, NULL, NULL))
		return;
	op = op_new(o, call, req->id, NULL);
	store_get(o->store, op->id, retry_got, op);
}

/* --- Resolve ------------------------------------------------------------------------ */

static void
resolve_written(enum store_result res, int64_t rev, const char *cancel,
    const char *err, void *arg)
{
	struct op	*op = arg;
	struct saga_pb	 v;

	(void)cancel;
	if (res == STORE_CONFLICT) {
		op_finish(op, NULL, GRPC_STATUS_ABORTED, "the saga changed "
		    "meanwhile (a Retry?): look at it again");
		return;
	}
	if (res != STORE_OK) {
		op_store_failed(op, res, err);
		return;
	}
	driver_written(&op->d, rev);	/* counts it RESOLVED (metrics) */
	orch_log(op->o, UTIL_INFO, op->id, "RESOLVED by an operator (%s): %s",
	    op->who, op->text);
	trace_saga_end(&op->d);		/* its line: it has ended RESOLVED */
	saga_pb_view(op->d.s, &v);
	op_finish(op, &v.pb, 0, NULL);
	saga_pb_view_free(&v);
}

static void
resolve_got(enum store_result res, struct store_saga *rec, const char *err,
    void *arg)
{
	struct op		*op = arg;
	struct orch		*o = op->o;
	struct driver_write	 dw;
	char			 msg[SAGAD_ERRLEN];

	if (res != STORE_OK) {
		op_store_failed(op, res, err);
		return;
	}
	if (rec->saga->state != SAGA__V1__STATE__STATE_FAILED) {
		snprintf(msg, sizeof(msg), "only a FAILED saga can be "
		    "resolved; this one is %s",
		    state_enum_name(rec->saga->state));
		op_finish(op, NULL, GRPC_STATUS_FAILED_PRECONDITION, msg);
		return;
	}
	driver_init(&op->d, o->cfg, config_flow_find(o->cfg,
	    rec->saga->flow), saga_from_pb(rec->saga), &o->rng);
	op->d.rev = rec->rev;
	op->d.wrote.step = (size_t)rec->step;
	op->d.wrote.compensate = rec->compensate;
	op->d.wrote.attempt = rec->attempt;
	driver_resolve(&op->d, op->text, util_now_ms());
	driver_write(&op->d, &dw);
	store_update(o->store, &dw.w, resolve_written, op);
	driver_write_free(&dw);
}

void
operate_resolve(struct grpc_call *call, void *arg)
{
	struct orch			*o = arg;
	const Saga__V1__ResolveRequest	*req;
	struct op			*op;

	req = (const Saga__V1__ResolveRequest *)grpc_call_request(call);
	if (req->note == NULL || *req->note == '\0') {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "note: say what was done to repair the saga");
		return;
	}
	if (!op_check(o, call, req->id, req->note, "note"))
		return;
	op = op_new(o, call, req->id, req->note);
	store_get(o->store, op->id, resolve_got, op);
}
