#!/usr/bin/env bash
# bench/list.sh - List's latency with few and with many sagas stored: the
# contract says a page costs the same with 10 or 10 million. A real
# redis-server and sagad; the sagas are written into Redis by a script in
# the shape the write script gives them (the hash with a real packed saga,
# and the index sets), since running a million sagas through sagad would
# measure Run, not List. Not a test: it prints figures for
# bench/RESULTS.md.
#
#   [SIZES="10000 1000000"] [CALLS=300] bench/list.sh [BUILD_DIR]
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
SIZES=${SIZES:-"10000 1000000"}
CALLS=${CALLS:-300}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
start_redis
order_port=$(free_port); payment_port=$(free_port); sagad_port=$(free_port)
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
for p in order payment; do
	port_var=${p}_port
	"$B/examples/booking/$p" --listen "127.0.0.1:${!port_var}" \
	    >"$LIB_TMP/$p.log" 2>&1 &
	track $!
	wait_port "${!port_var}"
done
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "bench";
listen = "127.0.0.1:$sagad_port";
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 86400; };
services = {
  order   = { address = "127.0.0.1:$order_port"; };
  payment = { address = "127.0.0.1:$payment_port"; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";   compensate = "/booking.Order/Cancel"; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create"; compensate = "/booking.Payment/Cancel"; };
};
flows = { Booking = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; }; };
CONF
"$B/sagad" -d -c "$LIB_TMP/sagad.conf" -p "$LIB_TMP/sagad.pid" \
    >"$LIB_TMP/sagad.log" 2>&1 &
track $!
wait_port "$sagad_port"
ctl="$B/sagactl -s 127.0.0.1:$sagad_port"
$ctl run --id template Booking amount=42 >/dev/null

# fill N: sagas bench-<i> up to N in all, created one ms apart going back
# from now, 1 in 100 FAILED, the rest COMPLETED, two flows.
fill() {
	rcli EVAL "
local pb = redis.call('HGET', 'saga:{template}', 'pb')
local from, to, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = from, to do
  local id = 'bench-' .. i
  local st = (i % 100 == 0) and 'STATE_FAILED' or 'STATE_COMPLETED'
  local flow = (i % 2 == 0) and 'Booking' or 'Other'
  local c = now - i
  redis.call('HSET', 'saga:{' .. id .. '}', 'id', id, 'flow', flow,
    'state', st, 'created', c, 'rev', 3, 'pb', pb)
  redis.call('ZADD', 'saga:idx:' .. flow .. ':' .. st, c, id)
  redis.call('SADD', 'saga:idx:flows', flow)
end
return to" 0 "$1" "$2" "$3" >/dev/null
}

echo "# List latency, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
now=$(($(date +%s) * 1000))
have=0
for n in $SIZES; do
	while [ "$have" -lt "$n" ]; do
		next=$((have + 50000 < n ? have + 50000 : n))
		fill $((have + 1)) "$next" "$now"
		have=$next
	done
	echo
	echo "## $n sagas stored (redis used_memory $(rcli INFO memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p'))"
	"${PYTHON_GRPC:-/usr/bin/python3}" - "$sagad_port" "$CALLS" "$n" "$now" <<'PY'
import sys, time, grpc
sys.path.insert(0, sys.argv[0])
port, calls, n, now = (int(x) for x in sys.argv[1:5])
from google.protobuf import descriptor_pb2  # noqa: F401
ch = grpc.insecure_channel("127.0.0.1:%d" % port)
# Hand-encoded ListRequest (saga.v1): states=1, flow=2, page_size=5,
# page_token=6; the answer is only counted, not decoded.
def enc(states=(), flow="", size=0, token=""):
    out = b""
    for s in states:
        out += b"\x08" + bytes([s])
    if flow:
        out += b"\x12" + bytes([len(flow)]) + flow.encode()
    if size:
        out += b"\x28" + bytes([size & 0x7f | 0x80, size >> 7]) if size > 127 else b"\x28" + bytes([size])
    if token:
        out += b"\x32" + bytes([len(token)]) + token.encode()
    return out
lst = ch.unary_unary("/saga.v1.Orchestrator/List")
mid = "bench-%d" % (n // 2)
deep = "%d.%s" % (now - n // 2, mid.encode().hex())
cases = [("first page of 100, no filter", enc()),
         ("first page of 100, state FAILED", enc(states=[6])),
         ("first page of 100, flow Booking", enc(flow="Booking")),
         ("page of 100 from the middle (token)", enc(token=deep)),
         ("first page of 1000, no filter", enc(size=1000))]
for name, req in cases:
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        lst(req, timeout=10)
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    print("%-40s p50 %6.2f ms   p99 %6.2f ms" % (name, ts[len(ts) // 2],
          ts[int(len(ts) * 0.99) - 1]))
PY
done
idx=0
for k in $(rcli --scan --pattern 'saga:idx:*'); do
	idx=$((idx + $(rcli MEMORY USAGE "$k")))
done
echo
echo "index memory: $idx bytes for $have sagas, $((idx / have)) bytes a saga"
