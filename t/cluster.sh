#!/bin/bash
# t/cluster.sh - sagad beyond one machine (issue 17), on loopback: a 3-node
# NATS cluster with an R3 stream, Redis primary + 2 replicas + 3 sentinels,
# two sagad pods (nats.urls in different orders, redis.sentinels,
# min_replicas_ack = 1) under a mixed load of sync and async sagas. Then:
# kill -9 the NATS node pod-a talks to (the one leading the stream); kill -9 the Redis primary (the
# sentinels promote a replica); restart both. Every saga sent must end
# final and correct (t/py/cluster_load.py check), and the load's success
# ratio and latency in each phase are printed (bench/RESULTS.md has them).

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
command -v nats-server >/dev/null || { echo "no nats-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"
sync_gen

LOAD_SECS=${CLUSTER_LOAD_SECS:-40}
RATE=${CLUSTER_RATE:-30}

# --- NATS: three nodes, one cluster -----------------------------------------
for i in 1 2 3; do
	NP[$i]=$(free_port)
	CP[$i]=$(free_port)
	MP[$i]=$(free_port)
done
ROUTES="nats://127.0.0.1:${CP[1]},nats://127.0.0.1:${CP[2]},nats://127.0.0.1:${CP[3]}"
start_nats_node() {
	local i=$1
	mkdir -p "$LIB_TMP/nats$i"
	nats-server -js -a 127.0.0.1 -p "${NP[$i]}" -sd "$LIB_TMP/nats$i" \
		-n "n$i" --cluster_name sagac -m "${MP[$i]}" \
		--cluster "nats://127.0.0.1:${CP[$i]}" --routes "$ROUTES" \
		>>"$LIB_TMP/nats$i.log" 2>&1 &
	NPID[$i]=$!
	track "${NPID[$i]}"
}
for i in 1 2 3; do start_nats_node "$i"; done
for i in 1 2 3; do wait_port "${NP[$i]}" || fail "nats n$i"; done
# JetStream needs its meta leader elected before a stream can be added.
for _ in $(seq 100); do
	grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" \
		"$LIB_TMP"/nats*.log && break
	sleep 0.1
done

# --- Redis: a primary, two replicas, three sentinels -------------------------
for i in 0 1 2; do RP[$i]=$(free_port); done
start_redis_node() {
	local i=$1
	shift
	mkdir -p "$LIB_TMP/redis$i"
	redis-server --bind 127.0.0.1 --port "${RP[$i]}" --dir "$LIB_TMP/redis$i" \
		--save '' --appendonly yes --daemonize no "$@" \
		>>"$LIB_TMP/redis$i.log" 2>&1 &
	RPID[$i]=$!
	track "${RPID[$i]}"
	wait_port "${RP[$i]}" || fail "redis $i"
}
start_redis_node 0
start_redis_node 1 --replicaof 127.0.0.1 "${RP[0]}"
start_redis_node 2 --replicaof 127.0.0.1 "${RP[0]}"
SENTINELS=""
for i in 1 2 3; do
	SP[$i]=$(free_port)
	mkdir -p "$LIB_TMP/sentinel$i"
	cat >"$LIB_TMP/sentinel$i/sentinel.conf" <<EOF
bind 127.0.0.1
port ${SP[$i]}
dir $LIB_TMP/sentinel$i
sentinel monitor sagad 127.0.0.1 ${RP[0]} 2
sentinel down-after-milliseconds sagad 1000
sentinel failover-timeout sagad 4000
sentinel parallel-syncs sagad 2
EOF
	redis-server "$LIB_TMP/sentinel$i/sentinel.conf" --sentinel \
		>"$LIB_TMP/sentinel$i.log" 2>&1 &
	track $!
	SENTINELS="$SENTINELS${SENTINELS:+, }\"127.0.0.1:${SP[$i]}\""
done
for i in 1 2 3; do wait_port "${SP[$i]}" || fail "sentinel $i"; done
# Both replicas in sync before the load.
for _ in $(seq 100); do
	[ "$(redis-cli -p "${RP[0]}" info replication | grep -c 'state=online')" -eq 2 ] && break
	sleep 0.1
done

# --- the store's own suite: Sentinel and WAIT ---------------------------------
# A primary and a spare server of its own, which the suite makes a replica
# or not; the cluster's sentinel and primary it only reads.
check="$top_builddir/t/unit/check_failover"
if [ -x "$check" ]; then
	WP=$(free_port)
	WR=$(free_port)
	for p in "$WP" "$WR"; do
		mkdir -p "$LIB_TMP/redis-$p"
		redis-server --bind 127.0.0.1 --port "$p" --dir "$LIB_TMP/redis-$p" \
			--save '' --appendonly no --daemonize no \
			>>"$LIB_TMP/redis-wait.log" 2>&1 &
		track $!
		wait_port "$p" || fail "redis on $p"
	done
	SENTINEL_PORT=${SP[2]} SENTINEL_PRIMARY_PORT=${RP[0]} WAIT_PORT=$WP \
		WAIT_REPLICA_PORT=$WR "$check" || fail "check_failover"
	pass "store: primary asked of the sentinels; writes count once WAIT says a replica has them"
else
	echo "t/unit/check_failover not built (no Check): its part skipped"
fi

# --- the participants and two pods -------------------------------------------
start_participant order "$ORDER" --latency 2 --jitter 3
ORDER_PORT=$PORT
start_participant payment "$PAYMENT" --latency 2 --jitter 3
PAYMENT_PORT=$PORT
export ORDER_PORT PAYMENT_PORT

REDIS_PORT=${RP[0]}
pod_conf() {
	local name=$1 port=$2 urls=$3
	QUEUE_CONF="nats = { urls = [ $urls ]; replicas = 3; };" \
		async_conf "$name" "$port" 1 32 |
	sed -e "s|^redis = .*|redis = { host = \"127.0.0.1\"; port = ${RP[0]}; saga_ttl = 3600; sentinels = [ $SENTINELS ]; master_name = \"sagad\"; min_replicas_ack = 1; ack_timeout_ms = 500; };|"
}
u() { echo "\"nats://127.0.0.1:${NP[$1]}\""; }
consuming() { cat "$LIB_TMP"/pod-*.log | grep -c 'consuming saga\.work'; }
PA=$(free_port)
PB=$(free_port)
# pod-b first: it declares the R3 stream. pod-a then talks first to the
# node that leads the stream, the one killed below: the worst case, both a
# pod's connection and the stream's leader lost at once.
pod_conf pod-b "$PB" "$(u 2), $(u 3), $(u 1)" >"$LIB_TMP/pod-b.conf"
start_sagad "$LIB_TMP/pod-b.conf" pod-b
for _ in $(seq 200); do [ "$(consuming)" -ge 2 ] && break; sleep 0.1; done
LEADER=""
for _ in $(seq 50); do
	LEADER=$(curl -s "http://127.0.0.1:${MP[1]}/jsz?streams=true" | /usr/bin/python3 -c '
import json, sys
for a in json.load(sys.stdin).get("account_details", []):
    for s in a.get("stream_detail", []):
        if s["name"] == "SAGA" and s.get("cluster", {}).get("leader"):
            print(s["cluster"]["leader"][1:])' 2>/dev/null || true)
	[ -n "$LEADER" ] && break
	sleep 0.2
done
[ -n "$LEADER" ] || fail "the SAGA stream has no leader"
K=$LEADER
O=()
for i in 1 2 3; do [ "$i" = "$K" ] || O+=("$i"); done
pod_conf pod-a "$PA" "$(u "$K"), $(u "${O[0]}"), $(u "${O[1]}")" >"$LIB_TMP/pod-a.conf"
start_sagad "$LIB_TMP/pod-a.conf" pod-a
for _ in $(seq 200); do
	[ "$(cat "$LIB_TMP"/pod-*.log | grep -c 'consuming saga\.work')" -ge 4 ] && break
	sleep 0.1
done
[ "$(cat "$LIB_TMP"/pod-*.log | grep -c 'consuming saga\.work')" -ge 4 ] ||
	fail "the pods' workers are not consuming"
pass "3 NATS nodes (R3), Redis primary + 2 replicas + 3 sentinels, 2 pods up"

# --- the load and the failures ----------------------------------------------
MARKS=$LIB_TMP/marks
now() { date +%s.%N; }
"$PYTHON_GRPC" "$top_srcdir/t/py/cluster_load.py" load "$LOAD_SECS" "$RATE" \
	c "$LIB_TMP/sent" "$PA,$PB" >"$LIB_TMP/load.out" 2>&1 &
LOAD=$!
T0=$(now)
sleep 8		# python3-grpcio takes a few seconds to start sending
T1=$(now)
echo "steady $T0 $T1" >>"$MARKS"
kill -9 "${NPID[$K]}"
wait "${NPID[$K]}" 2>/dev/null
sleep 8
T2=$(now)
echo "nats-node-killed $T1 $T2" >>"$MARKS"
OLD=$(redis-cli -p "${SP[1]}" sentinel get-master-addr-by-name sagad | tail -1)
[ "$OLD" = "${RP[0]}" ] || fail "sentinels name $OLD as the primary, not ${RP[0]}"
kill -9 "${RPID[0]}"
wait "${RPID[0]}" 2>/dev/null
for _ in $(seq 150); do
	NEW=$(redis-cli -p "${SP[1]}" sentinel get-master-addr-by-name sagad | tail -1)
	[ -n "$NEW" ] && [ "$NEW" != "${RP[0]}" ] && break
	sleep 0.1
done
[ "$NEW" != "${RP[0]}" ] || fail "no failover after 15 s"
sleep 6
T3=$(now)
echo "redis-primary-killed $T2 $T3" >>"$MARKS"
start_nats_node "$K"
wait_port "${NP[$K]}" || fail "nats n$K again"
start_redis_node 0
wait "$LOAD" || { cat "$LIB_TMP/load.out"; fail "cluster_load.py load"; }
T4=$(now)
echo "both-restarted $T3 $T4" >>"$MARKS"
cat "$LIB_TMP/load.out"
pass "NATS node n$K (pod-a's, the stream's leader) killed; the Redis primary moved from port ${RP[0]} to $NEW"
echo "pods' log: $(cat "$LIB_TMP"/pod-*.log | grep -c 'NATS reconnected\|nats: reconnected') NATS reconnections," \
	"$(cat "$LIB_TMP"/pod-*.log | grep -c 'redis: connected\|Redis connected') Redis reconnections," \
	"$(cat "$LIB_TMP"/pod-*.log | grep -c 'store write failed') store writes the engines had to retry"
"$PYTHON_GRPC" "$top_srcdir/t/py/cluster_load.py" phases "$LIB_TMP/sent" "$MARKS"
"$PYTHON_GRPC" "$top_srcdir/t/py/cluster_load.py" check "$LIB_TMP/sent" 60 "$PB" ||
	fail "sagas lost or wrong across the failures"
# And issue 11's invariant checker, on the new primary and the stream.
awk '{ print $1, ($3 == "ok" ? "OK" : $3) }' "$LIB_TMP/sent" >"$LIB_TMP/ids"
"$PYTHON_GRPC" "$top_srcdir/t/py/invariants.py" --ids "$LIB_TMP/ids" \
	--redis "127.0.0.1:$NEW" \
	--participant "order@127.0.0.1:$ORDER_PORT" \
	--participant "payment@127.0.0.1:$PAYMENT_PORT" \
	--nats "nats://127.0.0.1:${NP[$K]}" --stream SAGA --wait 60 ||
	fail "the invariant checker found violations"
# The old primary came back as a replica of the new one.
for _ in $(seq 50); do
	redis-cli -p "${RP[0]}" info replication | grep -q '^role:slave' && break
	sleep 0.1
done
redis-cli -p "${RP[0]}" info replication | grep -q '^role:slave' ||
	fail "the old primary did not rejoin as a replica"
pass "NATS node and Redis primary killed -9 and restarted under load: every saga final and correct"
