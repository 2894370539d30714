#!/bin/bash
# t/dashboard.sh - the dashboard in a real browser (issue 14): Debian's
# chromium, headless, driven by playwright-core (t/js, `npm install` there:
# ./run.sh does it) through GET / of a real sagad with its HTTP listener, a
# real redis-server and nats-server and a python3-grpcio participant
# (t/py/otlp_participant.py): the page loads, a saga started later appears
# running, the FAILED filter, a FAILED saga's timeline, Retry turns it
# COMPENSATED (t/js/dashboard_test.js). Screenshots go to the temp dir, or
# to DASHBOARD_SHOTS (docs/ holds the README's).

. "$top_srcdir/t/lib.sh"
lib_init

[ -x "$top_builddir/sagad" ] || fail "build first"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "no $CHROMIUM: skipped"; exit 77; }
command -v node >/dev/null || { echo "no node: skipped"; exit 77; }
[ -d "$top_srcdir/t/js/node_modules/playwright-core" ] ||
	{ echo "no playwright-core (cd t/js && npm install): skipped"; exit 77; }
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"

start_queue
start_redis
CALLS=$LIB_TMP/calls.jsonl
PART_PORT=$(free_port)
"$PYTHON_GRPC" "$top_srcdir/t/py/otlp_participant.py" "$PART_PORT" "$CALLS" \
	>"$LIB_TMP/participant.log" 2>&1 &
track $!
wait_port "$PART_PORT" || fail "otlp_participant.py did not listen"

SAGAD_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "pod-d";
listen = "127.0.0.1:$SAGAD_PORT";
shutdown_timeout_ms = 3000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
http = { listen = "127.0.0.1:$HTTP_PORT"; };
services = { t = { address = "127.0.0.1:$PART_PORT"; timeout_ms = 8000; }; };
nodes = {
  A     = { service = "t"; action = "/t.Svc/A"; compensate = "/t.Svc/UndoA"; retries = 0; };
  Stock = { service = "t"; action = "/t.Svc/Stock"; compensate = "/t.Svc/UndoFlaky";
            retries = 0; compensate_retries = 0; };
  B     = { service = "t"; action = "/t.Svc/B"; compensate = "/t.Svc/UndoB"; retries = 0; };
  BFail = { service = "t"; action = "/t.Svc/BFail"; compensate = "/t.Svc/UndoB"; retries = 0; };
  BSlow = { service = "t"; action = "/t.Svc/BSlow"; compensate = "/t.Svc/UndoB"; retries = 0; };
  Pay   = { service = "t"; action = "/t.Svc/Pay"; compensate = "/t.Svc/UndoPay";
            workers = 1; concurrency = 4; };
};
flows = {
  Trip      = { mode = "sync";  steps = [ "A", "B" ]; };
  TripFail  = { mode = "sync";  steps = [ "A", "BFail" ]; };
  TripStock = { mode = "sync";  steps = [ "Stock", "BFail" ]; };
  TripSlow  = { mode = "sync";  steps = [ "A", "BSlow" ]; };
  AsyncPay  = { mode = "async"; steps = [ "A", "Pay" ]; };
};
CONF
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_port "$HTTP_PORT" || fail "no HTTP listener"
CTL="$top_builddir/sagactl -s 127.0.0.1:$SAGAD_PORT"

# A history to look at: completed, compensated, async, and one FAILED whose
# compensation fails until the participant is healed.
for i in 1 2 3 4 5; do $CTL run Trip --id "d-ok-$i" >/dev/null || fail "d-ok-$i"; done
for i in 1 2; do $CTL run TripFail --id "d-comp-$i" >/dev/null; done
$CTL run AsyncPay --id d-async-1 --wait >/dev/null || fail "d-async-1"
$CTL run TripStock --id d-failed >/dev/null
$CTL get d-failed | grep -q '^state FAILED' ||
	fail "d-failed is not FAILED: $($CTL get d-failed)"

SHOTS=${DASHBOARD_SHOTS:-$LIB_TMP}
mkdir -p "$SHOTS"
node "$top_srcdir/t/js/dashboard_test.js" "http://127.0.0.1:$HTTP_PORT/" \
	"$top_builddir/sagactl" "127.0.0.1:$SAGAD_PORT" "$CALLS.heal" "$SHOTS" ||
	fail "dashboard_test.js"
$CTL get d-failed | grep -q '^state COMPENSATED' ||
	fail "d-failed after Retry: $($CTL get d-failed)"
pass "the dashboard in chromium: live sagas, the FAILED filter, a timeline, Retry"

# With auth (auth.tokens_file), when this sagad has it: 401 asks for the
# token, a read token gets 403 on the operator's calls and the page says so.
READ_TOKEN=read-token-0123456789abcdef
OP_TOKEN=operate-token-0123456789abcdef
printf '%s read viewer\n%s operate oncall\n' "$READ_TOKEN" "$OP_TOKEN" \
	>"$LIB_TMP/tokens"
chmod 600 "$LIB_TMP/tokens"
sed "s|^pod_id = .*|&\nauth = { tokens_file = \"$LIB_TMP/tokens\"; };|" \
	"$LIB_TMP/sagad.conf" >"$LIB_TMP/auth.conf"
if ! "$top_builddir/sagad" -t -c "$LIB_TMP/auth.conf" >/dev/null 2>&1; then
	echo "this sagad has no auth.tokens_file: the 401/403 part is skipped"
	exit 0
fi
kill -TERM "$SAGAD_PID"
wait "$SAGAD_PID" 2>/dev/null
rm -f "$CALLS.heal"
mv "$LIB_TMP/sagad.log" "$LIB_TMP/sagad-noauth.log"
start_sagad "$LIB_TMP/auth.conf" sagad
wait_port "$HTTP_PORT" || fail "no HTTP listener"
code=$(/usr/bin/python3 -c 'import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)' "http://127.0.0.1:$HTTP_PORT/api/v1/sagas")
if [ "$code" != 401 ]; then
	echo "the HTTP listener does not check tokens yet (GET /api/v1/sagas: $code): the 401/403 part is skipped"
	exit 0
fi
SAGAD_TOKEN=$OP_TOKEN $CTL run TripStock --id d-failed-2 >/dev/null
SAGAD_TOKEN=$OP_TOKEN $CTL get d-failed-2 | grep -q '^state FAILED' ||
	fail "d-failed-2 is not FAILED"
node "$top_srcdir/t/js/dashboard_test.js" --auth "http://127.0.0.1:$HTTP_PORT/" \
	"$READ_TOKEN" "$OP_TOKEN" d-failed-2 "$SHOTS" || fail "dashboard_test.js --auth"
pass "the dashboard with auth: 401 asks for the token; 403 disables the operator's buttons"
exit 0
