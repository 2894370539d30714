/*
 * store_watch.c - Watch: following a saga's events (see store.h). A saga
 * keeps its events in its own hash; a watch reads them with the watch
 * script (store_lua.c), which also marks the saga as watched for a few
 * seconds. While it is marked, each write that adds events appends a small
 * entry to the stream saga:{ID}:events, which wakes its watchers: they
 * read the new events from the hash. Every watch shares the store's one
 * watcher connection: one XREAD BLOCK names every followed stream and
 * returns when any of them grows; a watch that joins while it is blocked
 * wakes it with CLIENT UNBLOCK on the main connection. Every
 * WATCH_REFRESH_MS a watch renews its mark and reads again, so an event
 * whose wake-up was lost still arrives, in order. A watch ends at the
 * saga's final event.
 */
#include "autoconf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "store_int.h"
#include "util.h"

static int
parse_streamid(const char *s, uint64_t *ms, uint64_t *seq)
{
	char *end;

	errno = 0;
	*ms = strtoull(s, &end, 10);
	if (errno != 0 || *end != '-')
		return -1;
	*seq = strtoull(end + 1, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

/*
 * Reads the watch's events after the last it delivered, and marks its
 * saga as watched for WATCH_FLAG_MS (the script_watch of store_lua.c).
 */
static void
watch_fetch(struct store_watch *w)
{
	struct store *st = w->st;
	struct req *r;
	size_t len = strlen(w->id);
	char *p;

	if (w->busy) {
		w->refetch = 1;
		return;
	}
	if (st->main.state != CONN_UP)
		return;		/* the cron tries again */
	r = store_req_new(st, &st->main, REQ_WCHECK);
	r->w = w;
	r->script = SCRIPT_WATCH;
	/* The hash is the stream's key minus ":events"; the flag adds ":w". */
	store_seg_arg(&r->keys, w->key, len + sizeof("saga:{}") - 1);
	store_seg_arg(&r->keys, w->key, strlen(w->key));
	p = store_seg_open(&r->keys, len + sizeof("saga:{}:w") - 1);
	memcpy(p, w->key, len + sizeof("saga:{}") - 1);
	memcpy(p + len + sizeof("saga:{}") - 1, ":w", 2);
	store_req_int(r, WATCH_FLAG_MS);
	/* From the last write read, again: a legacy saga's grows (rev 0). */
	store_req_int(r, w->seq < 0 ? -1 : (w->seq >> 16) - 1);
	if (store_req_send(r) == -1) {
		store_req_free(r);
		return;
	}
	w->busy = 1;
	w->refetch = 0;
	w->fetched = util_mono_ms();
}

/* Reads a varint at *p below end; -1 when it does not fit. */
static int64_t
get_varint(const uint8_t **p, const uint8_t *end)
{
	uint64_t v = 0;
	int shift = 0;

	while (*p < end && shift < 35) {
		v |= (uint64_t)(**p & 0x7f) << shift;
		if ((*(*p)++ & 0x80) == 0)
			return (int64_t)v;
		shift += 7;
	}
	return -1;
}

/*
 * The events the script read, pairs of (revision, framed events), to the
 * watch, each numbered rev << 16 | its place in its write so that a read
 * again skips what was delivered. They are stored without their saga id:
 * the watch puts it back.
 */
static void
watch_deliver(struct store_watch *w, const redisReply *rep)
{
	Saga__V1__SagaEvent *ev;
	const redisReply *rv, *blob;
	const uint8_t *p, *end;
	int64_t len, seq;
	char *sid;
	size_t i;
	int final, k;

	for (i = 1; i + 1 < rep->elements; i += 2) {
		rv = rep->element[i];
		blob = rep->element[i + 1];
		if (rv->type != REDIS_REPLY_INTEGER ||
		    blob->type != REDIS_REPLY_STRING || rv->integer < 0 ||
		    rv->integer > (INT64_MAX >> 17))
			continue;
		p = (const uint8_t *)blob->str;
		end = p + blob->len;
		for (k = 1; p < end; k++) {
			if (w->cancelled || w->ended)
				return;
			len = get_varint(&p, end);
			if (len < 0 || len > end - p) {
				store_watch_end(w, STORE_ERROR, "the events of "
				    "the saga are cut short");
				return;
			}
			seq = rv->integer << 16 | (k & 0xffff);
			if (seq <= w->seq) {
				p += len;
				continue;
			}
			ev = saga__v1__saga_event__unpack(NULL, (size_t)len, p);
			p += len;
			if (ev == NULL) {
				store_watch_end(w, STORE_ERROR, "an event of the "
				    "saga does not decode as SagaEvent");
				return;
			}
			w->seq = seq;
			final = (ev->step == NULL || ev->step[0] == '\0') &&
			    store_state_terminal(ev->state);
			/*
			 * FAILED ends a saga until an operator's Retry or
			 * Resolve moves it on: a replay that has later events
			 * goes on to them.
			 */
			if (final && ev->state == SAGA__V1__STATE__STATE_FAILED &&
			    (p < end || i + 2 < rep->elements))
				final = 0;
			if (final)
				w->ended = 1;
			sid = ev->saga_id;
			if (sid == NULL || sid[0] == '\0')
				ev->saga_id = w->id;
			w->cb(STORE_OK, ev, final, NULL, w->arg);
			ev->saga_id = sid;
			saga__v1__saga_event__free_unpacked(ev, NULL);
		}
	}
}

/* The watch script's answer: the saga is gone, or its new events. */
void
store_reply_watch(struct req *r, const redisReply *rep)
{
	struct store *st = r->st;
	struct store_watch *w = r->w;

	if (rep->type == REDIS_REPLY_ERROR) {
		store_req_fail(r, store_error_result(rep->str), rep->str);
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		store_req_fail(r, STORE_ERROR, "watch script: unexpected reply");
		return;
	}
	if (strcmp(rep->element[0]->str, "NOTFOUND") == 0) {
		store_req_fail(r, STORE_NOT_FOUND, "no such saga");
		return;
	}
	store_req_free(r);
	w->busy = 0;
	st->wdepth++;
	if (store_watch_live(w))
		watch_deliver(w, rep);
	st->wdepth--;
	if (store_watch_live(w)) {
		if (w->state == WATCH_CHECK) {
			w->state = WATCH_FOLLOW;
			st->wdirty = 1;
			store_watch_kick(st);
		}
		if (w->refetch)
			watch_fetch(w);
	}
	store_watch_sweep(st);
}

/*
 * Something was written to the stream key: every watch following it reads
 * the saga's new events.
 */
static void
watch_woken(struct store *st, const char *key, const redisReply *entries)
{
	struct store_watch *w;
	const redisReply *e;
	uint64_t ms, seq;

	if (entries->elements == 0)
		return;
	e = entries->element[entries->elements - 1];
	if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    parse_streamid(e->element[0]->str, &ms, &seq) == -1)
		return;
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != WATCH_FOLLOW || !store_watch_live(w) ||
		    strcmp(w->key, key) != 0)
			continue;
		if (ms < w->last_ms || (ms == w->last_ms && seq <= w->last_seq))
			continue;
		w->last_ms = ms;
		w->last_seq = seq;
		watch_fetch(w);
	}
}

/* Every WATCH_REFRESH_MS: the mark renewed, and any event missed read. */
void
store_watch_refresh(struct store *st)
{
	struct store_watch *w;
	int64_t now = util_mono_ms();

	TAILQ_FOREACH(w, &st->watches, entry)
		if (w->state == WATCH_FOLLOW && store_watch_live(w) &&
		    !w->busy && now - w->fetched >= WATCH_REFRESH_MS)
			watch_fetch(w);
}

void
store_reply_xread(struct store *st, const redisReply *rep)
{
	const redisReply *s;
	size_t i;

	st->xreading = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		store_watches_fail(st, WATCH_FOLLOW, STORE_ERROR, rep->str);
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY)
		return;		/* nil: timed out or unblocked */
	for (i = 0; i < rep->elements; i++) {
		s = rep->element[i];
		if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
		    s->element[0]->type != REDIS_REPLY_STRING ||
		    s->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		watch_woken(st, s->element[0]->str, s->element[1]);
	}
}

/* --- watches ----------------------------------------------------------- */

void
store_watch_free(struct store_watch *w)
{
	TAILQ_REMOVE(&w->st->watches, w, entry);
	free(w->id);
	free(w->key);
	free(w);
}

/* Frees the watches that are over, unless a callback is running. */
void
store_watch_sweep(struct store *st)
{
	struct store_watch *w, *next;

	if (st->wdepth > 0)
		return;
	for (w = TAILQ_FIRST(&st->watches); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if ((w->cancelled || w->ended) && !w->busy)
			store_watch_free(w);
	}
}

/* The watch's last callback, with a failure. */
void
store_watch_end(struct store_watch *w, enum store_result res,
    const char *err)
{
	if (w->cancelled || w->ended)
		return;
	w->ended = 1;
	w->cb(res, NULL, 0, err, w->arg);
}

/*
 * Ends every watch in state with res (or, for WATCH_FAIL, with the failure
 * each one carries).
 */
void
store_watches_fail(struct store *st, enum watch_state state,
    enum store_result res,
    const char *err)
{
	struct store_watch *w;

	st->wdepth++;
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != state)
			continue;
		if (state == WATCH_FAIL)
			store_watch_end(w, w->fail, w->failerr);
		else
			store_watch_end(w, res, err);
	}
	st->wdepth--;
	store_watch_sweep(st);
}

int
store_watch_live(const struct store_watch *w)
{
	return !w->cancelled && !w->ended;
}

/* Sends the XREAD that follows every followed stream, or wakes it. */
void
store_watch_kick(struct store *st)
{
	struct store_watch *w, *o;
	struct conn *c = &st->wconn;
	struct req *r;
	char id[64];
	uint64_t ms, seq;
	int n = 0;

	if (st->closing)
		return;
	TAILQ_FOREACH(w, &st->watches, entry)
		if (w->state == WATCH_FOLLOW && store_watch_live(w))
			n++;
	if (n == 0)
		return;
	if (c->state == CONN_DOWN) {
		if (util_mono_ms() >= c->retry_at)
			store_conn_connect(c);
		return;
	}
	if (c->state != CONN_UP)
		return;
	if (st->xreading) {
		if (!st->wdirty || st->unblocking || c->client_id < 0 ||
		    st->main.state != CONN_UP)
			return;
		r = store_req_new(st, &st->main, REQ_UNBLOCK);
		store_req_str(r, "CLIENT");
		store_req_str(r, "UNBLOCK");
		store_req_int(r, c->client_id);
		if (store_req_send(r) == -1)
			store_req_free(r);
		else
			st->unblocking = 1;
		return;
	}

	r = store_req_new(st, c, REQ_XREAD);
	r->timeout = st->block_ms + st->cmd_timeout;
	store_req_str(r, "XREAD");
	store_req_str(r, "COUNT");
	store_req_int(r, XREAD_COUNT);
	store_req_str(r, "BLOCK");
	store_req_int(r, st->block_ms);
	store_req_str(r, "STREAMS");
	/*
	 * Each stream once, from the oldest position any of its watches is
	 * at; watch_deliver skips what a watch has seen. Quadratic in the
	 * watches, which max_watches bounds.
	 */
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != WATCH_FOLLOW || !store_watch_live(w))
			continue;
		for (o = TAILQ_FIRST(&st->watches); o != w;
		    o = TAILQ_NEXT(o, entry))
			if (o->state == WATCH_FOLLOW && store_watch_live(o) &&
			    strcmp(o->key, w->key) == 0)
				break;
		if (o == w)
			store_req_str(r, w->key);
	}
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != WATCH_FOLLOW || !store_watch_live(w))
			continue;
		for (o = TAILQ_FIRST(&st->watches); o != w;
		    o = TAILQ_NEXT(o, entry))
			if (o->state == WATCH_FOLLOW && store_watch_live(o) &&
			    strcmp(o->key, w->key) == 0)
				break;
		if (o != w)
			continue;
		ms = w->last_ms;
		seq = w->last_seq;
		for (o = TAILQ_NEXT(w, entry); o != NULL;
		    o = TAILQ_NEXT(o, entry))
			if (o->state == WATCH_FOLLOW && store_watch_live(o) &&
			    strcmp(o->key, w->key) == 0 &&
			    (o->last_ms < ms ||
			    (o->last_ms == ms && o->last_seq < seq))) {
				ms = o->last_ms;
				seq = o->last_seq;
			}
		snprintf(id, sizeof(id), "%" PRIu64 "-%" PRIu64, ms, seq);
		store_req_str(r, id);
	}
	if (store_req_send(r) == -1) {
		store_req_free(r);
		return;
	}
	st->xreading = 1;
	st->wdirty = 0;
}

struct store_watch *
store_watch(struct store *st, const char *id, store_event_cb *cb, void *arg)
{
	struct store_watch *w, *o;
	size_t len = strlen(id);
	int n = 0;

	w = util_xcalloc(1, sizeof(*w));
	w->st = st;
	w->id = util_xstrdup(id);
	w->key = util_xcalloc(1, len + sizeof("saga:{}:events"));
	snprintf(w->key, len + sizeof("saga:{}:events"), "saga:{%s}:events",
	    id);
	w->cb = cb;
	w->arg = arg;
	w->seq = -1;
	TAILQ_FOREACH(o, &st->watches, entry)
		if (store_watch_live(o))
			n++;
	TAILQ_INSERT_TAIL(&st->watches, w, entry);

	w->state = WATCH_FAIL;
	w->fail = STORE_UNAVAILABLE;
	if (len == 0 || len > STORE_ID_MAX) {
		w->fail = STORE_ERROR;
		snprintf(w->failerr, sizeof(w->failerr), "saga id must have "
		    "1 to %d bytes", STORE_ID_MAX);
	} else if (n >= st->max_watches) {
		w->fail = STORE_BUSY;
		snprintf(w->failerr, sizeof(w->failerr), "%d watches are open "
		    "already", st->max_watches);
	} else if (st->main.state != CONN_UP) {
		snprintf(w->failerr, sizeof(w->failerr),
		    "redis is not connected");
	} else {
		w->state = WATCH_CHECK;
		watch_fetch(w);
		if (w->busy)
			return w;
		w->state = WATCH_FAIL;
		snprintf(w->failerr, sizeof(w->failerr),
		    "redis connection is closing");
	}
	event_active(st->defer, EV_TIMEOUT, 1);
	return w;
}

void
store_watch_cancel(struct store_watch *w)
{
	if (w == NULL || w->cancelled)
		return;
	w->cancelled = 1;
	store_watch_sweep(w->st);
}
