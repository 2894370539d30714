# t/lib.sh - shared by the integration scripts and run.sh: free loopback ports,
# real nats-server, rabbitmq-server and redis-server in a temp dir, and
# cleanup on every exit path. Source it; call lib_init first.
#
# QUEUE (nats, the default, or rabbitmq) is the bus the suites run on:
# need_queue, start_queue, restart_queue and $QUEUE_CONF start and name the
# broker it needs, so that one suite runs against either driver.
# KEEP_TMP=1 keeps the temp dir (logs, stores) after the run, to debug.

# shellcheck shell=bash

lib_init() {
	LIB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sagad-test.XXXXXX")
	LIB_PIDS=()
	LIB_HOOKS=()
	trap lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

lib_cleanup() {
	local rc=$? pid
	for pid in "${LIB_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${LIB_PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	for pid in "${LIB_HOOKS[@]}"; do
		$pid 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ] && [ -n "${LIB_TMP:-}" ]; then
		for f in "$LIB_TMP"/*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 30 lines)"; tail -n 30 "$f"
		done
	fi
	[ -n "${KEEP_TMP:-}" ] || { [ -n "${LIB_TMP:-}" ] && rm -rf "$LIB_TMP"; }
	exit "$rc"
}

# A port nobody listens on now. The kernel picks it; there is a small race
# until the server binds it, which the callers accept for tests.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local port=$1 secs=${2:-10} i
	for i in $(seq $((secs * 10))); do
		(exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$port after ${secs}s" >&2
	return 1
}

# start_nats: sets NATS_PORT, NATS_PID, NATS_URL; JetStream store in LIB_TMP.
# NATS_ARGS: more nats-server options (a benchmark's monitoring port, say).
start_nats() {
	NATS_PORT=${1:-$(free_port)}
	mkdir -p "$LIB_TMP/nats"
	# shellcheck disable=SC2086
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$LIB_TMP/nats" \
		${NATS_ARGS:-} >"$LIB_TMP/nats.log" 2>&1 &
	NATS_PID=$!
	LIB_PIDS+=("$NATS_PID")
	NATS_URL="nats://127.0.0.1:$NATS_PORT"
	wait_port "$NATS_PORT"
}

# start_rabbitmq [PORT]: a private rabbitmq-server (its own node name, epmd
# and distribution ports, config, empty plugins, store and logs in LIB_TMP);
# sets RABBITMQ_PORT, RABBITMQ_PID, RABBITMQ_URL (user sagad, vhost saga).
# Called again after stop_rabbitmq it restarts the same node on the same
# port and store. Erlang takes seconds to start: once per suite.
RABBITMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
start_rabbitmq() {
	local d=$LIB_TMP/rabbitmq
	if [ ! -d "$d" ]; then
		RABBITMQ_PORT=${1:-$(free_port)}
		RABBITMQ_EPMD_PORT=$(free_port)
		RABBITMQ_DIST_PORT=$(free_port)
		mkdir -p "$d/mnesia" "$d/log"
		echo '[].' >"$d/enabled_plugins"
		: >"$d/rabbitmq-env.conf"
		cat >"$d/rabbitmq.conf" <<-EOF
		listeners.tcp.default = $RABBITMQ_PORT
		loopback_users = none
		default_user = sagad
		default_pass = secret
		default_vhost = saga
		log.console = false
		log.file.level = warning
		EOF
		# epmd outlives the node: stop it last, by its port.
		LIB_HOOKS+=("epmd -port $RABBITMQ_EPMD_PORT -kill")
	fi
	(
		export HOME=$d RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		    RABBITMQ_NODE_PORT=$RABBITMQ_PORT \
		    RABBITMQ_NODENAME=sagad$RABBITMQ_PORT@localhost \
		    RABBITMQ_USE_LONGNAME=false \
		    RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log \
		    RABBITMQ_CONFIG_FILE=$d/rabbitmq \
		    RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config \
		    RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf \
		    RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins \
		    RABBITMQ_PID_FILE=$d/rabbitmq.pid \
		    RABBITMQ_DIST_PORT=$RABBITMQ_DIST_PORT \
		    ERL_EPMD_PORT=$RABBITMQ_EPMD_PORT
		exec setsid "$RABBITMQ_BIN/rabbitmq-server"
	) >>"$LIB_TMP/rabbitmq.log" 2>&1 &
	RABBITMQ_PID=$!
	LIB_PIDS+=("$RABBITMQ_PID")
	# Its process group (the VM's helpers) goes with it on every exit path.
	LIB_HOOKS+=("kill -KILL -- -$RABBITMQ_PID")
	RABBITMQ_URL="amqp://sagad:secret@127.0.0.1:$RABBITMQ_PORT/saga"
	wait_port "$RABBITMQ_PORT" 60
}

# stop_rabbitmq [SIGNAL]: TERM (a clean stop) or KILL the node and wait.
stop_rabbitmq() {
	kill -"${1:-TERM}" -- -"$RABBITMQ_PID" 2>/dev/null
	wait "$RABBITMQ_PID" 2>/dev/null
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$RABBITMQ_PORT") 2>/dev/null || break
		sleep 0.1
	done
}

# need_queue: skips the suite (exit 77) without the broker QUEUE names.
QUEUE=${QUEUE:-nats}
need_queue() {
	case $QUEUE in
	nats)	command -v nats-server >/dev/null ||
			{ echo "no nats-server: skipped"; exit 77; } ;;
	rabbitmq) [ -x "$RABBITMQ_BIN/rabbitmq-server" ] ||
			{ echo "no rabbitmq-server: skipped"; exit 77; } ;;
	*)	fail "QUEUE=$QUEUE: expected nats or rabbitmq" ;;
	esac
}

# start_queue: the broker of QUEUE; sets QUEUE_URL and QUEUE_CONF, the
# sagad.conf line that points sagad at it.
start_queue() {
	case $QUEUE in
	nats)
		start_nats || fail "nats-server did not start (nats.log)"
		QUEUE_URL=$NATS_URL
		QUEUE_CONF="nats = { url = \"$NATS_URL\"; stream = \"SAGA\"; };"
		;;
	rabbitmq)
		start_rabbitmq || fail "rabbitmq-server did not start (rabbitmq.log)"
		QUEUE_URL=$RABBITMQ_URL
		QUEUE_CONF="queue = \"rabbitmq\"; rabbitmq = { url = \"$RABBITMQ_URL\"; queue_type = \"${RABBITMQ_QUEUE_TYPE:-quorum}\"; };"
		;;
	esac
}

# restart_queue [PAUSE]: the broker goes away and comes back on the same
# port with the same store. nats-server is stopped cleanly; rabbitmq-server
# is killed -9 (RABBITMQ_STOP=TERM for a clean stop).
restart_queue() {
	case $QUEUE in
	nats)	restart_nats "$@" ;;
	rabbitmq)
		stop_rabbitmq "${RABBITMQ_STOP:-KILL}"
		sleep "${1:-1}"
		start_rabbitmq
		;;
	esac
}

# start_redis: sets REDIS_PORT, REDIS_PID.
start_redis() {
	REDIS_PORT=${1:-$(free_port)}
	mkdir -p "$LIB_TMP/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
		--save '' --appendonly yes --daemonize no \
		>"$LIB_TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	LIB_PIDS+=("$REDIS_PID")
	wait_port "$REDIS_PORT"
}

# track PID: stop it on exit too.
track() {
	LIB_PIDS+=("$1")
}

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

pass() {
	echo "ok - $*"
}
