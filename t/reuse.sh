#!/bin/bash
# t/reuse.sh - issue 11 case 6: a Run with a known saga id but another flow
# is refused ALREADY_EXISTS, whether the saga has ended or is under way on
# this master (sync, throttling) or launched (async), and runs nothing; a
# Run with the same id and flow keeps its idempotent answer. Through
# python3-grpcio and sagactl.

. "$top_srcdir/t/lib.sh"
lib_init
. "$top_srcdir/t/ids_lib.sh"

"$PYTHON_GRPC" - <<'PY' || fail "reuse"
import os, sys
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "t", "py"))
from sync_lib import (Orch, Participant, S, SC, check, equal, expect_error,
                      ok)

o = Orch(int(os.environ["SAGAD_PORT"]))
order = Participant(int(os.environ["ORDER_PORT"]), "order")

# Ended: the same flow answers the saga, another ALREADY_EXISTS.
s = o.run("Booking", request_id="re-1")
equal(S.Name(s.state), "STATE_COMPLETED", "first Run")
again = o.run("Booking", request_id="re-1")
equal((again.id, again.flow, again.state), (s.id, s.flow, s.state),
      "the same flow again")
d = expect_error(SC.ALREADY_EXISTS, o.run, "Shop", request_id="re-1")
check("re-1" in d and "Booking" in d and "Shop" in d,
      "the message names the id and both flows: %r" % d)
expect_error(SC.ALREADY_EXISTS, o.run, "AsyncBooking", request_id="re-1")
equal(o.get("re-1").flow, "Booking", "the stored saga")
equal(order.record("re-1").creates, 1, "order creates of re-1")
ok("a known id with another flow is ALREADY_EXISTS; the same flow joins")

# Under way on this master: a sync saga, a throttling one held.
slow = {"delay": "order:1500"}
f = o.run_future("Booking", slow, request_id="re-2")
t = o.run_future("ThrottlingBooking", slow, request_id="re-3")
import time
time.sleep(0.5)
expect_error(SC.ALREADY_EXISTS, o.run, "Shop", request_id="re-2")
expect_error(SC.ALREADY_EXISTS, o.run, "Booking", request_id="re-3")
equal(S.Name(f.result().state), "STATE_COMPLETED", "the sync saga")
equal(S.Name(t.result().state), "STATE_COMPLETED", "the throttling saga")
equal(order.record("re-2").creates, 1, "order creates of re-2")
equal(order.record("re-3").creates, 1, "order creates of re-3")
ok("a Run of another flow does not join a saga under way")

# Async: launched, then asked again with another flow and with its own.
a = o.run("AsyncBooking", request_id="re-4")
expect_error(SC.ALREADY_EXISTS, o.run, "Booking", request_id="re-4")
expect_error(SC.ALREADY_EXISTS, o.run, "ThrottlingBooking", request_id="re-4")
equal(S.Name(o.wait_final("re-4", 20).state), "STATE_COMPLETED", "re-4")
equal(o.run("AsyncBooking", request_id="re-4").id, "re-4", "same flow")
equal(order.record("re-4").creates, 1, "order creates of re-4")
ok("an async saga's id with another flow is ALREADY_EXISTS")
PY

out=$("$top_builddir/sagactl" -s "127.0.0.1:$SAGAD_PORT" run --id re-1 Shop 2>&1)
rc=$?
[ "$rc" -eq 1 ] || fail "sagactl run --id re-1 Shop: exit $rc: $out"
echo "$out" | grep -q "ALREADY_EXISTS" || fail "sagactl says: $out"
pass "sagactl run of a known id with another flow: exit 1, ALREADY_EXISTS"
