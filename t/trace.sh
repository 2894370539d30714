#!/bin/bash
# t/trace.sh - tracing end to end (issue 14): a real nats-server -js,
# redis-server, sagad with its sagad-worker processes and tracing on, a
# python3-grpcio participant that records the metadata of each call
# (t/py/otlp_participant.py) and a python OTLP/HTTP receiver that decodes
# the protobuf with stubs protoc made of proto/opentelemetry
# (t/py/otlp_receiver.py). For a sync, a failing and an async saga: the Run
# span, the saga span and one span per step call, all of one trace
# parented on the caller's traceparent, and the participant got each step
# span's id as its traceparent; an invalid traceparent starts a fresh
# trace; an unsampled one is propagated, not exported. Then the collector
# dies and every saga still ends (t/py/otlp_test.py).

. "$top_srcdir/t/lib.sh"
lib_init

[ -x "$top_builddir/sagad" ] || fail "build first"
[ -x "${PYTHON_GRPC:-}" ] || { echo "no python3 with grpcio: skipped"; exit 77; }
[ -x "${PROTOC:-}" ] || { echo "no protoc: skipped"; exit 77; }
command -v redis-server >/dev/null || { echo "no redis-server: skipped"; exit 77; }
need_queue

. "$top_srcdir/t/sync_lib.sh"
. "$top_srcdir/t/async_lib.sh"
sync_gen
OTLP_GEN=$LIB_TMP/otlpgen
mkdir -p "$OTLP_GEN"
"$PROTOC" -I"$top_srcdir/proto" --python_out="$OTLP_GEN" \
	"$top_srcdir"/proto/opentelemetry/proto/common/v1/common.proto \
	"$top_srcdir"/proto/opentelemetry/proto/resource/v1/resource.proto \
	"$top_srcdir"/proto/opentelemetry/proto/trace/v1/trace.proto \
	"$top_srcdir"/proto/opentelemetry/proto/collector/trace/v1/trace_service.proto ||
	fail "protoc --python_out of the OTLP protos"
export OTLP_GEN

start_queue
start_redis
SPANS=$LIB_TMP/spans.jsonl
CALLS=$LIB_TMP/calls.jsonl
export SPANS CALLS
OTLP_PORT=$(free_port)
"$PYTHON_GRPC" "$top_srcdir/t/py/otlp_receiver.py" "$OTLP_PORT" "$SPANS" \
	>"$LIB_TMP/receiver.log" 2>&1 &
RECEIVER_PID=$!
track "$RECEIVER_PID"
wait_port "$OTLP_PORT" || fail "otlp_receiver.py did not listen"
PART_PORT=$(free_port)
"$PYTHON_GRPC" "$top_srcdir/t/py/otlp_participant.py" "$PART_PORT" "$CALLS" \
	>"$LIB_TMP/participant.log" 2>&1 &
track $!
wait_port "$PART_PORT" || fail "otlp_participant.py did not listen"

SAGAD_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat >"$LIB_TMP/sagad.conf" <<CONF
pod_id = "pod-t";
listen = "127.0.0.1:$SAGAD_PORT";
shutdown_timeout_ms = 3000;
$QUEUE_CONF
redis = { host = "127.0.0.1"; port = $REDIS_PORT; };
tracing = { otlp_endpoint = "http://127.0.0.1:$OTLP_PORT/v1/traces"; sample_ratio = 1.0; };
http = { listen = "127.0.0.1:$HTTP_PORT"; };
services = { t = { address = "127.0.0.1:$PART_PORT"; timeout_ms = 2000; }; };
nodes = {
  A     = { service = "t"; action = "/t.Svc/A"; compensate = "/t.Svc/UndoA";
            retries = 0; workers = 1; concurrency = 8; };
  B     = { service = "t"; action = "/t.Svc/B"; compensate = "/t.Svc/UndoB";
            retries = 0; workers = 1; concurrency = 8; };
  BFail = { service = "t"; action = "/t.Svc/BFail"; compensate = "/t.Svc/UndoB";
            retries = 0; };
  Stock = { service = "t"; action = "/t.Svc/Stock"; compensate = "/t.Svc/UndoFlaky";
            retries = 0; compensate_retries = 0; };
};
flows = {
  Trip      = { mode = "sync";  steps = [ "A", "B" ]; };
  TripStock = { mode = "sync";  steps = [ "Stock", "BFail" ]; };
  TripFail  = { mode = "sync";  steps = [ "A", "BFail" ]; };
  AsyncTrip = { mode = "async"; steps = [ "A", "B" ]; };
};
CONF
start_sagad "$LIB_TMP/sagad.conf" sagad
wait_workers 2
export SAGAD_PORT HTTP_PORT

"$PYTHON_GRPC" "$top_srcdir/t/py/otlp_test.py" main || fail "otlp_test.py main"

# span_count OUTCOME: sagad_trace_spans_total{outcome=OUTCOME} of /metrics.
span_count() {
	/usr/bin/python3 -c 'import sys, urllib.request
for l in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines():
    if l.startswith("sagad_trace_spans_total{outcome=\"%s\"}" % sys.argv[2]):
        print(int(l.split()[-1]))' "http://127.0.0.1:$HTTP_PORT/metrics" "$1"
}
exported=$(span_count exported)
[ "${exported:-0}" -ge 30 ] && [ "$(span_count dropped)" = 0 ] ||
	fail "/metrics: $exported spans exported, $(span_count dropped) dropped"
pass "/metrics counts the pod's spans: $exported exported (master and workers), none dropped"

# The collector dies: sagas go on, spans are dropped and counted, and the
# log says so (once in a while, not once a span).
kill -TERM "$RECEIVER_PID"
wait "$RECEIVER_PID" 2>/dev/null
"$PYTHON_GRPC" "$top_srcdir/t/py/otlp_test.py" dead || fail "otlp_test.py dead"
for _ in $(seq 50); do
	grep -q 'tracing: the collector at 127.0.0.1:[0-9]* did not answer' \
		"$LIB_TMP/sagad.log" && break
	sleep 0.1
done
grep -q 'tracing: the collector at 127.0.0.1:[0-9]* did not answer; [0-9]* spans dropped' \
	"$LIB_TMP/sagad.log" || fail "no log line about the dead collector"
n=$(grep -c 'tracing: the collector' "$LIB_TMP/sagad.log")
[ "$n" -le 10 ] || fail "$n log lines about the dead collector"
dropped=$(span_count dropped)
[ "${dropped:-0}" -gt 0 ] || fail "/metrics: no span counted dropped"
pass "a dead collector: $dropped spans dropped, counted in /metrics and said in $n log lines"
exit 0
