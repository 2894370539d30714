#!/bin/bash
# t/supervisor.sh - the sagad master and its workers, as built: -t, flag
# errors, the worker count per config, respawn after kill -9, respawn
# backoff of a worker that dies at start, exit 2 = not respawned, SIGHUP
# (grow, replace, shrink, broken file), SIGTERM, kill -9 of the master (no
# orphans), daemon mode, SIGUSR1 log reopening, and a second sagad refused
# by the pidfile.
# Everything is polled with timeouts; nothing waits longer than it must.

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$PWD}
. "$top_srcdir/t/lib.sh"
lib_init

SAGAD=$top_builddir/sagad
export SAGAD_WORKER=$top_builddir/sagad-worker
[ -x "$SAGAD" ] && [ -x "$SAGAD_WORKER" ] || fail "build sagad first"
T=$LIB_TMP
unset POD_ID SAGAD_WORKER_CRASH_AT_START

# write_conf FILE ORDER_WORKERS PAY_WORKERS [PAY_CONCURRENCY]: async and
# throttling flows; CreateOrder is in both, so there are 2*ORDER+PAY
# workers, plus the one that delivers the async flow's callbacks. NATS and
# Redis are named but nothing listens there: sagad retries in the
# background.
write_conf() {
	cat >"$1" <<EOF
pod_id = "pod-t";
listen = "127.0.0.1:$(free_port)";
shutdown_timeout_ms = 3000;
nats  = { url = "nats://127.0.0.1:4222"; stream = "SAGA"; };
redis = { host = "127.0.0.1"; port = 6379; };
services = {
  order   = { address = "127.0.0.1:50051"; };
  payment = { address = "127.0.0.1:50052"; };
};
nodes = {
  CreateOrder   = { service = "order"; action = "/booking.Order/Create";
                    compensate = "/booking.Order/Cancel";
                    workers = $2; concurrency = 10; };
  CreatePayment = { service = "payment"; action = "/booking.Payment/Create";
                    workers = $3; concurrency = ${4:-5}; };
};
flows = {
  Booking           = { mode = "sync";       steps = [ "CreateOrder" ]; };
  AsyncBooking      = { mode = "async";      steps = [ "CreateOrder", "CreatePayment" ]; };
  ThrottlingBooking = { mode = "throttling"; steps = [ "CreateOrder" ]; };
};
EOF
}

# The workers of master $1: pids of its children titled "sagad: worker".
worker_pids() {
	ps -o pid=,args= --ppid "$1" 2>/dev/null |
		awk '$2 == "sagad:" && $3 == "worker" { print $1 }' | sort -n
}
nworkers() { worker_pids "$1" | wc -l; }
count_is() { [ "$(nworkers "$1")" -eq "$2" ]; }
log_has() { grep -q -- "$2" "$1"; }
# Alive and not a zombie: reparented processes wait for init to reap them.
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }
none_alive() { local p; for p in "$@"; do alive "$p" && return 1; done; return 0; }

# wait_for SECS CMD...: polls CMD every 50 ms.
wait_for() {
	local secs=$1 i
	shift
	for i in $(seq $((secs * 20))); do
		"$@" && return 0
		sleep 0.05
	done
	"$@"
}

# start_master LOG ARGS...: foreground master, pid in MPID.
start_master() {
	local log=$1
	shift
	"$SAGAD" -d "$@" >"$log" 2>&1 &
	MPID=$!
	track "$MPID"
}

# --- -t and flag errors ----------------------------------------------------------
write_conf "$T/good.conf" 2 1
out=$("$SAGAD" -t -c "$T/good.conf" 2>&1) || fail "-t on a good config: rc $?: $out"
[ "$out" = "configuration OK" ] || fail "-t printed: $out"
printf 'flows = { X = { mode = "sideways"; steps = [ "Nope" ]; }; };\n' >"$T/bad.conf"
out=$("$SAGAD" -t -c "$T/bad.conf" 2>&1); rc=$?
[ "$rc" -eq 1 ] || fail "-t on a bad config: rc $rc, want 1"
case $out in *"bad.conf:"*) ;; *) fail "-t did not name the file: $out" ;; esac
case $out in *"configuration OK"*) fail "-t said OK on a bad config" ;; esac
pass "-t: good config OK (0), bad config errors (1)"

"$SAGAD" --no-such-flag >"$T/flag.out" 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "unknown flag: rc $rc, want 2"
grep -q "unknown option --no-such-flag" "$T/flag.out" || fail "no message: $(cat "$T/flag.out")"
grep -q "^usage:" "$T/flag.out" || fail "no usage on an unknown flag"
"$SAGAD" -c >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "-c without FILE: rc $rc, want 2"
"$SAGAD_WORKER" --topic A/B >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "sagad-worker with missing arguments: rc $rc, want 2"
pass "flag errors exit 2 with usage; sagad-worker's too"

# --- count, titles, respawn ------------------------------------------------------
cp "$T/good.conf" "$T/sagad.conf"
start_master "$T/master.log" -c "$T/sagad.conf" -p "$T/m.pid"
wait_for 5 log_has "$T/master.log" "all 7 workers ready in" ||
	fail "no 'all 7 workers ready' log"
count_is "$MPID" 7 || fail "$(nworkers "$MPID") workers, want 7"
[ "$(cat "$T/m.pid")" = "$MPID" ] || fail "pidfile does not hold $MPID"
ps -o args= -p "$MPID" | grep -qx "sagad: master" || fail "master title: $(ps -o args= -p "$MPID")"
ps -o args= --ppid "$MPID" | grep -qx "sagad: worker AsyncBooking/CreateOrder #2" ||
	fail "worker titles: $(ps -o args= --ppid "$MPID")"
ps -o args= --ppid "$MPID" | grep -qx "sagad: worker ThrottlingBooking/CreateOrder #1" ||
	fail "worker titles: $(ps -o args= --ppid "$MPID")"
ps -o args= --ppid "$MPID" | grep -qx "sagad: worker callbacks #1" ||
	fail "no callbacks worker: $(ps -o args= --ppid "$MPID")"
pass "6 workers for the config (callbacks too), titled; master titled and in the pidfile"

victim=$(worker_pids "$MPID" | head -n1)
kill -9 "$victim"
wait_for 5 eval 'count_is "$MPID" 7 && ! worker_pids "$MPID" | grep -qx "$victim"' ||
	fail "worker $victim not replaced: $(worker_pids "$MPID" | tr '\n' ' ')"
grep -q "(pid $victim) killed by signal 9.*restarting in" "$T/master.log" ||
	fail "the loss of $victim was not logged"
pass "kill -9 of a worker: logged and respawned (6 again)"

# --- SIGHUP ------------------------------------------------------------------------
before=$(worker_pids "$MPID")
order_before=$(ps -o pid=,args= --ppid "$MPID" | awk '/CreateOrder/ { print $1 }' | sort -n)
pay_before=$(ps -o pid=,args= --ppid "$MPID" | awk '/CreatePayment/ { print $1 }')
write_conf "$T/sagad.conf" 4 2 7
kill -HUP "$MPID"
wait_for 5 eval 'count_is "$MPID" 12 && ! alive "$pay_before"' ||
	fail "after SIGHUP x2: $(nworkers "$MPID") workers, want 12; old CreatePayment $pay_before alive?"
for p in $order_before; do
	alive "$p" || fail "SIGHUP restarted CreateOrder worker $p, whose settings did not change"
done
wait_for 5 log_has "$T/master.log" "all 12 workers ready in" || fail "no 'all 12 workers ready'"
grep -q "concurrency 5 -> 7" "$T/master.log" || fail "the replacement was not logged"
pass "SIGHUP with doubled counts: 11 workers; unchanged ones kept, changed concurrency replaced"

before=$(worker_pids "$MPID")
cp "$T/bad.conf" "$T/sagad.conf"
kill -HUP "$MPID"
wait_for 5 log_has "$T/master.log" "reload failed" || fail "a broken reload was not logged"
wait_for 2 log_has "$T/master.log" "reload: .*sagad.conf:" || fail "the reload errors were not logged"
sleep 0.3
[ "$(worker_pids "$MPID")" = "$before" ] || fail "a broken reload touched the workers"
pass "SIGHUP with a broken config: errors logged, workers untouched"

write_conf "$T/sagad.conf" 1 1 7
kill -HUP "$MPID"
wait_for 5 count_is "$MPID" 5 || fail "after SIGHUP to 1+1: $(nworkers "$MPID") workers, want 5"
grep -q "retired: draining" "$T/master.log" || fail "retirement not logged"
pass "SIGHUP with fewer workers: the extra ones drained and gone"

# --- SIGTERM ---------------------------------------------------------------------
kids=$(worker_pids "$MPID")
kill -TERM "$MPID"
wait "$MPID"; rc=$?
[ "$rc" -eq 0 ] || fail "master exit status $rc after SIGTERM, want 0"
[ ! -e "$T/m.pid" ] || fail "pidfile left after SIGTERM"
none_alive $kids || fail "workers left after SIGTERM"
grep -q "all workers stopped" "$T/master.log" || fail "no 'all workers stopped'"
pass "SIGTERM: exit 0, pidfile removed, no worker left"

# --- a worker that dies at start: backoff --------------------------------------------
# A throttling flow of one node (no async flow, so no callbacks worker):
# its worker, and the legacy topic's, whose lines are left out below.
write_conf "$T/one.conf" 1 1
sed -i 's/steps = \[ "CreateOrder" \]; };/steps = [ "CreatePayment" ]; };/; /ThrottlingBooking/d; s/"CreateOrder", "CreatePayment"/"CreatePayment"/; s/mode = "async"/mode = "throttling"/' "$T/one.conf"
"$SAGAD" -t -c "$T/one.conf" >/dev/null || fail "one.conf is not valid"
SAGAD_WORKER_CRASH_AT_START=1 start_master "$T/crash.log" -c "$T/one.conf" -p "$T/c.pid"
wait_for 6 eval '[ "$(grep -v "worker legacy" "$T/crash.log" | grep -c "exited with status 1.*restarting")" -ge 5 ]' ||
	fail "the crashing worker was not restarted 5 times"
kill -TERM "$MPID"
wait "$MPID" || fail "master exit status $? after SIGTERM"
# The delays logged, and the gaps between the losses, must grow.
grep -v "worker legacy" "$T/crash.log" >"$T/crash1.log"
delays=$(sed -n 's/.*restarting in \([0-9]*\) ms$/\1/p' "$T/crash1.log" | head -n5 | tr '\n' ' ')
[ "$delays" = "100 200 400 800 1600 " ] || fail "backoff delays: $delays"
awk '/exited with status 1.*restarting/ {
	split(substr($1, 12), t, ":"); ms = t[1] * 3600000 + t[2] * 60000 + t[3] * 1000
	if (n > 0) gap[n] = ms - prev
	prev = ms; n++
} END {
	for (i = 2; i < n; i++)
		if (gap[i] <= gap[i - 1]) { print "gaps do not grow:", gap[i - 1], gap[i]; exit 1 }
	if (n < 5) exit 1
}' "$T/crash1.log" || fail "restart times do not show a growing delay"
pass "a worker dying at start: restarted after 100, 200, 400, 800 ms (log times agree)"

# --- exit 2: not respawned ------------------------------------------------------------
printf '#!/bin/sh\nexit 2\n' >"$T/fatal-worker"
chmod +x "$T/fatal-worker"
SAGAD_WORKER=$T/fatal-worker start_master "$T/fatal.log" -c "$T/one.conf" -p "$T/f.pid"
wait_for 5 log_has "$T/fatal.log" "exited with status 2: fatal, not restarting" ||
	fail "exit 2 was not logged as fatal"
sleep 0.5
[ "$(grep -c "exited with status 2" "$T/fatal.log")" -eq 2 ] || fail "an exit 2 worker was respawned (two slots: the node's and legacy)"
kill -TERM "$MPID"
wait "$MPID" || fail "master exit status $? after SIGTERM with a fatal slot"
pass "a worker exiting 2 is logged as fatal and not respawned"

# --- kill -9 of the master: no orphan ---------------------------------------------------
start_master "$T/orphan.log" -c "$T/good.conf" -p "$T/o.pid"
wait_for 5 log_has "$T/orphan.log" "all 7 workers ready in" || fail "orphan test: workers not ready"
kids=$(worker_pids "$MPID")
disown "$MPID"	# no "Killed" job notice
kill -9 "$MPID"
wait_for 2 none_alive $kids || fail "workers outlived a kill -9'd master by 2 s: $kids"
pass "kill -9 of the master: every worker gone within 2 s"

# --- daemon mode, and a second sagad on the same pidfile --------------------------------
write_conf "$T/daemon.conf" 1 1
echo "log_file = \"$T/daemon.log\";" >>"$T/daemon.conf"
"$SAGAD" -c "$T/daemon.conf" -p "$T/d.pid" || fail "daemon start: rc $?"
dpid=$(cat "$T/d.pid")
track "$dpid"
alive "$dpid" || fail "daemon $dpid from the pidfile is not running"
[ "$(ps -o ppid= -p "$dpid" | tr -d ' ')" != "$$" ] || fail "the daemon is still our child"
wait_for 5 log_has "$T/daemon.log" "all 5 workers ready in" || fail "daemon: workers not ready"
out=$("$SAGAD" -d -c "$T/daemon.conf" -p "$T/d.pid" 2>&1); rc=$?
[ "$rc" -eq 1 ] || fail "a second sagad on the same pidfile: rc $rc, want 1"
case $out in *"already running"*) ;; *) fail "second sagad said: $out" ;; esac
[ "$(cat "$T/d.pid")" = "$dpid" ] || fail "the second sagad changed the pidfile"
kids=$(worker_pids "$dpid")
mv "$T/daemon.log" "$T/daemon.log.1"
kill -USR1 "$dpid"
wait_for 5 eval '[ "$(grep -c "SIGUSR1: log file reopened" "$T/daemon.log" 2>/dev/null)" -eq 6 ]' ||
	fail "SIGUSR1: master and 5 workers did not reopen the log file"
grep -q "sagad\[$dpid\] info: SIGUSR1: log file reopened" "$T/daemon.log" || fail "the master did not reopen"
[ "$(worker_pids "$dpid")" = "$kids" ] || fail "SIGUSR1 changed the workers"
pass "SIGUSR1: master and workers reopen log_file (rotation), workers unchanged"

kill -TERM "$dpid"
wait_for 5 eval '! alive "$dpid"' || fail "daemon did not stop"
wait_for 2 none_alive $kids || fail "daemon workers left"
[ ! -e "$T/d.pid" ] || fail "daemon left its pidfile"
pass "daemon mode: pidfile, log_file; a second sagad refused; SIGTERM cleans up"

# A sanitizer build (configure --enable-sanitizers) reports on stderr, which
# the logs hold: any report fails the test.
! grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:" "$T"/*.log 2>/dev/null ||
	fail "sanitizer reports in the logs"
pass "no sanitizer report in any log"
