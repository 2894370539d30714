/*
 * store_lua.c - the Lua scripts the saga store runs inside Redis (see
 * store.c): every state change is one of them, so that a check and the
 * change it guards happen at once. Loaded with SCRIPT LOAD after each
 * connect and called with EVALSHA.
 */
#include "autoconf.h"

#include "store_int.h"

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
/*
 * The index behind List (store.h): one sorted set per flow and state,
 * saga:idx:FLOW:STATE, of saga ids scored by their creation time, and the
 * set saga:idx:flows of the flows that have one. A List merges a page from
 * the sets it asks for (one flow's, or every flow's; one state's, or every
 * state's), so its cost grows with the number of flows and states, never
 * with the number of sagas. The write script keeps the sets in the call
 * that changes a saga's state, so the index never disagrees with the
 * records: at the create one ZADD (and an SADD of the flow, a no-op once
 * it is known), at a change of state one ZREM and one ZADD, nothing on the
 * writes that keep the state. Sagas that expire leave the sets of their
 * ended state through the expiry script (a master's cron).
 */
#define INDEX_LUA \
	"local function index_key(flow, st)\n" \
	"  return 'saga:idx:' .. flow .. ':' .. st\n" \
	"end\n"

static const char script_write[] =
	INDEX_LUA
	"local function write(k, a)\n"
	"  local h = KEYS[k + 1]\n"
	"  local id = ARGV[a + 1]\n"
	"  local exp = tonumber(ARGV[a + 2])\n"
	"  local o = redis.call('HMGET', h, 'rev', 'state', 'cancel')\n"
	"  local cur = tonumber(o[1] or 0)\n"
	"  if cur ~= exp then\n"
	"    if exp == 0 then\n"
	"      return {'EXISTS', redis.call('HGETALL', h)}\n"
	"    end\n"
	"    if cur == 0 then return {'NOTFOUND'} end\n"
	"    return {'CONFLICT', cur}\n"
	"  end\n"
	"  local old, cancel = o[2], o[3]\n"
	"  local flow, created, st = ARGV[a + 8], ARGV[a + 9], ARGV[a + 10]\n"
	"  local nf = tonumber(ARGV[a + 11])\n"
	"  local f = {}\n"
	"  for x = a + 12, a + 11 + 2 * nf do f[#f + 1] = ARGV[x] end\n"
	"  if old ~= st then\n"
	"    if old then\n"
	"      redis.call('ZREM', index_key(flow, old), id)\n"
	"    else\n"
	"      redis.call('SADD', 'saga:idx:flows', flow)\n"
	"    end\n"
	"    redis.call('ZADD', index_key(flow, st), created, id)\n"
	"  end\n"
	"  local i = a + 12 + 2 * nf\n"
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
	"    if cancel then redis.call('HDEL', h, 'cancel') end\n"
	"    local ttl = tonumber(ARGV[a + 5])\n"
	"    if st == 'STATE_FAILED' then\n"
	"      redis.call('PERSIST', h)\n"
	"      redis.call('PERSIST', KEYS[k + 2])\n"
	"    elseif ttl > 0 then\n"
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
	"  if cancel and (st == 'STATE_PENDING' or st == 'STATE_RUNNING') then\n"
	"    return {'OK', rev, cancel}\n"
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
 * to exactly one claimer. A sync saga's master drives it: the revision bump
 * fences that former owner off. An async or throttling saga holds a lease
 * only from its launch to its first result (the launch lease, ARGV[4]): one
 * still PENDING is claimed so that its first work is queued again, without
 * a bump (a worker that has it goes on); one that moved on is the bus's,
 * and leaves the set.
 */
static const char script_claim[] =
	"local t = redis.call('TIME')\n"
	"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
	"local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now,\n"
	"  'LIMIT', 0, tonumber(ARGV[3]))\n"
	"local out = {}\n"
	"for _, id in ipairs(ids) do\n"
	"  local h = 'saga:{' .. id .. '}'\n"
	"  local m = redis.call('HMGET', h, 'mode', 'state')\n"
	"  if m[1] == 'MODE_SYNC' then\n"
	"    redis.call('HSET', h, 'owner', ARGV[1])\n"
	"    redis.call('HINCRBY', h, 'rev', 1)\n"
	"    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)\n"
	"    out[#out + 1] = id\n"
	"  elseif m[2] == 'STATE_PENDING' then\n"
	"    redis.call('HSET', h, 'owner', ARGV[1])\n"
	"    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), id)\n"
	"    out[#out + 1] = id\n"
	"  else\n"
	"    redis.call('ZREM', KEYS[1], id)\n"
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
 * asked for. Each set is read from the cursor on, newest first, ties by id
 * in reverse, and the merge keeps the page size plus one (to tell whether
 * a next page exists). Returns the ids with their scores and packed
 * sagas; an id whose hash has expired meanwhile has no pb.
 */
static const char script_list[] =
	INDEX_LUA
	"local flows = {ARGV[1]}\n"
	"if ARGV[1] == '' then flows = redis.call('SMEMBERS', 'saga:idx:flows') end\n"
	"local max, min = ARGV[2], ARGV[3]\n"
	"local cms, cid = tonumber(ARGV[4]), ARGV[5]\n"
	"local n = tonumber(ARGV[6]) + 1\n"
	"local top = max\n"
	"if cid ~= '' and cms < tonumber(max) then top = cms end\n"
	"local all = {}\n"
	"for _, flow in ipairs(flows) do\n"
	"  for s = 7, #ARGV do\n"
	"    local key = index_key(flow, ARGV[s])\n"
	"    local off, got = 0, 0\n"
	"    while got < n do\n"
	"      local r = redis.call('ZREVRANGEBYSCORE', key, top, min,\n"
	"        'WITHSCORES', 'LIMIT', off, n)\n"
	"      if #r == 0 then break end\n"
	"      for i = 1, #r, 2 do\n"
	"        local sc = tonumber(r[i + 1])\n"
	"        if cid == '' or sc < cms or (sc == cms and r[i] < cid) then\n"
	"          all[#all + 1] = {sc, r[i]}\n"
	"          got = got + 1\n"
	"        end\n"
	"      end\n"
	"      off = off + #r / 2\n"
	"      if #r / 2 < n then break end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"table.sort(all, function(x, y)\n"
	"  if x[1] ~= y[1] then return x[1] > y[1] end\n"
	"  return x[2] > y[2]\n"
	"end)\n"
	"local out = {}\n"
	"for i = 1, math.min(#all, n) do\n"
	"  local pb = redis.call('HGET', 'saga:{' .. all[i][2] .. '}', 'pb')\n"
	"  out[#out + 1] = all[i][2]\n"
	"  out[#out + 1] = tostring(all[i][1])\n"
	"  out[#out + 1] = pb or ''\n"
	"end\n"
	"return out\n";

/*
 * Takes the sagas that expired out of the index sets of the ended states
 * (ARGV[3...]) of every flow: a saga expires saga_ttl (ARGV[1]) after its
 * end, so only ids created before now - saga_ttl can be gone; each is
 * looked up, at most ARGV[2] a set a call, and removed when its hash is.
 * FAILED sagas never expire, and the other states are left by the writes.
 */
static const char script_expire[] =
	INDEX_LUA
	"local t = redis.call('TIME')\n"
	"local cut = t[1] * 1000 + math.floor(t[2] / 1000) -\n"
	"  tonumber(ARGV[1]) * 1000\n"
	"local max, gone = tonumber(ARGV[2]), 0\n"
	"for _, flow in ipairs(redis.call('SMEMBERS', 'saga:idx:flows')) do\n"
	"  for s = 3, #ARGV do\n"
	"    local key = index_key(flow, ARGV[s])\n"
	"    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', cut,\n"
	"      'LIMIT', 0, max)\n"
	"    for _, id in ipairs(ids) do\n"
	"      if redis.call('EXISTS', 'saga:{' .. id .. '}') == 0 then\n"
	"        redis.call('ZREM', key, id)\n"
	"        gone = gone + 1\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return gone\n";

/*
 * The pods' registry (KEYS[1], saga:pods: pod id -> lease expiry, Redis
 * clock). ARGV: the caller, the lease in ms, at most how many to claim, the
 * count of pods to renew, those pods (the caller and those it adopted),
 * then the pods to let go (adoptions over). Renews, lets go, then claims
 * the pods whose lease ran out (one claimer each: the lease moves to it)
 * and returns them.
 */
static const char script_pods[] =
	"local t = redis.call('TIME')\n"
	"local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
	"local exp = now + tonumber(ARGV[2])\n"
	"local nrenew = tonumber(ARGV[4])\n"
	"local mine = {}\n"
	"for i = 5, 4 + nrenew do\n"
	"  redis.call('ZADD', KEYS[1], exp, ARGV[i])\n"
	"  mine[ARGV[i]] = true\n"
	"end\n"
	"for i = 5 + nrenew, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end\n"
	"local out = {}\n"
	"local max = tonumber(ARGV[3])\n"
	"if max == 0 then return out end\n"
	"for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf',\n"
	"    '(' .. now, 'LIMIT', 0, max)) do\n"
	"  if not mine[p] then\n"
	"    redis.call('ZADD', KEYS[1], exp, p)\n"
	"    out[#out + 1] = p\n"
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
	script_expire, script_pods, script_defput, script_defget,
};
