#!/usr/bin/env bash
# bench/footprint.sh - what a stored saga costs in Redis (issue 18): groups
# of sagas run one after the other into a fresh redis-server (no
# persistence) with the example participants at 0 ms, NATS JetStream and
# sagad-worker for the async group. For each group it prints the growth of
# Redis' used_memory divided by the sagas the group stored, once they have
# all ended; then, over every group, MEMORY USAGE sampled by key kind (the
# saga's record, its event stream if any, and each shared key's share:
# the lease and List index sets divided by their members). Not a test: it
# prints figures to record in bench/RESULTS.md.
#
#   [N=5000] [SAMPLE=200] bench/footprint.sh [BUILD_DIR]
#
# Groups: sync Booking (empty context) x N, async AsyncBooking x N, sync
# compensated (payment refuses) x N/5, sync with a 1 KB context x N/5.
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
N=${N:-5000}
SAMPLE=${SAMPLE:-200}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
start_nats
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --daemonize no >"$LIB_TMP/redis.log" 2>&1 &
track $!
wait_port "$REDIS_PORT"
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
order_port=$(free_port); payment_port=$(free_port); sagad_port=$(free_port)
"$B/examples/booking/order" --listen "127.0.0.1:$order_port" \
    --max-records 2000000 >"$LIB_TMP/order.log" 2>&1 &
track $!
"$B/examples/booking/payment" --listen "127.0.0.1:$payment_port" \
    --max-records 2000000 >"$LIB_TMP/payment.log" 2>&1 &
track $!
wait_port "$order_port"; wait_port "$payment_port"

cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "footprint";
listen = "127.0.0.1:$sagad_port";
nats  = { url = "nats://127.0.0.1:$NATS_PORT"; };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 86400; };
services = {
  order   = { address = "127.0.0.1:$order_port";   timeout_ms = 5000; max_inflight = 20000; max_queue = 100000; };
  payment = { address = "127.0.0.1:$payment_port"; timeout_ms = 5000; max_inflight = 20000; max_queue = 100000; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";   compensate = "/booking.Order/Cancel"; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create"; compensate = "/booking.Payment/Cancel"; };
};
flows = {
  Booking      = { mode = "sync";  steps = [ "CreateOrder", "CreatePayment" ]; };
  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };
};
CONF
SAGAD_WORKER="$B/sagad-worker" "$B/sagad" -d -c "$LIB_TMP/sagad.conf" \
    -p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
track $!
wait_port "$sagad_port"
ctl="$B/sagactl -s 127.0.0.1:$sagad_port"

# Every saga key, one a line (the record, and whatever else it owns).
saga_keys() { rcli --scan --pattern 'saga:{*'; }
nsagas() { saga_keys | grep -c '^saga:{[^}]*}$' || true; }
used() { rcli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
# Microseconds Redis spent in sagad's commands so far (INFO commandstats,
# without this script's own: scan, zcard, info...).
cmd_usec() {
	rcli info commandstats | tr -d '\r' |
	    grep -vE '^cmdstat_(scan|zcard|info|memory|config|dbsize|type|object|hlen|zrange|ping|command)[:|]' |
	    sed -n 's/.*,usec=\([0-9]*\),.*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}
# Sagas not ended yet: the index sets of PENDING, RUNNING, COMPENSATING.
inflight() {
	local n=0 k c
	for k in $(rcli --scan --pattern 'saga:idx:*' | grep -E 'STATE_(PENDING|RUNNING|COMPENSATING)$'); do
		c=$(rcli zcard "$k"); n=$((n + c))
	done
	echo "$n"
}
settle() {	# until every saga has ended and the writes stopped
	local i
	for i in $(seq 1 120); do
		[ "$(inflight)" = 0 ] && break
		sleep 0.5
	done
	sleep 1
}

pad=$(head -c 1000 /dev/zero | tr '\0' x)
run_group() {	# name count rate flow [context...]
	local name=$1 count=$2 rate=$3 flow=$4; shift 4
	local before after n0 n1 secs
	settle
	before=$(used); n0=$(nsagas); u0=$(cmd_usec)
	secs=$(( (count + rate - 1) / rate ))
	$ctl bench "$flow" -r "$rate" -d "${secs}s" -c 2 "$@" >"$LIB_TMP/$name.txt" 2>&1 || true
	settle
	after=$(used); n1=$(nsagas); u1=$(cmd_usec)
	printf '%-22s %6d sagas %6d bytes/saga (used_memory delta), Redis %4d us/saga in commands\n' \
	    "$name" $((n1 - n0)) $(( (after - before) / (n1 - n0 > 0 ? n1 - n0 : 1) )) \
	    $(( (u1 - u0) / (n1 - n0 > 0 ? n1 - n0 : 1) ))
}

echo "# sagad footprint, $(date -u '+%Y-%m-%d %H:%M'), redis $(redis-server --version | awk '{print $3}'), build dir $B"
echo "N=$N; hash-max-listpack-value $(rcli config get hash-max-listpack-value | tail -1), hash-max-listpack-entries $(rcli config get hash-max-listpack-entries | tail -1)"
echo
$ctl run Booking >/dev/null 2>&1 || true	# warm up: scripts loaded, index sets made
$ctl run AsyncBooking --wait >/dev/null 2>&1 || true
sleep 1
echo "## used_memory growth per group, once ended"
run_group "sync, completed" "$N" 1000 Booking
run_group "async, completed" "$N" 1000 AsyncBooking
run_group "sync, compensated" $((N / 5)) 1000 Booking fault=payment
run_group "sync, 1 KB context" $((N / 5)) 1000 Booking "pad=$pad"
echo

# MEMORY USAGE by key kind. A saga's own keys are sampled; a shared key
# (leases, index sets) is counted whole and divided among the sagas stored.
echo "## MEMORY USAGE by key kind (sampled: $SAMPLE sagas of each state)"
total=$(nsagas)
rcli --scan >"$LIB_TMP/keys.txt"
for st in STATE_COMPLETED STATE_COMPENSATED; do
	rec=0; ev=0; n=0; len=0
	for k in $(rcli --scan --pattern 'saga:idx:*' | grep "$st\$"); do
		rcli zrange "$k" 0 $((SAMPLE - 1)) >>"$LIB_TMP/ids.$st"
	done
	for id in $(head -n "$SAMPLE" "$LIB_TMP/ids.$st"); do
		m=$(rcli memory usage "saga:{$id}" samples 0); rec=$((rec + ${m:-0}))
		m=$(rcli memory usage "saga:{$id}:events" samples 0); ev=$((ev + ${m:-0}))
		n=$((n + 1))
	done
	[ "$n" -gt 0 ] || continue
	printf '%-16s record %5d  events stream %5d  (bytes/saga, %d sampled)\n' \
	    "$st" $((rec / n)) $((ev / n)) "$n"
	enc=$(rcli object encoding "saga:{$(head -n1 "$LIB_TMP/ids.$st")}")
	echo "                 record encoding: $enc, fields: $(rcli hlen "saga:{$(head -n1 "$LIB_TMP/ids.$st")}")"
done
# Shared keys by kind: a bucket's {bN} tag folded, so the 8 buckets of
# one kind add up.
shared=0
while read -r k; do
	case $k in saga:\{*) continue;; esac
	m=$(rcli memory usage "$k" samples 0)
	shared=$((shared + ${m:-0}))
	echo "$(echo "$k" | sed 's/{b[0-9]*}/{bN}/') $(rcli type "$k") ${m:-0}"
done < <(grep -v '^saga:{' "$LIB_TMP/keys.txt") |
	awk '{ n[$1 " (" $2 ")"]++; b[$1 " (" $2 ")"] += $3 }
	    END { for (k in n) printf "  shared %-46s %3d keys %9d bytes\n", k, n[k], b[k] }' | sort
shared=0
for k in $(grep -v '^saga:{' "$LIB_TMP/keys.txt"); do
	m=$(rcli memory usage "$k" samples 0); shared=$((shared + ${m:-0}))
done
printf 'shared keys: %d bytes for %d sagas = %d bytes/saga\n' "$shared" "$total" $((shared / (total > 0 ? total : 1)))
echo "keys: $(rcli dbsize), of which saga records: $total"
