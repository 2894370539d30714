#!/usr/bin/env bash
# bench/cluster.sh - what replication costs (issue 17): the workloads of
# bench/sync.sh (closed loop, open loop) and bench/async.sh (open loop)
# against a single node and against the cluster of t/cluster.sh, both up at
# once on this machine and measured in turn, round after round, so that both
# see the same machine. Not a test: it prints figures for bench/RESULTS.md.
#
#   [ROUNDS=3] [DUR=6s] [SRATE=400] [ARATE=400] [ACK_MS=200] bench/cluster.sh [BUILD_DIR]
#
# single:  1 nats-server -js (stream R1); 1 redis-server (AOF everysec)
# cluster: 3 nats-server -js in one cluster (stream R3); a Redis primary and
#          2 replicas (AOF everysec), 3 sentinels; sagad with
#          redis.sentinels and min_replicas_ack = 1 (one WAIT per batch)
# nowait:  the cluster, through a third sagad with min_replicas_ack = 0
#          (replication without WAIT: what WAIT itself costs); sync
#          workloads only (no async flow, so no workers that would share
#          the cluster's queue)
# Each has its own sagad (1 worker per node); the participants, at 0 ms,
# are shared. For each run, the CPU seconds of every process (utime +
# stime from /proc/PID/stat, before and after, the async run's after taken
# once its sagas have ended) divided by the sagas it completed give the
# CPU per saga of each component: the input of the scaling model in
# bench/RESULTS.md.
set -euo pipefail
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$top_srcdir}" && pwd)
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-6s}
SRATE=${SRATE:-400}
ARATE=${ARATE:-400}
# shellcheck source=../t/lib.sh
. "$top_srcdir/t/lib.sh"
lib_init
declare -A LABEL	# pid -> component
label() { LABEL[$1]=$2; track "$1"; }

REDIS_ARGS=(--save '' --appendonly yes --appendfsync everysec --auto-aof-rewrite-percentage 0)
# --- single -------------------------------------------------------------------
S_NATS=$(free_port)
mkdir -p "$LIB_TMP/s-nats"
nats-server -js -a 127.0.0.1 -p "$S_NATS" -sd "$LIB_TMP/s-nats" >"$LIB_TMP/s-nats.log" 2>&1 &
label $! "single nats"
S_REDIS=$(free_port)
mkdir -p "$LIB_TMP/s-redis"
redis-server --bind 127.0.0.1 --port "$S_REDIS" --dir "$LIB_TMP/s-redis" "${REDIS_ARGS[@]}" \
	--daemonize no >"$LIB_TMP/s-redis.log" 2>&1 &
label $! "single redis"

# --- cluster ------------------------------------------------------------------
for i in 1 2 3; do NP[$i]=$(free_port); CP[$i]=$(free_port); done
ROUTES="nats://127.0.0.1:${CP[1]},nats://127.0.0.1:${CP[2]},nats://127.0.0.1:${CP[3]}"
for i in 1 2 3; do
	mkdir -p "$LIB_TMP/c-nats$i"
	nats-server -js -a 127.0.0.1 -p "${NP[$i]}" -sd "$LIB_TMP/c-nats$i" -n "n$i" \
		--cluster_name bench --cluster "nats://127.0.0.1:${CP[$i]}" --routes "$ROUTES" \
		>"$LIB_TMP/c-nats$i.log" 2>&1 &
	label $! "cluster nats (3 nodes)"
done
for i in 0 1 2; do RP[$i]=$(free_port); done
for i in 0 1 2; do
	mkdir -p "$LIB_TMP/c-redis$i"
	extra=()
	[ "$i" -gt 0 ] && extra=(--replicaof 127.0.0.1 "${RP[0]}")
	redis-server --bind 127.0.0.1 --port "${RP[$i]}" --dir "$LIB_TMP/c-redis$i" \
		"${REDIS_ARGS[@]}" "${extra[@]}" --daemonize no >"$LIB_TMP/c-redis$i.log" 2>&1 &
	if [ "$i" = 0 ]; then label $! "cluster redis primary"; else label $! "cluster redis replicas (2)"; fi
done
SENTINELS=""
for i in 1 2 3; do
	SP[$i]=$(free_port)
	mkdir -p "$LIB_TMP/sentinel$i"
	printf 'bind 127.0.0.1\nport %s\ndir %s\nsentinel monitor sagad 127.0.0.1 %s 2\nsentinel down-after-milliseconds sagad 5000\n' \
		"${SP[$i]}" "$LIB_TMP/sentinel$i" "${RP[0]}" >"$LIB_TMP/sentinel$i/sentinel.conf"
	redis-server "$LIB_TMP/sentinel$i/sentinel.conf" --sentinel >"$LIB_TMP/sentinel$i.log" 2>&1 &
	label $! "cluster sentinels (3)"
	SENTINELS="$SENTINELS${SENTINELS:+, }\"127.0.0.1:${SP[$i]}\""
done
for p in "$S_NATS" "$S_REDIS" "${NP[@]}" "${RP[@]}" "${SP[@]}"; do wait_port "$p"; done
for _ in $(seq 100); do
	[ "$(redis-cli -p "${RP[0]}" info replication | grep -c 'state=online')" -eq 2 ] && break
	sleep 0.1
done

# --- participants and the two sagads -----------------------------------------------
order_port=$(free_port); payment_port=$(free_port)
"$B/examples/booking/order" --listen "127.0.0.1:$order_port" --max-records 4000000 \
	>"$LIB_TMP/order.log" 2>&1 &
label $! "participants (2)"
"$B/examples/booking/payment" --listen "127.0.0.1:$payment_port" --max-records 4000000 \
	>"$LIB_TMP/payment.log" 2>&1 &
label $! "participants (2)"
wait_port "$order_port"; wait_port "$payment_port"

sagad_conf() {	# pod port nats-conf redis-conf
	cat <<CONF
pod_id = "$1";
listen = "127.0.0.1:$2";
$3
$4
services = {
  order   = { address = "127.0.0.1:$order_port";   max_inflight = 20000; max_queue = 100000; };
  payment = { address = "127.0.0.1:$payment_port"; max_inflight = 20000; max_queue = 100000; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; concurrency = 1000; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; concurrency = 1000; };
};
flows = {
  Booking      = { mode = "sync";  steps = [ "CreateOrder", "CreatePayment" ]; };
$5
};
CONF
}
declare -A PORT MASTER
ASYNC_FLOW='  AsyncBooking = { mode = "async"; steps = [ "CreateOrder", "CreatePayment" ]; };'
start_pod() {	# topo nats-conf redis-conf
	local port
	port=$(free_port)
	sagad_conf "$1" "$port" "$2" "$3" "${4-$ASYNC_FLOW}" >"$LIB_TMP/$1.conf"
	SAGAD_WORKER="$B/sagad-worker" "$B/sagad" -d -c "$LIB_TMP/$1.conf" \
		-p "$LIB_TMP/$1.pid" >"$LIB_TMP/$1.log" 2>&1 &
	MASTER[$1]=$!
	track $!
	PORT[$1]=$port
	wait_port "$port"
}
start_pod single "nats = { url = \"nats://127.0.0.1:$S_NATS\"; };" \
	"redis = { host = \"127.0.0.1\"; port = $S_REDIS; saga_ttl = 600; };"
start_pod cluster "nats = { urls = [ \"nats://127.0.0.1:${NP[1]}\", \"nats://127.0.0.1:${NP[2]}\", \"nats://127.0.0.1:${NP[3]}\" ]; replicas = 3; };" \
	"redis = { sentinels = [ $SENTINELS ]; master_name = \"sagad\"; min_replicas_ack = 1; ack_timeout_ms = ${ACK_MS:-200}; saga_ttl = 600; };"
start_pod nowait "nats = { urls = [ \"nats://127.0.0.1:${NP[1]}\", \"nats://127.0.0.1:${NP[2]}\", \"nats://127.0.0.1:${NP[3]}\" ]; replicas = 3; };" \
	"redis = { sentinels = [ $SENTINELS ]; master_name = \"sagad\"; min_replicas_ack = 0; saga_ttl = 600; };" ""
sleep 2

# cpu_snap TOPO: "COMPONENT SECONDS" for every process of TOPO (its sagad
# master and workers, its servers) and the participants.
cpu_snap() {
	local topo=$1 hz pid l
	hz=$(getconf CLK_TCK)
	for pid in "${!LABEL[@]}" "${MASTER[$topo]}" $(pgrep -P "${MASTER[$topo]}"); do
		l=${LABEL[$pid]:-sagad (master and workers)}
		case "$l" in single*) [ "$topo" = single ] || continue ;; cluster*) [ "$topo" != single ] || continue ;; esac
		[ -r "/proc/$pid/stat" ] || continue
		sed 's/.*) //' "/proc/$pid/stat" | awk -v hz="$hz" -v l="$l" '{ printf "%s\t%.2f\n", l, ($12 + $13) / hz }'
	done
}
cpu_diff() {	# before after sagas -> "component us_per_saga" lines
	awk -F'\t' -v n="$3" 'NR == FNR { a[$1] += $2; next } { b[$1] += $2 }
		END { for (k in b) printf "%s\t%.0f\n", k, (b[k] - a[k]) * 1e6 / n }' "$1" "$2"
}
# calls PORT: "evalsha wait" calls so far on that Redis.
calls() {
	redis-cli -p "$1" info commandstats | tr -d '\r' | awk -F'[=:,]' '
		/^cmdstat_evalsha:/ { e = $3 } /^cmdstat_eval:/ { e += $3 }
		/^cmdstat_wait:/ { w = $3 } END { printf "%d %d\n", e, w }'
}
redis_port() { if [ "$1" = single ]; then echo "$S_REDIS"; else echo "${RP[0]}"; fi; }
OUT=$LIB_TMP/results.tsv
: >"$OUT"
bench_one() {	# round topo workload flow rate
	local r=$1 topo=$2 w=$3 flow=$4 rate=$5 ctl json n inflight=128
	ctl="$B/sagactl -j -s 127.0.0.1:${PORT[$topo]}"
	[ "$rate" != 0 ] && inflight=4000
	cpu_snap "$topo" >"$LIB_TMP/cpu0"
	calls "$(redis_port "$topo")" >"$LIB_TMP/calls0"
	json=$($ctl bench "$flow" -r "$rate" -d "$DUR" -c 2 --max-inflight "$inflight")
	n=$(echo "$json" | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status_codes"].get("OK", 0))')
	# async: the sagas go on after their Run; wait for the workers to end them.
	[ "$w" = async ] && sleep 4
	cpu_snap "$topo" >"$LIB_TMP/cpu1"
	calls "$(redis_port "$topo")" >"$LIB_TMP/calls1"
	paste "$LIB_TMP/calls0" "$LIB_TMP/calls1" | awk -v n="$n" -v t="$topo" -v w="$w" \
		'{ printf "cpu\t%s\t%s\t~ script calls per saga\t%.2f\ncpu\t%s\t%s\t~ WAITs per saga\t%.2f\n", t, w, ($3 - $1) / n, t, w, ($4 - $2) / n }' >>"$OUT"
	echo "$json" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
l = j["latencies_us"]
print("\t".join(str(x) for x in (sys.argv[1], sys.argv[2], sys.argv[3], "%.0f" % j["throughput"],
      l["50th"], l["99th"], "%.4f" % j["success"], sys.argv[4])))' "$r" "$topo" "$w" "$n" >>"$OUT"
	cpu_diff "$LIB_TMP/cpu0" "$LIB_TMP/cpu1" "$n" | sed "s/^/cpu\t$topo\t$w\t/" >>"$OUT"
}

echo "# sagad single node vs cluster, $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds of $DUR each, interleaved"
for topo in single cluster nowait; do	# warm up
	"$B/sagactl" -s "127.0.0.1:${PORT[$topo]}" bench Booking -r 0 -d 2s --max-inflight 64 >/dev/null
	[ "$topo" = nowait ] ||
	"$B/sagactl" -s "127.0.0.1:${PORT[$topo]}" bench AsyncBooking -r 200 -d 2s >/dev/null
done
for r in $(seq "$ROUNDS"); do
	for topo in single cluster nowait; do
		bench_one "$r" "$topo" sync-closed Booking 0
		bench_one "$r" "$topo" sync-open Booking "$SRATE"
		[ "$topo" = nowait ] ||
		bench_one "$r" "$topo" async AsyncBooking "$ARATE"
	done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$OUT" <<'PY'
import statistics, sys
runs, cpu = {}, {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] == "cpu":
        cpu.setdefault((f[1], f[2], f[3]), []).append(float(f[4]))
    else:
        runs.setdefault((f[2], f[1]), []).append(f)
med = lambda xs: statistics.median(xs)
print("\n## medians over the rounds (sagas/s: completed per second for the sync")
print("## closed loop, Runs answered per second otherwise; latency of the Run)")
print("%-12s %-8s %9s %9s %9s %8s   (each round: sagas/s, p99 ms)" % ("workload", "topology", "sagas/s", "p50 ms", "p99 ms", "ok"))
for w in ("sync-closed", "sync-open", "async"):
    for t in ("single", "cluster", "nowait"):
        rs = runs.get((w, t), [])
        if not rs:
            continue
        print("%-12s %-8s %9.0f %9.2f %9.2f %8.4f   %s" % (w, t,
              med([float(r[3]) for r in rs]), med([float(r[4]) for r in rs]) / 1000,
              med([float(r[5]) for r in rs]) / 1000, med([float(r[6]) for r in rs]),
              " ".join("%s/%.1f" % (r[3], float(r[5]) / 1000) for r in rs)))
print("\n## CPU per saga by component, median over the rounds (us)")
for w in ("sync-closed", "sync-open", "async"):
    for t in ("single", "cluster", "nowait"):
        rows = sorted((k[2], med(v)) for k, v in cpu.items() if k[0] == t and k[1] == w)
        if not rows:
            continue
        print("%s, %s: total %.0f us" % (w, t, sum(v for n, v in rows
                                                  if not n.startswith("~"))))
        for name, v in rows:
            if name.startswith("~"):
                print("    %7.2f  %s" % (v, name[2:]))
            else:
                print("    %7.0f  %s" % (v, name))
PY
