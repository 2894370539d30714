#!/bin/bash
# t/chaos.sh - issue 11's proof: no saga lost, stranded or half-done under
# faults, reloads and pod changes. Real nats-server -js, redis-server (append
# only, fsync on every write), three booking participants (order, payment,
# and a second order program as "ship") and two sagad pods with their real
# workers take a mixed load of sync, async and throttling sagas
# (t/py/chaos_load.py: some failing, some slow, some flaky) for DURATION
# seconds (default 60), while a loop injects a fault every 1-4 s, at random:
#
#   kill9_worker   kill -9 a worker of a pod (its master respawns it)
#   kill9_master   kill -9 a pod's master (its workers follow it), restart
#                  the pod
#   kill9_nats     kill -9 nats-server, restart it on its port and store
#   kill9_redis    kill -9 redis-server, restart it on its append-only file
#   stop_*         SIGSTOP nats-server, redis-server, a master or a worker
#                  for 2-6 s, then SIGCONT
#   sighup         give a pod the other version of the flows (a step added,
#                  two swapped) and SIGHUP it
#   rename_pod     SIGTERM a pod and start it again under a new pod id
#
# Then the load stops, every process is running again, and
# t/py/invariants.py waits (at most SETTLE seconds, default 120) for every
# saga to end and the streams to drain, and checks the invariants on every
# id ever sent. The faults injected are printed by kind.
#
# DURATION, RATE (Runs/s, default 40), SETTLE, CHAOS_SEED (the load's and
# the faults' random seed), CHAOS_APPENDFSYNC (default always: a kill -9 of
# Redis then loses no acknowledged write; everysec loses up to a second,
# which the checker reports as missing sagas), CHAOS_FAULTS (the kinds to
# draw from, space separated; default all), KEEP_TMP=1 keeps the logs.
# ./run.sh chaos [SECONDS] runs a long one.

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
sync_gen

DURATION=${DURATION:-60}
RATE=${RATE:-40}
SETTLE=${SETTLE:-120}
APPENDFSYNC=${CHAOS_APPENDFSYNC:-always}
FAULTS=${CHAOS_FAULTS:-"kill9_worker kill9_master kill9_nats kill9_redis stop_nats stop_redis stop_master stop_worker sighup rename_pod"}
SEED=${CHAOS_SEED:-$$}
RANDOM=$SEED
echo "chaos: ${DURATION}s at ${RATE} Runs/s, seed $SEED (CHAOS_SEED), appendfsync $APPENDFSYNC, faults: $FAULTS"

# --- the servers, each restartable on the same port and store ---

NATS_PORT=$(free_port)
NATS_URL="nats://127.0.0.1:$NATS_PORT"
nats_up() {
	mkdir -p "$LIB_TMP/nats"
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$LIB_TMP/nats" \
		>>"$LIB_TMP/nats.log" 2>&1 &
	NATS_PID=$!
	track "$NATS_PID"
	wait_port "$NATS_PORT" 20 || fail "nats-server did not come back"
}

REDIS_PORT=$(free_port)
redis_up() {
	mkdir -p "$LIB_TMP/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
		--save '' --appendonly yes --appendfsync "$APPENDFSYNC" \
		--daemonize no >>"$LIB_TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	track "$REDIS_PID"
	# Listening is not loading: wait until it answers a command.
	for _ in $(seq 200); do
		[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	fail "redis-server did not come back"
}

nats_up
redis_up
start_participant order "$ORDER" --latency 2 --jitter 5
ORDER_PORT=$PORT
start_participant payment "$PAYMENT" --latency 2 --jitter 5
PAYMENT_PORT=$PORT
start_participant ship "$ORDER" --latency 2 --jitter 5
SHIP_PORT=$PORT
. "$top_srcdir/t/async_lib.sh"
start_receiver

# --- the pods: slot 0 and 1, each with its own port, id and flows ---

POD_PORT=("$(free_port)" "$(free_port)")
POD_ID=(pa pb)
POD_FLOWS=(a a)
POD_PID=(0 0)
POD_GEN=(0 0)

# pod_conf SLOT: that pod's configuration, its flows version A or B. B adds a
# step to Booking and AsyncBooking and swaps ThrottlingBooking's two.
pod_conf() {
	local s=$1 booking async throttling
	if [ "${POD_FLOWS[s]}" = a ]; then
		booking='"CreateOrder", "CreatePayment"'
		async='"CreateOrder", "CreatePayment"'
		throttling='"CreateOrder", "CreatePayment"'
	else
		booking='"CreateOrder", "CreateShip", "CreatePayment"'
		async='"CreateOrder", "CreatePayment", "CreateShip"'
		throttling='"CreatePayment", "CreateOrder"'
	fi
	cat <<EOC
pod_id = "${POD_ID[s]}";
listen = "127.0.0.1:${POD_PORT[s]}";
shutdown_timeout_ms = 3000;
nats = { url = "$NATS_URL"; stream = "SAGA"; };
redis = { host = "127.0.0.1"; port = $REDIS_PORT; saga_ttl = 86400;
          lease_ms = 3000; };
callbacks = { allow = [ "127.0.0.1:$RECEIVER_PORT" ]; retries = 3; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT";   timeout_ms = 1000; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; timeout_ms = 1000; };
  ship    = { address = "127.0.0.1:$SHIP_PORT";    timeout_ms = 1000; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 2;
                    compensate_retries = 8; backoff_ms = 50;
                    workers = 1; concurrency = 50; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; retries = 2;
                    compensate_retries = 8; backoff_ms = 50;
                    workers = 1; concurrency = 50; };
  CreateShip    = { service = "ship"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; retries = 2;
                    compensate_retries = 8; backoff_ms = 50;
                    workers = 1; concurrency = 50; };
};
flows = {
  Booking           = { mode = "sync";       steps = [ $booking ]; };
  AsyncBooking      = { mode = "async";      steps = [ $async ]; };
  ThrottlingBooking = { mode = "throttling"; steps = [ $throttling ];
                        max_queue = 5000; };
};
EOC
}

# pod_up SLOT: starts that pod (a fresh log per start) and waits for its
# listener, and a little for its workers.
pod_up() {
	local s=$1 conf log
	POD_GEN[s]=$((POD_GEN[s] + 1))
	conf=$LIB_TMP/pod$s.conf
	log=$LIB_TMP/pod$s.${POD_GEN[s]}.${POD_ID[s]}.log
	pod_conf "$s" >"$conf"
	"$top_builddir/sagad" -t -c "$conf" >/dev/null || fail "bad $conf"
	SAGAD_WORKER=$top_builddir/sagad-worker "$top_builddir/sagad" -d \
		-c "$conf" -p "$LIB_TMP/pod$s.pid" >"$log" 2>&1 &
	POD_PID[s]=$!
	track "${POD_PID[s]}"
	wait_port "${POD_PORT[s]}" 20 || echo "chaos: pod ${POD_ID[s]} not listening after 20 s"
	for _ in $(seq 100); do
		grep -q "all [0-9]* workers ready" "$log" && return 0
		sleep 0.1
	done
	echo "chaos: pod ${POD_ID[s]}: workers not all ready after 10 s"
}

# pod_gone SLOT WORKERS...: waits (10 s at most) for the master and the
# workers it had to be gone, then kills -9 what is left.
pod_gone() {
	local s=$1 pid=${POD_PID[$1]} w left
	shift
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null && echo "chaos: pod ${POD_ID[s]} outlived 10 s: killed"
	wait "$pid" 2>/dev/null
	# Workers die with their master (PR_SET_PDEATHSIG); wait for them.
	for _ in $(seq 100); do
		left=""
		for w in "$@"; do
			kill -0 "$w" 2>/dev/null && left="$left $w"
		done
		[ -z "$left" ] && return 0
		sleep 0.1
	done
	echo "chaos: workers of ${POD_ID[s]} outlived their master by 10 s: killed$left"
	# shellcheck disable=SC2086
	kill -KILL $left 2>/dev/null
}

pod_up 0
pod_up 1

# --- the faults ---

declare -A NFAULT
STOPPED=""	# pid stopped now, to SIGCONT on every exit path
LIB_HOOKS+=("chaos_cont")
chaos_cont() {
	[ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
	STOPPED=""
}

stop_for() {
	local pid=$1
	kill -STOP "$pid" 2>/dev/null || return 0
	STOPPED=$pid
	sleep $((2 + RANDOM % 5))
	kill -CONT "$pid" 2>/dev/null
	STOPPED=""
}

random_worker() {
	local pids
	mapfile -t pids < <(pgrep -P "${POD_PID[$1]}")
	[ "${#pids[@]}" -gt 0 ] && echo "${pids[RANDOM % ${#pids[@]}]}"
}

inject() {
	local kind=$1 s=$((RANDOM % 2)) w ws
	case $kind in
	kill9_worker)
		w=$(random_worker "$s")
		[ -n "$w" ] || return 1
		kill -KILL "$w" ;;
	kill9_master)
		mapfile -t ws < <(pgrep -P "${POD_PID[s]}")
		kill -KILL "${POD_PID[s]}"
		pod_gone "$s" "${ws[@]}"
		pod_up "$s" ;;
	kill9_nats)
		kill -KILL "$NATS_PID"; wait "$NATS_PID" 2>/dev/null
		sleep $((1 + RANDOM % 2))
		nats_up ;;
	kill9_redis)
		kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
		sleep $((1 + RANDOM % 2))
		redis_up ;;
	stop_nats)	stop_for "$NATS_PID" ;;
	stop_redis)	stop_for "$REDIS_PID" ;;
	stop_master)	stop_for "${POD_PID[s]}" ;;
	stop_worker)
		w=$(random_worker "$s")
		[ -n "$w" ] || return 1
		stop_for "$w" ;;
	sighup)
		if [ "${POD_FLOWS[s]}" = a ]; then POD_FLOWS[s]=b; else POD_FLOWS[s]=a; fi
		pod_conf "$s" >"$LIB_TMP/pod$s.conf"
		kill -HUP "${POD_PID[s]}" ;;
	rename_pod)
		mapfile -t ws < <(pgrep -P "${POD_PID[s]}")
		kill -TERM "${POD_PID[s]}"
		pod_gone "$s" "${ws[@]}"
		POD_ID[s]=${POD_ID[s]%%-*}-${POD_GEN[s]}
		pod_up "$s" ;;
	*)	fail "unknown fault $kind" ;;
	esac
}

read -ra KINDS <<<"$FAULTS"
: >"$LIB_TMP/faults.log"
IDS=$LIB_TMP/ids.jsonl
: >"$IDS"
"$PYTHON_GRPC" "$top_srcdir/t/py/chaos_load.py" \
	--ports "${POD_PORT[0]},${POD_PORT[1]}" --secs "$DURATION" \
	--rate "$RATE" --out "$IDS" --prefix "c$SEED" --seed "$SEED" \
	--callback "http://127.0.0.1:$RECEIVER_PORT" &
LOAD=$!

t_end=$((SECONDS + DURATION))
sleep 2
while [ "$SECONDS" -lt "$t_end" ] && kill -0 "$LOAD" 2>/dev/null; do
	k=${KINDS[RANDOM % ${#KINDS[@]}]}
	echo "chaos: t+$((SECONDS - t_end + DURATION))s $k"
	echo "$(date +%s%3N) $k" >>"$LIB_TMP/faults.log"
	if inject "$k"; then
		NFAULT[$k]=$((${NFAULT[$k]:-0} + 1))
	fi
	sleep "$((1 + RANDOM % 3)).$((RANDOM % 10))"
done
chaos_cont
wait "$LOAD" || fail "chaos_load.py failed"

# Everything runs again before the stack is asked to settle.
kill -0 "$NATS_PID" 2>/dev/null || nats_up
kill -0 "$REDIS_PID" 2>/dev/null || redis_up
for s in 0 1; do
	kill -0 "${POD_PID[s]}" 2>/dev/null || pod_up "$s"
done

total=0
line=""
for k in "${KINDS[@]}"; do
	line="$line $k=${NFAULT[$k]:-0}"
	total=$((total + ${NFAULT[$k]:-0}))
done
echo "faults injected: $total:$line"
[ "$total" -ge $((DURATION / 20)) ] || fail "only $total faults injected in ${DURATION}s"

rc=0
"$PYTHON_GRPC" "$top_srcdir/t/py/invariants.py" --ids "$IDS" \
	--redis "127.0.0.1:$REDIS_PORT" \
	--participant "order@127.0.0.1:$ORDER_PORT" \
	--participant "payment@127.0.0.1:$PAYMENT_PORT" \
	--participant "ship=order@127.0.0.1:$SHIP_PORT" \
	--node CreateShip=ship --nats "$NATS_URL" --stream SAGA \
	--wait "$SETTLE" --json "$LIB_TMP/invariants.json" || rc=$?
[ "$rc" -eq 0 ] || "$PYTHON_GRPC" "$top_srcdir/t/py/chaos_blame.py" "$IDS" \
	"$LIB_TMP/invariants.json" "$LIB_TMP/faults.log"
if [ -n "${CHAOS_REPORT:-}" ]; then
	cp "$LIB_TMP/invariants.json" "$CHAOS_REPORT"
	echo "{\"faults\": {$(for k in "${KINDS[@]}"; do printf '"%s": %d, ' "$k" "${NFAULT[$k]:-0}"; done)\"total\": $total}}" >"$CHAOS_REPORT.faults"
fi
# The checker itself: it must name a violation of each kind planted.
"$PYTHON_GRPC" "$top_srcdir/t/py/chaos_selftest.py" "$REDIS_PORT" \
	"$ORDER_PORT" "$PAYMENT_PORT" "$NATS_PORT" "$LIB_TMP" ||
	fail "the checker missed a planted violation"
[ "$rc" -eq 0 ] || fail "invariants violated (see above)"
pass "chaos ${DURATION}s: $total faults, every saga final, none half-done, no work left"
