#!/usr/bin/env bash
# bench/reference.sh - the reference scenario: the load under which the
# reference orchestrator (a Go saga orchestrator on a 3-replica cluster) was
# measured, reproduced on this machine with sagad. Not a test: it prints
# sagactl bench reports beside the reference's figures, for
# bench/RESULTS.md, and draws every run's latencies with --plot.
#
#   bench/reference.sh [BUILD_DIR]      (default: the source tree's own build)
#
# The scenario: a 2-step booking (order, payment) offered at 500 sagas/s for
# 30 s, open loop; each participant answers in 20 ms, takes at most 100 calls
# at once and dies (SIGKILL, `--overload crash`) on the 101st, as the
# reference's unprotected upstream did. A dead participant stays dead for
# the rest of that run. Modes, each with fresh participants and a fresh
# sagad:
#
#   sync-unprotected  sync, max_inflight 1024 per service: nothing in sagad
#                     keeps the calls to a service under its cap
#   sync-protected    sync, max_inflight 90 per service: sagad queues the
#                     rest (max_queue 10000, then RESOURCE_EXHAUSTED)
#   throttling        throttling, WORKERS x CONCURRENCY consumers per node
#                     (2 x 40 = 80 calls at most per service)
#
# Environment: RATE (500), DUR (30s), LATENCY (20 ms), CAP (100), RUNS (1;
# the summary gives the median of the runs), MODES (the three above),
# WORKERS (2), CONCURRENCY (40), PROTECTED (90), PLOTS (directory for the
# SVG plots of the first run; default none), TAG (a word in the plots'
# names; default "l$LATENCY").
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
RATE=${RATE:-500}
DUR=${DUR:-30s}
LATENCY=${LATENCY:-20}
CAP=${CAP:-100}
RUNS=${RUNS:-1}
MODES=${MODES:-sync-unprotected sync-protected throttling}
WORKERS=${WORKERS:-2}
CONCURRENCY=${CONCURRENCY:-40}
PROTECTED=${PROTECTED:-90}
PLOTS=${PLOTS:-}
TAG=${TAG:-l$LATENCY}
[ -z "$PLOTS" ] || { mkdir -p "$PLOTS"; PLOTS=$(cd "$PLOTS" && pwd); }
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
RESULTS=$LIB_TMP/results.tsv
: >"$RESULTS"

# start_stores: a fresh nats-server and redis-server for each run, so that
# no saga of one run (a sync saga in flight when its sagad stopped, which
# the next sagad's sweeper would resume) reaches the next run's participants.
start_stores() {
	rm -rf "$LIB_TMP/nats" "$LIB_TMP/redis"
	start_nats
	start_redis
}

# start_participants: order and payment with the scenario's latency and cap.
start_participants() {
	order_port=$(free_port); payment_port=$(free_port)
	"$B/examples/booking/order" --listen "127.0.0.1:$order_port" \
	    --latency "$LATENCY" --max-inflight "$CAP" --overload crash \
	    --max-records 1000000 >"$LIB_TMP/order.log" 2>&1 &
	ORDER_PID=$!; track $ORDER_PID
	"$B/examples/booking/payment" --listen "127.0.0.1:$payment_port" \
	    --latency "$LATENCY" --max-inflight "$CAP" --overload crash \
	    --max-records 1000000 >"$LIB_TMP/payment.log" 2>&1 &
	PAYMENT_PID=$!; track $PAYMENT_PID
	wait_port "$order_port"; wait_port "$payment_port"
}

# start_sagad MODE: a config for the mode, and sagad on a free port.
start_sagad() {
	local mode=$1 inflight=1024 flowmode=sync
	case $mode in
	sync-protected)	inflight=$PROTECTED ;;
	throttling)	flowmode=throttling ;;
	esac
	sagad_port=$(free_port)
	cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "ref";
listen = "127.0.0.1:$sagad_port";
nats  = { url = "$NATS_URL"; };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 600; };
services = {
  order   = { address = "127.0.0.1:$order_port";   timeout_ms = 5000;
              max_inflight = $inflight; };
  payment = { address = "127.0.0.1:$payment_port"; timeout_ms = 5000;
              max_inflight = $inflight; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel";
                    workers = $WORKERS; concurrency = $CONCURRENCY; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel";
                    workers = $WORKERS; concurrency = $CONCURRENCY; };
};
flows = { Booking = { mode = "$flowmode"; steps = [ "CreateOrder", "CreatePayment" ];
                      max_queue = 100000; }; };
CONF
	SAGAD_WORKER="$B/sagad-worker" "$B/sagad" -d -c "$LIB_TMP/sagad.conf" \
	    -p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
	SAGAD_PID=$!; track $SAGAD_PID
	wait_port "$sagad_port"
	ctl="$B/sagactl -s 127.0.0.1:$sagad_port"
	local i
	for i in $(seq 50); do
		[ "$($ctl health 2>/dev/null)" = SERVING ] && break
		sleep 0.2
	done
	[ "$flowmode" = sync ] || sleep 1	# the workers' consumers
}

stop_all() {
	local pid
	for pid in $SAGAD_PID $ORDER_PID $PAYMENT_PID; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	wait "$SAGAD_PID" "$ORDER_PID" "$PAYMENT_PID" 2>/dev/null || true
	kill -TERM "$NATS_PID" "$REDIS_PID" 2>/dev/null || true
	wait "$NATS_PID" "$REDIS_PID" 2>/dev/null || true
}

alive() { kill -0 "$1" 2>/dev/null && echo alive || echo crashed; }

echo "# the reference scenario, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $RATE sagas/s for $DUR, participants at $LATENCY ms, cap $CAP, --overload crash;"
echo "# throttling: $WORKERS workers x $CONCURRENCY per node; sync-protected: max_inflight $PROTECTED"
for run in $(seq "$RUNS"); do
	for mode in $MODES; do
		start_stores
		start_participants
		start_sagad "$mode"
		plot=()
		if [ -n "$PLOTS" ] && [ "$run" -eq 1 ]; then
			plot=(--plot "$PLOTS/reference-$mode-$TAG.svg")
		fi
		echo
		echo "## $mode, run $run of $RUNS"
		$ctl bench Booking -r "$RATE" -d "$DUR" -c 2 "${plot[@]}" \
		    | tee "$LIB_TMP/report.txt" || true
		o=$(alive "$ORDER_PID"); p=$(alive "$PAYMENT_PID")
		for pid in $ORDER_PID $PAYMENT_PID; do
			[ "$(alive "$pid")" = alive ] || grep -h 'overload\|inflight' \
			    "$LIB_TMP"/order.log "$LIB_TMP"/payment.log | tail -n 2
		done
		echo "order: $o, payment: $p"
		awk -v mode="$mode" -v o="$o" -v p="$p" '
		    /^Requests/ { gsub(",", ""); thr = $NF }
		    /^Latencies/ { gsub(",", ""); mean = $(NF-5); p99 = $(NF-1); max = $NF }
		    /^Success/ { succ = $NF }
		    END { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\n", mode, succ, thr, mean, p99, max, o, p }' \
		    "$LIB_TMP/report.txt" >>"$RESULTS"
		stop_all
	done
done

echo
echo "## summary: the median of $RUNS run(s) per mode, beside the reference"
/usr/bin/python3 - "$RESULTS" <<'PY'
import statistics, sys

def secs(s):
    for unit, f in (("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if s.endswith(unit):
            return float(s[:-len(unit)]) * f
    return float("nan")

def fmt(s):
    return "%.0f ms" % (s * 1e3) if s < 1 else "%.2f s" % s

rows = {}
for line in open(sys.argv[1]):
    mode, succ, thr, mean, p99, mx, up = line.rstrip("\n").split("\t")
    rows.setdefault(mode, []).append(
        (float(succ.rstrip("%")), float(thr), secs(mean), secs(p99), secs(mx), up))

print("| run | success | throughput | mean | p99 | max | upstreams (order/payment) | runs |")
print("|---|---:|---:|---:|---:|---:|---|---:|")
print("| reference, sync | 61.51 % | 250.18/s | | 24.55 s | | one died | |")
print("| reference, throttling | 100 % | 212.27/s | 10.65 s | 18.08 s | | survived | |")
for mode, rs in rows.items():
    med = [statistics.median(r[i] for r in rs) for i in range(5)]
    ups = ", ".join(sorted(set(r[5] for r in rs)))
    print("| sagad, %s | %.2f %% | %.2f/s | %s | %s | %s | %s | %d |" % (
        mode, med[0], med[1], fmt(med[2]), fmt(med[3]), fmt(med[4]), ups, len(rs)))
PY
