/*
 * store.c - the saga store on Redis (see store.h for the contract).
 *
 * Two hiredis async connections live on the caller's event_base: "main" for
 * every command, and "watch" for the XREAD BLOCK that follows event streams.
 * A blocking XREAD holds a RESP2 connection until it returns, so all watches
 * share that one watcher connection: one XREAD names every followed stream
 * and returns when any of them grows. A watch that joins while the XREAD is
 * blocked wakes it with CLIENT UNBLOCK on the main connection, so joining
 * costs one round trip, not one block period, and the number of connections
 * stays two whatever the number of watches (bounded by max_watches).
 *
 * A connection counts as up once Redis answers PING, not when TCP connects:
 * a restarted Redis accepts connections while it loads its data and answers
 * -LOADING until done. Such "not now" errors map to STORE_UNAVAILABLE.
 *
 * State changes are Lua scripts run with EVALSHA; the SHA1s come from SCRIPT
 * LOAD after each connect and a NOSCRIPT reply (script cache flushed, Redis
 * restarted) resends the same call as EVAL, which caches it again. Writes
 * are queued and leave together once the loop's turn is over, as one call
 * of the write script (batch_flush); commands are built in the protocol's
 * own form in buffers that freed requests keep for the next ones, so a
 * write costs no allocation per argument.
 *
 * hiredis 0.14 runs every pending reply callback with a NULL reply when a
 * connection dies or is freed, then frees the context itself. Each command
 * carries a request that is on exactly one list (in flight on a connection,
 * or deferred), so every callback fires once. hiredis has no command timeout:
 * one timer per store checks the oldest reply each connection awaits and
 * shuts the socket down when it is overdue, which hiredis then handles as any
 * lost connection. The same timer drives reconnects with exponential backoff.
 *
 * Sentinel, WAIT and writes sent again after a failover are
 * store_failover.c's; this file calls it at a few points (connect, reply,
 * a lost batch, the timer).
 *
 * Not here: logging (errors go to the callbacks), flows and steps (the saga
 * engine), Redis Cluster (a write script touches the saga's own keys, under
 * its {ID} hash tag, and its lease and index buckets, under theirs: on a
 * Cluster it would be split in two calls, see HACKING.md).
 */
#include "autoconf.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "auth.h"
#include "store_int.h"
#include "util.h"

#define CRON_MS		100	/* period of the store's one timer */
#define BATCH_MAX	64	/* writes in one EVALSHA at most */
#define SPARE_MAX	256	/* requests kept for reuse */
#define SEG_KEEP	65536	/* a reused request keeps buffers this big */

static void	 conn_ping(struct conn *);
static void	 conn_ready(struct conn *);
static void	 conn_lost(struct conn *, const char *);
static void	 conn_refused(struct conn *, const char *);
static void	 conn_auth(struct conn *);
static void	 set_status(struct store *, int, const char *);

/* What a refusal's sentence names: never the password. */
struct store_params_view {
	const char	*host;
	int		 port;
	const char	*username;
	int		 db;
};

const char *
store_result_name(enum store_result r)
{
	switch (r) {
	case STORE_OK:		return "OK";
	case STORE_EXISTS:	return "EXISTS";
	case STORE_NOT_FOUND:	return "NOT_FOUND";
	case STORE_CONFLICT:	return "CONFLICT";
	case STORE_UNAVAILABLE:	return "UNAVAILABLE";
	case STORE_BUSY:	return "BUSY";
	case STORE_UNCHANGED:	return "UNCHANGED";
	case STORE_ENDED:	return "ENDED";
	case STORE_ERROR:	return "ERROR";
	}
	return "?";
}

/*
 * The bucket of a saga id: the same hash as bucket() in the scripts, kept
 * below 2^20 so that Lua's doubles compute it exactly.
 */
unsigned
store_bucket(const char *id)
{
	unsigned h = 0;

	for (; *id != '\0'; id++)
		h = (h * 33 + (unsigned char)*id) % 1048576;
	return h % STORE_BUCKETS;
}

int
store_state_terminal(int state)
{
	return state == SAGA__V1__STATE__STATE_COMPLETED ||
	    state == SAGA__V1__STATE__STATE_COMPENSATED ||
	    state == SAGA__V1__STATE__STATE_FAILED ||
	    state == SAGA__V1__STATE__STATE_RESOLVED;
}

/*
 * Error replies that say "not now" rather than "wrong": the caller may retry
 * them as it would a lost connection.
 */
enum store_result
store_error_result(const char *msg)
{
	static const char *const transient[] = {
		"LOADING", "BUSY ", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
		"READONLY",
	};
	size_t i;

	for (i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
		if (strncmp(msg, transient[i], strlen(transient[i])) == 0)
			return STORE_UNAVAILABLE;
	return STORE_ERROR;
}

const char *
store_enum_name(const ProtobufCEnumDescriptor *d, int v)
{
	const ProtobufCEnumValue *ev;

	ev = protobuf_c_enum_descriptor_get_value(d, v);
	return ev != NULL ? ev->name : "UNKNOWN";
}

/* --- requests ---------------------------------------------------------- */

static void
seg_reserve(struct seg *g, size_t more)
{
	size_t cap;

	if (g->len + more <= g->cap)
		return;
	cap = g->cap > 0 ? g->cap : 512;
	while (cap < g->len + more)
		cap *= 2;
	g->p = util_xrealloc(g->p, cap);
	g->cap = cap;
}

/* Writes v in decimal at p; returns its length. */
static size_t
fmt_ll(char *p, long long v)
{
	char tmp[24];
	unsigned long long u;
	size_t n = 0, len = 0;

	u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		p[len++] = '-';
	while (n > 0)
		p[len++] = tmp[--n];
	return len;
}

/* Appends "<c><v>\r\n", a header of the protocol. */
static void
seg_head(struct seg *g, char c, long long v)
{
	seg_reserve(g, 32);
	g->p[g->len++] = c;
	g->len += fmt_ll(g->p + g->len, v);
	g->p[g->len++] = '\r';
	g->p[g->len++] = '\n';
}

/*
 * Appends the header of an argument of len bytes and returns where its
 * bytes go; the caller writes exactly len there.
 */
char *
store_seg_open(struct seg *g, size_t len)
{
	char *p;

	seg_head(g, '$', (long long)len);
	seg_reserve(g, len + 2);
	p = g->p + g->len;
	g->len += len;
	g->p[g->len++] = '\r';
	g->p[g->len++] = '\n';
	g->n++;
	return p;
}

void
store_seg_arg(struct seg *g, const void *p, size_t len)
{
	char *d;

	d = store_seg_open(g, len);
	if (len > 0)
		memcpy(d, p, len);
}

static void
seg_int(struct seg *g, long long v)
{
	char buf[24];

	store_seg_arg(g, buf, fmt_ll(buf, v));
}

static void
seg_raw(struct seg *g, const struct seg *from)
{
	seg_reserve(g, from->len);
	if (from->len > 0)
		memcpy(g->p + g->len, from->p, from->len);
	g->len += from->len;
}

static void
seg_free(struct seg *g)
{
	free(g->p);
	memset(g, 0, sizeof(*g));
}

/*
 * Requests are many and short-lived (a few per saga), so freed ones are
 * kept on a list, with their buffers, for the next.
 */
struct req *
store_req_new(struct store *st, struct conn *c, enum req_kind kind)
{
	struct req *r;
	struct seg keys, args;

	if ((r = TAILQ_FIRST(&st->spare)) != NULL) {
		TAILQ_REMOVE(&st->spare, r, entry);
		st->nspare--;
		keys = r->keys;
		args = r->args;
		memset(r, 0, sizeof(*r));
		r->keys = keys;
		r->args = args;
		r->keys.len = r->args.len = 0;
		r->keys.n = r->args.n = 0;
	} else
		r = util_xcalloc(1, sizeof(*r));
	r->st = st;
	r->conn = c;
	r->kind = kind;
	r->script = -1;
	r->timeout = st->cmd_timeout;
	TAILQ_INIT(&r->batch);
	return r;
}

void
store_req_arg(struct req *r, const void *p, size_t len)
{
	store_seg_arg(&r->args, p, len);
}

void
store_req_str(struct req *r, const char *s)
{
	store_seg_arg(&r->args, s, strlen(s));
}

void
store_req_int(struct req *r, long long v)
{
	seg_int(&r->args, v);
}

void
store_req_free(struct req *r)
{
	struct store *st = r->st;

	free(r->failerr);
	r->failerr = NULL;
	if (r->peer != NULL || r->held != NULL)
		store_req_unlink(r);
	if (!st->closing && st->nspare < SPARE_MAX &&
	    r->keys.cap <= SEG_KEEP && r->args.cap <= SEG_KEEP) {
		TAILQ_INSERT_HEAD(&st->spare, r, entry);
		st->nspare++;
		return;
	}
	seg_free(&r->keys);
	seg_free(&r->args);
	free(r);
}

/*
 * Fails r later, from the loop: callers never see their callback run inside
 * the call that made the request.
 */
void
store_req_defer(struct req *r, enum store_result res, const char *err)
{
	struct store *st = r->st;

	r->fail = res;
	r->failerr = util_xstrdup(err);
	TAILQ_INSERT_TAIL(&st->deferred, r, entry);
	event_active(st->defer, EV_TIMEOUT, 1);
}

void
store_req_submit(struct req *r)
{
	if (r->conn->state != CONN_UP)
		store_req_defer(r, STORE_UNAVAILABLE, "redis is not connected");
	else if (store_req_send(r) == -1)
		store_req_defer(r, STORE_UNAVAILABLE, "redis connection is closing");
}

static void store_reply(redisAsyncContext *, void *, void *);

/*
 * Formats r into st->out and hands it to hiredis, which copies it. A script
 * goes as EVALSHA, or as EVAL when its SHA1 is not known (yet, or any more).
 * A batch is one call of the write script: the keys of its writes, their
 * number, then each one's argument count and arguments.
 */
int
store_req_send(struct req *r)
{
	struct conn *c = r->conn;
	struct store *st = r->st;
	struct seg *o = &st->out;
	struct req *w;
	const char *head, *body;
	int nkeys, nargs, rc;

	if (c->ac == NULL)
		return -1;
	o->len = 0;
	if (r->script < 0) {
		seg_head(o, '*', r->args.n);
		seg_raw(o, &r->args);
	} else {
		nkeys = r->keys.n;
		nargs = r->args.n;
		if (r->kind == REQ_BATCH) {
			nargs = 1;
			TAILQ_FOREACH(w, &r->batch, entry) {
				nkeys += w->keys.n;
				nargs += 1 + w->args.n;
			}
		}
		seg_head(o, '*', 3 + nkeys + nargs);
		if (st->sha[r->script][0] != '\0') {
			head = "EVALSHA";
			body = st->sha[r->script];
		} else {
			head = "EVAL";
			body = store_scripts[r->script];
		}
		store_seg_arg(o, head, strlen(head));
		store_seg_arg(o, body, strlen(body));
		seg_int(o, nkeys);
		if (r->kind == REQ_BATCH) {
			TAILQ_FOREACH(w, &r->batch, entry)
				seg_raw(o, &w->keys);
			seg_int(o, r->nbatch);
			TAILQ_FOREACH(w, &r->batch, entry) {
				seg_int(o, w->args.n);
				seg_raw(o, &w->args);
			}
		} else {
			seg_raw(o, &r->keys);
			seg_raw(o, &r->args);
		}
	}
	/*
	 * hiredis 0.14 scans the command with string functions to spot
	 * (P)SUBSCRIBE and reads a byte past len: end it with a NUL.
	 */
	seg_reserve(o, 1);
	o->p[o->len] = '\0';
	rc = redisAsyncFormattedCommand(c->ac, store_reply, r, o->p, o->len);
	if (rc != REDIS_OK)
		return -1;
	r->sent = util_mono_ms();
	TAILQ_INSERT_TAIL(&c->inflight, r, entry);
	return 0;
}

/*
 * Sends the queued writes as one batch. Called from the loop once the turn
 * that queued them is over, or at once when a batch is full.
 */
void
store_batch_flush(struct store *st)
{
	struct req *r, *w;

	if (st->nqueued == 0)
		return;
	if (st->waits > 0 && st->main.state == CONN_UP)
		return;		/* leaves when that WAIT answers */
	r = store_req_new(st, &st->main, REQ_BATCH);
	r->script = SCRIPT_WRITE;
	while ((w = TAILQ_FIRST(&st->queued)) != NULL) {
		TAILQ_REMOVE(&st->queued, w, entry);
		TAILQ_INSERT_TAIL(&r->batch, w, entry);
		r->nbatch++;
	}
	st->nqueued = 0;
	store_req_submit(r);
	if (r->sent != 0 && st->min_acks > 0)
		store_wait_send(r);	/* one WAIT for the whole batch */
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_batch_flush(arg);
}

/* Queues the write r for the batch this turn of the loop sends. */
void
store_batch_add(struct req *r)
{
	struct store *st = r->st;

	if (st->main.state != CONN_UP) {
		store_req_defer(r, STORE_UNAVAILABLE, "redis is not connected");
		return;
	}
	TAILQ_INSERT_TAIL(&st->queued, r, entry);
	if (++st->nqueued >= BATCH_MAX)
		store_batch_flush(st);
	else
		event_active(st->flush, EV_TIMEOUT, 1);
}

/* Runs r's callback with a failure and frees r. */
void
store_req_fail(struct req *r, enum store_result res, const char *err)
{
	struct store *st = r->st;
	struct store_watch *w = r->w;
	struct req *b;

	switch (r->kind) {
	case REQ_BATCH:
		if (res == STORE_UNAVAILABLE && store_batch_lost(r, err))
			break;		/* its writes go again */
		while ((b = TAILQ_FIRST(&r->batch)) != NULL) {
			TAILQ_REMOVE(&r->batch, b, entry);
			store_req_fail(b, res, err);
		}
		break;
	case REQ_CREATE:
	case REQ_GET:
	case REQ_CANCEL:
		r->cb.saga(res, NULL, err, r->arg);
		break;
	case REQ_UPDATE:
		r->cb.rev(res, 0, NULL, err, r->arg);
		break;
	case REQ_RENEW:
	case REQ_CLAIM:
		r->cb.ids(res, NULL, 0, err, r->arg);
		break;
	case REQ_EXPIRE:
		r->cb.count(res, 0, err, r->arg);
		break;
	case REQ_LIST:
		r->cb.list(res, NULL, 0, 0, 0, NULL, err, r->arg);
		break;
	case REQ_WCHECK:
		w->busy = 0;
		st->wdepth++;
		store_watch_end(w, res, err);
		st->wdepth--;
		store_watch_sweep(st);
		break;
	case REQ_XREAD:
		st->xreading = 0;
		break;
	case REQ_UNBLOCK:
		st->unblocking = 0;
		break;
	case REQ_PING:
		r->conn->pinging = 0;
		break;
	case REQ_WAIT:
	case REQ_VERIFY:
		store_failover_fail(r, err);
		break;
	case REQ_CLIENTID:
	case REQ_LOAD:
	case REQ_AUTH:
		break;
	}
	store_req_free(r);
}

static void
defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;
	struct req *r;

	(void)fd;
	(void)what;
	while ((r = TAILQ_FIRST(&st->deferred)) != NULL) {
		TAILQ_REMOVE(&st->deferred, r, entry);
		store_req_fail(r, r->fail, r->failerr);
	}
	store_watches_fail(st, WATCH_FAIL, STORE_OK, NULL);
}

static void
store_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct req *r = privdata;
	struct conn *c = r->conn;
	struct store *st = r->st;
	const redisReply *rep = reply;
	char why[SAGAD_ERRLEN];

	TAILQ_REMOVE(&c->inflight, r, entry);
	if (rep == NULL) {
		/* The connection is gone; hiredis frees it after this. */
		snprintf(why, sizeof(why), "redis connection lost%s%s",
		    ac->err ? ": " : "", ac->err ? ac->errstr : "");
		if (c->killed)
			snprintf(why, sizeof(why), "redis did not answer "
			    "within %d ms", st->cmd_timeout);
		if (c->ac == ac)
			conn_lost(c, why);
		store_req_fail(r, STORE_UNAVAILABLE, why);
		return;
	}
	if (r->script >= 0 && rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0 && c->ac == ac) {
		st->sha[r->script][0] = '\0';
		if (store_req_send(r) == 0)
			return;
	}
	/* Not the primary (a PING may meet -LOADING: HELLO retries it). */
	if (rep->type == REDIS_REPLY_ERROR && c->ac == ac &&
	    r->kind != REQ_PING)
		store_failover_error(c, rep);

	switch (r->kind) {
	case REQ_BATCH:
		if (rep->type == REDIS_REPLY_ERROR)
			store_req_fail(r, store_error_result(rep->str), rep->str);
		else if (!store_batch_held(r, rep))
			store_reply_batch(r, rep);
		return;
	case REQ_WAIT:
		store_reply_wait(r, rep);
		return;
	case REQ_VERIFY:
		if (rep->type == REDIS_REPLY_ERROR)
			store_req_fail(r, store_error_result(rep->str), rep->str);
		else
			store_reply_verify(r, rep);
		return;
	case REQ_CREATE:
	case REQ_UPDATE:
		/* Never sent alone: they travel in a REQ_BATCH. */
		store_req_fail(r, STORE_ERROR, "write sent outside a batch");
		return;
	case REQ_GET:
		if (rep->type == REDIS_REPLY_ERROR)
			store_req_fail(r, store_error_result(rep->str), rep->str);
		else {
			store_reply_get(r, rep);
			store_req_free(r);
		}
		return;
	case REQ_RENEW:
	case REQ_CLAIM:
		if (rep->type == REDIS_REPLY_ERROR)
			store_req_fail(r, store_error_result(rep->str), rep->str);
		else
			store_reply_ids(r, rep);
		return;
	case REQ_CANCEL:
	case REQ_LIST:
	case REQ_EXPIRE:
		if (rep->type == REDIS_REPLY_ERROR)
			store_req_fail(r, store_error_result(rep->str), rep->str);
		else if (r->kind == REQ_CANCEL)
			store_reply_cancel(r, rep);
		else if (r->kind == REQ_LIST)
			store_reply_list(r, rep);
		else {
			r->cb.count(STORE_OK, rep->type == REDIS_REPLY_INTEGER ?
			    (size_t)rep->integer : 0, NULL, r->arg);
			store_req_free(r);
		}
		return;
	case REQ_WCHECK:
		store_reply_watch(r, rep);
		return;
	case REQ_XREAD:
		store_reply_xread(st, rep);
		store_req_free(r);
		store_watch_kick(st);
		return;
	case REQ_AUTH:
		store_req_free(r);
		if (rep->type == REDIS_REPLY_ERROR && c->ac == ac)
			conn_refused(c, rep->str);
		return;
	case REQ_PING:
		c->pinging = 0;
		store_req_free(r);
		if (c->state != CONN_HELLO)
			return;
		if (rep->type == REDIS_REPLY_STATUS)
			conn_ready(c);
		else if (rep->type == REDIS_REPLY_ERROR &&
		    strncmp(rep->str, "NOAUTH", 6) == 0 && c->ac == ac)
			conn_refused(c, rep->str);
		else {
			/* NOAUTH, LOADING...: say it once, try again. */
			if (!c->watch) {
				snprintf(why, sizeof(why), "redis %s:%d: "
				    "answers PING with: %.*s", st->host,
				    st->port, rep->type == REDIS_REPLY_ERROR ?
				    (int)rep->len : 1, rep->type ==
				    REDIS_REPLY_ERROR ? rep->str : "?");
				set_status(st, 0, why);
			}
			c->ping_at = util_mono_ms() + CRON_MS;
		}
		return;
	case REQ_CLIENTID:
		if (rep->type == REDIS_REPLY_INTEGER)
			c->client_id = rep->integer;
		store_req_free(r);
		return;
	case REQ_UNBLOCK:
		/* 0: the XREAD was not blocked yet; the timer tries again. */
		st->unblocking = 0;
		store_req_free(r);
		return;
	case REQ_LOAD:
		if (rep->type == REDIS_REPLY_STRING && rep->len == 40)
			memcpy(st->sha[r->load], rep->str, 41);
		store_req_free(r);
		return;
	}
}

/* --- connections ------------------------------------------------------- */

/*
 * Tells the owner: every up, and every down with a reason other than the
 * last one said (so a Redis that is unreachable, or refuses us, from the
 * start is reported once, not at every attempt).
 */
static void
set_status(struct store *st, int up, const char *why)
{
	if (st->status_cb == NULL || st->closing)
		return;
	if (!up) {
		if (why == NULL || *why == '\0')
			why = "unavailable";
		if (strcmp(st->down_said, why) == 0)
			return;
		snprintf(st->down_said, sizeof(st->down_said), "%s", why);
	} else
		st->down_said[0] = '\0';
	st->status_cb(up, why, st->status_arg);
}

/*
 * Marks c down and plans the next attempt. hiredis frees the context itself
 * after the callback we are called from.
 */
static void
conn_lost(struct conn *c, const char *why)
{
	struct store *st = c->st;

	c->ac = NULL;
	c->state = CONN_DOWN;
	c->killed = 0;
	c->client_id = -1;
	c->pinging = 0;
	c->retry_at = util_mono_ms() + c->backoff;
	c->backoff *= 2;
	if (c->backoff > st->backoff_max)
		c->backoff = st->backoff_max;
	if (c->watch) {
		st->xreading = 0;
		store_watches_fail(st, WATCH_FOLLOW, STORE_UNAVAILABLE, why);
	} else
		set_status(st, 0, why);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct conn *c = ac->data;
	struct store *st = c->st;
	char why[SAGAD_ERRLEN];

	if (c->ac != ac)
		return;
	if (status != REDIS_OK) {
		snprintf(why, sizeof(why), "redis %s:%d: %s", st->host,
		    st->port, c->killed ? "connect timed out" : ac->errstr);
		conn_lost(c, why);
		return;
	}
	c->state = CONN_HELLO;
	c->ping_at = 0;
	c->refused = 0;
	conn_auth(c);
	conn_ping(c);
}

/*
 * The credentials, on every new connection, ahead of its PING: Redis
 * answers in order, so a refusal arrives before the PING's reply.
 */
static void
conn_auth(struct conn *c)
{
	struct store *st = c->st;
	struct req *r;
	char db[16];

	if (st->password != NULL) {
		r = store_req_new(st, c, REQ_AUTH);
		store_req_str(r, "AUTH");
		if (st->username != NULL)
			store_req_str(r, st->username);
		store_req_str(r, st->password);
		if (store_req_send(r) == -1)
			store_req_free(r);
	}
	if (st->db != 0) {
		snprintf(db, sizeof(db), "%d", st->db);
		r = store_req_new(st, c, REQ_AUTH);
		store_req_str(r, "SELECT");
		store_req_str(r, db);
		if (store_req_send(r) == -1)
			store_req_free(r);
	}
}

/* A sentence for Redis refusing the credentials or the database. */
static void
refusal_text(const struct store_params_view *v, const char *reply, char *buf,
    size_t len)
{
	if (strncmp(reply, "NOAUTH", 6) == 0)
		snprintf(buf, len, "redis %s:%d refused sagad: it wants a "
		    "password (%s); set redis.password_file", v->host,
		    v->port, reply);
	else if (strncmp(reply, "WRONGPASS", 9) == 0 ||
	    strstr(reply, "invalid password") != NULL ||
	    strstr(reply, "AUTH") != NULL)
		snprintf(buf, len, "redis %s:%d refused AUTH as user %s: %s",
		    v->host, v->port, v->username != NULL ? v->username :
		    "default", reply);
	else
		snprintf(buf, len, "redis %s:%d refused the connection's "
		    "setup (AUTH, SELECT %d): %s", v->host, v->port, v->db,
		    reply);
}

/*
 * Redis refused the credentials: say so once per change of reason (the
 * status callback), and drop the connection; the backoff retries it.
 */
static void
conn_refused(struct conn *c, const char *reply)
{
	struct store *st = c->st;
	struct store_params_view v = { st->host, st->port, st->username,
	    st->db };
	char why[SAGAD_ERRLEN];

	/* AUTH refused: the PING after it says NOAUTH, the same story. */
	if (c->refused)
		return;
	c->refused = 1;
	refusal_text(&v, reply, why, sizeof(why));
	if (strcmp(why, st->refusal) != 0) {
		snprintf(st->refusal, sizeof(st->refusal), "%s", why);
		set_status(st, 0, why);
	}
	store_conn_kill(c);
}

/* Sends the PING that brings a new connection up. */
static void
conn_ping(struct conn *c)
{
	struct req *r;

	if (c->pinging || util_mono_ms() < c->ping_at)
		return;
	r = store_req_new(c->st, c, REQ_PING);
	store_req_str(r, "PING");
	if (store_req_send(r) == -1)
		store_req_free(r);
	else
		c->pinging = 1;
}

/* Redis answers: the connection is up. */
static void
conn_ready(struct conn *c)
{
	struct store *st = c->st;
	struct req *r;
	int i;

	c->state = CONN_UP;
	c->backoff = st->backoff_min;
	st->refusal[0] = '\0';
	if (c->watch) {
		r = store_req_new(st, c, REQ_CLIENTID);
		store_req_str(r, "CLIENT");
		store_req_str(r, "ID");
		if (store_req_send(r) == -1)
			store_req_free(r);
		store_watch_kick(st);
		return;
	}
	for (i = 0; i < NSCRIPTS; i++) {
		st->sha[i][0] = '\0';
		r = store_req_new(st, c, REQ_LOAD);
		r->load = i;
		store_req_str(r, "SCRIPT");
		store_req_str(r, "LOAD");
		store_req_str(r, store_scripts[i]);
		if (store_req_send(r) == -1)
			store_req_free(r);
	}
	set_status(st, 1, NULL);
	store_failover_ready(st);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct conn *c = ac->data;

	(void)status;
	if (c->ac == ac)
		conn_lost(c, ac->err ? ac->errstr : "redis connection closed");
}

void
store_conn_connect(struct conn *c)
{
	struct store *st = c->st;
	redisAsyncContext *ac;
	char why[SAGAD_ERRLEN];

	if (st->closing || c->state != CONN_DOWN)
		return;
	c->since = util_mono_ms();
	c->killed = 0;
	if (st->nsentinels > 0 && store_sentinel_resolve(st, why,
	    sizeof(why)) == -1) {
		c->state = CONN_CONNECTING;	/* so conn_lost reports it */
		conn_lost(c, why);
		return;
	}
	ac = redisAsyncConnect(st->host, st->port);
	if (ac == NULL || ac->err) {
		snprintf(why, sizeof(why), "redis %s:%d: %s", st->host,
		    st->port, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		c->state = CONN_CONNECTING;	/* so conn_lost reports it */
		conn_lost(c, why);
		return;
	}
	ac->data = c;
	if (redisLibeventAttach(ac, st->base) != REDIS_OK) {
		redisAsyncFree(ac);
		c->state = CONN_CONNECTING;
		conn_lost(c, "cannot attach redis to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	c->state = CONN_CONNECTING;
}

/* Shuts the socket down; hiredis sees EOF and fails what is pending. */
void
store_conn_kill(struct conn *c)
{
	if (c->ac == NULL || c->killed)
		return;
	c->killed = 1;
	shutdown(c->ac->c.fd, SHUT_RDWR);
}

static void
cron(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;
	struct conn *c;
	struct req *r;
	int64_t now = util_mono_ms();
	int i;

	(void)fd;
	(void)what;
	for (i = 0; i < 2; i++) {
		c = i == 0 ? &st->main : &st->wconn;
		if (c->state == CONN_CONNECTING &&
		    now - c->since > st->cmd_timeout)
			store_conn_kill(c);
		r = TAILQ_FIRST(&c->inflight);
		if ((c->state == CONN_UP || c->state == CONN_HELLO) &&
		    r != NULL && now - r->sent > r->timeout)
			store_conn_kill(c);
		if (c->state == CONN_HELLO)
			conn_ping(c);
	}
	if (st->main.state == CONN_DOWN && now >= st->main.retry_at)
		store_conn_connect(&st->main);
	store_failover_cron(st);
	store_watch_refresh(st);
	store_watch_kick(st);
}


/* --- the API ----------------------------------------------------------- */

struct store *
store_new(struct event_base *base, const struct store_params *p, char *err,
    size_t errlen)
{
	struct store *st;
	int i;

	if (p->host == NULL || p->host[0] == '\0') {
		snprintf(err, errlen, "store: redis host is empty");
		return NULL;
	}
	if (p->port <= 0 || p->port > 65535) {
		snprintf(err, errlen, "store: redis port %d is not in 1-65535",
		    p->port);
		return NULL;
	}
	st = util_xcalloc(1, sizeof(*st));
	st->base = base;
	st->host = util_xstrdup(p->host);
	st->port = p->port;
	st->saga_ttl = p->saga_ttl;
	st->completed_ttl = p->completed_ttl;
	st->events_max = p->events_max > 0 ? p->events_max : 256;
	st->backoff_min = p->backoff_min_ms > 0 ? p->backoff_min_ms : 100;
	st->backoff_max = p->backoff_max_ms > 0 ? p->backoff_max_ms : 5000;
	if (st->backoff_max < st->backoff_min)
		st->backoff_max = st->backoff_min;
	st->cmd_timeout = p->cmd_timeout_ms > 0 ? p->cmd_timeout_ms : 5000;
	st->max_watches = p->max_watches > 0 ? p->max_watches : 1024;
	st->block_ms = p->watch_block_ms > 0 ? p->watch_block_ms : 2000;
	st->db = p->db;
	st->username = p->username != NULL ? util_xstrdup(p->username) : NULL;
	if (p->password != NULL)
		st->password = util_xstrdup(p->password);
	else if (p->password_file != NULL) {
		char pw[1100];

		if (auth_read_secret(p->password_file, pw, sizeof(pw), err,
		    errlen) == -1) {
			free(st->username);
			free(st->host);
			free(st);
			return NULL;
		}
		st->password = util_xstrdup(pw);
		auth_wipe(pw, sizeof(pw));
	}
	TAILQ_INIT(&st->deferred);
	TAILQ_INIT(&st->queued);
	TAILQ_INIT(&st->spare);
	TAILQ_INIT(&st->watches);
	if (store_failover_init(st, p, err, errlen) == -1) {
		store_failover_free(st);
		free(st->host);
		free(st->username);
		if (st->password != NULL)
			auth_wipe(st->password, strlen(st->password));
		free(st->password);
		free(st);
		return NULL;
	}
	for (i = 0; i < 2; i++) {
		struct conn *c = i == 0 ? &st->main : &st->wconn;

		c->st = st;
		c->watch = i;
		c->state = CONN_DOWN;
		c->client_id = -1;
		c->backoff = st->backoff_min;
		TAILQ_INIT(&c->inflight);
	}
	st->defer = event_new(base, -1, 0, defer_cb, st);
	st->cron = event_new(base, -1, EV_PERSIST, cron, st);
	st->flush = event_new(base, -1, 0, flush_cb, st);
	if (st->defer == NULL || st->cron == NULL || st->flush == NULL) {
		snprintf(err, errlen, "store: cannot create events");
		if (st->defer != NULL)
			event_free(st->defer);
		if (st->cron != NULL)
			event_free(st->cron);
		if (st->flush != NULL)
			event_free(st->flush);
		free(st->host);
		free(st->username);
		if (st->password != NULL)
			auth_wipe(st->password, strlen(st->password));
		free(st->password);
		free(st);
		return NULL;
	}
	{
		struct timeval tv = { 0, CRON_MS * 1000 };

		event_add(st->cron, &tv);
	}
	store_conn_connect(&st->main);
	return st;
}

void
store_free(struct store *st)
{
	redisAsyncContext *ac;
	struct store_watch *w;
	struct conn *c;
	struct req *r;
	int i, live;

	if (st == NULL)
		return;
	st->closing = 1;
	event_del(st->cron);
	event_del(st->flush);
	while ((r = TAILQ_FIRST(&st->queued)) != NULL) {
		TAILQ_REMOVE(&st->queued, r, entry);
		store_req_defer(r, STORE_UNAVAILABLE, "store closed");
	}
	st->nqueued = 0;
	store_failover_free(st);
	for (i = 0; i < 2; i++) {
		c = i == 0 ? &st->main : &st->wconn;
		ac = c->ac;
		c->ac = NULL;
		c->state = CONN_DOWN;
		if (ac != NULL)
			redisAsyncFree(ac);	/* runs their callbacks */
	}
	/* Callbacks may have asked for more; those fail too. */
	for (;;) {
		defer_cb(-1, 0, st);
		store_watches_fail(st, WATCH_CHECK, STORE_UNAVAILABLE,
		    "store closed");
		store_watches_fail(st, WATCH_FOLLOW, STORE_UNAVAILABLE,
		    "store closed");
		live = 0;
		TAILQ_FOREACH(w, &st->watches, entry)
			if (store_watch_live(w))
				live = 1;
		if (TAILQ_EMPTY(&st->deferred) && !live)
			break;
	}
	while ((w = TAILQ_FIRST(&st->watches)) != NULL)
		store_watch_free(w);
	while ((r = TAILQ_FIRST(&st->spare)) != NULL) {
		TAILQ_REMOVE(&st->spare, r, entry);
		seg_free(&r->keys);
		seg_free(&r->args);
		free(r);
	}
	seg_free(&st->out);
	event_free(st->cron);
	event_free(st->defer);
	event_free(st->flush);
	free(st->host);
	free(st->username);
	if (st->password != NULL)
		auth_wipe(st->password, strlen(st->password));
	free(st->password);
	if (st->out.p != NULL)
		auth_wipe(st->out.p, st->out.cap);
	free(st);
}

int
store_probe(const struct store_params *p, int timeout_ms, char *err,
    size_t errlen)
{
	struct timeval		 tv = { timeout_ms / 1000,
				    (timeout_ms % 1000) * 1000 };
	struct store_params_view v = { p->host, p->port, p->username, p->db };
	redisContext		*rc;
	redisReply		*rep = NULL;
	char			 pw[1100], db[16], why[SAGAD_ERRLEN];
	const char		*argv[3];
	size_t			 argl[3];
	int			 argc = 0, refused = 0;

	/* Behind Sentinel host:port is a guess: the store reports refusals. */
	if (p->sentinels != NULL && p->sentinels[0] != NULL)
		return 0;
	pw[0] = '\0';
	if (p->password != NULL)
		snprintf(pw, sizeof(pw), "%s", p->password);
	else if (p->password_file != NULL && auth_read_secret(p->password_file,
	    pw, sizeof(pw), err, errlen) == -1)
		return -1;
	rc = redisConnectWithTimeout(p->host, p->port, tv);
	if (rc == NULL || rc->err) {
		if (rc != NULL)
			redisFree(rc);
		auth_wipe(pw, sizeof(pw));
		return 0;	/* not there yet: not a refusal */
	}
	redisSetTimeout(rc, tv);
	if (pw[0] != '\0') {
		argv[argc] = "AUTH";
		argl[argc++] = 4;
		if (p->username != NULL) {
			argv[argc] = p->username;
			argl[argc++] = strlen(p->username);
		}
		argv[argc] = pw;
		argl[argc++] = strlen(pw);
		rep = redisCommandArgv(rc, argc, argv, argl);
		auth_wipe(pw, sizeof(pw));
		if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
			refusal_text(&v, rep->str, why, sizeof(why));
			refused = 1;
		}
		freeReplyObject(rep);
	}
	if (!refused && p->db != 0) {
		snprintf(db, sizeof(db), "%d", p->db);
		argv[0] = "SELECT";
		argl[0] = 6;
		argv[1] = db;
		argl[1] = strlen(db);
		rep = redisCommandArgv(rc, 2, argv, argl);
		if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
			refusal_text(&v, rep->str, why, sizeof(why));
			refused = 1;
		}
		freeReplyObject(rep);
	}
	if (!refused) {
		rep = redisCommand(rc, "PING");
		if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
		    strncmp(rep->str, "NOAUTH", 6) == 0) {
			refusal_text(&v, rep->str, why, sizeof(why));
			refused = 1;
		}
		freeReplyObject(rep);
	}
	redisFree(rc);
	if (refused) {
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	return 0;
}

void
store_set_status_cb(struct store *st, store_status_cb *cb, void *arg)
{
	st->status_cb = cb;
	st->status_arg = arg;
}

int
store_is_up(const struct store *st)
{
	return st->main.state == CONN_UP;
}
