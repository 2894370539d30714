#!/bin/bash
# t/recovery.sh - sync sagas outlive the sagad that ran them: kill -9 in the
# middle of a load, then (1) the same pod restarted, (2) another sagad on the
# same Redis, finishes every saga within the lease (redis.lease_ms = 2000 in
# t/conf/sync.conf.in), compensating the ones cut off, with no orphan left at
# the participants; and (3) Redis restarted under load leaves no saga stuck
# and no Run hanging. t/py/sync_recovery.py drives and checks.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
SAGAD=$top_builddir/sagad
PY=$top_srcdir/t/py/sync_recovery.py
[ -x "$SAGAD" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"
sync_gen
export LIB_TMP

start_redis
start_participant order "$ORDER" --latency 300
ORDER_PORT=$PORT
start_participant payment "$PAYMENT" --latency 300
PAYMENT_PORT=$PORT
export ORDER_PORT PAYMENT_PORT

# rconf POD PORT: the test config, with CreatePayment's timeout above the
# participants' 300 ms latency.
rconf() {
	sync_conf "$1" "$2" | sed 's/timeout_ms = 300;/timeout_ms = 2000;/'
}

run_py() {
	"$PYTHON_GRPC" "$PY" "$@" || fail "sync_recovery.py $*"
}

# reap PID: after kill -9, so that the next check sees it gone.
reap() {
	{ wait "$1"; } 2>/dev/null
	kill -0 "$1" 2>/dev/null && fail "pid $1 outlived kill -9"
}

# 1. kill -9, then the same pod again.
A_PORT=$(free_port)
rconf pod-a "$A_PORT" >"$LIB_TMP/a.conf"
start_sagad "$LIB_TMP/a.conf" a
SAGAD_PORT=$A_PORT SAGAD_PID=$SAGAD_PID run_py load restart 20 700
reap "$SAGAD_PID"
start_sagad "$LIB_TMP/a.conf" a
A_PID=$SAGAD_PID
SAGAD_PORT=$A_PORT run_py verify restart 8

# 2. Two sagads on one Redis: kill -9 the first, the second recovers.
B_PORT=$(free_port)
rconf pod-b "$B_PORT" >"$LIB_TMP/b.conf"
start_sagad "$LIB_TMP/b.conf" b
B_PID=$SAGAD_PID
SAGAD_PORT=$A_PORT SAGAD_PID=$A_PID run_py load peer 20 700
reap "$A_PID"
SAGAD_PORT=$B_PORT run_py verify peer 8
grep -q "recovering a RUNNING saga whose owner died" "$LIB_TMP/b.log" ||
	fail "b.log does not say it recovered sagas"
pass "the second sagad's log names the sagas it recovered"

# 3. Redis restarted (same port, append-only file) under load.
SAGAD_PORT=$B_PORT "$PYTHON_GRPC" "$PY" churn churn 5 20 &
CHURN=$!
sleep 2
stop_redis
sleep 1
restart_redis
wait "$CHURN" || fail "sync_recovery.py churn"
SAGAD_PORT=$B_PORT run_py settle churn 8
kill -0 "$B_PID" || fail "sagad b died"
