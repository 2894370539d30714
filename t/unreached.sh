#!/bin/bash
# t/unreached.sh - issue 11, case 8: a step whose participant refuses every
# connection never reached it, so it needs no compensation. CreatePayment's
# service points at a port nobody listens on: a sync and an async Booking
# end COMPENSATED (not FAILED "an operator must look"), CreateOrder undone,
# CreatePayment's step COMPENSATED "never reached the participant" with
# every attempt counted unsent, and no Cancel tried on payment (its
# attempts, which count compensation calls too, are the action's 3).

. "$top_srcdir/t/lib.sh"
lib_init

ORDER=$top_builddir/examples/booking/order
[ -x "$top_builddir/sagad" ] && [ -x "$ORDER" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"
sync_gen

start_queue
start_redis
start_participant order "$ORDER"
ORDER_PORT=$PORT
PAYMENT_PORT=$(free_port)	# nobody listens there
SAGAD_PORT=$(free_port)
async_conf pod-a "$SAGAD_PORT" 1 8 >"$LIB_TMP/sagad.conf"
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 4
export ORDER_PORT PAYMENT_PORT SAGAD_PORT

"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "unreached participant"
import os, sys
sys.path.insert(0, sys.argv[1])
from sync_lib import Orch, Participant, R, S, equal, check, ok

o = Orch(int(os.environ["SAGAD_PORT"]))
order = Participant(int(os.environ["ORDER_PORT"]), "order")
for flow, sid in (("Booking", "unr-sync"), ("AsyncBooking", "unr-async")):
    o.run(flow, {"amount": "5"}, sid)
    s = o.wait_final(sid, 30)
    equal(S.Name(s.state), "STATE_COMPENSATED", sid + " state")
    pay = s.steps[1]
    equal(S.Name(pay.state), "STATE_COMPENSATED", sid + " CreatePayment")
    check("never reached" in pay.error, sid + " says never reached: " +
          pay.error)
    equal(pay.unsent_attempts, pay.attempts, sid + " unsent attempts")
    # attempts counts compensation calls too: 3 = the action's 1 + 2
    # retries, and no Cancel tried.
    check(pay.attempts == 3, sid + " 1 call + 2 retries, no Cancel; got %d" %
          pay.attempts)
    equal(S.Name(s.steps[0].state), "STATE_COMPENSATED",
          sid + " CreateOrder undone")
    equal(R.Name(order.record(sid).state), "RECORD_STATE_CANCELLED",
          sid + " order record")
    ok("%s %s: COMPENSATED, the unreachable step not undone" % (flow, sid))
PY
pass "a participant never reached is not compensated (sync and async)"
