#!/bin/bash
# t/startup.sh - issue 11 case 9, the operator's side:
#  (a) Redis unreachable, then refusing us (NOAUTH), at start: each said once
#      in the log, without -v;
#  (b) Health (the empty name and saga.v1.Orchestrator) NOT_SERVING while
#      Redis is away, SERVING once it is back, and again after a restart;
#  (c) a sync Run that outlasts sagactl's deadline: exit 4 and a message
#      naming the saga, which `sagactl get` then shows ending;
#  (d) SIGUSR2 neither kills the master nor touches its pidfile;
#  (e) a pidfile in a missing directory: exit 1 saying so;
#  (f) the sample log_file is in the directory the systemd unit makes
#      writable.

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
PAYMENT=$top_builddir/examples/booking/payment
CTL=$top_builddir/sagactl
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] && [ -x "$PAYMENT" ] ||
	fail "build first"
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }

. "$top_srcdir/t/sync_lib.sh"

# (f) first: no server needed.
logdir=$(sed -n 's/^LogsDirectory=//p' "$top_srcdir/etc/sagad.service.in")
sample=$(sed -n 's/^# *log_file = "\([^"]*\)".*/\1/p' "$top_srcdir/etc/sagad.conf")
[ -n "$logdir" ] && [ -n "$sample" ] || fail "no LogsDirectory or sample log_file"
[ "$(dirname "$sample")" = "/var/log/$logdir" ] ||
	fail "sample log_file $sample is outside /var/log/$logdir"
pass "(f) the sample log_file is under the unit's LogsDirectory"

start_participant order "$ORDER"; ORDER_PORT=$PORT
start_participant payment "$PAYMENT"; PAYMENT_PORT=$PORT
REDIS_PORT=$(free_port)
SAGAD_PORT=$(free_port)
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "pod-a";
listen = "127.0.0.1:$SAGAD_PORT";
shutdown_timeout_ms = 3000;
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
services = {
  order   = { address = "127.0.0.1:$ORDER_PORT";   timeout_ms = 5000; };
  payment = { address = "127.0.0.1:$PAYMENT_PORT"; timeout_ms = 5000; };
};
nodes = {
  CreateOrder   = { service = "order";   action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel"; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    compensate = "/booking.Payment/Cancel"; };
};
flows = { Booking = { mode = "sync"; steps = [ "CreateOrder", "CreatePayment" ]; }; };
CONF

# (e) a pidfile whose directory is missing.
out=$("$top_builddir/sagad" -d -c "$LIB_TMP/sagad.conf" \
	-p "$LIB_TMP/no/such/dir/sagad.pid" 2>&1)
rc=$?
[ "$rc" -eq 1 ] || fail "(e) exit $rc: $out"
echo "$out" | grep -q "its directory $LIB_TMP/no/such/dir does not exist" ||
	fail "(e) the message: $out"
pass "(e) a pidfile in a missing directory: exit 1, the directory named"

# health [SERVICE]: SERVING or NOT_SERVING (or what sagactl said).
health() {
	"$CTL" -s "127.0.0.1:$SAGAD_PORT" -T 2000 health "$@" 2>&1
}
# wait_health WANT [SERVICE]: until Health says WANT, 10 s at most.
wait_health() {
	local want=$1 got
	shift
	for _ in $(seq 100); do
		got=$(health "$@")
		[ "$got" = "$want" ] && return 0
		sleep 0.1
	done
	fail "health $*: $got, want $want"
}
# wait_log PATTERN: until the log has it, 10 s at most.
wait_log() {
	for _ in $(seq 100); do
		grep -q "$1" "$LIB_TMP/sagad.log" && return 0
		sleep 0.1
	done
	cat "$LIB_TMP/sagad.log"
	fail "no \"$1\" in the log"
}

# (a), (b): Redis away at start, then refusing us, then there.
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_log "redis: unavailable: redis 127.0.0.1:$REDIS_PORT: Connection refused"
wait_health NOT_SERVING
wait_health NOT_SERVING saga.v1.Orchestrator
mkdir -p "$LIB_TMP/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$LIB_TMP/redis" \
	--save '' --requirepass sekrit --daemonize no >"$LIB_TMP/redis.log" 2>&1 &
REDIS_PID=$!
track "$REDIS_PID"
wait_port "$REDIS_PORT"
wait_log "redis: unavailable: redis 127.0.0.1:$REDIS_PORT refused sagad: it wants a password (NOAUTH"
[ "$(grep -c "Connection refused" "$LIB_TMP/sagad.log")" -eq 1 ] ||
	fail "(a) the refused connection was logged more than once"
wait_health NOT_SERVING
pass "(a) Redis unreachable, then refusing auth, at start: each logged once"
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null
start_redis "$REDIS_PORT"
wait_log "redis: connected"
wait_health SERVING
wait_health SERVING saga.v1.Orchestrator
stop_redis
wait_health NOT_SERVING
wait_health NOT_SERVING saga.v1.Orchestrator
restart_redis
wait_health SERVING
pass "(b) Health: NOT_SERVING while Redis is away, SERVING when it is back"

# (c) a Run that outlasts sagactl's deadline.
out=$("$CTL" -s "127.0.0.1:$SAGAD_PORT" -T 500 run Booking delay=order:2000 2>&1)
rc=$?
[ "$rc" -eq 4 ] || fail "(c) sagactl run: exit $rc: $out"
id=$(echo "$out" | sed -n 's/.*`sagactl get \([0-9a-f]*\)`.*/\1/p')
[ -n "$id" ] || fail "(c) no saga named: $out"
echo "$out" | grep -q "DEADLINE_EXCEEDED: no answer within 500 ms" ||
	fail "(c) the message: $out"
for _ in $(seq 100); do
	"$CTL" -s "127.0.0.1:$SAGAD_PORT" get "$id" >"$LIB_TMP/get.out" 2>&1
	grep -q "^state COMPLETED" "$LIB_TMP/get.out" && break
	sleep 0.1
done
grep -q "^state COMPLETED" "$LIB_TMP/get.out" ||
	{ cat "$LIB_TMP/get.out"; fail "(c) sagactl get $id"; }
pass "(c) a Run past sagactl's deadline: exit 4, the saga named, get shows its end"

# (d) SIGUSR2.
kill -USR2 "$SAGAD_PID"
wait_log "SIGUSR2: ignored"
sleep 0.3
kill -0 "$SAGAD_PID" || fail "(d) SIGUSR2 killed the master"
[ -s "$LIB_TMP/sagad.pid" ] || fail "(d) the pidfile is gone"
wait_health SERVING
kill -TERM "$SAGAD_PID"
wait "$SAGAD_PID"
rc=$?
[ "$rc" -eq 0 ] || fail "(d) exit $rc after SIGTERM"
[ ! -e "$LIB_TMP/sagad.pid" ] || fail "(d) pidfile left after SIGTERM"
pass "(d) SIGUSR2 is ignored; SIGTERM still stops cleanly"
