#!/bin/bash
# t/ids.sh - issue 11 case 7: a Run whose saga id (request_id or
# x-request-id), gRPC metadata or context keys would make every step call
# fail is refused INVALID_ARGUMENT at once and stores nothing: ids and
# metadata values must be printable ASCII (gRPC's rule), context keys UTF-8
# without control characters. A traceparent that is not W3C's format is
# dropped: the saga runs and its participant never sees it; a valid one is
# forwarded as it came. python3-grpcio (and sagad's own client) refuse to
# send non-ASCII metadata, so those Runs go through t/py/raw_run.py, plain
# HTTP/2 with python3-h2.

. "$top_srcdir/t/lib.sh"
lib_init
. "$top_srcdir/t/ids_lib.sh"

"$PYTHON_GRPC" -c 'import h2' 2>/dev/null ||
	{ echo "no python3-h2: skipped"; exit 77; }

# run_raw HEX [K=V]...: a Run with the request bytes HEX and metadata K=V
# (\xHH escapes allowed); prints its status and message.
run_raw() {
	"$PYTHON_GRPC" "$top_srcdir/t/py/raw_run.py" "$SAGAD_PORT" "$@" 2>&1
}

# A RunRequest of flow Shop, hex: field 1 "Shop", context reserve_req=x.
SHOP=0a0453686f701a140a0b726573657276655f7265711205783d313233
TP_BAD='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\xe9'
out=$(run_raw "$SHOP" "traceparent=$TP_BAD")
echo "$out" | grep -q "^status=3$" ||
	fail "traceparent with byte 0xe9: $out"
echo "$out" | grep -q "message=metadata traceparent: byte 0xe9" ||
	fail "the message: $out"
out=$(run_raw "$SHOP" 'x-request-id=caf\xc3\xa9-2')
echo "$out" | grep -q "^status=3$" ||
	fail "x-request-id caf\\xc3\\xa9-2: $out"
# nghttp2 itself refuses control characters in a header value: the stream
# is reset (PROTOCOL_ERROR) before any handler sees it. Either way, no saga.
out=$(run_raw "$SHOP" 'x-note=a\x01b' 'x-request-id=ctl-1')
echo "$out" | grep -q "^status=3$\|^reset=1$" ||
	fail "a control character in metadata: $out"
# Context key "k\xff" (invalid UTF-8): field 3 { 1: "k\xff", 2: "v" }.
out=$(run_raw 0a0453686f701a070a026bff120176)
echo "$out" | grep -q "^status=3$" ||
	fail "context key k\\xff: $out"
echo "$out" | grep -q "message=context: key #1: byte 0xff" ||
	fail "the message: $out"
pass "non-ASCII or control bytes in metadata, bad context keys: INVALID_ARGUMENT"

"$PYTHON_GRPC" - <<'PY' || fail "ids"
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["top_srcdir"], "t", "py"))
from sync_lib import Orch, S, SC, check, equal, expect_error, ok, rpc_error

o = Orch(int(os.environ["SAGAD_PORT"]))
ctx = {"reserve_req": b"x=1"}
for bad in ("caf\u00e9-1", "a\x01b", "tab\there", "del\x7f"):
    d = expect_error(SC.INVALID_ARGUMENT, o.run, "Shop", ctx,
                     request_id=bad)
    check("request_id: expected printable ASCII" in d, "message %r" % d)
for fl in ("AsyncBooking", "ThrottlingBooking"):
    expect_error(SC.INVALID_ARGUMENT, o.run, fl, request_id="caf\u00e9-1")
equal(len(o.list_all()[0]), 0, "sagas stored after the refusals")
code, _ = rpc_error(o.get, "ctl-1")
equal(code, SC.NOT_FOUND, "the saga of a Run with a control character")
ok("a saga id with non-ASCII or control characters: INVALID_ARGUMENT, "
   "nothing stored")

raw = o.channel.unary_unary("/shop.Stock/Calls")
stock = None
import grpc
stock = grpc.insecure_channel("127.0.0.1:%s" % os.environ["STOCK_PORT"])
calls_rpc = stock.unary_unary("/shop.Stock/Calls")


def tp_seen(saga_id):
    calls = json.loads(calls_rpc(b"", timeout=5))
    mine = [c for c in calls if c["metadata"].get("x-request-id") == saga_id]
    check(mine, "no call of %s reached the service" % saga_id)
    return [c["metadata"].get("traceparent") for c in mine]


good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
cases = {
    "tp-good": good,
    "tp-upper": good.upper(),
    "tp-zero-trace": "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
    "tp-zero-parent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 +
                      "-01",
    "tp-short": "00-4bf92f35-00f067aa0ba902b7-01",
    "tp-ff": "ff" + good[2:],
    "tp-v00-extra": good + "-x",
    "tp-junk": "hello",
}
for sid, tp in cases.items():
    s = o.run("Shop", ctx, request_id=sid, metadata=[("traceparent", tp)])
    equal(S.Name(s.state), "STATE_COMPLETED", "saga %s" % sid)
    want = [tp] if sid == "tp-good" else [None]
    equal(tp_seen(sid), want, "traceparent the participant got for %s" % sid)
ok("a valid traceparent is forwarded; an invalid one is dropped, the saga "
   "runs")

a = o.run("AsyncBooking", request_id="tp-async",
          metadata=[("traceparent", good.upper())])
equal(S.Name(o.wait_final("tp-async", 20).state), "STATE_COMPLETED",
      "async saga with a bad traceparent")
ok("an async saga with an invalid traceparent completes")
PY
