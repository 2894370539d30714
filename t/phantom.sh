#!/bin/bash
# t/phantom.sh - issue 11: a consumer's count of messages handed out and
# never acked that its stream no longer stores (what a nats-server killed
# -9 leaves: its consumer state outlives the tail of its stream) is no work.
# Made on purpose: pod pa stops, a message on its throttling subject is
# pulled and never acked, nats-server is stopped, the stream's message
# files are deleted (the consumer's state is kept) and it starts again: pa's
# consumer counts one message ack-pending that nothing will ever deliver.
# Pod pb adopts pa; the adoption must end (a count that delivers nothing
# does not hold it open) and the gone pod must not be taken back for it.

. "$top_srcdir/t/lib.sh"
lib_init

[ "$QUEUE" = nats ] || { echo "NATS only: skipped"; exit 77; }
need_booking

start_queue
start_redis
start_participant slow "$ORDER" --latency 100
SLOW_PORT=$PORT

pod_conf() { throttled_pod_conf "$@"; }

PA_PORT=$(free_port)
start_pod pa "$PA_PORT"
PA_PID=$POD_PID
for _ in $(seq 100); do
	grep -q 'consuming saga\.work\.pod\.pa\.' "$LIB_TMP/pa.log" && break
	sleep 0.1
done
kill -TERM "$PA_PID"
for _ in $(seq 100); do kill -0 "$PA_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PA_PID" 2>/dev/null && fail "pa did not stop"
sleep 1		# the pulls pa's worker left open expire (500 ms)

export NATS_URL
"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY' || fail "taking a message of pa's without an ack"
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import invariants as I
n = I.Nats(os.environ["NATS_URL"])
ack = n.request("saga.work.pod.pa.Throttled.SlowOrder.do", b"never acked")
if ack.get("seq", 0) == 0:
    sys.exit("publish: %r" % ack)
inbox = n.inbox + ".pull"
body = json.dumps({"batch": 1, "expires": 2 * 10**9})
n.s.sendall(b"PUB $JS.API.CONSUMER.MSG.NEXT.SAGA.pod_pa_Throttled_SlowOrder "
            b"%s %d\r\n%s\r\n" % (inbox.encode(), len(body), body.encode()))
deadline = time.time() + 5
while time.time() < deadline:
    subj, reply, _, _ = n._next_msg()
    if reply.startswith("$JS.ACK.SAGA.pod_pa_Throttled_SlowOrder."):
        print("pulled one of pa's messages and kept it unacked")
        break
    if subj == inbox:       # a status: a pull pa's worker left open got it
        break
c = n.request("$JS.API.CONSUMER.INFO.SAGA.pod_pa_Throttled_SlowOrder", "")
if c.get("num_ack_pending", 0) < 1:
    sys.exit("nothing ack-pending on pa's consumer: %r" % c)
PY

# The stream loses its messages; the consumer's state stays.
nats_halt
rm -f "$LIB_TMP"/nats/jetstream/*/streams/SAGA/msgs/*
nats_start_again

phantom() {	# the consumer's ack-pending count, and what the stream holds
	"$PYTHON_GRPC" - "$top_srcdir/t/py" <<'PY'
import json, os, sys
sys.path.insert(0, sys.argv[1])
import invariants as I
n = I.Nats(os.environ["NATS_URL"])
c = n.request("$JS.API.CONSUMER.INFO.SAGA.pod_pa_Throttled_SlowOrder", "")
st = n.request("$JS.API.STREAM.INFO.SAGA",
               json.dumps({"subjects_filter": "saga.work.pod.pa.>"}))
stored = sum((st.get("state", {}).get("subjects") or {}).values())
print(c.get("num_ack_pending", -1), c.get("num_pending", -1), stored)
PY
}
read -r ackp pend stored < <(phantom)
[ "$ackp" -ge 1 ] && [ "$pend" -eq 0 ] && [ "$stored" -eq 0 ] ||
	fail "no phantom count made: ack pending $ackp, pending $pend, stored $stored"
pass "pa's consumer counts $ackp message(s) ack-pending that its stream no longer stores"

PB_PORT=$(free_port)
start_pod pb "$PB_PORT"
for _ in $(seq 200); do
	grep -q 'pod pa: its throttling work is done here' "$LIB_TMP/pb.log" &&
		break
	sleep 0.1
done
grep -q 'pod pa stopped renewing its lease: adopting' "$LIB_TMP/pb.log" ||
	fail "pb did not adopt pa"
grep -q 'pod pa: its throttling work is done here' "$LIB_TMP/pb.log" ||
	fail "the adoption of pa was held open by a count that delivers nothing"
pass "the adoption ends: a count the stream does not back is no work"

# Three gone checks (5 s each) later pa is still let go.
sleep 16
grep -q 'pod pa: work was queued on its subjects after its adoption ended' \
	"$LIB_TMP/pb.log" && fail "the gone pod was taken back for a phantom count"
read -r ackp pend stored < <(phantom)
[ "$ackp" -ge 1 ] || fail "the phantom count went away: the test proved nothing"
pass "the gone pod is not taken back for it (nats-server still counts $ackp)"
