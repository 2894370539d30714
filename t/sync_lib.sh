# t/sync_lib.sh - what t/sync.sh and t/recovery.sh share, on top of
# t/lib.sh: python stubs, the participants, the raw-mode service, the test
# config and sagad itself. Source it after lib_init.

# shellcheck shell=bash

# sync_gen: python stubs of the API, the booking List and Health into
# $LIB_TMP/gen (exported as SYNC_GEN). health.proto is compiled from a copy
# outside a grpc/ directory so that its module does not shadow grpcio.
sync_gen() {
	SYNC_GEN=$LIB_TMP/gen
	mkdir -p "$SYNC_GEN" "$LIB_TMP/hproto"
	cp "$top_srcdir/proto/grpc/health/v1/health.proto" "$LIB_TMP/hproto/"
	"$PROTOC" -I"$top_srcdir/proto" --python_out="$SYNC_GEN" \
		"$top_srcdir/proto/saga/v1/saga.proto" || fail "protoc saga.proto"
	"$PROTOC" -I"$top_srcdir/examples/booking" --python_out="$SYNC_GEN" \
		"$top_srcdir/examples/booking/booking.proto" ||
		fail "protoc booking.proto"
	"$PROTOC" -I"$LIB_TMP/hproto" --python_out="$SYNC_GEN" \
		"$LIB_TMP/hproto/health.proto" || fail "protoc health.proto"
	export SYNC_GEN
}

# start_participant NAME PROGRAM ARGS...: on a free port; sets PORT, PID.
start_participant() {
	local name=$1 prog=$2
	shift 2
	PORT=$(free_port)
	"$prog" --listen "127.0.0.1:$PORT" --max-records 1000000 "$@" \
		>"$LIB_TMP/$name.log" 2>&1 &
	PID=$!
	track "$PID"
	wait_port "$PORT" || fail "$name did not listen on $PORT"
}

# start_raw: t/py/raw_server.py; sets STOCK_PORT.
start_raw() {
	STOCK_PORT=$(free_port)
	"$PYTHON_GRPC" "$top_srcdir/t/py/raw_server.py" "$STOCK_PORT" \
		>"$LIB_TMP/stock.log" 2>&1 &
	track $!
	wait_port "$STOCK_PORT" || fail "raw_server.py did not listen"
}

# sync_conf POD PORT: t/conf/sync.conf.in for this run, on stdout.
sync_conf() {
	sed -e "s|@POD@|$1|" -e "s|@LISTEN@|127.0.0.1:$2|" \
	    -e "s|@REDIS_PORT@|$REDIS_PORT|" \
	    -e "s|@ORDER@|127.0.0.1:${ORDER_PORT:-1}|" \
	    -e "s|@PAYMENT@|127.0.0.1:${PAYMENT_PORT:-1}|" \
	    -e "s|@SLOW@|127.0.0.1:${SLOW_PORT:-1}|" \
	    -e "s|@STOCK@|127.0.0.1:${STOCK_PORT:-1}|" \
	    "$top_srcdir/t/conf/sync.conf.in"
}

# start_sagad CONF NAME: sagad in the foreground, its log in NAME.log, its
# pidfile NAME.pid; sets SAGAD_PID. Waits for its listener.
start_sagad() {
	local conf=$1 name=$2 port
	port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)";/\1/p' "$conf")
	"$top_builddir/sagad" -t -c "$conf" >/dev/null 2>&1 ||
		{ "$top_builddir/sagad" -t -c "$conf"; fail "bad $conf"; }
	SAGAD_WORKER=$top_builddir/sagad-worker \
		"$top_builddir/sagad" -d ${SAGAD_ARGS:-} -c "$conf" -p "$LIB_TMP/$name.pid" \
		>>"$LIB_TMP/$name.log" 2>&1 &
	SAGAD_PID=$!
	track "$SAGAD_PID"
	wait_port "$port" || fail "$name did not listen on $port"
}

# stop_redis: SIGTERM and wait (it writes its append-only file).
stop_redis() {
	kill -TERM "$REDIS_PID"
	wait "$REDIS_PID" 2>/dev/null
}

# restart_redis: the same port and directory as start_redis, so the data
# that the append-only file holds survives.
restart_redis() {
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
		--save '' --appendonly yes --daemonize no \
		>>"$LIB_TMP/redis.log" 2>&1 &
	REDIS_PID=$!
	track "$REDIS_PID"
	wait_port "$REDIS_PORT"
}

# start_pod NAME PORT: sagad -v in the foreground with its real workers,
# configured by the caller's pod_conf NAME PORT; sets POD_PID once every
# worker is ready.
start_pod() {
	pod_conf "$1" "$2" >"$LIB_TMP/$1.conf"
	"$top_builddir/sagad" -t -c "$LIB_TMP/$1.conf" >/dev/null ||
		fail "bad $1.conf"
	SAGAD_WORKER=$top_builddir/sagad-worker "$top_builddir/sagad" -d -v \
		-c "$LIB_TMP/$1.conf" -p "$LIB_TMP/$1.pid" \
		>"$LIB_TMP/$1.log" 2>&1 &
	POD_PID=$!
	track "$POD_PID"
	wait_port "$2" || fail "$1 did not listen on $2"
	for _ in $(seq 100); do
		grep -q "all [0-9]* workers ready" "$LIB_TMP/$1.log" && return 0
		sleep 0.1
	done
	fail "$1: workers not ready"
}
