#!/usr/bin/python3
"""invariants.py - the invariant checker of issue 11: given every saga id a
test ever sent to sagad (and what each Run answered), it reads the real
state of the stack -- the saga records in Redis, the participants' own
records (their List method), the work left in NATS JetStream (or RabbitMQ)
-- and checks that no saga was lost, stranded or left half-done.

  invariants.py --ids FILE --redis HOST:PORT
                --participant NAME[=KIND]@HOST:PORT ... [--node NODE=NAME ...]
                [--nats nats://HOST:PORT [--stream NAME ...]]
                [--rabbitmqctl 'COMMAND ...']
                [--wait SECONDS] [--examples N] [--json FILE]

--ids FILE: one JSON object a line, one line per Run sent:
    {"id": "c-17", "flow": "AsyncBooking", "code": "OK", "state": "PENDING",
     "ctx": {"fault": "payment"}}
  "code" is the gRPC status name the Run answered (OK, UNAVAILABLE,
  DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ...), "state" the saga state the
  answer carried when it was OK ("" or absent otherwise), "ctx" the context
  sent (only the fault-injection keys matter). A line that is not JSON is
  read as "ID CODE [STATE]". An id sent more than once counts once: accepted
  if any Run of it was accepted.

--participant order@127.0.0.1:5001 reads /booking.Order/List there;
  ship=order@127.0.0.1:5003 names a third instance of the order program
  "ship". --node CreateShip=ship says which participant a step (node) calls;
  the defaults are CreateOrder=order and CreatePayment=payment.

The invariants, on every id:
  missing            an accepted Run (code OK) has a record in Redis.
  not_final          the record is final: COMPLETED, COMPENSATED, FAILED or
                     RESOLVED (so never PENDING, RUNNING or COMPENSATING).
  undecodable        the record's packed saga (field pb, or p, p.1... in
                     issue 18's layout) decodes as saga.v1.Saga.
  completed_not_active  a COMPLETED saga has an ACTIVE record at the
                     participant of every step it ran.
  active_not_completed  a saga that is not COMPLETED (or has no record) has
                     no ACTIVE record anywhere: every created thing was
                     cancelled.
  active_outside_steps  a COMPLETED saga has no ACTIVE record at a
                     participant that none of its steps calls.
  failed_no_error    a FAILED saga names why (error set).
  answer_mismatch    a Run that answered a final state (sync, throttling)
                     finds the record in that same state.
  fault_completed    a saga whose context injects a fault (fault=SERVICE) into
                     one of its steps' participants did not end COMPLETED.
  refused_not_final  the rule for a refused Run (any code but OK): it may
                     have no record (the refusal was true: nothing ran, and
                     then no participant may hold an ACTIVE record for it) or
                     a record (UNAVAILABLE and DEADLINE_EXCEEDED are "unknown",
                     not "no": the saga may have been stored before the error
                     reached the caller, and the contract says such a saga
                     goes on); a record, if any, must be final and obey every
                     invariant above but answer_mismatch. Refusals that are
                     definite by contract (INVALID_ARGUMENT, NOT_FOUND,
                     ALREADY_EXISTS, RESOURCE_EXHAUSTED) are held to the same
                     rule: a stored saga must at least end cleanly.
  stream_pending     no work left in the bus: every JetStream consumer has
                     num_pending and num_ack_pending 0, or else nothing to
                     deliver behind those counts (no message stored behind
                     a num_pending; for a num_ack_pending, a pull of the
                     consumer gets nothing: each message it does get is
                     given back at once and named), and a work-queue stream
                     holds no message on a subject that no consumer reads
                     (RabbitMQ: every queue has 0 ready and 0 unacked).
  participant_unreachable, redis_unreachable, bus_unreachable: the state
                     could not be read (a violation: nothing can be said).

Notes (printed, not violations): a participant that answered more Creates
for a step than the saga records attempts (possible when a Redis restart
loses the last writes), records of ids never sent, and messages a
work-queue stream still stores below its consumers' delivered sequence and
not pending an ack (acked, but the delete was lost: nats-server killed -9
loses what it had not synced; no consumer will deliver them again), and a
consumer's pending or ack-pending count that delivers nothing to a pull
(stream_phantom: nothing is left to deliver; nats-server 2.9 killed -9 can
restart with consumers counting messages it lost or had deleted).

It prints the counts (sent, accepted, refused by code, each final state,
violations by kind with example ids) and exits 0 when there is no
violation, 1 when there is one, 2 on bad usage.

--wait SECONDS polls Redis (and the bus) until every stored saga is final and
no work is left, or the time is up, before checking: the stack settles.

The generated python modules (saga_pb2, booking_pb2) are read from $SYNC_GEN
when set (t/sync_lib.sh makes them), else compiled with protoc ($PROTOC or
protoc on PATH) from the source tree into a temp dir.
"""

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "..", ".."))
FINAL = ("STATE_COMPLETED", "STATE_COMPENSATED", "STATE_FAILED",
         "STATE_RESOLVED")
UNKNOWN_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL",
                 "CANCELLED")


def die(msg):
    print("invariants.py: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)


def gen_modules():
    gen = os.environ.get("SYNC_GEN")
    if not gen:
        gen = tempfile.mkdtemp(prefix="invariants-gen.")
        protoc = os.environ.get("PROTOC") or "protoc"
        for inc, f in ((os.path.join(TOP, "proto"),
                        os.path.join(TOP, "proto/saga/v1/saga.proto")),
                       (os.path.join(TOP, "examples/booking"),
                        os.path.join(TOP, "examples/booking/booking.proto"))):
            r = subprocess.run([protoc, "-I" + inc, "--python_out=" + gen, f],
                               capture_output=True, text=True)
            if r.returncode != 0:
                die("protoc %s: %s" % (f, r.stderr.strip()))
    sys.path.insert(0, gen)


# --- Redis, spoken in RESP over a socket (no python redis module needed) ---

class Redis:
    def __init__(self, addr, timeout=10):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.f = self.s.makefile("rb")

    @staticmethod
    def _enc(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line)

    def pipeline(self, cmds, chunk=2000):
        out = []
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.s.sendall(b"".join(self._enc(c) for c in part))
            out.extend(self._read() for _ in part)
        return out

    def call(self, *args):
        return self.pipeline([args])[0]


class RedisError(Exception):
    pass


def saga_key(i):
    return "saga:{%s}" % i


# --- NATS JetStream API over core NATS request/reply, on a raw socket ---

class Nats:
    def __init__(self, url, timeout=5):
        hp = url.split("://", 1)[-1].split("/", 1)[0]
        if "@" in hp:
            hp = hp.rsplit("@", 1)[1]
        host, port = hp.rsplit(":", 1)
        self.timeout = timeout
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.f = self.s.makefile("rb")
        line = self.f.readline()
        if not line.startswith(b"INFO"):
            raise ConnectionError("not a NATS server: %r" % line[:80])
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,'
                       b'"name":"invariants.py","lang":"python",'
                       b'"protocol":1,"headers":true,"no_responders":true}'
                       b'\r\nPING\r\n')
        self._wait_pong()
        self.inbox = "_INBOX.invariants.%d" % os.getpid()
        self.s.sendall(("SUB %s.* 1\r\n" % self.inbox).encode())
        self.n = 0

    def _wait_pong(self):
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("NATS closed the connection")
            if line.startswith(b"PONG"):
                return
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode().strip())

    def _next_msg(self):
        """The next MSG or HMSG as (subject, reply, headers, payload),
        answering PINGs on the way."""
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("NATS closed the connection")
            if line.startswith(b"PING"):
                self.s.sendall(b"PONG\r\n")
                continue
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode().strip())
            if not (line.startswith(b"MSG") or line.startswith(b"HMSG")):
                continue
            parts = line.split()
            data = self.f.read(int(parts[-1]) + 2)[:-2]
            hdr, nparts = b"", 5
            if line.startswith(b"HMSG"):
                hlen = int(parts[-2])
                hdr, data, nparts = data[:hlen], data[hlen:], 6
            reply = parts[3].decode() if len(parts) >= nparts else ""
            return parts[1].decode(), reply, hdr, data

    def request(self, subject, payload=b""):
        if isinstance(payload, str):
            payload = payload.encode()
        self.n += 1
        reply = "%s.%d" % (self.inbox, self.n)
        self.s.sendall(b"PUB %s %s %d\r\n%s\r\n" % (
            subject.encode(), reply.encode(), len(payload), payload))
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            subj, _, hdr, data = self._next_msg()
            if b" 503" in hdr.split(b"\r\n")[0]:
                raise ConnectionError(
                    "no responders for %s (JetStream off?)" % subject)
            if subj == reply:
                return json.loads(data.decode() or "{}")
        raise TimeoutError("no answer to %s" % subject)

    def probe(self, stream, consumer, batch, wait=1.0):
        """What a reader of the durable pull consumer would get now: pulls
        up to batch messages (waiting at most wait seconds), gives each
        back at once (-NAK: redelivered to the stack's own readers) and
        returns their payloads. Nothing back means the consumer has nothing
        to deliver, whatever its counts say."""
        self.n += 1
        inbox = "%s.p%d" % (self.inbox, self.n)
        body = json.dumps({"batch": batch, "expires": int(wait * 1e9)})
        self.s.sendall(b"PUB $JS.API.CONSUMER.MSG.NEXT.%s.%s %s %d\r\n%s\r\n"
                       % (stream.encode(), consumer.encode(), inbox.encode(),
                          len(body), body.encode()))
        # A message delivered keeps its own subject; its ack subject names
        # the consumer. A status (404 no messages, 408 expired) comes on
        # the inbox.
        ack = "$JS.ACK.%s.%s." % (stream, consumer)
        got = []
        deadline = time.time() + wait + self.timeout
        try:
            while time.time() < deadline and len(got) < batch:
                subj, reply, _, data = self._next_msg()
                if reply.startswith(ack):
                    got.append(data)
                    self.s.sendall(b"PUB %s 4\r\n-NAK\r\n" %
                                   reply.encode())
                elif subj == inbox:
                    break
        except socket.timeout:
            pass
        return got

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def subject_match(filt, subj):
    """NATS subject matching: '*' one token, '>' the rest."""
    f, t = filt.split("."), subj.split(".")
    for i, x in enumerate(f):
        if x == ">":
            return len(t) > i
        if i >= len(t) or (x != "*" and x != t[i]):
            return False
    return len(f) == len(t)


WORK_PB = []


def work_saga_id(data):
    """The saga id of a bus message (sagad.v1.Work), or "?"."""
    if not WORK_PB:
        WORK_PB.append(None)
        try:
            gen = tempfile.mkdtemp(prefix="invariants-work.")
            protoc = os.environ.get("PROTOC") or "protoc"
            subprocess.run([protoc, "-I" + os.path.join(TOP, "proto"),
                            "--python_out=" + gen,
                            os.path.join(TOP, "proto/sagad/v1/work.proto")],
                           check=True, capture_output=True)
            sys.path.insert(0, gen)
            from sagad.v1 import work_pb2
            WORK_PB[0] = work_pb2
        except Exception:  # no protoc, or a proto it cannot read
            pass
    if WORK_PB[0] is None:
        return "?"
    try:
        w = WORK_PB[0].Work.FromString(data)
        return "%s:%d:%s" % (w.saga_id, w.step,
                             "undo" if w.compensate else "do")
    except Exception:  # not a Work message
        return "?"


def js_messages(nc, stream, lo, hi, filt, limit=5):
    """The work (saga:step:do|undo) of up to limit messages the stream
    still stores on filt with a sequence in [lo, hi]."""
    import base64
    out = []
    q = lo
    while q <= hi and len(out) < limit:
        m = nc.request("$JS.API.STREAM.MSG.GET." + stream,
                       json.dumps({"seq": q, "next_by_subj": filt or ">"}))
        msg = m.get("message")
        if not msg or msg.get("seq", hi + 1) > hi:
            break
        out.append(work_saga_id(base64.b64decode(msg.get("data") or "")))
        q = msg["seq"] + 1
    return out


def nats_state(url, streams):
    """[(kind, where, detail)] of work left: kind "stream_pending" is a
    violation, "stream_stale" a note; raises on an unreachable server.

    A work-queue stream deletes a message when it is acked. A stored
    message that no consumer's filter matches is work nobody will ever do
    (a violation); one that a consumer has delivered and that is not
    pending an ack was acked but not deleted -- nats-server killed -9
    loses the deletes it had not synced -- and is a note."""
    nc = Nats(url)
    left = []
    try:
        if not streams:
            names = nc.request("$JS.API.STREAM.NAMES", "{}")
            if "error" in names:
                raise ConnectionError(json.dumps(names["error"]))
            streams = names.get("streams") or []
        for st in streams:
            info = nc.request("$JS.API.STREAM.INFO." + st,
                              json.dumps({"subjects_filter": ">"}))
            if "error" in info:
                left.append(("stream_pending", "stream %s" % st,
                             "info: %s" % info["error"]))
                continue
            cfg, state = info.get("config", {}), info.get("state", {})
            cons, offset = [], 0
            while True:
                cl = nc.request("$JS.API.CONSUMER.LIST." + st,
                                json.dumps({"offset": offset}))
                if "error" in cl:
                    left.append(("stream_pending", "stream %s" % st,
                                 "consumer list: %s" % cl["error"]))
                    break
                part = cl.get("consumers") or []
                cons += part
                offset += len(part)
                if not part or offset >= cl.get("total", 0):
                    break
            for c in cons:
                pend = c.get("num_pending", 0)
                ackp = c.get("num_ack_pending", 0)
                filt = c.get("config", {}).get("filter_subject", "")
                if pend or ackp:
                    lo = c.get("ack_floor", {}).get("stream_seq", 0) + 1
                    hi = c.get("delivered", {}).get("stream_seq", 0)
                    last = state.get("last_seq", 0)
                    acked = js_messages(nc, st, lo, hi, filt) if ackp else []
                    ahead = js_messages(nc, st, hi + 1, last, filt) \
                        if pend else []
                    what = "num_pending %d num_ack_pending %d (filter %s)" % (
                        pend, ackp, filt)
                    if ackp:
                        what += (", stored in its ack window: " + " ".join(
                            acked)) if acked else ", none stored in its ack " \
                            "window"
                    if pend:
                        what += (", stored beyond it: " + " ".join(ahead)) \
                            if ahead else ", none stored beyond it"
                    # Work is what a reader would get: a message still
                    # waiting is work; for counts of messages handed out and
                    # not acked, the consumer is asked (a pull, each message
                    # given back at once). Counts that deliver nothing are no
                    # work: nats-server killed -9 can restart with a consumer
                    # counting messages its stream lost, or deleted when they
                    # were acked (the stored ones shown are then stale).
                    kind = "stream_pending" if ahead else "stream_phantom"
                    if kind == "stream_phantom" and acked:
                        got = nc.probe(st, c.get("name"),
                                       min(ackp + pend, 256))
                        if got:
                            kind = "stream_pending"
                            what += ", delivered to a pull now: " + " ".join(
                                work_saga_id(g) for g in got)
                        else:
                            what += ", delivered to a pull now: none " \
                                "(the counts are of messages the server " \
                                "will not deliver again)"
                    left.append((kind, "consumer %s/%s" % (
                        st, c.get("name")), what))
            if cfg.get("retention") != "workqueue" or \
                    not state.get("messages", 0):
                continue
            subj = state.get("subjects") or {}
            orphan, stale = {}, {}
            for sj, n in subj.items():
                owner = [c for c in cons if subject_match(
                    c.get("config", {}).get("filter_subject", "") or ">", sj)]
                if not owner:
                    orphan[sj] = n
                else:
                    stale[sj] = n
            first = state.get("first_seq", 0)
            if orphan:
                top = sorted(orphan.items(), key=lambda kv: -kv[1])[:5]
                left.append(("stream_pending", "stream %s" % st,
                             "%d messages on subjects no consumer reads: %s" % (
                                 sum(orphan.values()),
                                 ", ".join("%s=%d" % kv for kv in top))))
            if stale:
                top = sorted(stale.items(), key=lambda kv: -kv[1])[:5]
                ex = js_messages(nc, st, first, state.get("last_seq", 0),
                                 "")
                left.append(("stream_stale", "stream %s" % st,
                             "%d messages stored (acked but not deleted, or "
                             "ack pending): %s; first: %s" % (
                                 sum(stale.values()),
                                 ", ".join("%s=%d" % kv for kv in top),
                                 " ".join(ex))))
    finally:
        nc.close()
    return left


def rabbitmq_state(cmd):
    argv = shlex.split(cmd) + ["list_queues", "name", "messages_ready",
                               "messages_unacknowledged", "--formatter",
                               "json", "-q"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise ConnectionError("%s: %s" % (" ".join(argv),
                                          r.stderr.strip()[:300]))
    left = []
    for q in json.loads(r.stdout or "[]"):
        ready = int(q.get("messages_ready") or 0)
        unacked = int(q.get("messages_unacknowledged") or 0)
        if ready or unacked:
            left.append(("stream_pending", "queue %s" % q.get("name"),
                         "%d ready, %d unacked" % (ready, unacked)))
    return left


def bus_state(args):
    """(work left, error or None)."""
    left = []
    try:
        if args.nats:
            left += nats_state(args.nats, args.stream)
        if args.rabbitmqctl:
            left += rabbitmq_state(args.rabbitmqctl)
    except (OSError, ConnectionError, TimeoutError, ValueError,
            subprocess.SubprocessError) as e:
        return left, "%s" % e
    return left, None


# --- the participants ---

class Participant:
    def __init__(self, spec):
        # NAME[=KIND]@HOST:PORT
        if "@" not in spec:
            die("--participant %r: expected NAME[=KIND]@HOST:PORT" % spec)
        name, addr = spec.split("@", 1)
        kind = name
        if "=" in name:
            name, kind = name.split("=", 1)
        self.name, self.kind, self.addr = name, kind, addr

    def records(self):
        import grpc
        import booking_pb2
        ch = grpc.insecure_channel(self.addr, options=[
            ("grpc.max_receive_message_length", -1)])
        try:
            rpc = ch.unary_unary(
                "/booking.%s/List" % self.kind.capitalize(),
                request_serializer=booking_pb2.ListRequest.SerializeToString,
                response_deserializer=booking_pb2.ListResponse.FromString)
            r = rpc(booking_pb2.ListRequest(), timeout=60)
        finally:
            ch.close()
        return {x.saga_id: x for x in r.records}, r


# --- reading what was sent ---

def read_ids(path):
    sent = {}
    order = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except ValueError:
                p = line.split()
                d = {"id": p[0], "code": p[1] if len(p) > 1 else "OK",
                     "state": p[2] if len(p) > 2 else ""}
            if not isinstance(d, dict) or not d.get("id"):
                die("%s:%d: no id" % (path, n))
            d.setdefault("code", "OK")
            st = d.get("state") or ""
            if st and not st.startswith("STATE_"):
                st = "STATE_" + st
            d["state"] = st
            i = d["id"]
            if i not in sent:
                sent[i] = {"id": i, "flow": d.get("flow", ""),
                           "codes": [], "states": [],
                           "ctx": d.get("ctx") or {}}
                order.append(i)
            sent[i]["codes"].append(d["code"])
            if d["code"] == "OK" and st:
                sent[i]["states"].append(st)
    for s in sent.values():
        s["accepted"] = "OK" in s["codes"]
        s["refused_code"] = None if s["accepted"] else s["codes"][-1]
    return sent, order


def inject_targets(ctx, key):
    """The services a fault-injection context value names."""
    v = ctx.get(key) or ""
    if isinstance(v, bytes):
        v = v.decode(errors="replace")
    return {item.split(":", 1)[0].strip() for item in v.split(",")
            if item.strip()}


# --- the check ---

def packed_saga(fields):
    """The saga.v1.Saga a record's hash holds, packed, or None. Two layouts:
    the first one's field pb; issue 18's p, p.1, p.2... (pn pieces)."""
    if "pb" in fields:
        return fields["pb"]
    if "p" not in fields:
        return None
    try:
        n = int(fields.get("pn") or 1)
    except ValueError:
        return None
    parts = [fields["p"]]
    for j in range(1, n):
        if "p.%d" % j not in fields:
            return None
        parts.append(fields["p.%d" % j])
    return b"".join(parts)


def where_at(fields):
    """The step and phase a record is at: "step N undo U attempt A"."""
    d = {k: fields.get(k, b"").decode(errors="replace")
         for k in ("at", "step", "undo", "attempt", "updated")}
    if d["at"]:
        p = (d["at"].split() + ["", "", ""])[:3]
        return "step %s undo %s attempt %s" % tuple(p)
    return "step %s undo %s attempt %s" % (d["step"], d["undo"], d["attempt"])


def load_records(r, ids):
    from saga.v1 import saga_pb2
    S = saga_pb2.State
    replies = r.pipeline([("HGETALL", saga_key(i)) for i in ids])
    out = {}
    for i, h in zip(ids, replies):
        if isinstance(h, RedisError):
            out[i] = ("error", str(h))
            continue
        if not h:
            out[i] = None
            continue
        fields = {h[k].decode(errors="replace"): h[k + 1]
                  for k in range(0, len(h) - 1, 2)}
        state = (fields.get("state") or b"").decode(errors="replace")
        saga = None
        pb = packed_saga(fields)
        if pb is not None:
            try:
                saga = saga_pb2.Saga.FromString(pb)
            except Exception:  # google.protobuf.message.DecodeError
                saga = None
        if saga is not None and not state:
            state = S.Name(saga.state)
        out[i] = ("ok", state, saga, fields)
    return out


def settle(args, ids):
    """Polls until every stored saga is final and the bus is empty, or the
    wait is up. Returns (seconds waited, what was still open)."""
    t0 = time.time()
    deadline = t0 + args.wait
    last = "nothing"
    while True:
        open_ = []
        try:
            r = Redis(args.redis)
            st = r.pipeline([("HGET", saga_key(i), "state") for i in ids])
            r.s.close()
            for i, v in zip(ids, st):
                if isinstance(v, bytes) and v.decode() not in FINAL:
                    open_.append(i)
            left, err = bus_state(args) if (args.nats or args.rabbitmqctl) \
                else ([], None)
            left = [x for x in left if x[0] == "stream_pending"]
            if not open_ and not left and err is None:
                return time.time() - t0, "nothing"
            last = "%d sagas not final%s%s" % (
                len(open_), ("; bus: %d places with work" % len(left))
                if left else "", ("; bus: %s" % err) if err else "")
        except (OSError, ConnectionError) as e:
            last = "redis: %s" % e
        if time.time() >= deadline:
            return time.time() - t0, last
        time.sleep(1)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--redis", required=True, help="HOST:PORT")
    ap.add_argument("--participant", action="append", default=[])
    ap.add_argument("--node", action="append", default=[],
                    help="NODE=PARTICIPANT (defaults: CreateOrder=order, "
                    "CreatePayment=payment)")
    ap.add_argument("--nats", help="nats://HOST:PORT")
    ap.add_argument("--stream", action="append", default=[],
                    help="JetStream stream to check (default: every stream)")
    ap.add_argument("--rabbitmqctl",
                    help="the rabbitmqctl command line (with -n, -p ...)")
    ap.add_argument("--wait", type=float, default=0)
    ap.add_argument("--examples", type=int, default=5)
    ap.add_argument("--json", help="write the summary as JSON here too")
    args = ap.parse_args()
    gen_modules()

    sent, ids = read_ids(args.ids)
    parts = [Participant(p) for p in args.participant]
    node_map = {"CreateOrder": "order", "CreatePayment": "payment"}
    for n in args.node:
        if "=" not in n:
            die("--node %r: expected NODE=PARTICIPANT" % n)
        k, v = n.split("=", 1)
        node_map[k] = v
    pnames = {p.name for p in parts}

    viol = {}
    notes = {}

    def violation(kind, i, why=""):
        viol.setdefault(kind, []).append((i, why))

    def note(kind, i, why=""):
        notes.setdefault(kind, []).append((i, why))

    waited, still = (0.0, "nothing")
    if args.wait > 0:
        waited, still = settle(args, ids)
        print("settle: waited %.1fs; still open: %s" % (waited, still),
              flush=True)

    try:
        r = Redis(args.redis)
        recs = load_records(r, ids)
        r.s.close()
    except (OSError, ConnectionError) as e:
        violation("redis_unreachable", "-", str(e))
        recs = {}

    precs = {}
    for p in parts:
        try:
            precs[p.name], _ = p.records()
        except Exception as e:  # grpc.RpcError, OSError
            violation("participant_unreachable", p.name, str(e)[:200])
            precs[p.name] = None

    if args.nats or args.rabbitmqctl:
        left, err = bus_state(args)
        if err:
            violation("bus_unreachable", "-", err)
        for kind, where, what in left:
            what = re.sub(r"(\S+?):(\d+):(do|undo)", lambda m: "%s(%s)" % (
                m.group(0), record_state(recs, m.group(1))), what)
            if kind == "stream_pending":
                violation(kind, where, what)
            else:
                note(kind, where, what)

    states = {}
    refused = {}
    accepted = 0
    for i in ids:
        s = sent[i]
        if s["accepted"]:
            accepted += 1
        else:
            refused[s["refused_code"]] = refused.get(s["refused_code"], 0) + 1
        rec = recs.get(i) if recs else None
        if recs and rec is None:
            if s["accepted"]:
                violation("missing", i, "Run answered OK")
                states["(missing)"] = states.get("(missing)", 0) + 1
            else:
                states["(none, refused)"] = states.get("(none, refused)",
                                                       0) + 1
            # Nothing may hold an ACTIVE record for a saga with no record.
            for pn, pr in precs.items():
                if pr is not None and i in pr and pr[i].state == 1:
                    violation("active_not_completed", i,
                              "no saga record, %s record %s ACTIVE (Run %s)"
                              % (pn, pr[i].id, "/".join(s["codes"])))
            continue
        if not recs:
            continue
        if rec[0] == "error":
            violation("undecodable", i, rec[1])
            continue
        _, state, saga, fields = rec
        states[state] = states.get(state, 0) + 1
        if saga is None:
            violation("undecodable", i, "pb field missing or not a Saga")
        if state not in FINAL:
            violation("not_final" if s["accepted"] else "refused_not_final",
                      i, "%s (Run %s), %s, updated %s" % (
                          state, "/".join(s["codes"]), where_at(fields),
                          saga.updated_unix_ms if saga is not None else "?"))
        err = saga.error if saga is not None else \
            fields.get("error", b"").decode(errors="replace")
        if state == "STATE_FAILED" and not err:
            violation("failed_no_error", i)
        for ans in s["states"]:
            if ans in FINAL and ans != state:
                violation("answer_mismatch", i, "Run answered %s, record %s"
                          % (ans, state))
        steps = list(saga.steps) if saga is not None else []
        step_parts = {}
        for st in steps:
            pn = node_map.get(st.name)
            if pn is not None:
                step_parts[pn] = st
        if state == "STATE_COMPLETED":
            faults = inject_targets(s["ctx"], "fault")
            hit = sorted(faults & set(step_parts))
            if hit:
                violation("fault_completed", i, "fault=%s yet COMPLETED" %
                          ",".join(hit))
            for pn, st in step_parts.items():
                pr = precs.get(pn)
                if pn not in pnames or pr is None:
                    continue
                if i not in pr or pr[i].state != 1:
                    violation("completed_not_active", i,
                              "step %s: %s record %s" % (
                                  st.name, pn, "none" if i not in pr else
                                  "state %d" % pr[i].state))
            for pn, pr in precs.items():
                if pr is not None and pn not in step_parts and i in pr \
                        and pr[i].state == 1:
                    violation("active_outside_steps", i,
                              "%s record ACTIVE, steps %s" % (
                                  pn, [st.name for st in steps]))
        else:
            for pn, pr in precs.items():
                if pr is not None and i in pr and pr[i].state == 1:
                    st = step_parts.get(pn)
                    violation("active_not_completed", i,
                              "%s, %s record %s ACTIVE; step %s%s; error %r"
                              % (state, pn, pr[i].id,
                                 st.name if st else "(none)",
                                 (" %s attempts %d" % (
                                     saga_state_name(st.state), st.attempts))
                                 if st else "", err[:120]))
        for pn, st in step_parts.items():
            pr = precs.get(pn)
            if pr is not None and i in pr and pr[i].creates > st.attempts:
                note("creates_exceed_attempts", i,
                     "%s answered %d Creates, step %s records %d attempts" % (
                         pn, pr[i].creates, st.name, st.attempts))

    # Participant records of ids never sent.
    sent_set = set(ids)
    for pn, pr in precs.items():
        if pr is None:
            continue
        for i, x in pr.items():
            if i not in sent_set:
                note("record_of_unsent_id", i, "%s %d" % (pn, x.state))

    # The report.
    ex = args.examples
    print("sent %d ids: accepted %d, refused %d %s" % (
        len(ids), accepted, len(ids) - accepted,
        json.dumps(dict(sorted(refused.items())))), flush=True)
    print("states %s" % json.dumps(dict(sorted(states.items()))))
    for pn, pr in precs.items():
        if pr is None:
            continue
        mine = [pr[i].state for i in ids if i in pr]
        print("participant %s: %d records of these ids (%d ACTIVE, "
              "%d CANCELLED, %d TOMBSTONE, %d FAILED)" % (
                  pn, len(mine), mine.count(1), mine.count(2),
                  mine.count(3), mine.count(4)))
    for kind, items in sorted(notes.items()):
        print("note %s: %d, e.g. %s" % (kind, len(items), "; ".join(
            "%s %s" % (i, w) for i, w in items[:ex])))
    total = sum(len(v) for v in viol.values())
    for kind, items in sorted(viol.items()):
        print("VIOLATION %s: %d" % (kind, len(items)))
        for i, w in items[:ex]:
            print("    %s  %s" % (i, w))
    print("violations %d %s" % (total, json.dumps(
        {k: len(v) for k, v in sorted(viol.items())})), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sent": len(ids), "accepted": accepted,
                       "refused": refused, "states": states,
                       "violations": {k: len(v) for k, v in viol.items()},
                       "examples": {k: [i for i, _ in v[:ex]]
                                    for k, v in viol.items()},
                       "ids": {k: sorted({i for i, _ in v})
                               for k, v in viol.items()},
                       "notes": {k: len(v) for k, v in notes.items()},
                       "settle_seconds": round(waited, 1),
                       "settle_open": still}, f, indent=1, sort_keys=True)
    sys.exit(1 if total else 0)


def record_state(recs, i):
    """The state of saga i as read from Redis, short."""
    r = recs.get(i) if recs else None
    if r is None:
        return "no record" if i in recs else "not sent"
    return r[1].replace("STATE_", "") if r[0] == "ok" else "?"


def saga_state_name(v):
    from saga.v1 import saga_pb2
    return saga_pb2.State.Name(v)


if __name__ == "__main__":
    main()
