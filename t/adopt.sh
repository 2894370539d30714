#!/bin/bash
# t/adopt.sh - issue 11, case 4: a pod that goes away for good leaves its
# throttling work queued on its own subjects. Pod pa holds 12 throttling
# Runs behind one slow consumer and gets SIGTERM (it drains what is in
# flight, the rest stays queued); pod pb starts under another name (a
# rollout). pa's lease in saga:pods runs out, pb adopts pa: it runs workers
# on pa's throttling topics until they are empty, and every saga ends
# COMPLETED with its order ACTIVE; then the adoption ends.
#
# Then work lands on pa's subjects after its adoption ended (what the
# legacy topic's worker, the launch sweeper or a late confirmed publish can
# do: a saga's next step goes where the saga lives): pb finds it waiting on
# the gone pod's consumer, adopts pa again, runs it and lets go again. The
# test publishes the late work itself (RabbitMQ: with python3-pika).

. "$top_srcdir/t/lib.sh"
lib_init

need_booking

start_queue
start_redis
start_participant slow "$ORDER" --latency 400
SLOW_PORT=$PORT

pod_conf() { throttled_pod_conf "$@"; }

# NATS: a consumer unread for 2 s is deleted by nats-server (consumer_ttl):
# pa's, once its adoption ends; its late work is then found in the stream.
[ "$QUEUE" = nats ] &&
	QUEUE_CONF=${QUEUE_CONF/stream = \"SAGA\";/stream = \"SAGA\"; consumer_ttl = 2;}

PA_PORT=$(free_port)
start_pod pa "$PA_PORT"
PA_PID=$POD_PID
export PA_PORT SLOW_PORT

# 12 Runs held on pa; their callers give up after 2 s (pa is going away).
"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "Runs on pa"
import os, sys, time
sys.path.insert(0, sys.argv[1])
from sync_lib import Orch
o = Orch(int(os.environ["PA_PORT"]))
fs = [o.run_future("Throttled", {"amount": "1"}, "ad-%d" % i, timeout=2)
      for i in range(12)]
for f in fs:
    try:
        f.result()
    except Exception:
        pass
PY
kill -TERM "$PA_PID"
for _ in $(seq 100); do kill -0 "$PA_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PA_PID" 2>/dev/null && fail "pa did not stop"

PB_PORT=$(free_port)
start_pod pb "$PB_PORT"
export PB_PORT

"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "pa's sagas after pb adopted it"
import os, sys, time
sys.path.insert(0, sys.argv[1])
from sync_lib import Orch, Participant, R, S, equal, ok
o = Orch(int(os.environ["PB_PORT"]))
slow = Participant(int(os.environ["SLOW_PORT"]), "order")
for i in range(12):
    sid = "ad-%d" % i
    s = o.wait_final(sid, 40)
    equal(S.Name(s.state) if hasattr(s, "state") else str(s),
          "STATE_COMPLETED", sid)
    equal(R.Name(slow.record(sid).state), "RECORD_STATE_ACTIVE", sid + " order")
ok("the 12 throttling sagas pa held all ended COMPLETED")
PY
grep -q 'pod pa stopped renewing its lease: adopting' "$LIB_TMP/pb.log" ||
	fail "pb did not say it adopted pa"
grep -q 'SlowOrder@pa\|Throttled/SlowOrder' "$LIB_TMP/pb.log" ||
	fail "no worker of pb ran pa's topic"
for _ in $(seq 150); do
	grep -q 'pod pa: its throttling work is done here' "$LIB_TMP/pb.log" &&
		break
	sleep 0.1
done
grep -q 'pod pa: its throttling work is done here' "$LIB_TMP/pb.log" ||
	fail "the adoption of pa never ended"
pass "a dead pod's queued throttling work is adopted and run to its end"

export NATS_URL RABBITMQ_URL QUEUE
if [ "$QUEUE" = nats ]; then
	"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "pa's consumer after its adoption ended"
import os, sys, time
sys.path.insert(0, sys.argv[1])
import invariants as I
nc = I.Nats(os.environ["NATS_URL"])
for _ in range(150):
    c = nc.request("$JS.API.CONSUMER.INFO.SAGA.pod_pa_Throttled_SlowOrder", "")
    if c.get("error", {}).get("err_code") == 10014:
        break
    time.sleep(0.1)
else:
    sys.exit("pa's consumer is still there 15 s after its adoption ended: %r" % c)
PY
	pass "nats-server deleted the released pod's consumer after its consumer_ttl"
fi

# A late work message for one of pa's ended sagas, on pa's subject: a
# sagad.v1.Work without a record (the worker reads Redis, finds the saga
# ended, and acks it), published as sagad does: a JetStream publish, or a
# persistent message to the work exchange with the subject as its key.
export NATS_URL RABBITMQ_URL QUEUE
"$PYTHON_GRPC" - "$top_srcdir/t/py" "$top_srcdir/proto" <<'PY' ||
import os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
gen = tempfile.mkdtemp(prefix="adopt-gen.")
subprocess.run([os.environ.get("PROTOC") or "protoc", "-I" + sys.argv[2],
                "--python_out=" + gen, "sagad/v1/work.proto",
                "saga/v1/saga.proto"], check=True, cwd=sys.argv[2])
sys.path.insert(0, gen)
from sagad.v1 import work_pb2
w = work_pb2.Work(saga_id="ad-3", flow="Throttled", step=0, pod="pa", mode=3)
subject = "saga.work.pod.pa.Throttled.SlowOrder.do"
if os.environ["QUEUE"] == "nats":
    import invariants as I
    ack = I.Nats(os.environ["NATS_URL"]).request(subject,
                                                  w.SerializeToString())
    if "error" in ack or ack.get("seq", 0) == 0:
        sys.exit("publish: %r" % ack)
else:
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("saga.work", subject, w.SerializeToString(),
                     pika.BasicProperties(delivery_mode=2), mandatory=True)
    conn.close()
print("late work published on " + subject)
PY
	fail "publishing late work on pa's subject"
for _ in $(seq 300); do
	grep -q 'pod pa: work was queued on its subjects after its adoption ended: adopting it again' \
		"$LIB_TMP/pb.log" && break
	sleep 0.1
done
grep -q 'pod pa: work was queued on its subjects after its adoption ended' \
	"$LIB_TMP/pb.log" || fail "pb did not take pa back for its late work"
for _ in $(seq 200); do
	[ "$(grep -c 'pod pa: its throttling work is done here' "$LIB_TMP/pb.log")" -ge 2 ] &&
		break
	sleep 0.1
done
[ "$(grep -c 'pod pa: its throttling work is done here' "$LIB_TMP/pb.log")" -ge 2 ] ||
	fail "the second adoption of pa never ended"
# Taken back for its late work, never as a dead pod again: a release that
# was lost (an adoption ending while a beat was on its way to Redis) leaves
# pa unrenewed, and its lapsed lease gets it adopted anew.
[ "$(grep -c 'pod pa stopped renewing its lease' "$LIB_TMP/pb.log")" -eq 1 ] ||
	fail "pa was adopted as a dead pod again after its adoption ended"
"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "pa's consumer after the second adoption"
import json, os, sys
sys.path.insert(0, sys.argv[1])
if os.environ["QUEUE"] == "nats":
    import invariants as I
    nc = I.Nats(os.environ["NATS_URL"])
    c = nc.request("$JS.API.CONSUMER.INFO.SAGA.pod_pa_Throttled_SlowOrder", "")
    if c.get("num_pending") or c.get("num_ack_pending"):
        sys.exit("pa's consumer still holds work: %s" % json.dumps(c))
    st = nc.request("$JS.API.STREAM.INFO.SAGA",
                    json.dumps({"subjects_filter": "saga.work.pod.pa.>"}))
    left = sum((st.get("state", {}).get("subjects") or {}).values())
    if left:
        sys.exit("the stream still stores %d messages on pa's subjects" % left)
else:
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(os.environ["RABBITMQ_URL"]))
    q = conn.channel().queue_declare("saga.work.pod.pa.Throttled.SlowOrder.*",
                                     passive=True)
    if q.method.message_count:
        sys.exit("pa's queue still holds %d messages" % q.method.message_count)
    conn.close()
PY
pass "work queued on a gone pod's subjects after its adoption ended is adopted again"
