#!/usr/bin/python3
# bench/completions.py PORT GEN_DIR: prints "SECONDS OK" every 0.5 s, where
# OK is the number of /booking.Payment/Create calls the payment participant
# at 127.0.0.1:PORT answered OK, and SECONDS the time since this started.
# In a 2-step booking without faults, that is the number of sagas whose last
# step has run: bench/async.sh reads completion rates from it without
# touching Redis, whose time is what is being measured.
import sys
import time

sys.path.insert(0, sys.argv[2])
import grpc  # noqa: E402
import booking_pb2  # noqa: E402

channel = grpc.insecure_channel("127.0.0.1:%s" % sys.argv[1])
grpc.channel_ready_future(channel).result(timeout=10)
list_rpc = channel.unary_unary(
    "/booking.Payment/List",
    request_serializer=booking_pb2.ListRequest.SerializeToString,
    response_deserializer=booking_pb2.ListResponse.FromString)
start = time.monotonic()
while True:
    resp = list_rpc(booking_pb2.ListRequest(counters_only=True), timeout=5)
    ok = sum(m.ok for m in resp.methods if m.method.endswith("/Create"))
    print("%.2f %d" % (time.monotonic() - start, ok), flush=True)
    time.sleep(0.5)
