#!/bin/bash
# t/json.sh - sagactl's --json output is JSON whatever the strings hold: a
# sync saga whose step fails with an error holding a quote and a newline
# (t/py/quote_server.py), read back with `sagactl --json get` and
# `sagactl --json watch`, and every line parsed by python's json module with
# the error intact. Real redis-server, participant and sagad.

. "$top_srcdir/t/lib.sh"
lib_init

SAGAD=$top_builddir/sagad
CTL=$top_builddir/sagactl
[ -x "$SAGAD" ] && [ -x "$CTL" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }

start_redis
CARD_PORT=$(free_port)
"$PYTHON_GRPC" "$top_srcdir/t/py/quote_server.py" "$CARD_PORT" \
	>"$LIB_TMP/card.log" 2>&1 &
track $!
wait_port "$CARD_PORT" || fail "quote_server.py did not listen"

SAGAD_PORT=$(free_port)
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "json";
listen = "127.0.0.1:$SAGAD_PORT";
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
services = { card = { address = "127.0.0.1:$CARD_PORT"; timeout_ms = 2000; }; };
nodes = { Charge = { service = "card"; action = "/quote.Card/Charge";
                     compensate = "/quote.Card/Refund"; }; };
flows = { Pay = { mode = "sync"; steps = [ "Charge" ]; }; };
CONF
"$SAGAD" -t -c "$LIB_TMP/sagad.conf" >/dev/null || fail "bad sagad.conf"
SAGAD_WORKER=$top_builddir/sagad-worker "$SAGAD" -d -c "$LIB_TMP/sagad.conf" \
	-p "$LIB_TMP/sagad.pid" >"$LIB_TMP/sagad.log" 2>&1 &
track $!
wait_port "$SAGAD_PORT" || fail "sagad did not listen"

C="$CTL -s 127.0.0.1:$SAGAD_PORT --json"
# A compensated saga makes sagactl exit 1: only the output counts here.
$C run Pay --id json-1 >"$LIB_TMP/run.json" || true
$C get json-1 >"$LIB_TMP/get.json" || true
$C watch json-1 >"$LIB_TMP/watch.json" || true

# check FILE WHAT: each line of FILE parses, and the saga's error (get, run)
# or the failed step's event error (watch) holds the message unchanged.
check() {
	/usr/bin/python3 - "$1" "$2" <<'PY' || fail "$2 --json: $(cat "$1")"
import json, sys
path, what = sys.argv[1], sys.argv[2]
want = 'card "4242"\nrefused'
lines = [l for l in open(path, encoding="utf-8").read().splitlines() if l]
assert lines, "no output"
objs = [json.loads(l) for l in lines]
if what == "watch":
    errs = [o["error"] for o in objs if o["step"] == "Charge" and o["error"]]
    assert any(want in e for e in errs), errs
    assert objs[-1]["state"] == "STATE_COMPENSATED", objs[-1]
else:
    assert len(objs) == 1, objs
    s = objs[0]
    assert s["state"] == "STATE_COMPENSATED", s
    assert want in s["error"], s["error"]
PY
	pass "sagactl $2 --json of an error with a quote and a newline is JSON"
}
check "$LIB_TMP/run.json" run
check "$LIB_TMP/get.json" get
check "$LIB_TMP/watch.json" watch
