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
 * Not here: logging (errors go to the callbacks), flows and steps (the saga
 * engine), Redis Cluster (the scripts that touch saga:leases also touch saga
 * hashes, so they need one node; the {ID} hash tag keeps a saga's own keys
 * in one slot for later).
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

#include "store.h"
#include "util.h"

#define CRON_MS		100	/* period of the store's one timer */
#define XREAD_COUNT	256	/* entries per stream per XREAD */
#define LEASES_KEY	"saga:leases"
#define BATCH_MAX	64	/* writes in one EVALSHA at most */
#define SPARE_MAX	256	/* requests kept for reuse */
#define SEG_KEEP	65536	/* a reused request keeps buffers this big */

/*
 * The one script for every saga write, and for several at once: writes
 * issued during one turn of the loop travel as one EVALSHA (see
 * batch_flush), which spares Redis most of the fixed cost of a script call.
 * KEYS holds three keys per write; ARGV[1] is the number of writes, then
 * each write's own argument count and arguments. Each write keeps its own
 * revision check and its own result, and a write that fails (a Redis error
 * inside it) fails alone: the reply is one result per write, in order.
 *
 * Expected revision 0 means create: it answers EXISTS with the stored hash
 * when the saga is there. The lease expiry is taken from Redis' clock
 * (TIME) so masters need not agree on time. It is the hot path of every
 * saga (a few writes each), so a write makes one HSET and one XADD: the
 * events of one write share one stream entry, as repeated step/state/pb
 * fields, in order. A write's 6th argument says what it does to the
 * saga's life: "1" ends it (no lease, expiries set), "2" reopens an ended
 * one (expiry dropped, and its old events, so that a Watch follows the new
 * run to its end instead of stopping at the old one), "0" neither.
 */
static const char script_write[] =
	"local function write(k, a)\n"
	"  local h = KEYS[k + 1]\n"
	"  local id = ARGV[a + 1]\n"
	"  local exp = tonumber(ARGV[a + 2])\n"
	"  local cur = tonumber(redis.call('HGET', h, 'rev') or 0)\n"
	"  if cur ~= exp then\n"
	"    if exp == 0 then\n"
	"      return {'EXISTS', redis.call('HGETALL', h)}\n"
	"    end\n"
	"    if cur == 0 then return {'NOTFOUND'} end\n"
	"    return {'CONFLICT', cur}\n"
	"  end\n"
	"  local nf = tonumber(ARGV[a + 8])\n"
	"  local f = {}\n"
	"  for x = a + 9, a + 8 + 2 * nf do f[#f + 1] = ARGV[x] end\n"
	"  local i = a + 9 + 2 * nf\n"
	"  local rev = cur + 1\n"
	"  f[#f + 1] = 'rev'\n"
	"  f[#f + 1] = rev\n"
	"  if ARGV[a + 4] ~= '' then\n"
	"    f[#f + 1] = 'owner'\n"
	"    f[#f + 1] = ARGV[a + 4]\n"
	"  end\n"
	"  if ARGV[a + 6] == '2' then\n"
	"    redis.call('PERSIST', h)\n"
	"    redis.call('DEL', KEYS[k + 2])\n"
	"  end\n"
	"  redis.call('HSET', h, unpack(f))\n"
	"  local ne = tonumber(ARGV[i])\n"
	"  i = i + 1\n"
	"  if ne > 0 then\n"
	"    local x = {}\n"
	"    for e = 1, ne do\n"
	"      x[#x + 1] = 'step'\n"
	"      x[#x + 1] = ARGV[i]\n"
	"      x[#x + 1] = 'state'\n"
	"      x[#x + 1] = ARGV[i + 1]\n"
	"      x[#x + 1] = 'pb'\n"
	"      x[#x + 1] = ARGV[i + 2]\n"
	"      i = i + 3\n"
	"    end\n"
	"    redis.call('XADD', KEYS[k + 2], 'MAXLEN', '~', ARGV[a + 7], '*',\n"
	"      unpack(x))\n"
	"  end\n"
	"  local lease = tonumber(ARGV[a + 3])\n"
	"  if ARGV[a + 6] == '1' then\n"
	"    redis.call('ZREM', KEYS[k + 3], id)\n"
	"    local ttl = tonumber(ARGV[a + 5])\n"
	"    if ttl > 0 then\n"
	"      redis.call('EXPIRE', h, ttl)\n"
	"      redis.call('EXPIRE', KEYS[k + 2], ttl)\n"
	"    end\n"
	"  elseif lease > 0 then\n"
	"    local t = redis.call('TIME')\n"
	"    local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
	"    redis.call('ZADD', KEYS[k + 3], now + lease, id)\n"
	"  elseif lease < 0 then\n"
	"    redis.call('ZREM', KEYS[k + 3], id)\n"
	"  end\n"
	"  return {'OK', rev}\n"
	"end\n"
	"local out = {}\n"
	"local a = 2\n"
	"for j = 0, tonumber(ARGV[1]) - 1 do\n"
	"  local ok, res = pcall(write, 3 * j, a)\n"
	"  if not ok then\n"
	"    if type(res) == 'table' then res = res.err end\n"
	"    res = {'ERR', tostring(res)}\n"
	"  end\n"
	"  out[j + 1] = res\n"
	"  a = a + 1 + tonumber(ARGV[a])\n"
	"end\n"
	"return out\n";

/* Extends the leases the owner still holds; returns those it does not. */
static const char script_renew[] =
	"local t = redis.call('TIME')\n"
	"local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])\n"
	"local lost = {}\n"
	"for i = 3, #ARGV do\n"
	"  local id = ARGV[i]\n"
	"  local o = redis.call('HGET', 'saga:{' .. id .. '}', 'owner')\n"
	"  local s = redis.call('ZSCORE', KEYS[1], id)\n"
	"  if o == ARGV[1] and s then\n"
	"    if tonumber(s) < exp then redis.call('ZADD', KEYS[1], exp, id) end\n"
	"  else\n"
	"    lost[#lost + 1] = id\n"
	"  end\n"
	"end\n"
	"return lost\n";

/*
 * Takes expired leases. Scripts run one at a time in Redis, so a lease moves
 * to exactly one claimer; the revision bump fences off the former owner.
 */
static const char script_claim[] =
	"local t = redis.call('TIME')\n"
	"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
	"local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now,\n"
	"  'LIMIT', 0, tonumber(ARGV[3]))\n"
	"local out = {}\n"
	"for _, id in ipairs(ids) do\n"
	"  local h = 'saga:{' .. id .. '}'\n"
	"  if redis.call('EXISTS', h) == 1 then\n"
	"    redis.call('HSET', h, 'owner', ARGV[1])\n"
	"    redis.call('HINCRBY', h, 'rev', 1)\n"
	"    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)\n"
	"    out[#out + 1] = id\n"
	"  else\n"
	"    redis.call('ZREM', KEYS[1], id)\n"
	"  end\n"
	"end\n"
	"return out\n";

enum { SCRIPT_WRITE, SCRIPT_RENEW, SCRIPT_CLAIM, NSCRIPTS };

static const char *const scripts[NSCRIPTS] = {
	script_write, script_renew, script_claim,
};

/*
 * HELLO: connected, but not up until Redis answers PING; a server that is
 * still loading its data set accepts connections and answers -LOADING.
 */
enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_HELLO, CONN_UP };

enum req_kind {
	REQ_CREATE, REQ_UPDATE, REQ_GET, REQ_RENEW, REQ_CLAIM,
	REQ_WCHECK,	/* does the watched saga exist */
	REQ_XREAD, REQ_CLIENTID, REQ_UNBLOCK, REQ_LOAD, REQ_PING,
	REQ_BATCH,	/* carries REQ_CREATE and REQ_UPDATE requests */
};

/*
 * Arguments already in the protocol's form ("$LEN\r\nDATA\r\n" each), so
 * that sending a command is one copy into the output buffer and building
 * one costs no allocation per argument.
 */
struct seg {
	char			*p;
	size_t			 len;
	size_t			 cap;
	int			 n;		/* arguments in it */
};

struct req;
TAILQ_HEAD(reqlist, req);

struct conn {
	struct store		*st;
	int			 watch;		/* the watcher connection */
	redisAsyncContext	*ac;
	enum conn_state		 state;
	struct reqlist		 inflight;	/* oldest first, as replies come */
	int64_t			 since;		/* mono ms of the last connect */
	int64_t			 retry_at;	/* mono ms of the next attempt */
	int64_t			 backoff;
	int			 killed;	/* we shut its socket down */
	long long		 client_id;	/* watch: for CLIENT UNBLOCK */
	int			 pinging;	/* HELLO: a PING is in flight */
	int64_t			 ping_at;	/* HELLO: mono ms of the next */
};

struct req {
	TAILQ_ENTRY(req)	 entry;
	struct store		*st;
	struct conn		*conn;
	enum req_kind		 kind;
	int			 script;	/* SCRIPT_* or -1 */
	int			 load;		/* REQ_LOAD: which script */
	int64_t			 sent;		/* mono ms */
	int64_t			 timeout;	/* ms the reply may take */
	struct seg		 keys;		/* script: its KEYS */
	struct seg		 args;		/* the command, or ARGV */
	struct reqlist		 batch;		/* REQ_BATCH: its writes */
	int			 nbatch;
	union {
		store_saga_cb	*saga;
		store_rev_cb	*rev;
		store_ids_cb	*ids;
	}			 cb;
	void			*arg;
	struct store_watch	*w;
	enum store_result	 fail;		/* deferred failure */
	char			*failerr;
};

enum watch_state { WATCH_CHECK, WATCH_FOLLOW, WATCH_FAIL };

struct store_watch {
	TAILQ_ENTRY(store_watch) entry;
	struct store		*st;
	enum watch_state	 state;
	char			*id;
	char			*key;		/* saga:{ID}:events */
	uint64_t		 last_ms;	/* last entry delivered */
	uint64_t		 last_seq;
	store_event_cb		*cb;
	void			*arg;
	int			 cancelled;	/* by the caller */
	int			 ended;		/* last callback made */
	int			 busy;		/* a request points at it */
	enum store_result	 fail;
	char			 failerr[128];
};

TAILQ_HEAD(watchlist, store_watch);

struct store {
	struct event_base	*base;
	char			*host;
	int			 port;
	int			 saga_ttl;
	int			 events_max;
	int			 backoff_min;
	int			 backoff_max;
	int			 cmd_timeout;
	int			 max_watches;
	int			 block_ms;

	struct conn		 main;
	struct conn		 wconn;
	char			 sha[NSCRIPTS][41];

	struct event		*cron;
	struct event		*defer;		/* delivers deferred failures */
	struct reqlist		 deferred;
	struct event		*flush;		/* sends the queued writes */
	struct reqlist		 queued;	/* writes for the next batch */
	int			 nqueued;
	struct reqlist		 spare;		/* freed requests to reuse */
	int			 nspare;
	struct seg		 out;		/* the command being sent */

	struct watchlist	 watches;
	int			 wdepth;	/* inside watch callbacks */
	int			 wdirty;	/* the XREAD misses a stream */
	int			 xreading;	/* an XREAD is in flight */
	int			 unblocking;	/* a CLIENT UNBLOCK is */
	int			 closing;

	store_status_cb		*status_cb;
	void			*status_arg;
};

static void	 conn_connect(struct conn *);
static void	 conn_ping(struct conn *);
static void	 conn_ready(struct conn *);
static void	 conn_lost(struct conn *, const char *);
static int	 req_send(struct req *);
static void	 req_fail(struct req *, enum store_result, const char *);
static void	 watch_kick(struct store *);
static void	 watch_end(struct store_watch *, enum store_result,
		    const char *);
static void	 watch_sweep(struct store *);
static void	 watches_fail(struct store *, enum watch_state,
		    enum store_result, const char *);

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
	case STORE_ERROR:	return "ERROR";
	}
	return "?";
}

static int
state_terminal(int state)
{
	return state == SAGA__V1__STATE__STATE_COMPLETED ||
	    state == SAGA__V1__STATE__STATE_COMPENSATED ||
	    state == SAGA__V1__STATE__STATE_FAILED;
}

/*
 * Error replies that say "not now" rather than "wrong": the caller may retry
 * them as it would a lost connection.
 */
static enum store_result
error_result(const char *msg)
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

static const char *
enum_name(const ProtobufCEnumDescriptor *d, int v)
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
static char *
seg_open(struct seg *g, size_t len)
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

static void
seg_arg(struct seg *g, const void *p, size_t len)
{
	char *d;

	d = seg_open(g, len);
	if (len > 0)
		memcpy(d, p, len);
}

static void
seg_int(struct seg *g, long long v)
{
	char buf[24];

	seg_arg(g, buf, fmt_ll(buf, v));
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
static struct req *
req_new(struct store *st, struct conn *c, enum req_kind kind)
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

static void
req_arg(struct req *r, const void *p, size_t len)
{
	seg_arg(&r->args, p, len);
}

static void
req_str(struct req *r, const char *s)
{
	seg_arg(&r->args, s, strlen(s));
}

static void
req_int(struct req *r, long long v)
{
	seg_int(&r->args, v);
}

static void
req_free(struct req *r)
{
	struct store *st = r->st;

	free(r->failerr);
	r->failerr = NULL;
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
static void
req_defer(struct req *r, enum store_result res, const char *err)
{
	struct store *st = r->st;

	r->fail = res;
	r->failerr = util_xstrdup(err);
	TAILQ_INSERT_TAIL(&st->deferred, r, entry);
	event_active(st->defer, EV_TIMEOUT, 1);
}

static void
req_submit(struct req *r)
{
	if (r->conn->state != CONN_UP)
		req_defer(r, STORE_UNAVAILABLE, "redis is not connected");
	else if (req_send(r) == -1)
		req_defer(r, STORE_UNAVAILABLE, "redis connection is closing");
}

static void store_reply(redisAsyncContext *, void *, void *);

/*
 * Formats r into st->out and hands it to hiredis, which copies it. A script
 * goes as EVALSHA, or as EVAL when its SHA1 is not known (yet, or any more).
 * A batch is one call of the write script: the keys of its writes, their
 * number, then each one's argument count and arguments.
 */
static int
req_send(struct req *r)
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
			body = scripts[r->script];
		}
		seg_arg(o, head, strlen(head));
		seg_arg(o, body, strlen(body));
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
static void
batch_flush(struct store *st)
{
	struct req *r, *w;

	if (st->nqueued == 0)
		return;
	r = req_new(st, &st->main, REQ_BATCH);
	r->script = SCRIPT_WRITE;
	while ((w = TAILQ_FIRST(&st->queued)) != NULL) {
		TAILQ_REMOVE(&st->queued, w, entry);
		TAILQ_INSERT_TAIL(&r->batch, w, entry);
		r->nbatch++;
	}
	st->nqueued = 0;
	req_submit(r);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	batch_flush(arg);
}

/* Queues the write r for the batch this turn of the loop sends. */
static void
batch_add(struct req *r)
{
	struct store *st = r->st;

	if (st->main.state != CONN_UP) {
		req_defer(r, STORE_UNAVAILABLE, "redis is not connected");
		return;
	}
	TAILQ_INSERT_TAIL(&st->queued, r, entry);
	if (++st->nqueued >= BATCH_MAX)
		batch_flush(st);
	else
		event_active(st->flush, EV_TIMEOUT, 1);
}

/* Runs r's callback with a failure and frees r. */
static void
req_fail(struct req *r, enum store_result res, const char *err)
{
	struct store *st = r->st;
	struct store_watch *w = r->w;
	struct req *b;

	switch (r->kind) {
	case REQ_BATCH:
		while ((b = TAILQ_FIRST(&r->batch)) != NULL) {
			TAILQ_REMOVE(&r->batch, b, entry);
			req_fail(b, res, err);
		}
		break;
	case REQ_CREATE:
	case REQ_GET:
		r->cb.saga(res, NULL, err, r->arg);
		break;
	case REQ_UPDATE:
		r->cb.rev(res, 0, err, r->arg);
		break;
	case REQ_RENEW:
	case REQ_CLAIM:
		r->cb.ids(res, NULL, 0, err, r->arg);
		break;
	case REQ_WCHECK:
		w->busy = 0;
		st->wdepth++;
		watch_end(w, res, err);
		st->wdepth--;
		watch_sweep(st);
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
	case REQ_CLIENTID:
	case REQ_LOAD:
		break;
	}
	req_free(r);
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
		req_fail(r, r->fail, r->failerr);
	}
	watches_fail(st, WATCH_FAIL, STORE_OK, NULL);
}

/* --- replies ----------------------------------------------------------- */

/*
 * Fills rec from a flat HGETALL array. Strings point into the reply. Returns
 * 0, or -1 with err filled.
 */
int
store_parse_hash(const struct redisReply *h, struct store_saga *rec,
    char *err, size_t errlen)
{
	const redisReply *k, *v;
	const redisReply *pb = NULL;
	size_t i;

	memset(rec, 0, sizeof(*rec));
	rec->pod = rec->owner = rec->callback = "";
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
		if (strcmp(k->str, "pb") == 0)
			pb = v;
		else if (strcmp(k->str, "rev") == 0)
			rec->rev = strtoll(v->str, NULL, 10);
		else if (strcmp(k->str, "step") == 0)
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
	}
	if (pb == NULL) {
		snprintf(err, errlen, "saga hash has no pb field");
		return -1;
	}
	rec->saga = saga__v1__saga__unpack(NULL, pb->len,
	    (const uint8_t *)pb->str);
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

static void
reply_get(struct req *r, const redisReply *rep)
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
		req_fail(r, STORE_ERROR, err);
		return;
	}
	what = rep->element[0]->str;
	if (rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_INTEGER)
		n = rep->element[1]->integer;
	if (strcmp(what, "ERR") == 0) {
		/* A Redis error inside this write (OOM, wrong type...). */
		what = rep->elements > 1 &&
		    rep->element[1]->type == REDIS_REPLY_STRING ?
		    rep->element[1]->str : "write script failed";
		req_fail(r, error_result(what), what);
		return;
	}
	if (strcmp(what, "OK") == 0) {
		if (r->kind == REQ_UPDATE)
			r->cb.rev(STORE_OK, n, NULL, r->arg);
		else {
			memset(&rec, 0, sizeof(rec));
			rec.rev = n;
			rec.pod = rec.owner = rec.callback = "";
			r->cb.saga(STORE_OK, &rec, NULL, r->arg);
		}
	} else if (strcmp(what, "CONFLICT") == 0) {
		r->cb.rev(STORE_CONFLICT, n, "revision changed", r->arg);
	} else if (strcmp(what, "NOTFOUND") == 0) {
		req_fail(r, STORE_NOT_FOUND, "no such saga");
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
		req_fail(r, STORE_ERROR, err);
		return;
	}
	req_free(r);
}

/* One result per write of the batch, in the order they were queued. */
static void
reply_batch(struct req *r, const redisReply *rep)
{
	struct req *w;
	size_t i = 0;

	if (rep->type != REDIS_REPLY_ARRAY ||
	    rep->elements != (size_t)r->nbatch) {
		req_fail(r, STORE_ERROR, "write script: unexpected reply");
		return;
	}
	while ((w = TAILQ_FIRST(&r->batch)) != NULL) {
		TAILQ_REMOVE(&r->batch, w, entry);
		reply_write(w, rep->element[i++]);
	}
	req_free(r);
}

static void
reply_ids(struct req *r, const redisReply *rep)
{
	char **ids;
	size_t i, n = 0;

	if (rep->type != REDIS_REPLY_ARRAY) {
		req_fail(r, STORE_ERROR, "lease script: unexpected reply");
		return;
	}
	ids = util_xcalloc(rep->elements + 1, sizeof(*ids));
	for (i = 0; i < rep->elements; i++)
		if (rep->element[i]->type == REDIS_REPLY_STRING)
			ids[n++] = rep->element[i]->str;
	r->cb.ids(STORE_OK, ids, n, NULL, r->arg);
	free(ids);
	req_free(r);
}

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

/* Hands the entries of one stream to the watches following it. */
static void
watch_deliver(struct store *st, const char *key, const redisReply *entries)
{
	struct store_watch *w;
	const redisReply *e, *f, *pb;
	Saga__V1__SagaEvent *ev;
	uint64_t ms, seq;
	size_t i, j;
	int final;

	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != WATCH_FOLLOW || w->cancelled || w->ended ||
		    strcmp(w->key, key) != 0)
			continue;
		for (i = 0; i < entries->elements; i++) {
			if (w->cancelled || w->ended)
				break;
			e = entries->element[i];
			if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
			    e->element[0]->type != REDIS_REPLY_STRING ||
			    parse_streamid(e->element[0]->str, &ms, &seq) == -1)
				continue;
			if (ms < w->last_ms ||
			    (ms == w->last_ms && seq <= w->last_seq))
				continue;
			w->last_ms = ms;
			w->last_seq = seq;
			f = e->element[1];
			for (j = 0; f->type == REDIS_REPLY_ARRAY &&
			    j + 1 < f->elements; j += 2) {
				if (w->cancelled || w->ended)
					break;
				if (f->element[j]->type != REDIS_REPLY_STRING ||
				    strcmp(f->element[j]->str, "pb") != 0)
					continue;
				pb = f->element[j + 1];
				ev = NULL;
				if (pb->type == REDIS_REPLY_STRING)
					ev = saga__v1__saga_event__unpack(NULL,
					    pb->len, (const uint8_t *)pb->str);
				if (ev == NULL) {
					watch_end(w, STORE_ERROR, "an event of "
					    "the stream does not decode as "
					    "SagaEvent");
					break;
				}
				final = (ev->step == NULL ||
				    ev->step[0] == '\0') &&
				    state_terminal(ev->state);
				if (final)
					w->ended = 1;
				w->cb(STORE_OK, ev, final, NULL, w->arg);
				saga__v1__saga_event__free_unpacked(ev, NULL);
			}
		}
	}
}

static void
reply_xread(struct store *st, const redisReply *rep)
{
	const redisReply *s;
	size_t i;

	st->xreading = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		watches_fail(st, WATCH_FOLLOW, STORE_ERROR, rep->str);
		return;
	}
	if (rep->type != REDIS_REPLY_ARRAY)
		return;		/* nil: timed out or unblocked */
	st->wdepth++;
	for (i = 0; i < rep->elements; i++) {
		s = rep->element[i];
		if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
		    s->element[0]->type != REDIS_REPLY_STRING ||
		    s->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		watch_deliver(st, s->element[0]->str, s->element[1]);
	}
	st->wdepth--;
	watch_sweep(st);
}

static void
store_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct req *r = privdata;
	struct conn *c = r->conn;
	struct store *st = r->st;
	const redisReply *rep = reply;
	struct store_watch *w;
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
		req_fail(r, STORE_UNAVAILABLE, why);
		return;
	}
	if (r->script >= 0 && rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0 && c->ac == ac) {
		st->sha[r->script][0] = '\0';
		if (req_send(r) == 0)
			return;
	}

	switch (r->kind) {
	case REQ_BATCH:
		if (rep->type == REDIS_REPLY_ERROR)
			req_fail(r, error_result(rep->str), rep->str);
		else
			reply_batch(r, rep);
		return;
	case REQ_CREATE:
	case REQ_UPDATE:
		/* Never sent alone: they travel in a REQ_BATCH. */
		req_fail(r, STORE_ERROR, "write sent outside a batch");
		return;
	case REQ_GET:
		if (rep->type == REDIS_REPLY_ERROR)
			req_fail(r, error_result(rep->str), rep->str);
		else {
			reply_get(r, rep);
			req_free(r);
		}
		return;
	case REQ_RENEW:
	case REQ_CLAIM:
		if (rep->type == REDIS_REPLY_ERROR)
			req_fail(r, error_result(rep->str), rep->str);
		else
			reply_ids(r, rep);
		return;
	case REQ_WCHECK:
		w = r->w;
		if (rep->type != REDIS_REPLY_INTEGER) {
			req_fail(r, rep->type == REDIS_REPLY_ERROR ?
			    error_result(rep->str) : STORE_ERROR, rep->type ==
			    REDIS_REPLY_ERROR ? rep->str : "EXISTS: bad reply");
			return;
		}
		w->busy = 0;
		if (rep->integer == 0) {
			req_fail(r, STORE_NOT_FOUND, "no such saga");
			return;
		}
		req_free(r);
		if (w->cancelled) {
			watch_sweep(st);
			return;
		}
		w->state = WATCH_FOLLOW;
		st->wdirty = 1;
		watch_kick(st);
		return;
	case REQ_XREAD:
		reply_xread(st, rep);
		req_free(r);
		watch_kick(st);
		return;
	case REQ_PING:
		c->pinging = 0;
		req_free(r);
		if (c->state != CONN_HELLO)
			return;
		if (rep->type == REDIS_REPLY_STATUS)
			conn_ready(c);
		else
			c->ping_at = util_mono_ms() + CRON_MS;
		return;
	case REQ_CLIENTID:
		if (rep->type == REDIS_REPLY_INTEGER)
			c->client_id = rep->integer;
		req_free(r);
		return;
	case REQ_UNBLOCK:
		/* 0: the XREAD was not blocked yet; the timer tries again. */
		st->unblocking = 0;
		req_free(r);
		return;
	case REQ_LOAD:
		if (rep->type == REDIS_REPLY_STRING && rep->len == 40)
			memcpy(st->sha[r->load], rep->str, 41);
		req_free(r);
		return;
	}
}

/* --- connections ------------------------------------------------------- */

static void
set_status(struct store *st, int up, const char *why)
{
	if (st->status_cb != NULL && !st->closing)
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
	int was_up = c->state == CONN_UP;

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
		watches_fail(st, WATCH_FOLLOW, STORE_UNAVAILABLE, why);
	} else if (was_up)
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
	conn_ping(c);
}

/* Sends the PING that brings a new connection up. */
static void
conn_ping(struct conn *c)
{
	struct req *r;

	if (c->pinging || util_mono_ms() < c->ping_at)
		return;
	r = req_new(c->st, c, REQ_PING);
	req_str(r, "PING");
	if (req_send(r) == -1)
		req_free(r);
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
	if (c->watch) {
		r = req_new(st, c, REQ_CLIENTID);
		req_str(r, "CLIENT");
		req_str(r, "ID");
		if (req_send(r) == -1)
			req_free(r);
		watch_kick(st);
		return;
	}
	for (i = 0; i < NSCRIPTS; i++) {
		st->sha[i][0] = '\0';
		r = req_new(st, c, REQ_LOAD);
		r->load = i;
		req_str(r, "SCRIPT");
		req_str(r, "LOAD");
		req_str(r, scripts[i]);
		if (req_send(r) == -1)
			req_free(r);
	}
	set_status(st, 1, NULL);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct conn *c = ac->data;

	(void)status;
	if (c->ac == ac)
		conn_lost(c, ac->err ? ac->errstr : "redis connection closed");
}

static void
conn_connect(struct conn *c)
{
	struct store *st = c->st;
	redisAsyncContext *ac;
	char why[SAGAD_ERRLEN];

	if (st->closing || c->state != CONN_DOWN)
		return;
	c->since = util_mono_ms();
	c->killed = 0;
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
static void
conn_kill(struct conn *c)
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
			conn_kill(c);
		r = TAILQ_FIRST(&c->inflight);
		if ((c->state == CONN_UP || c->state == CONN_HELLO) &&
		    r != NULL && now - r->sent > r->timeout)
			conn_kill(c);
		if (c->state == CONN_HELLO)
			conn_ping(c);
	}
	if (st->main.state == CONN_DOWN && now >= st->main.retry_at)
		conn_connect(&st->main);
	watch_kick(st);
}

/* --- watches ----------------------------------------------------------- */

static void
watch_free(struct store_watch *w)
{
	TAILQ_REMOVE(&w->st->watches, w, entry);
	free(w->id);
	free(w->key);
	free(w);
}

/* Frees the watches that are over, unless a callback is running. */
static void
watch_sweep(struct store *st)
{
	struct store_watch *w, *next;

	if (st->wdepth > 0)
		return;
	for (w = TAILQ_FIRST(&st->watches); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if ((w->cancelled || w->ended) && !w->busy)
			watch_free(w);
	}
}

/* The watch's last callback, with a failure. */
static void
watch_end(struct store_watch *w, enum store_result res, const char *err)
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
static void
watches_fail(struct store *st, enum watch_state state, enum store_result res,
    const char *err)
{
	struct store_watch *w;

	st->wdepth++;
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != state)
			continue;
		if (state == WATCH_FAIL)
			watch_end(w, w->fail, w->failerr);
		else
			watch_end(w, res, err);
	}
	st->wdepth--;
	watch_sweep(st);
}

static int
watch_live(const struct store_watch *w)
{
	return !w->cancelled && !w->ended;
}

/* Sends the XREAD that follows every followed stream, or wakes it. */
static void
watch_kick(struct store *st)
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
		if (w->state == WATCH_FOLLOW && watch_live(w))
			n++;
	if (n == 0)
		return;
	if (c->state == CONN_DOWN) {
		if (util_mono_ms() >= c->retry_at)
			conn_connect(c);
		return;
	}
	if (c->state != CONN_UP)
		return;
	if (st->xreading) {
		if (!st->wdirty || st->unblocking || c->client_id < 0 ||
		    st->main.state != CONN_UP)
			return;
		r = req_new(st, &st->main, REQ_UNBLOCK);
		req_str(r, "CLIENT");
		req_str(r, "UNBLOCK");
		req_int(r, c->client_id);
		if (req_send(r) == -1)
			req_free(r);
		else
			st->unblocking = 1;
		return;
	}

	r = req_new(st, c, REQ_XREAD);
	r->timeout = st->block_ms + st->cmd_timeout;
	req_str(r, "XREAD");
	req_str(r, "COUNT");
	req_int(r, XREAD_COUNT);
	req_str(r, "BLOCK");
	req_int(r, st->block_ms);
	req_str(r, "STREAMS");
	/*
	 * Each stream once, from the oldest position any of its watches is
	 * at; watch_deliver skips what a watch has seen. Quadratic in the
	 * watches, which max_watches bounds.
	 */
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != WATCH_FOLLOW || !watch_live(w))
			continue;
		for (o = TAILQ_FIRST(&st->watches); o != w;
		    o = TAILQ_NEXT(o, entry))
			if (o->state == WATCH_FOLLOW && watch_live(o) &&
			    strcmp(o->key, w->key) == 0)
				break;
		if (o == w)
			req_str(r, w->key);
	}
	TAILQ_FOREACH(w, &st->watches, entry) {
		if (w->state != WATCH_FOLLOW || !watch_live(w))
			continue;
		for (o = TAILQ_FIRST(&st->watches); o != w;
		    o = TAILQ_NEXT(o, entry))
			if (o->state == WATCH_FOLLOW && watch_live(o) &&
			    strcmp(o->key, w->key) == 0)
				break;
		if (o != w)
			continue;
		ms = w->last_ms;
		seq = w->last_seq;
		for (o = TAILQ_NEXT(w, entry); o != NULL;
		    o = TAILQ_NEXT(o, entry))
			if (o->state == WATCH_FOLLOW && watch_live(o) &&
			    strcmp(o->key, w->key) == 0 &&
			    (o->last_ms < ms ||
			    (o->last_ms == ms && o->last_seq < seq))) {
				ms = o->last_ms;
				seq = o->last_seq;
			}
		snprintf(id, sizeof(id), "%" PRIu64 "-%" PRIu64, ms, seq);
		req_str(r, id);
	}
	if (req_send(r) == -1) {
		req_free(r);
		return;
	}
	st->xreading = 1;
	st->wdirty = 0;
}

struct store_watch *
store_watch(struct store *st, const char *id, store_event_cb *cb, void *arg)
{
	struct store_watch *w, *o;
	struct req *r;
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
	TAILQ_FOREACH(o, &st->watches, entry)
		if (watch_live(o))
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
		r = req_new(st, &st->main, REQ_WCHECK);
		r->w = w;
		req_str(r, "EXISTS");
		/* The hash is the saga; its key is the stream's minus ":events". */
		req_arg(r, w->key, len + sizeof("saga:{}") - 1);
		if (req_send(r) == 0) {
			w->state = WATCH_CHECK;
			w->busy = 1;
			return w;
		}
		req_free(r);
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
	watch_sweep(w->st);
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
	st->events_max = p->events_max > 0 ? p->events_max : 1000;
	st->backoff_min = p->backoff_min_ms > 0 ? p->backoff_min_ms : 100;
	st->backoff_max = p->backoff_max_ms > 0 ? p->backoff_max_ms : 5000;
	if (st->backoff_max < st->backoff_min)
		st->backoff_max = st->backoff_min;
	st->cmd_timeout = p->cmd_timeout_ms > 0 ? p->cmd_timeout_ms : 5000;
	st->max_watches = p->max_watches > 0 ? p->max_watches : 1024;
	st->block_ms = p->watch_block_ms > 0 ? p->watch_block_ms : 2000;
	TAILQ_INIT(&st->deferred);
	TAILQ_INIT(&st->queued);
	TAILQ_INIT(&st->spare);
	TAILQ_INIT(&st->watches);
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
		free(st);
		return NULL;
	}
	{
		struct timeval tv = { 0, CRON_MS * 1000 };

		event_add(st->cron, &tv);
	}
	conn_connect(&st->main);
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
		req_defer(r, STORE_UNAVAILABLE, "store closed");
	}
	st->nqueued = 0;
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
		watches_fail(st, WATCH_CHECK, STORE_UNAVAILABLE,
		    "store closed");
		watches_fail(st, WATCH_FOLLOW, STORE_UNAVAILABLE,
		    "store closed");
		live = 0;
		TAILQ_FOREACH(w, &st->watches, entry)
			if (watch_live(w))
				live = 1;
		if (TAILQ_EMPTY(&st->deferred) && !live)
			break;
	}
	while ((w = TAILQ_FIRST(&st->watches)) != NULL)
		watch_free(w);
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
	free(st);
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

/* The write script's three keys for the saga id, into r->keys. */
static void
req_keys(struct req *r, const char *id)
{
	size_t len = strlen(id);
	char *p;

	p = seg_open(&r->keys, len + sizeof("saga:{}") - 1);
	memcpy(p, "saga:{", 6);
	memcpy(p + 6, id, len);
	p[6 + len] = '}';
	p = seg_open(&r->keys, len + sizeof("saga:{}:events") - 1);
	memcpy(p, "saga:{", 6);
	memcpy(p + 6, id, len);
	memcpy(p + 6 + len, "}:events", 8);
	seg_arg(&r->keys, LEASES_KEY, sizeof(LEASES_KEY) - 1);
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
	req_str(r, k);
	req_str(r, v != NULL ? v : "");
}

static void
field_int(struct req *r, const char *k, long long v)
{
	req_str(r, k);
	req_int(r, v);
}

/* Builds the write script's call for w into r (see script_write). */
static void
write_args(struct store *st, struct req *r, const struct store_write *w,
    int64_t rev)
{
	const Saga__V1__Saga *s = w->saga;
	const Saga__V1__SagaEvent *ev;
	size_t len, i;
	int nf = rev == 0 ? 11 : 7;

	r->script = SCRIPT_WRITE;
	req_keys(r, s->id);
	req_str(r, s->id);
	req_int(r, rev);
	req_int(r, w->lease_ms);
	req_str(r, w->owner != NULL ? w->owner : "");
	req_int(r, st->saga_ttl);
	req_str(r, state_terminal(s->state) ? "1" : w->reopen ? "2" : "0");
	req_int(r, st->events_max);
	if (w->pod != NULL)
		nf++;
	if (w->callback != NULL)
		nf++;
	req_int(r, nf);
	/* flow, mode, created and id never change after the create. */
	if (rev == 0) {
		field(r, "flow", s->flow);
		field(r, "mode", enum_name(&saga__v1__mode__descriptor,
		    s->mode));
		field_int(r, "created", s->created_unix_ms);
		field(r, "id", s->id);
	}
	field(r, "state", enum_name(&saga__v1__state__descriptor, s->state));
	field_int(r, "step", w->step);
	field_int(r, "undo", w->compensate ? 1 : 0);
	field_int(r, "attempt", w->attempt);
	field(r, "error", s->error);
	field_int(r, "updated", s->updated_unix_ms);
	if (w->pod != NULL)
		field(r, "pod", w->pod);
	if (w->callback != NULL)
		field(r, "callback", w->callback);
	/* Packed straight into the request: no buffer of its own. */
	req_str(r, "pb");
	len = saga__v1__saga__get_packed_size(s);
	saga__v1__saga__pack(s, (uint8_t *)seg_open(&r->args, len));

	req_int(r, (long long)w->nevents);
	for (i = 0; i < w->nevents; i++) {
		ev = w->events[i];
		req_str(r, ev->step != NULL ? ev->step : "");
		req_str(r, enum_name(&saga__v1__state__descriptor,
		    ev->state));
		len = saga__v1__saga_event__get_packed_size(ev);
		saga__v1__saga_event__pack(ev,
		    (uint8_t *)seg_open(&r->args, len));
	}
}

void
store_create(struct store *st, const struct store_write *w,
    store_saga_cb *cb, void *arg)
{
	struct req *r;

	r = req_new(st, &st->main, REQ_CREATE);
	r->cb.saga = cb;
	r->arg = arg;
	if (w->saga == NULL || !id_ok(w->saga->id)) {
		req_defer(r, STORE_ERROR, "saga id must have 1 to 256 bytes");
		return;
	}
	write_args(st, r, w, 0);
	batch_add(r);
}

void
store_update(struct store *st, const struct store_write *w,
    store_rev_cb *cb, void *arg)
{
	struct req *r;

	r = req_new(st, &st->main, REQ_UPDATE);
	r->cb.rev = cb;
	r->arg = arg;
	if (w->saga == NULL || !id_ok(w->saga->id)) {
		req_defer(r, STORE_ERROR, "saga id must have 1 to 256 bytes");
		return;
	}
	if (w->rev <= 0) {
		req_defer(r, STORE_ERROR, "update needs the revision read");
		return;
	}
	write_args(st, r, w, w->rev);
	batch_add(r);
}

void
store_get(struct store *st, const char *id, store_saga_cb *cb, void *arg)
{
	struct req *r;
	char *k;
	size_t len;

	r = req_new(st, &st->main, REQ_GET);
	r->cb.saga = cb;
	r->arg = arg;
	if (!id_ok(id)) {
		req_defer(r, STORE_ERROR, "saga id must have 1 to 256 bytes");
		return;
	}
	len = strlen(id) + sizeof("saga:{}");
	k = util_xcalloc(1, len);
	snprintf(k, len, "saga:{%s}", id);
	req_str(r, "HGETALL");
	req_str(r, k);
	free(k);
	req_submit(r);
}

void
store_lease_renew(struct store *st, const char *owner,
    const char *const *ids, size_t nids, int lease_ms, store_ids_cb *cb,
    void *arg)
{
	struct req *r;
	size_t i;

	r = req_new(st, &st->main, REQ_RENEW);
	r->cb.ids = cb;
	r->arg = arg;
	if (owner == NULL || owner[0] == '\0' || lease_ms <= 0) {
		req_defer(r, STORE_ERROR, "renew needs an owner and a lease");
		return;
	}
	r->script = SCRIPT_RENEW;
	seg_arg(&r->keys, LEASES_KEY, sizeof(LEASES_KEY) - 1);
	req_str(r, owner);
	req_int(r, lease_ms);
	for (i = 0; i < nids; i++)
		req_str(r, ids[i]);
	req_submit(r);
}

void
store_lease_claim(struct store *st, const char *claimer, int max,
    int lease_ms, store_ids_cb *cb, void *arg)
{
	struct req *r;

	r = req_new(st, &st->main, REQ_CLAIM);
	r->cb.ids = cb;
	r->arg = arg;
	if (claimer == NULL || claimer[0] == '\0' || max <= 0 ||
	    lease_ms <= 0) {
		req_defer(r, STORE_ERROR, "claim needs a claimer, a count "
		    "and a lease");
		return;
	}
	r->script = SCRIPT_CLAIM;
	seg_arg(&r->keys, LEASES_KEY, sizeof(LEASES_KEY) - 1);
	req_str(r, claimer);
	req_int(r, lease_ms);
	req_int(r, max);
	req_submit(r);
}
