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

const char *const store_scripts[NSCRIPTS] = {
	script_write, script_renew, script_claim,
};
