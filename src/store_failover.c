/*
 * store_failover.c - the saga store beyond one Redis (see store.c): the
 * primary asked of Sentinels, WAIT for replicas, and writes whose outcome
 * a failover left unknown sent again.
 *
 * Sentinel. With redis.sentinels the store's host and port are only a
 * guess: before every connect the sentinels are asked, in turn from the
 * last one that answered, for the address of the primary named
 * master_name (SENTINEL get-master-addr-by-name; a blocking call of at most
 * SENTINEL_TIMEOUT_MS each, on the loop thread: it happens once per
 * connect, and only while Redis is unreachable anyway). One more
 * connection stays SUBSCRIBEd to +switch-master on a sentinel: when the
 * primary changes the store's connections are shut down and reconnect at
 * once, without waiting for the old primary to time out. A -READONLY
 * reply (we talk to a demoted primary) and -LOADING or -MASTERDOWN drop
 * the connection the same way, so the next connect asks the sentinels.
 *
 * WAIT. With redis.min_replicas_ack N > 0 every batch of writes (one
 * script call a loop turn, see batch_flush) is followed on its connection
 * by one WAIT N ack_timeout_ms. The batch's reply is kept (copied) until
 * WAIT answers; only then do its writes' callbacks run. WAIT blocks the
 * connection until the replicas answer, so batches sent behind it would
 * each wait a replica's round trip in turn: while a WAIT is out, writes
 * stay queued, and leave as one batch when it answers. The batch grows
 * with the load instead of the WAITs (measured: one script call and one
 * WAIT per saga without this, against one per 4 to 6 sagas with no WAIT). Fewer than N
 * replicas in time, and the writes that the script applied are not done:
 * their outcome is unknown, so they are sent again.
 *
 * Sent again. In this mode (sentinels or WAIT) a write whose batch was
 * lost with its connection, refused (-READONLY, -LOADING) or not
 * acknowledged by enough replicas goes back in the queue, marked "again",
 * and leaves with the next batch once a primary answers, under the same
 * expected revision, so it is never applied twice: the script refuses it if
 * it landed the first time. A CONFLICT at exactly the revision it would
 * have made, or an EXISTS for a create, is then checked against the
 * record: if the stored packed saga (its pieces p, p.1... put together, see
 * store_lua.c) is the bytes this write carried, the write did
 * land and counts as done (after a WAIT of its own); anything else is the
 * CONFLICT or EXISTS it says. A write that cannot be settled within twice
 * cmd_timeout fails with STORE_UNAVAILABLE, which the engines treat as any
 * store outage (they keep the saga and write again, or let the lease
 * bring it back); it is never reported done.
 *
 * Not here: the scripts (store_lua.c), the connections themselves
 * (store.c).
 */
#include "autoconf.h"

#include <sys/queue.h>
#include <sys/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "store_int.h"
#include "util.h"

#define SENTINEL_TIMEOUT_MS	300	/* connect and answer, per sentinel */
#define SUB_RETRY_MS		1000	/* resubscribe after a lost one */

int
store_failover_on(const struct store *st)
{
	return st->nsentinels > 0 || st->min_acks > 0;
}

/* Splits "host:port" into host (len bytes) and port; -1 if malformed. */
static int
split_hostport(const char *s, char *host, size_t len, int *port)
{
	const char	*colon = strrchr(s, ':');
	char		*end;
	long		 p;

	if (colon == NULL || colon == s || (size_t)(colon - s) >= len)
		return -1;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535)
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = '\0';
	*port = (int)p;
	return 0;
}

int
store_failover_init(struct store *st, const struct store_params *p,
    char *err, size_t errlen)
{
	char	host[256];
	int	port, n = 0;

	TAILQ_INIT(&st->retryq);
	st->min_acks = p->min_replicas_ack > 0 ? p->min_replicas_ack : 0;
	st->ack_timeout = p->ack_timeout_ms > 0 ? p->ack_timeout_ms : 200;
	st->master_name = util_xstrdup(p->master_name != NULL &&
	    p->master_name[0] != '\0' ? p->master_name : "sagad");
	if (p->sentinels != NULL)
		while (p->sentinels[n] != NULL)
			n++;
	st->sentinels = util_xcalloc(n + 1, sizeof(char *));
	for (int i = 0; i < n; i++) {
		if (split_hostport(p->sentinels[i], host, sizeof(host),
		    &port) == -1) {
			snprintf(err, errlen, "store: sentinel \"%s\" is not "
			    "host:port", p->sentinels[i]);
			return -1;
		}
		st->sentinels[i] = util_xstrdup(p->sentinels[i]);
	}
	st->nsentinels = n;
	return 0;
}

static void	requeue(struct req *, const char *);

/* Before store.c's own teardown: what waits to be sent again fails. */
void
store_failover_free(struct store *st)
{
	redisAsyncContext	*sub = st->sub;
	struct req		*r;

	st->sub = NULL;
	if (sub != NULL)
		redisAsyncFree(sub);
	while ((r = TAILQ_FIRST(&st->retryq)) != NULL) {
		TAILQ_REMOVE(&st->retryq, r, entry);
		store_req_defer(r, STORE_UNAVAILABLE, "store closed");
	}
	for (int i = 0; i < st->nsentinels; i++)
		free(st->sentinels[i]);
	free(st->sentinels);
	st->sentinels = NULL;
	st->nsentinels = 0;
	free(st->master_name);
	st->master_name = NULL;
}

/* --- Sentinel ---------------------------------------------------------- */

static void
set_primary(struct store *st, const char *host, int port)
{
	if (strcmp(st->host, host) != 0) {
		free(st->host);
		st->host = util_xstrdup(host);
	}
	st->port = port;
}

/*
 * Asks the sentinels, from the last that answered, where the primary is,
 * and points the store there. 0, or -1 with err saying why none knew.
 */
int
store_sentinel_resolve(struct store *st, char *err, size_t errlen)
{
	struct timeval	 tv = { 0, SENTINEL_TIMEOUT_MS * 1000 };
	redisContext	*c;
	redisReply	*rep;
	char		 host[256], last[SAGAD_ERRLEN] = "no sentinel";
	int		 port, k, ok;

	for (int i = 0; i < st->nsentinels; i++) {
		k = (st->scur + i) % st->nsentinels;
		if (split_hostport(st->sentinels[k], host, sizeof(host),
		    &port) == -1)
			continue;
		c = redisConnectWithTimeout(host, port, tv);
		if (c == NULL || c->err) {
			snprintf(last, sizeof(last), "sentinel %s: %s",
			    st->sentinels[k], c != NULL ? c->errstr :
			    "out of memory");
			if (c != NULL)
				redisFree(c);
			continue;
		}
		redisSetTimeout(c, tv);
		rep = redisCommand(c, "SENTINEL get-master-addr-by-name %s",
		    st->master_name);
		ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY &&
		    rep->elements == 2 &&
		    rep->element[0]->type == REDIS_REPLY_STRING &&
		    rep->element[1]->type == REDIS_REPLY_STRING &&
		    rep->element[0]->len < sizeof(host);
		if (ok) {
			port = atoi(rep->element[1]->str);
			ok = port > 0 && port <= 65535;
		}
		if (ok) {
			set_primary(st, rep->element[0]->str, port);
			st->scur = k;
		} else
			snprintf(last, sizeof(last), "sentinel %s: %s",
			    st->sentinels[k], rep == NULL ? c->errstr :
			    rep->type == REDIS_REPLY_ERROR ? rep->str :
			    "does not know the primary");
		if (rep != NULL)
			freeReplyObject(rep);
		redisFree(c);
		if (ok)
			return 0;
	}
	snprintf(err, errlen, "redis primary \"%s\" unknown: %s",
	    st->master_name, last);
	return -1;
}

/* The primary moved: drop our connections, reconnect now. */
static void
primary_moved(struct store *st, const char *host, int port)
{
	int	same = strcmp(st->host, host) == 0 && st->port == port;

	set_primary(st, host, port);
	st->failovers++;
	st->main.backoff = st->backoff_min;
	st->main.retry_at = 0;
	st->wconn.backoff = st->backoff_min;
	st->wconn.retry_at = 0;
	if (same)
		return;
	store_conn_kill(&st->main);
	store_conn_kill(&st->wconn);
}

/* Messages on +switch-master: "NAME OLDIP OLDPORT NEWIP NEWPORT". */
static void
sub_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct store		*st = arg;
	const redisReply	*rep = reply;
	const redisReply	*m;
	char			 name[256], host[256];
	int			 port;

	if (rep == NULL || st->sub != ac)
		return;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
		return;
	m = rep->element[2];
	if (rep->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(rep->element[0]->str, "message") != 0 ||
	    m->type != REDIS_REPLY_STRING)
		return;
	if (sscanf(m->str, "%255s %*s %*s %255s %d", name, host, &port) != 3 ||
	    strcmp(name, st->master_name) != 0 || port < 1 || port > 65535)
		return;
	primary_moved(st, host, port);
}

static void
sub_disconnect(const redisAsyncContext *ac, int status)
{
	struct store *st = ac->data;

	(void)status;
	if (st->sub != ac)
		return;
	st->sub = NULL;
	st->sub_retry_at = util_mono_ms() + SUB_RETRY_MS;
	st->scur = (st->scur + 1) % st->nsentinels;
}

static void
sub_connect(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK)
		sub_disconnect(ac, status);
}

static void
sub_open(struct store *st)
{
	redisAsyncContext	*ac;
	char			 host[256];
	int			 port;

	st->sub_retry_at = util_mono_ms() + SUB_RETRY_MS;
	if (split_hostport(st->sentinels[st->scur], host, sizeof(host),
	    &port) == -1)
		return;
	ac = redisAsyncConnect(host, port);
	if (ac == NULL || ac->err) {
		if (ac != NULL)
			redisAsyncFree(ac);
		st->scur = (st->scur + 1) % st->nsentinels;
		return;
	}
	ac->data = st;
	if (redisLibeventAttach(ac, st->base) != REDIS_OK) {
		redisAsyncFree(ac);
		return;
	}
	redisAsyncSetConnectCallback(ac, sub_connect);
	redisAsyncSetDisconnectCallback(ac, sub_disconnect);
	st->sub = ac;
	if (redisAsyncCommand(ac, sub_cb, st, "SUBSCRIBE +switch-master") !=
	    REDIS_OK) {
		st->sub = NULL;
		redisAsyncFree(ac);
	}
}

/*
 * An error reply that says this node is no primary (any more, or yet):
 * drop the connection so that the next connect asks the sentinels.
 */
int
store_failover_error(struct conn *c, const redisReply *rep)
{
	static const char *const moved[] = { "READONLY", "LOADING",
	    "MASTERDOWN" };
	const char *s;

	if (rep->type != REDIS_REPLY_ERROR || !store_failover_on(c->st))
		return 0;
	/* A script's error names the command: "... READONLY You can't..." */
	for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++)
		if ((s = strstr(rep->str, moved[i])) != NULL &&
		    (s == rep->str || s[-1] == ' ' || s[-1] == '-')) {
			store_conn_kill(c);
			return 1;
		}
	return 0;
}

/* --- WAIT -------------------------------------------------------------- */

static redisReply *
reply_copy(const redisReply *r)
{
	redisReply *c = util_xcalloc(1, sizeof(*c));

	c->type = r->type;
	c->integer = r->integer;
	if (r->str != NULL) {
		c->len = r->len;
		c->str = util_xcalloc(1, r->len + 1);
		memcpy(c->str, r->str, r->len);
	}
	if (r->element != NULL) {
		c->elements = r->elements;
		c->element = util_xcalloc(r->elements + 1,
		    sizeof(*c->element));
		for (size_t i = 0; i < r->elements; i++)
			c->element[i] = reply_copy(r->element[i]);
	}
	return c;
}

static void
reply_free(redisReply *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->elements; i++)
		reply_free(r->element[i]);
	free(r->element);
	free(r->str);
	free(r);
}

/* Follows r (a batch, or a verify) on its connection with one WAIT. */
void
store_wait_send(struct req *r)
{
	struct store	*st = r->st;
	struct req	*w;

	w = store_req_new(st, r->conn, REQ_WAIT);
	store_req_str(w, "WAIT");
	store_req_int(w, st->min_acks);
	store_req_int(w, st->ack_timeout);
	w->timeout = st->cmd_timeout + st->ack_timeout;
	if (store_req_send(w) == -1) {
		store_req_free(w);
		return;		/* the connection is going: r fails too */
	}
	w->peer = r;
	r->peer = w;
	st->waits++;
}

/* A WAIT is over: the writes queued meanwhile may leave. */
static void
wait_over(struct store *st)
{
	if (--st->waits == 0 && st->nqueued > 0)
		event_active(st->flush, EV_TIMEOUT, 1);
}

/* r's reply came before its WAIT's: keep it. 1 if kept. */
int
store_batch_held(struct req *r, const redisReply *rep)
{
	if (r->peer == NULL)
		return 0;
	r->held = reply_copy(rep);
	return 1;
}

void
store_req_unlink(struct req *r)
{
	if (r->peer != NULL) {
		r->peer->peer = NULL;
		r->peer = NULL;
	}
	reply_free(r->held);
	r->held = NULL;
}

/*
 * A write back in the queue, its outcome unknown; or failed for good past
 * its deadline.
 */
static void
requeue(struct req *w, const char *why)
{
	struct store	*st = w->st;
	int64_t		 now = util_mono_ms();

	if (w->deadline == 0)
		w->deadline = now + 2 * (int64_t)st->cmd_timeout;
	if (st->closing || now > w->deadline) {
		store_req_defer(w, STORE_UNAVAILABLE, why);
		return;
	}
	w->again = 1;
	TAILQ_INSERT_TAIL(&st->retryq, w, entry);
}

/*
 * A batch lost with its connection, or refused: its writes are sent
 * again. 1 if taken care of (the caller frees the batch).
 */
int
store_batch_lost(struct req *b, const char *why)
{
	struct req *w;

	if (!store_failover_on(b->st) || b->st->closing)
		return 0;
	store_req_unlink(b);
	while ((w = TAILQ_FIRST(&b->batch)) != NULL) {
		TAILQ_REMOVE(&b->batch, w, entry);
		requeue(w, why);
	}
	return 1;
}

/* The element of a write's reply that says what it did: "OK"... */
static const char *
what_of(const redisReply *e)
{
	if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
	    e->element[0]->type != REDIS_REPLY_STRING)
		return "";
	return e->element[0]->str;
}

static void
reply_verify_held(struct req *v, const redisReply *rep);

void
store_reply_wait(struct req *wr, const redisReply *rep)
{
	struct store	*st = wr->st;
	struct req	*r = wr->peer, *w, *next;
	redisReply	*held;
	char		 why[SAGAD_ERRLEN];
	size_t		 i = 0;

	wr->peer = NULL;
	store_req_free(wr);
	wait_over(st);
	if (r == NULL)
		return;
	r->peer = NULL;
	if (r->held == NULL) {
		/* Sent again after NOSCRIPT: wait after it. */
		store_wait_send(r);
		return;
	}
	held = r->held;
	r->held = NULL;
	if (rep->type == REDIS_REPLY_INTEGER && rep->integer >= st->min_acks) {
		if (r->kind == REQ_BATCH)
			store_reply_batch(r, held);
		else
			reply_verify_held(r, held);
		reply_free(held);
		return;
	}
	snprintf(why, sizeof(why), "WAIT: %lld of %d replicas acknowledged "
	    "within %d ms: outcome unknown", rep->type == REDIS_REPLY_INTEGER ?
	    rep->integer : -1LL, st->min_acks, st->ack_timeout);
	if (r->kind == REQ_VERIFY) {
		w = r->orig;
		r->orig = NULL;
		store_req_free(r);
		requeue(w, why);
		reply_free(held);
		return;
	}
	/*
	 * What the script applied is not durable yet: send it again. The
	 * writes it refused (CONFLICT...) get their answer now.
	 */
	if (held->type == REDIS_REPLY_ARRAY &&
	    held->elements == (size_t)r->nbatch) {
		for (w = TAILQ_FIRST(&r->batch); w != NULL; w = next, i++) {
			next = TAILQ_NEXT(w, entry);
			if (strcmp(what_of(held->element[i]), "OK") != 0)
				continue;
			TAILQ_REMOVE(&r->batch, w, entry);
			r->nbatch--;
			requeue(w, why);
			held->element[i]->type = REDIS_REPLY_NIL;
		}
		/* Drop the requeued ones' slots from the reply. */
		for (size_t k = 0, j = 0; k < held->elements; k++) {
			if (held->element[k]->type == REDIS_REPLY_NIL) {
				reply_free(held->element[k]);
				continue;
			}
			held->element[j++] = held->element[k];
		}
		held->elements = (size_t)r->nbatch;
		if (r->nbatch > 0)
			store_reply_batch(r, held);
		else
			store_req_free(r);
	} else
		store_reply_batch(r, held);
	reply_free(held);
}

/* A WAIT, a batch or a verify that failed with its connection. */
void
store_failover_fail(struct req *r, const char *why)
{
	struct req *p = r->peer, *w;

	if (r->kind == REQ_WAIT) {
		r->peer = NULL;
		wait_over(r->st);
		if (p == NULL)
			return;
		p->peer = NULL;
		if (p->held == NULL)
			return;		/* still in flight: fails on its own */
		if (p->kind == REQ_BATCH)
			/* Sent again; or, when closing, failed once. */
			store_req_fail(p, STORE_UNAVAILABLE, why);
		else {
			w = p->orig;
			p->orig = NULL;
			store_req_unlink(p);
			store_req_free(p);
			requeue(w, why);
		}
		return;
	}
	/* REQ_VERIFY */
	store_req_unlink(r);
	if ((w = r->orig) != NULL) {
		r->orig = NULL;
		requeue(w, why);
	}
}

/* --- writes sent again ------------------------------------------------- */

/* The first argument of a segment: the saga's hash key. */
static int
first_arg(const struct seg *g, const char **p, size_t *len)
{
	char	*end;
	long	 n;

	if (g->len < 4 || g->p[0] != '$')
		return -1;
	n = strtol(g->p + 1, &end, 10);
	if (n < 0 || end[0] != '\r' || end[1] != '\n' ||
	    (size_t)(end + 2 - g->p) + (size_t)n > g->len)
		return -1;
	*p = end + 2;
	*len = (size_t)n;
	return 0;
}

/* A field of a flat HGETALL array, or NULL. */
static const redisReply *
hash_field(const redisReply *h, const char *name)
{
	const redisReply *k;

	for (size_t i = 0; i + 1 < h->elements; i += 2) {
		k = h->element[i];
		if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0 &&
		    h->element[i + 1]->type == REDIS_REPLY_STRING)
			return h->element[i + 1];
	}
	return NULL;
}

/*
 * Is the packed saga of the hash h (HGETALL) the one w carried? The hash
 * holds it in pieces p, p.1, p.2... (pn of them), or whole in pb (the
 * previous layout; see store_lua.c).
 */
static int
pb_same(const struct req *w, const redisReply *h)
{
	const redisReply	*v, *pn;
	const char		*mine = w->args.p + w->pb_off;
	size_t			 at = 0;
	long			 n;
	char			 name[24];

	if (w->pb_len == 0 || h->type != REDIS_REPLY_ARRAY)
		return 0;
	if ((v = hash_field(h, "pb")) != NULL)
		return v->len == w->pb_len && memcmp(v->str, mine, v->len) == 0;
	pn = hash_field(h, "pn");
	n = pn != NULL ? strtol(pn->str, NULL, 10) : 1;
	for (long j = 0; j < n; j++) {
		if (j == 0)
			snprintf(name, sizeof(name), "p");
		else
			snprintf(name, sizeof(name), "p.%ld", j);
		if ((v = hash_field(h, name)) == NULL ||
		    at + v->len > w->pb_len ||
		    memcmp(v->str, mine + at, v->len) != 0)
			return 0;
		at += v->len;
	}
	return at == w->pb_len;
}

/* Is it ours? HMGET the record after the CONFLICT of a write sent again. */
static void
verify_send(struct req *w, int64_t cur)
{
	struct store	*st = w->st;
	struct req	*v;
	const char	*key;
	size_t		 klen;

	if (first_arg(&w->keys, &key, &klen) == -1) {
		w->cb.rev(STORE_CONFLICT, cur, NULL, "revision changed",
		    w->arg);
		store_req_free(w);
		return;
	}
	v = store_req_new(st, &st->main, REQ_VERIFY);
	store_req_str(v, "HGETALL");	/* a small hash: under 1 KB */
	store_req_arg(v, key, klen);
	v->orig = w;
	if (st->main.state != CONN_UP || store_req_send(v) == -1) {
		v->orig = NULL;
		store_req_free(v);
		requeue(w, "redis is not connected");
		return;
	}
	if (st->min_acks > 0)
		store_wait_send(v);
}

static void
reply_verify_held(struct req *v, const redisReply *rep)
{
	struct req		*w = v->orig;
	const redisReply	*e, *st, *ca;
	int64_t			 rev;
	const char		*cancel = NULL;

	v->orig = NULL;
	store_req_free(v);
	if (w == NULL)
		return;
	if (rep->type != REDIS_REPLY_ARRAY ||
	    (e = hash_field(rep, "rev")) == NULL) {
		store_req_fail(w, STORE_NOT_FOUND, "no such saga");
		return;
	}
	rev = strtoll(e->str, NULL, 10);
	if (rev == w->exp_rev + 1 && pb_same(w, rep)) {
		st = hash_field(rep, "state");
		ca = hash_field(rep, "cancel");
		if (ca != NULL && st != NULL &&
		    (strcmp(st->str, "STATE_PENDING") == 0 ||
		    strcmp(st->str, "STATE_RUNNING") == 0))
			cancel = ca->str;
		w->cb.rev(STORE_OK, rev, cancel, NULL, w->arg);
	} else
		w->cb.rev(STORE_CONFLICT, rev, NULL, "revision changed",
		    w->arg);
	store_req_free(w);
}

void
store_reply_verify(struct req *v, const redisReply *rep)
{
	if (v->peer != NULL && store_batch_held(v, rep))
		return;
	reply_verify_held(v, rep);
}

/*
 * A write's element of a batch's reply, in failover mode: 1 if handled
 * here (sent again, or settled as the write that landed before), 0 for
 * the usual answer.
 */
int
store_write_retried(struct req *w, const redisReply *e)
{
	const char		*what = what_of(e);
	struct store_saga	 rec;

	if (strcmp(what, "ERR") == 0 && e->elements > 1 &&
	    e->element[1]->type == REDIS_REPLY_STRING &&
	    store_failover_error(&w->st->main, e->element[1])) {
		requeue(w, e->element[1]->str);
		return 1;
	}
	if (!w->again)
		return 0;
	if (w->kind == REQ_UPDATE && strcmp(what, "CONFLICT") == 0 &&
	    e->elements > 1 && e->element[1]->type == REDIS_REPLY_INTEGER &&
	    e->element[1]->integer == w->exp_rev + 1) {
		verify_send(w, e->element[1]->integer);
		return 1;
	}
	if (w->kind == REQ_CREATE && strcmp(what, "EXISTS") == 0 &&
	    e->elements > 1 && pb_same(w, e->element[1])) {
		memset(&rec, 0, sizeof(rec));
		rec.rev = 1;
		rec.pod = rec.owner = rec.callback = rec.cancel = "";
		w->cb.saga(STORE_OK, &rec, NULL, w->arg);
		store_req_free(w);
		return 1;
	}
	return 0;
}

/* --- the store's timer and connects ------------------------------------ */

/* The main connection is up: what waits to be sent again leaves first. */
void
store_failover_ready(struct store *st)
{
	struct req	*w;
	int		 n = 0;

	while ((w = TAILQ_LAST(&st->retryq, reqlist)) != NULL) {
		TAILQ_REMOVE(&st->retryq, w, entry);
		TAILQ_INSERT_HEAD(&st->queued, w, entry);
		st->nqueued++;
		n++;
	}
	if (n > 0)
		store_batch_flush(st);
}

void
store_failover_cron(struct store *st)
{
	struct req	*w, *next;
	int64_t		 now = util_mono_ms();

	if (st->nsentinels > 0 && st->sub == NULL && now >= st->sub_retry_at)
		sub_open(st);
	if (st->main.state == CONN_UP) {
		store_failover_ready(st);
		return;
	}
	for (w = TAILQ_FIRST(&st->retryq); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (now <= w->deadline)
			continue;
		TAILQ_REMOVE(&st->retryq, w, entry);
		store_req_defer(w, STORE_UNAVAILABLE, "redis primary not "
		    "reachable: write outcome unknown");
	}
}
