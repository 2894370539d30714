/*
 * store_cmd.c - the saga store's calls (see store.h): each one's command
 * and arguments as the scripts of store_lua.c take them, and the parsing
 * of its reply into what its callback gets. The connections, the requests
 * and their batching are store.c's.
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "util.h"

#define LEGACY_LEASES	"saga:leases"	/* the previous layout's one zset */
#define PODS_KEY	"saga:pods"	/* the pods' registry (store_pods) */
#define PODS_GONE_KEY	"saga:pods:gone" /* adoptions over (store_pods) */

/* --- replies ----------------------------------------------------------------- */

/* "STEP UNDO ATTEMPT", the at field. */
static void
parse_at(const char *s, struct store_saga *rec)
{
	char *end;

	rec->step = (int)strtol(s, &end, 10);
	rec->compensate = (int)strtol(end, &end, 10) == 1;
	rec->attempt = (int)strtol(end, NULL, 10);
}

/*
 * Fills rec from a flat HGETALL array. Strings point into the reply. Returns
 * 0, or -1 with err filled.
 */
int
store_parse_hash(const struct redisReply *h, struct store_saga *rec,
    char *err, size_t errlen)
{
	const redisReply *k, *v;
	const redisReply *pb = NULL, *p0 = NULL, **pieces;
	unsigned char *buf;
	size_t i, len;
	long pn = 0, j;
	char *end;

	memset(rec, 0, sizeof(*rec));
	rec->pod = rec->owner = rec->callback = rec->cancel = "";
	if (h->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "saga hash: unexpected reply type %d",
		    h->type);
		return -1;
	}
	for (i = 0; i + 1 < h->elements; i += 2) {
		k = h->element[i];
		v = h->element[i + 1];
		if (k->type != REDIS_REPLY_STRING ||
		    v->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k->str, "p") == 0)
			p0 = v;
		else if (strcmp(k->str, "pn") == 0)
			pn = strtol(v->str, NULL, 10);
		else if (strcmp(k->str, "pb") == 0)
			pb = v;		/* the previous layout: whole */
		else if (strcmp(k->str, "rev") == 0)
			rec->rev = strtoll(v->str, NULL, 10);
		else if (strcmp(k->str, "at") == 0)
			parse_at(v->str, rec);
		else if (strcmp(k->str, "step") == 0)	/* previous layout */
			rec->step = (int)strtol(v->str, NULL, 10);
		else if (strcmp(k->str, "undo") == 0)
			rec->compensate = strcmp(v->str, "1") == 0;
		else if (strcmp(k->str, "attempt") == 0)
			rec->attempt = (int)strtol(v->str, NULL, 10);
		else if (strcmp(k->str, "pod") == 0)
			rec->pod = v->str;
		else if (strcmp(k->str, "owner") == 0)
			rec->owner = v->str;
		else if (strcmp(k->str, "callback") == 0)
			rec->callback = v->str;
		else if (strcmp(k->str, "cancel") == 0)
			rec->cancel = v->str;
		else if (strcmp(k->str, "round") == 0)
			rec->round = (int)strtol(v->str, NULL, 10);
	}
	if (pb == NULL && p0 != NULL && pn <= 1)
		pb = p0;
	if (pb != NULL) {
		rec->saga = saga__v1__saga__unpack(NULL, pb->len,
		    (const uint8_t *)pb->str);
	} else if (p0 != NULL) {
		/* The pieces p, p.1, p.2... in any order: put together. */
		if ((size_t)pn > h->elements / 2) {
			snprintf(err, errlen, "saga hash: pn %ld is more than "
			    "its fields", pn);
			return -1;
		}
		pieces = util_xcalloc((size_t)pn, sizeof(*pieces));
		pieces[0] = p0;
		for (i = 0; i + 1 < h->elements; i += 2) {
			k = h->element[i];
			v = h->element[i + 1];
			if (k->type != REDIS_REPLY_STRING ||
			    v->type != REDIS_REPLY_STRING ||
			    strncmp(k->str, "p.", 2) != 0)
				continue;
			j = strtol(k->str + 2, &end, 10);
			if (*end == '\0' && j >= 1 && j < pn)
				pieces[j] = v;
		}
		len = 0;
		for (j = 0; j < pn && pieces[j] != NULL; j++)
			len += pieces[j]->len;
		if (j < pn) {
			free(pieces);
			snprintf(err, errlen, "saga hash: piece %ld of its pb "
			    "is missing", j);
			return -1;
		}
		buf = util_xcalloc(1, len + 1);
		len = 0;
		for (j = 0; j < pn; j++) {
			memcpy(buf + len, pieces[j]->str, pieces[j]->len);
			len += pieces[j]->len;
		}
		rec->saga = saga__v1__saga__unpack(NULL, len, buf);
		free(buf);
		free(pieces);
	} else {
		snprintf(err, errlen, "saga hash has no pb field");
		return -1;
	}
	if (rec->saga == NULL) {
		snprintf(err, errlen, "saga hash: pb does not decode as "
		    "saga.v1.Saga");
		return -1;
	}
	return 0;
}

static void
saga_done(struct req *r, enum store_result res, struct store_saga *rec,
    const char *err)
{
	r->cb.saga(res, rec, err, r->arg);
	if (rec != NULL && rec->saga != NULL)
		saga__v1__saga__free_unpacked(rec->saga, NULL);
}

void
store_reply_get(struct req *r, const redisReply *rep)
{
	struct store_saga rec;
	char err[SAGAD_ERRLEN];

	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 0) {
		r->cb.saga(STORE_NOT_FOUND, NULL, "no such saga", r->arg);
		return;
	}
	if (store_parse_hash(rep, &rec, err, sizeof(err)) == -1) {
		saga_done(r, STORE_ERROR, NULL, err);
		return;
	}
	saga_done(r, STORE_OK, &rec, NULL);
}

static void
reply_write(struct req *r, const redisReply *rep)
{
	struct store_saga rec;
	char err[SAGAD_ERRLEN];
	const char *what;
	long long n = 0;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		snprintf(err, sizeof(err), "write script: unexpected reply");
		store_req_fail(r, STORE_ERROR, err);
		return;
	}
	what = rep->element[0]->str;
	if (rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_INTEGER)
		n = rep->element[1]->integer;
	else if (rep->elements > 1 &&
	    rep->element[1]->type == REDIS_REPLY_STRING)
		n = strtoll(rep->element[1]->str, NULL, 10);	/* OK's rev */
	if (strcmp(what, "ERR") == 0) {
		/* A Redis error inside this write (OOM, wrong type...). */
		what = rep->elements > 1 &&
		    rep->element[1]->type == REDIS_REPLY_STRING ?
		    rep->element[1]->str : "write script failed";
		store_req_fail(r, store_error_result(what), what);
		return;
	}
	if (strcmp(what, "OK") == 0) {
		if (r->kind == REQ_UPDATE)
			r->cb.rev(STORE_OK, n, rep->elements > 2 &&
			    rep->element[2]->type == REDIS_REPLY_STRING ?
			    rep->element[2]->str : NULL, NULL, r->arg);
		else {
			memset(&rec, 0, sizeof(rec));
			rec.rev = n;
			rec.pod = rec.owner = rec.callback = rec.cancel = "";
			r->cb.saga(STORE_OK, &rec, NULL, r->arg);
		}
	} else if (strcmp(what, "CONFLICT") == 0) {
		r->cb.rev(STORE_CONFLICT, n, NULL, "revision changed", r->arg);
	} else if (strcmp(what, "NOTFOUND") == 0) {
		store_req_fail(r, STORE_NOT_FOUND, "no such saga");
		return;
	} else if (strcmp(what, "EXISTS") == 0 && rep->elements > 1 &&
	    r->kind == REQ_CREATE) {
		if (store_parse_hash(rep->element[1], &rec, err, sizeof(err)) == -1)
			saga_done(r, STORE_ERROR, NULL, err);
		else
			saga_done(r, STORE_EXISTS, &rec, "saga exists");
	} else {
		snprintf(err, sizeof(err), "write script: unexpected %s",
		    what);
		store_req_fail(r, STORE_ERROR, err);
		return;
	}
	store_req_free(r);
}

/* One result per write of the batch, in the order they were queued. */
void
store_reply_batch(struct req *r, const redisReply *rep)
{
	struct req *w;
	size_t i = 0;

	if (rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != (size_t)r->nbatch) {
		store_req_fail(r, STORE_ERROR, "write script: unexpected reply");
		return;
	}
	while ((w = TAILQ_FIRST(&r->batch)) != NULL) {
		TAILQ_REMOVE(&r->batch, w, entry);
		if (store_failover_on(r->st) &&
		    store_write_retried(w, rep->element[i])) {
			i++;
			continue;
		}
		reply_write(w, rep->element[i++]);
	}
	store_req_free(r);
}

void
store_reply_cancel(struct req *r, const redisReply *rep)
{
	static const struct { const char *what; enum store_result res; }
	    map[] = { { "OK", STORE_OK }, { "UNCHANGED", STORE_UNCHANGED },
	    { "ENDED", STORE_ENDED } };
	struct store_saga	rec;
	char			err[SAGAD_ERRLEN];

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		store_req_fail(r, STORE_ERROR, "cancel script: unexpected "
		    "reply");
		return;
	}
	if (strcmp(rep->element[0]->str, "NOTFOUND") == 0) {
		store_req_fail(r, STORE_NOT_FOUND, "no such saga");
		return;
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(rep->element[0]->str, map[i].what) != 0 ||
		    rep->elements < 2)
			continue;
		if (store_parse_hash(rep->element[1], &rec, err, sizeof(err)) == -1)
			saga_done(r, STORE_ERROR, NULL, err);
		else
			saga_done(r, map[i].res, &rec, NULL);
		store_req_free(r);
		return;
	}
	store_req_fail(r, STORE_ERROR, "cancel script: unexpected reply");
}

/* Triples of (id, score, pb) from the list script: the page and more. */
void
store_reply_list(struct req *r, const redisReply *rep)
{
	Saga__V1__Saga	**sagas;
	size_t		  n = 0, k, limit = (size_t)r->nbatch;
	int64_t		  last_ms = 0;
	const char	 *last_id = NULL;
	int		  more;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements % 3 != 0) {
		store_req_fail(r, STORE_ERROR, "list script: unexpected reply");
		return;
	}
	k = rep->elements / 3;
	more = k > limit;
	if (more)
		k = limit;
	sagas = util_xcalloc(k + 1, sizeof(*sagas));
	for (size_t i = 0; i < k; i++) {
		const redisReply *id = rep->element[3 * i],
		    *sc = rep->element[3 * i + 1], *pb = rep->element[3 * i + 2];

		if (id->type != REDIS_REPLY_STRING ||
		    sc->type != REDIS_REPLY_STRING ||
		    pb->type != REDIS_REPLY_STRING)
			continue;
		last_id = id->str;
		last_ms = strtoll(sc->str, NULL, 10);
		if (pb->len == 0)
			continue;	/* expired since the index had it */
		sagas[n] = saga__v1__saga__unpack(NULL, pb->len,
		    (const uint8_t *)pb->str);
		if (sagas[n] != NULL)
			n++;
	}
	r->cb.list(STORE_OK, sagas, n, more, last_ms, last_id, NULL, r->arg);
	for (size_t i = 0; i < n; i++)
		saga__v1__saga__free_unpacked(sagas[i], NULL);
	free(sagas);
	store_req_free(r);
}

void
store_reply_ids(struct req *r, const redisReply *rep)
{
	char **ids;
	size_t i, n = 0;

	if (rep->type != REDIS_REPLY_ARRAY) {
		store_req_fail(r, STORE_ERROR, "lease script: unexpected reply");
		return;
	}
	ids = util_xcalloc(rep->elements + 1, sizeof(*ids));
	for (i = 0; i < rep->elements; i++)
		if (rep->element[i]->type == REDIS_REPLY_STRING)
			ids[n++] = rep->element[i]->str;
	r->cb.ids(STORE_OK, ids, n, NULL, r->arg);
	free(ids);
	store_req_free(r);
}

/* --- the calls --------------------------------------------------------------- */

/* "saga:{ID}" and what follows it, as one argument of seg. */
static void
seg_saga_key(struct seg *g, const char *id, size_t len, const char *suffix)
{
	size_t	 slen = strlen(suffix);
	char	*p = store_seg_open(g, len + sizeof("saga:{}") - 1 + slen);

	memcpy(p, "saga:{", 6);
	memcpy(p + 6, id, len);
	p[6 + len] = '}';
	memcpy(p + 7 + len, suffix, slen);
}

/*
 * The write script's four keys for the saga id, into r->keys: its hash,
 * its watch stream and flag, its lease bucket.
 */
static void
req_keys(struct req *r, const char *id)
{
	size_t	len = strlen(id);
	char	lk[32];

	seg_saga_key(&r->keys, id, len, "");
	seg_saga_key(&r->keys, id, len, ":events");
	seg_saga_key(&r->keys, id, len, ":w");
	snprintf(lk, sizeof(lk), "saga:leases:{b%u}", store_bucket(id));
	store_seg_arg(&r->keys, lk, strlen(lk));
}

static int
id_ok(const char *id)
{
	size_t len;

	if (id == NULL)
		return 0;
	len = strlen(id);
	return len > 0 && len <= STORE_ID_MAX;
}

static void
field(struct req *r, const char *k, const char *v)
{
	store_req_str(r, k);
	store_req_str(r, v != NULL ? v : "");
}

static void
field_int(struct req *r, const char *k, long long v)
{
	store_req_str(r, k);
	store_req_int(r, v);
}

/* Appends v as a protobuf varint at p; returns its length. */
static size_t
put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Builds the write script's call for w into r (see script_write). */
static void
write_args(struct store *st, struct req *r, const struct store_write *w,
    int64_t rev)
{
	static char noid[1];
	const Saga__V1__Saga *s = w->saga;
	Saga__V1__SagaEvent ev;
	uint8_t vb[10], *p;
	char pre[32], at[48];
	size_t len, i, total;
	int nf = 2, ttl;

	r->script = SCRIPT_WRITE;
	req_keys(r, s->id);
	store_req_str(r, s->id);
	store_req_int(r, rev);
	store_req_int(r, rev + 1);	/* the revision it writes */
	store_req_int(r, w->lease_ms);
	store_req_str(r, w->owner != NULL ? w->owner : "");
	ttl = st->saga_ttl;
	if (s->state == SAGA__V1__STATE__STATE_COMPLETED &&
	    st->completed_ttl > 0)
		ttl = st->completed_ttl;
	store_req_int(r, ttl > 0 ? ttl : 0);
	store_req_str(r, store_state_terminal(s->state) ? "1" : w->reopen ? "2" : "0");
	store_req_int(r, st->events_max);
	/* The index's keys and score, and the state it files the saga under. */
	store_req_str(r, s->flow);
	store_req_int(r, s->created_unix_ms);
	store_req_str(r, store_enum_name(&saga__v1__state__descriptor, s->state));
	snprintf(pre, sizeof(pre), "saga:idx:{b%u}:", store_bucket(s->id));
	store_req_str(r, pre);
	/* Packed straight into the request: no buffer of its own. */
	len = saga__v1__saga__get_packed_size(s);
	p = (uint8_t *)store_seg_open(&r->args, len);
	saga__v1__saga__pack(s, p);
	/* What a write sent again compares (store_failover.c). */
	r->exp_rev = rev;
	r->pb_off = (size_t)((char *)p - r->args.p);
	r->pb_len = len;
	if (w->pod != NULL)
		nf++;
	if (w->callback != NULL)
		nf++;
	if (w->round > 0)
		nf++;
	if (rev == 0)
		nf++;
	store_req_int(r, nf);
	/*
	 * Only what the scripts and a read need apart from the packed saga,
	 * which has the rest (flow, mode, created, error...): few fields, as
	 * each costs a scan of the hash's listpack.
	 */
	field(r, "state", store_enum_name(&saga__v1__state__descriptor, s->state));
	snprintf(at, sizeof(at), "%d %d %d", w->step, w->compensate ? 1 : 0,
	    w->attempt);
	field(r, "at", at);
	if (rev == 0)	/* the claim script tells sync sagas by it */
		field(r, "mode", store_enum_name(&saga__v1__mode__descriptor,
		    s->mode));
	if (w->pod != NULL)
		field(r, "pod", w->pod);
	if (w->callback != NULL)
		field(r, "callback", w->callback);
	if (w->round > 0)
		field_int(r, "round", w->round);

	/*
	 * The write's events as one value: each a varint length and the
	 * packed event, without its saga id (the key says it: store_watch).
	 */
	total = 0;
	for (i = 0; i < w->nevents; i++) {
		ev = *w->events[i];
		ev.saga_id = noid;
		len = saga__v1__saga_event__get_packed_size(&ev);
		total += put_varint(vb, len) + len;
	}
	p = (uint8_t *)store_seg_open(&r->args, total);
	for (i = 0; i < w->nevents; i++) {
		ev = *w->events[i];
		ev.saga_id = noid;
		len = saga__v1__saga_event__get_packed_size(&ev);
		p += put_varint(p, len);
		p += saga__v1__saga_event__pack(&ev, p);
	}
}

void
store_create(struct store *st, const struct store_write *w,
    store_saga_cb *cb, void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_CREATE);
	r->cb.saga = cb;
	r->arg = arg;
	if (w->saga == NULL || !id_ok(w->saga->id)) {
		store_req_defer(r, STORE_ERROR, "saga id must have 1 to 256 bytes");
		return;
	}
	write_args(st, r, w, 0);
	store_batch_add(r);
}

void
store_update(struct store *st, const struct store_write *w,
    store_rev_cb *cb, void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_UPDATE);
	r->cb.rev = cb;
	r->arg = arg;
	if (w->saga == NULL || !id_ok(w->saga->id)) {
		store_req_defer(r, STORE_ERROR, "saga id must have 1 to 256 bytes");
		return;
	}
	if (w->rev <= 0) {
		store_req_defer(r, STORE_ERROR, "update needs the revision read");
		return;
	}
	write_args(st, r, w, w->rev);
	store_batch_add(r);
}

void
store_get(struct store *st, const char *id, store_saga_cb *cb, void *arg)
{
	struct req *r;
	char *k;
	size_t len;

	r = store_req_new(st, &st->main, REQ_GET);
	r->cb.saga = cb;
	r->arg = arg;
	if (!id_ok(id)) {
		store_req_defer(r, STORE_ERROR, "saga id must have 1 to 256 bytes");
		return;
	}
	len = strlen(id) + sizeof("saga:{}");
	k = util_xcalloc(1, len);
	snprintf(k, len, "saga:{%s}", id);
	store_req_str(r, "HGETALL");
	store_req_str(r, k);
	free(k);
	store_req_submit(r);
}

void
store_lease_renew(struct store *st, const char *owner,
    const char *const *ids, size_t nids, int lease_ms, store_ids_cb *cb,
    void *arg)
{
	struct req *r;
	size_t i;

	r = store_req_new(st, &st->main, REQ_RENEW);
	r->cb.ids = cb;
	r->arg = arg;
	if (owner == NULL || owner[0] == '\0' || lease_ms <= 0) {
		store_req_defer(r, STORE_ERROR, "renew needs an owner and a lease");
		return;
	}
	/* Each id's bucket is found by the script (bucket()). */
	r->script = SCRIPT_RENEW;
	store_req_str(r, owner);
	store_req_int(r, lease_ms);
	for (i = 0; i < nids; i++)
		store_req_str(r, ids[i]);
	store_req_submit(r);
}

void
store_lease_claim(struct store *st, const char *claimer, int max,
    int lease_ms, int launch_lease_ms, store_ids_cb *cb, void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_CLAIM);
	r->cb.ids = cb;
	r->arg = arg;
	if (claimer == NULL || claimer[0] == '\0' || max <= 0 ||
	    lease_ms <= 0 || launch_lease_ms <= 0) {
		store_req_defer(r, STORE_ERROR, "claim needs a claimer, a count "
		    "and a lease");
		return;
	}
	/* Every bucket, then the previous layout's one zset. */
	r->script = SCRIPT_CLAIM;
	for (unsigned b = 0; b < STORE_BUCKETS; b++) {
		char lk[32];

		snprintf(lk, sizeof(lk), "saga:leases:{b%u}", b);
		store_seg_arg(&r->keys, lk, strlen(lk));
	}
	store_seg_arg(&r->keys, LEGACY_LEASES, sizeof(LEGACY_LEASES) - 1);
	store_req_str(r, claimer);
	store_req_int(r, lease_ms);
	store_req_int(r, max);
	store_req_int(r, launch_lease_ms);
	store_req_submit(r);
}

void
store_pods(struct store *st, const struct store_pods_beat *b,
    store_ids_cb *cb, void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_CLAIM);
	r->cb.ids = cb;
	r->arg = arg;
	if (b->me == NULL || b->me[0] == '\0' || b->lease_ms <= 0 ||
	    b->max < 0 || b->gone_keep_ms <= 0) {
		store_req_defer(r, STORE_ERROR, "the pods' registry needs a pod "
		    "and a lease");
		return;
	}
	r->script = SCRIPT_PODS;
	store_seg_arg(&r->keys, PODS_KEY, sizeof(PODS_KEY) - 1);
	store_seg_arg(&r->keys, PODS_GONE_KEY, sizeof(PODS_GONE_KEY) - 1);
	store_req_str(r, b->me);
	store_req_int(r, b->lease_ms);
	store_req_int(r, b->max);
	store_req_int(r, (long long)b->nrenew);
	store_req_int(r, (long long)b->nrelease);
	store_req_int(r, b->gone_keep_ms);
	for (size_t i = 0; i < b->nrenew; i++)
		store_req_str(r, b->renew[i]);
	for (size_t i = 0; i < b->nrelease; i++)
		store_req_str(r, b->release[i]);
	for (size_t i = 0; i < b->nreclaim; i++)
		store_req_str(r, b->reclaim[i]);
	store_req_submit(r);
}

/* The saga's hash key alone: saga:{ID}. */
static void
hash_key(struct req *r, const char *id)
{
	seg_saga_key(&r->keys, id, strlen(id), "");
}

void
store_cancel(struct store *st, const char *id, const char *reason,
    store_saga_cb *cb, void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_CANCEL);
	r->cb.saga = cb;
	r->arg = arg;
	if (!id_ok(id)) {
		store_req_defer(r, STORE_ERROR, "bad saga id");
		return;
	}
	r->script = SCRIPT_CANCEL;
	hash_key(r, id);
	store_req_str(r, reason != NULL ? reason : "");
	store_req_submit(r);
}

void
store_list(struct store *st, const struct store_list_query *q,
    store_list_cb *cb, void *arg)
{
	const char	*flow = q->flow != NULL && *q->flow ? q->flow : NULL;
	struct req	*r;

	r = store_req_new(st, &st->main, REQ_LIST);
	r->cb.list = cb;
	r->arg = arg;
	r->nbatch = q->limit;		/* the page size, for the reply */
	if (q->limit < 1 || q->limit > 1000 || q->nstates > 16 ||
	    (q->after_id != NULL && !id_ok(q->after_id))) {
		store_req_defer(r, STORE_ERROR, "bad list query");
		return;
	}
	r->script = SCRIPT_LIST;
	store_req_str(r, flow != NULL ? flow : "");
	/* Scores are creation ms: until is exclusive, since inclusive. */
	store_req_int(r, q->until_ms > 0 ? q->until_ms - 1 :
	    9007199254740991LL);
	store_req_int(r, q->since_ms > 0 ? q->since_ms : 0);
	store_req_int(r, q->after_id != NULL ? q->after_ms : 0);
	store_req_str(r, q->after_id != NULL ? q->after_id : "");
	store_req_int(r, q->limit);
	if (q->nstates == 0) {
		/* Every state: a page from each state's set, merged. */
		for (int v = SAGA__V1__STATE__STATE_PENDING;
		    v <= SAGA__V1__STATE__STATE_RESOLVED; v++)
			store_req_str(r, store_enum_name(
			    &saga__v1__state__descriptor, v));
	}
	for (size_t i = 0; i < q->nstates; i++)
		store_req_str(r, q->states[i]);
	store_req_submit(r);
}

void
store_index_expire(struct store *st, int max, store_count_cb *cb, void *arg)
{
	static const int ended[] = { SAGA__V1__STATE__STATE_COMPLETED,
	    SAGA__V1__STATE__STATE_COMPENSATED,
	    SAGA__V1__STATE__STATE_RESOLVED };
	struct req *r;

	r = store_req_new(st, &st->main, REQ_EXPIRE);
	r->cb.count = cb;
	r->arg = arg;
	if (st->saga_ttl <= 0 && st->completed_ttl <= 0) {
		store_req_defer(r, STORE_OK, "sagas never expire");
		return;
	}
	r->script = SCRIPT_EXPIRE;
	store_req_int(r, max > 0 ? max : 256);
	for (size_t k = 0; k < sizeof(ended) / sizeof(ended[0]); k++) {
		store_req_int(r, ended[k] == SAGA__V1__STATE__STATE_COMPLETED &&
		    st->completed_ttl > 0 ? st->completed_ttl : st->saga_ttl);
		store_req_str(r, store_enum_name(&saga__v1__state__descriptor,
		    ended[k]));
	}
	store_req_submit(r);
}

/* saga:def:<version> */
static void
def_key(struct req *r, const char *version)
{
	char key[64];
	int  n = snprintf(key, sizeof(key), "saga:def:%s", version);

	store_seg_arg(&r->keys, key, (size_t)n);
}

void
store_def_put(struct store *st, const char *version, const char *hex,
    store_count_cb *cb, void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_EXPIRE);
	r->cb.count = cb;
	r->arg = arg;
	if (version == NULL || strlen(version) > 32 || hex == NULL) {
		store_req_defer(r, STORE_ERROR, "a flow definition needs its "
		    "version");
		return;
	}
	r->script = SCRIPT_DEFPUT;
	def_key(r, version);
	store_req_str(r, hex);
	store_req_submit(r);
}

void
store_def_get(struct store *st, const char *version, store_ids_cb *cb,
    void *arg)
{
	struct req *r;

	r = store_req_new(st, &st->main, REQ_CLAIM);
	r->cb.ids = cb;
	r->arg = arg;
	if (version == NULL || strlen(version) > 32) {
		store_req_defer(r, STORE_ERROR, "a flow definition needs its "
		    "version");
		return;
	}
	r->script = SCRIPT_DEFGET;
	def_key(r, version);
	store_req_submit(r);
}
