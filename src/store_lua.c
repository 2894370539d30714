/*
 * store_lua.c - the Lua scripts the saga store runs inside Redis (see
 * store.c): every state change is one of them, so that a check and the
 * change it guards happen at once. Loaded with SCRIPT LOAD after each
 * connect and called with EVALSHA.
 *
 * The layout they keep (the README's "Redis layout" says why it is so):
 *
 *   saga:{ID}             hash, the saga: rev, state, mode, at (step,
 *                         undo, attempt), owner, pod, callback, round, cancel;
 *                         the packed saga.v1.Saga cut in pieces of at most
 *                         64 bytes (p, p.1, p.2... and their count pn); the
 *                         events of each write as one value, e<rev> (cut
 *                         the same way), from the write of revision eb on:
 *                         each event a varint length and a packed SagaEvent
 *   saga:{ID}:w           string, set (with a short expiry) while a Watch
 *                         follows the saga
 *   saga:{ID}:events      stream, only while someone Watches: one small
 *                         entry per write that added events, a wake-up for
 *                         the watchers, who then read the events from the hash
 *   saga:leases:{bN}      zset, bucket N of the leases: id -> expiry ms
 *   saga:idx:{bN}:FLOW:STATE  zset, bucket N of List's index: id -> created
 *   saga:idx:{bN}:flows   set, the flows that bucket N's index has
 *
 * N is a hash of the id (bucket() below and store_bucket in C agree), so
 * that no key but the saga's own is touched by every write: each bucket
 * key carries its own hash tag and a Redis Cluster spreads the buckets.
 * Pieces of 64 bytes keep every value of the hash under Redis' default
 * hash-max-listpack-value, so a saga's hash stays a listpack (a few bytes
 * of overhead a field) instead of becoming a hashtable (a few tens).
 *
 * The previous layout ("legacy": the packed saga whole in pb, fields flow,
 * mode, created, id, error, updated, its events in saga:{ID}:events, one
 * saga:leases and saga:idx:FLOW:STATE for every saga) is still read: a
 * legacy hash has no pn. The write script converts a legacy saga on its
 * first write (its stream's events become fields, its lease and index
 * entries move to its bucket), the claim script takes expired legacy
 * leases, and List, the expiry and Watch read the legacy keys too.
 */
#include "autoconf.h"

#include "store_int.h"

/* What the scripts share, each taking only what it uses. */
#define STR2(x) #x
#define STR(x) STR2(x)
/*
 * put: v as fields name, name.1, name.2... of W bytes at most, into the
 * field list f; returns the number of pieces. Piece names come from a
 * table, not from formatting numbers, which costs more than the rest of a
 * write's Lua. A value over 32 pieces goes whole in one field: the hash is
 * past a listpack's size anyway, and one field costs less than hundreds
 * (and a big context would not fit Lua's stack as pieces).
 */
#define PUT_LUA \
	"local W = 64\n" \
	"local PIECE = {'.1', '.2', '.3', '.4', '.5', '.6', '.7', '.8', '.9',\n" \
	"  '.10', '.11', '.12', '.13', '.14', '.15', '.16'}\n" \
	"local function piece(name, j)\n" \
	"  return name .. (PIECE[j] or ('.' .. j))\n" \
	"end\n" \
	"local function put(f, name, v)\n" \
	"  local n = #f\n" \
	"  f[n + 1] = name\n" \
	"  if #v > W * 32 then\n" \
	"    f[n + 2] = v\n" \
	"    return 1\n" \
	"  end\n" \
	"  f[n + 2] = string.sub(v, 1, W)\n" \
	"  local j = 1\n" \
	"  while j * W < #v do\n" \
	"    n = #f\n" \
	"    f[n + 1] = piece(name, j)\n" \
	"    f[n + 2] = string.sub(v, j * W + 1, (j + 1) * W)\n" \
	"    j = j + 1\n" \
	"  end\n" \
	"  return j\n" \
	"end\n"
/* get: what put wrote, when the number of pieces is not known; del too */
#define GET_LUA \
	"local function get(h, name)\n" \
	"  local v = redis.call('HGET', h, name)\n" \
	"  if not v then return nil end\n" \
	"  local t, j, last = {v}, 1, v\n" \
	"  while #last == W do\n" \
	"    last = redis.call('HGET', h, piece(name, j))\n" \
	"    if not last then break end\n" \
	"    t[#t + 1] = last\n" \
	"    j = j + 1\n" \
	"  end\n" \
	"  return table.concat(t)\n" \
	"end\n" \
	"local function del(h, name)\n" \
	"  redis.call('HDEL', h, name)\n" \
	"  local j = 1\n" \
	"  while redis.call('HDEL', h, piece(name, j)) == 1 do j = j + 1 end\n" \
	"end\n"
/* bucket: as store_bucket in C; STORE_BUCKETS is baked into the layout */
#define BUCKET_LUA \
	"local NB = " STR(STORE_BUCKETS) "\n" \
	"local function bucket(id)\n" \
	"  local h = 0\n" \
	"  for i = 1, #id do h = (h * 33 + string.byte(id, i)) % 1048576 end\n" \
	"  return h % NB\n" \
	"end\n" \
	"local function lease_key(id)\n" \
	"  return 'saga:leases:{b' .. bucket(id) .. '}'\n" \
	"end\n" \
	/* the index prefixes: each bucket's, then the legacy one */ \
	"local function prefixes()\n" \
	"  local p = {}\n" \
	"  for b = 0, NB - 1 do p[#p + 1] = 'saga:idx:{b' .. b .. '}:' end\n" \
	"  p[#p + 1] = 'saga:idx:'\n" \
	"  return p\n" \
	"end\n"
#define NOW_LUA \
	"local function now_ms()\n" \
	"  local t = redis.call('TIME')\n" \
	"  return t[1] * 1000 + math.floor(t[2] / 1000)\n" \
	"end\n"
/* varint: a length as protobuf writes it, for the legacy events framed */
#define FRAME_LUA \
	"local function frame(v)\n" \
	"  local n, b = #v, ''\n" \
	"  while n >= 128 do\n" \
	"    b = b .. string.char(128 + n % 128)\n" \
	"    n = math.floor(n / 128)\n" \
	"  end\n" \
	"  return b .. string.char(n) .. v\n" \
	"end\n" \
	/* the events of a legacy saga's stream, framed as one value */ \
	"local function legacy_events(sk)\n" \
	"  local t = {}\n" \
	"  for _, e in ipairs(redis.call('XRANGE', sk, '-', '+')) do\n" \
	"    for x = 1, #e[2], 2 do\n" \
	"      if e[2][x] == 'pb' then t[#t + 1] = frame(e[2][x + 1]) end\n" \
	"    end\n" \
	"  end\n" \
	"  return table.concat(t)\n" \
	"end\n"
/* the packed saga of a hash, either layout */
#define SAGA_PB_LUA \
	"local function saga_pb(h)\n" \
	"  local r = redis.call('HMGET', h, 'pn', 'p', 'pb')\n" \
	"  if r[3] then return r[3] end\n" \
	"  if not r[2] then return nil end\n" \
	"  local n = tonumber(r[1] or 1)\n" \
	"  if n <= 1 then return r[2] end\n" \
	"  local k = {}\n" \
	"  for j = 1, n - 1 do k[j] = piece('p', j) end\n" \
	"  local t = redis.call('HMGET', h, unpack(k))\n" \
	"  for j = 1, #t do if not t[j] then return nil end end\n" \
	"  return r[2] .. table.concat(t)\n" \
	"end\n"

/*
 * The one script for every saga write, and for several at once: writes
 * issued during one turn of the loop travel as one EVALSHA (see
 * batch_flush), which spares Redis most of the fixed cost of a script call.
 * KEYS holds four keys per write (the hash, the watch stream, the watch
 * flag, the lease bucket); ARGV[1] is the number of writes, then each
 * write's own argument count and arguments. Each write keeps its own
 * revision check and its own result, and a write that fails (a Redis error
 * inside it) fails alone: the reply is one result per write, in order.
 *
 * Expected revision 0 means create: it answers EXISTS with the stored hash
 * when the saga is there. A write's arguments: the id, the revision it
 * expects and the one it writes (strings: the script compares and stores
 * them as they are, formatting no number, which would cost more than the
 * rest of its Lua), the lease, the owner, the ttl of the state it ends in,
 * what it does to the saga's life ("1" ends it: no lease, expiry set; "2"
 * reopens an ended one: expiry dropped, and its old events, so that a Watch
 * follows the new run to its end instead of stopping at the old one; "0"
 * neither), how many writes' events to keep, the flow, creation ms, state
 * and index prefix for the index, the packed saga, its fields, and its
 * events (each a varint length and a packed SagaEvent). The lease expiry
 * is taken from Redis' clock (TIME) so masters need not agree on time. It
 * is the hot path of every saga (a few writes each), so a write is one
 * HMGET and one HSET, plus the index and the lease when they change, plus
 * an XADD only while a Watch follows the saga.
 *
 * The index behind List (store.h): one sorted set per bucket, flow and
 * state of saga ids scored by their creation time, and a set per bucket of
 * the flows that have one. The write script keeps the sets in the call
 * that changes a saga's state, so the index never disagrees with the
 * records: at the create one ZADD and an SADD of the flow, at a change of
 * state one ZREM and one ZADD, nothing on the writes that keep the state.
 * Sagas that expire leave the sets of their ended state through the
 * expiry script (a master's cron).
 */
static const char script_write[] =
	PUT_LUA GET_LUA NOW_LUA FRAME_LUA
	"local function write(k, a)\n"
	"  local h, sk, wk, lk = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3],\n"
	"    KEYS[k + 4]\n"
	"  local id, exp, rev = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]\n"
	"  local o = redis.call('HMGET', h, 'rev', 'state', 'cancel', 'pn', 'eb')\n"
	"  if (o[1] or '0') ~= exp then\n"
	"    if exp == '0' then\n"
	"      return {'EXISTS', redis.call('HGETALL', h)}\n"
	"    end\n"
	"    if not o[1] then return {'NOTFOUND'} end\n"
	"    return {'CONFLICT', tonumber(o[1])}\n"
	"  end\n"
	"  local old, cancel, oldpn, eb = o[2], o[3], o[4], o[5]\n"
	"  local flow, created, st = ARGV[a + 9], ARGV[a + 10], ARGV[a + 11]\n"
	"  local tag = ARGV[a + 12]\n"
	"  local nf = tonumber(ARGV[a + 14])\n"
	"  local f = {}\n"
	"  for x = a + 15, a + 14 + 2 * nf do f[#f + 1] = ARGV[x] end\n"
	"  if o[1] and not oldpn then\n"
	/* a legacy saga: converted to this layout by this write */
	"    redis.call('HDEL', h, 'flow', 'created', 'id', 'error',\n"
	"      'updated', 'pb', 'step', 'undo', 'attempt')\n"
	"    local ev = legacy_events(sk)\n"
	"    if ev ~= '' then put(f, 'e0', ev) end\n"
	"    eb = '0'\n"
	"    f[#f + 1] = 'eb'\n"
	"    f[#f + 1] = eb\n"
	"    redis.call('DEL', sk)\n"
	"    local ls = redis.call('ZSCORE', 'saga:leases', id)\n"
	"    if ls then\n"
	"      redis.call('ZREM', 'saga:leases', id)\n"
	"      redis.call('ZADD', lk, ls, id)\n"
	"    end\n"
	"    if old then\n"
	"      redis.call('ZREM', 'saga:idx:' .. flow .. ':' .. old, id)\n"
	"    end\n"
	"    old = nil\n"
	"  end\n"
	"  if old ~= st then\n"
	"    if old then\n"
	"      redis.call('ZREM', tag .. flow .. ':' .. old, id)\n"
	"    else\n"
	"      redis.call('SADD', tag .. 'flows', flow)\n"
	"    end\n"
	"    redis.call('ZADD', tag .. flow .. ':' .. st, created, id)\n"
	"  end\n"
	"  f[#f + 1] = 'rev'\n"
	"  f[#f + 1] = rev\n"
	"  if ARGV[a + 5] ~= '' then\n"
	"    f[#f + 1] = 'owner'\n"
	"    f[#f + 1] = ARGV[a + 5]\n"
	"  end\n"
	"  local pn = put(f, 'p', ARGV[a + 13])\n"
	"  local opn = tonumber(oldpn or 0)\n"
	"  if pn ~= opn then\n"
	"    f[#f + 1] = 'pn'\n"
	"    f[#f + 1] = pn\n"
	"    for j = pn, opn - 1 do redis.call('HDEL', h, piece('p', j)) end\n"
	"  end\n"
	"  if ARGV[a + 7] == '2' then\n"
	/* reopened: this run's events only, from this write on */
	"    redis.call('PERSIST', h)\n"
	"    for r = tonumber(eb or 0), tonumber(exp) do del(h, 'e' .. r) end\n"
	"    eb = rev\n"
	"    f[#f + 1] = 'eb'\n"
	"    f[#f + 1] = eb\n"
	"  elseif not eb then\n"
	"    eb = rev\n"
	"    f[#f + 1] = 'eb'\n"
	"    f[#f + 1] = eb\n"
	"  end\n"
	"  local evs = ARGV[a + 15 + 2 * nf]\n"
	"  if evs ~= '' then put(f, 'e' .. rev, evs) end\n"
	"  redis.call('HSET', h, unpack(f))\n"
	/* the events of the oldest writes go beyond the bound */
	"  local keep = tonumber(ARGV[a + 8])\n"
	"  if tonumber(rev) - tonumber(eb) >= keep then\n"
	"    local cut = tonumber(rev) - keep + 1\n"
	"    for r = tonumber(eb), cut - 1 do del(h, 'e' .. r) end\n"
	"    redis.call('HSET', h, 'eb', cut)\n"
	"  end\n"
	"  if evs ~= '' and redis.call('EXISTS', wk) == 1 then\n"
	"    redis.call('XADD', sk, 'MAXLEN', 4, '*', 'rev', rev)\n"
	"    redis.call('PEXPIRE', sk, 60000)\n"
	"  end\n"
	"  local lease = tonumber(ARGV[a + 4])\n"
	"  if ARGV[a + 7] == '1' then\n"
	"    redis.call('ZREM', lk, id)\n"
	"    if cancel then redis.call('HDEL', h, 'cancel') end\n"
	"    if st == 'STATE_FAILED' then\n"
	"      redis.call('PERSIST', h)\n"
	"    elseif ARGV[a + 6] ~= '0' then\n"
	"      redis.call('EXPIRE', h, ARGV[a + 6])\n"
	"    end\n"
	"  elseif lease > 0 then\n"
	"    redis.call('ZADD', lk, now_ms() + lease, id)\n"
	"  elseif lease < 0 then\n"
	"    redis.call('ZREM', lk, id)\n"
	"  end\n"
	"  if cancel and (st == 'STATE_PENDING' or st == 'STATE_RUNNING') then\n"
	"    return {'OK', rev, cancel}\n"
	"  end\n"
	"  return {'OK', rev}\n"
	"end\n"
	"local out = {}\n"
	"local a = 2\n"
	"for j = 0, tonumber(ARGV[1]) - 1 do\n"
	"  local ok, res = pcall(write, 4 * j, a)\n"
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
	BUCKET_LUA NOW_LUA
	"local exp = now_ms() + tonumber(ARGV[2])\n"
	"local lost = {}\n"
	"for i = 3, #ARGV do\n"
	"  local id = ARGV[i]\n"
	"  local lk = lease_key(id)\n"
	"  local o = redis.call('HGET', 'saga:{' .. id .. '}', 'owner')\n"
	"  local s = redis.call('ZSCORE', lk, id)\n"
	"  if o == ARGV[1] and s then\n"
	"    if tonumber(s) < exp then redis.call('ZADD', lk, exp, id) end\n"
	"  else\n"
	"    lost[#lost + 1] = id\n"
	"  end\n"
	"end\n"
	"return lost\n";

/*
 * Takes expired leases from every bucket (KEYS), then from the legacy
 * saga:leases (the last key), whose leases move to their bucket. Scripts
 * run one at a time in Redis, so a lease moves to exactly one claimer. A
 * sync saga's master drives it: the revision bump fences that former owner
 * off. An async or throttling saga holds a lease only from its launch to
 * its first result (the launch lease, ARGV[4]): one still PENDING is
 * claimed so that its first work is queued again, without a bump (a worker
 * that has it goes on); one that moved on is the bus's, and leaves the set.
 */
static const char script_claim[] =
	BUCKET_LUA NOW_LUA
	"local now = now_ms()\n"
	"local max = tonumber(ARGV[3])\n"
	"local out = {}\n"
	"for k = 1, #KEYS do\n"
	"  if #out >= max then break end\n"
	"  local ids = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', '(' .. now,\n"
	"    'LIMIT', 0, max - #out)\n"
	"  for _, id in ipairs(ids) do\n"
	"    local h = 'saga:{' .. id .. '}'\n"
	"    local m = redis.call('HMGET', h, 'mode', 'state')\n"
	"    local lk = lease_key(id)\n"
	"    if lk ~= KEYS[k] then redis.call('ZREM', KEYS[k], id) end\n"
	"    if m[1] == 'MODE_SYNC' then\n"
	"      redis.call('HSET', h, 'owner', ARGV[1])\n"
	"      redis.call('HINCRBY', h, 'rev', 1)\n"
	"      redis.call('ZADD', lk, now + tonumber(ARGV[2]), id)\n"
	"      out[#out + 1] = id\n"
	"    elseif m[2] == 'STATE_PENDING' then\n"
	"      redis.call('HSET', h, 'owner', ARGV[1])\n"
	"      redis.call('ZADD', lk, now + tonumber(ARGV[4]), id)\n"
	"      out[#out + 1] = id\n"
	"    else\n"
	"      redis.call('ZREM', lk, id)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return out\n";

/*
 * An operator's Cancel (KEYS[1] the saga's hash, ARGV[1] the reason): a
 * PENDING or RUNNING saga gets a cancel field, which every later write of
 * its driver returns (and a read shows) until the saga is compensating.
 * The revision is not bumped: the driver's next write goes through and
 * learns of the cancel in its reply. Answers with the hash as it stands.
 */
static const char script_cancel[] =
	"local st = redis.call('HGET', KEYS[1], 'state')\n"
	"if not st then return {'NOTFOUND'} end\n"
	"if st == 'STATE_PENDING' or st == 'STATE_RUNNING' then\n"
	"  redis.call('HSET', KEYS[1], 'cancel', ARGV[1])\n"
	"  return {'OK', redis.call('HGETALL', KEYS[1])}\n"
	"elseif st == 'STATE_COMPENSATING' then\n"
	"  return {'UNCHANGED', redis.call('HGETALL', KEYS[1])}\n"
	"end\n"
	"return {'ENDED', redis.call('HGETALL', KEYS[1])}\n";

/*
 * A page of List. ARGV: the flow ('' for every flow), the highest and
 * lowest score (creation ms, as ZREVRANGEBYSCORE takes them), the cursor's
 * score and id ('' for the first page), the page size, then the states
 * asked for. Each set (of every bucket, and the legacy ones) is read from
 * the cursor on, newest first, ties by id in reverse, and the merge keeps
 * the page size plus one (to tell whether a next page exists). Returns
 * the ids with their scores and packed sagas; an id whose hash has
 * expired meanwhile has no pb.
 */
static const char script_list[] =
	PUT_LUA BUCKET_LUA SAGA_PB_LUA
	"local max, min = ARGV[2], ARGV[3]\n"
	"local cms, cid = tonumber(ARGV[4]), ARGV[5]\n"
	"local n = tonumber(ARGV[6]) + 1\n"
	"local top = max\n"
	"if cid ~= '' and cms < tonumber(max) then top = cms end\n"
	"local all = {}\n"
	"for _, pre in ipairs(prefixes()) do\n"
	"  local flows = {ARGV[1]}\n"
	"  if ARGV[1] == '' then flows = redis.call('SMEMBERS', pre .. 'flows') end\n"
	"  for _, flow in ipairs(flows) do\n"
	"    for s = 7, #ARGV do\n"
	"      local key = pre .. flow .. ':' .. ARGV[s]\n"
	"      local off, got = 0, 0\n"
	"      while got < n do\n"
	"        local r = redis.call('ZREVRANGEBYSCORE', key, top, min,\n"
	"          'WITHSCORES', 'LIMIT', off, n)\n"
	"        if #r == 0 then break end\n"
	"        for i = 1, #r, 2 do\n"
	"          local sc = tonumber(r[i + 1])\n"
	"          if cid == '' or sc < cms or (sc == cms and r[i] < cid) then\n"
	"            all[#all + 1] = {sc, r[i]}\n"
	"            got = got + 1\n"
	"          end\n"
	"        end\n"
	"        off = off + #r / 2\n"
	"        if #r / 2 < n then break end\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"table.sort(all, function(x, y)\n"
	"  if x[1] ~= y[1] then return x[1] > y[1] end\n"
	"  return x[2] > y[2]\n"
	"end)\n"
	"local out = {}\n"
	"for i = 1, math.min(#all, n) do\n"
	"  local pb = saga_pb('saga:{' .. all[i][2] .. '}')\n"
	"  out[#out + 1] = all[i][2]\n"
	"  out[#out + 1] = tostring(all[i][1])\n"
	"  out[#out + 1] = pb or ''\n"
	"end\n"
	"return out\n";

/*
 * Takes the sagas that expired out of the index sets of the ended states
 * of every flow and bucket. ARGV[1]: at most this many ids a set a call;
 * then pairs (ttl in s, state): a saga expires ttl after its end, so only
 * ids created before now - ttl can be gone; each is looked up and removed
 * when its hash is. FAILED sagas never expire, and the other states are
 * left by the writes.
 */
static const char script_expire[] =
	BUCKET_LUA NOW_LUA
	"local now = now_ms()\n"
	"local max, gone = tonumber(ARGV[1]), 0\n"
	"for _, pre in ipairs(prefixes()) do\n"
	"  for _, flow in ipairs(redis.call('SMEMBERS', pre .. 'flows')) do\n"
	"    for s = 2, #ARGV - 1, 2 do\n"
	"      local ttl = tonumber(ARGV[s])\n"
	"      local key = pre .. flow .. ':' .. ARGV[s + 1]\n"
	"      local ids = {}\n"
	"      if ttl > 0 then\n"
	"        ids = redis.call('ZRANGEBYSCORE', key, '-inf',\n"
	"          now - ttl * 1000, 'LIMIT', 0, max)\n"
	"      end\n"
	"      for _, id in ipairs(ids) do\n"
	"        if redis.call('EXISTS', 'saga:{' .. id .. '}') == 0 then\n"
	"          redis.call('ZREM', key, id)\n"
	"          gone = gone + 1\n"
	"        end\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return gone\n";

/*
 * The pods' registry (KEYS[1], saga:pods: pod id -> lease expiry, Redis
 * clock) and the pods gone from it (KEYS[2], saga:pods:gone: pod id -> when
 * its adoption ended). ARGV: the caller, the lease in ms, at most how many
 * lapsed pods to claim, the count of pods to renew, the count of pods to
 * let go, how long a gone pod is remembered in ms; then the pods to renew
 * (the caller and those it adopted), those to let go (adoptions over), and
 * those to take back from the gone (work landed on their subjects since).
 * Renews, lets go, takes back, claims the pods whose lease ran out (one
 * claimer each: the lease moves to it); returns the pods taken, an empty
 * string, and the pods gone.
 */
static const char script_pods[] =
	"local t = redis.call('TIME')\n"
	"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
	"local exp = now + tonumber(ARGV[2])\n"
	"local nrenew, nrel = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
	"local mine, out = {}, {}\n"
	"for i = 7, 6 + nrenew do\n"
	"  redis.call('ZADD', KEYS[1], exp, ARGV[i])\n"
	"  redis.call('ZREM', KEYS[2], ARGV[i])\n"
	"  mine[ARGV[i]] = true\n"
	"end\n"
	"for i = 7 + nrenew, 6 + nrenew + nrel do\n"
	"  redis.call('ZREM', KEYS[1], ARGV[i])\n"
	"  redis.call('ZADD', KEYS[2], now, ARGV[i])\n"
	"end\n"
	"for i = 7 + nrenew + nrel, #ARGV do\n"
	"  local p = ARGV[i]\n"
	"  if not mine[p] and redis.call('ZREM', KEYS[2], p) == 1 and\n"
	"      not redis.call('ZSCORE', KEYS[1], p) then\n"
	"    redis.call('ZADD', KEYS[1], exp, p)\n"
	"    mine[p] = true\n"
	"    out[#out + 1] = p\n"
	"  end\n"
	"end\n"
	"local max = tonumber(ARGV[3])\n"
	"if max > 0 then\n"
	"  for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf',\n"
	"      '(' .. now, 'LIMIT', 0, max)) do\n"
	"    if not mine[p] then\n"
	"      redis.call('ZADD', KEYS[1], exp, p)\n"
	"      out[#out + 1] = p\n"
	"    end\n"
	"  end\n"
	"end\n"
	"redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf',\n"
	"    '(' .. (now - tonumber(ARGV[6])))\n"
	"out[#out + 1] = ''\n"
	"for _, p in ipairs(redis.call('ZRANGE', KEYS[2], 0, 255)) do\n"
	"  out[#out + 1] = p\n"
	"end\n"
	"return out\n";

/*
 * A Watch's read (KEYS: the hash, the stream, the watch flag; ARGV: how
 * long the flag lasts in ms, the revision of the last write whose events
 * were read, -1 for none): marks the saga as watched, so that its writes
 * wake the watcher through the stream, and returns the events of the
 * writes since, as (revision, framed events) pairs, oldest first. A legacy
 * saga's events are still in its stream: they go as those of revision 0,
 * where the write that converts the saga puts them.
 */
static const char script_watch[] =
	PUT_LUA GET_LUA FRAME_LUA
	"local h = KEYS[1]\n"
	"local r = redis.call('HMGET', h, 'rev', 'eb', 'pn')\n"
	"if not r[1] then return {'NOTFOUND'} end\n"
	"redis.call('SET', KEYS[3], '1', 'PX', ARGV[1])\n"
	"local after = tonumber(ARGV[2])\n"
	"local out = {'OK'}\n"
	"if not r[3] then\n"
	"  if after < 0 then\n"
	"    out[2] = 0\n"
	"    out[3] = legacy_events(KEYS[2])\n"
	"  end\n"
	"  return out\n"
	"end\n"
	"for rev = math.max(after + 1, tonumber(r[2] or 0)), tonumber(r[1]) do\n"
	"  local v = get(h, 'e' .. rev)\n"
	"  if v then\n"
	"    out[#out + 1] = rev\n"
	"    out[#out + 1] = v\n"
	"  end\n"
	"end\n"
	"return out\n";

/*
 * A flow definition (flowdef.h) by its version: saga:def:<version>, its
 * bytes in hex. Written once (never replaced: a version names its bytes),
 * kept while sagas may name it (no expiry: a few hundred bytes a change of
 * a flow); read as a list of one, or none.
 */
static const char script_defput[] =
	"redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
	"return 1\n";
static const char script_defget[] =
	"local v = redis.call('GET', KEYS[1])\n"
	"if v then return {v} end\n"
	"return {}\n";

const char *const store_scripts[NSCRIPTS] = {
	script_write, script_renew, script_claim, script_cancel, script_list,
	script_expire, script_pods, script_defput, script_defget, script_watch,
};
