"""hostile_test.py - the attacks of issue 12 against a real sagad, one case
each, and what must hold through every one of them: a well-behaved client
(python3-grpcio on 127.0.0.1) is served within a bound during and after the
attack, and the master's memory stays within limits.memory_mb
(t/conf/hostile.conf.in: 128). Attackers connect from other loopback
addresses (127.0.0.2...), as distinct clients would. python3-h2 (h2,
hyperframe) crafts their frames.

usage: hostile_test.py CASE...   (env: SYNC_GEN, SAGAD_PORT, SAGAD_PID,
                                  SAGAD_LOG)
"""

import os
import resource
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import (ContinuationFrame, HeadersFrame,
                              SettingsFrame)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import (Orch, SC, S, check, equal, ok, rpc_error,  # noqa: E402
                      saga_pb2, health_pb2)
import grpc  # noqa: E402

PORT = int(os.environ["SAGAD_PORT"])
PID = int(os.environ["SAGAD_PID"])
LOG = os.environ["SAGAD_LOG"]
MEMORY_MB = 128                 # limits.memory_mb of the test config
BIG = 4 * 1024 * 1024 - 1024    # a context value that fills a 4 MiB message
HZ = os.sysconf("SC_CLK_TCK")
# Under ASan (--enable-sanitizers) RSS holds shadow memory and quarantine,
# and everything runs several times slower: memory is not checked then, and
# time bounds are multiplied.
SANITIZED = os.environ.get("SAGAD_SANITIZERS") == "1"
SLOW = 5.0 if SANITIZED else 1.0


# --- the master, seen from /proc ---------------------------------------------

def cpu():
    f = open("/proc/%d/stat" % PID).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ


def status(key):
    for line in open("/proc/%d/status" % PID):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def rss_mb():
    return status("VmRSS") / 1048576.0


def hwm_mb():
    return status("VmHWM") / 1048576.0


def nfds():
    return len(os.listdir("/proc/%d/fd" % PID))


def within_budget(what):
    if SANITIZED:
        return
    check(hwm_mb() <= MEMORY_MB, "%s: the master's peak RSS is %.0f MB, "
          "over limits.memory_mb = %d" % (what, hwm_mb(), MEMORY_MB))


# --- the well-behaved client -----------------------------------------------------

def served(what, secs, probe=None):
    """Health (or probe) answers within secs, from a new connection."""
    secs *= SLOW
    t0 = time.time()
    ch = grpc.insecure_channel("127.0.0.1:%d" % PORT,
                               options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        chk = ch.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        code, r = rpc_error(chk, health_pb2.HealthCheckRequest(service=""),
                            timeout=secs, wait_for_ready=True)
    finally:
        ch.close()
    dt = time.time() - t0
    equal(code, SC.OK, "%s: Health from a well-behaved client" % what)
    check(dt <= secs, "%s: Health took %.2f s" % (what, dt))
    return dt


# --- the attackers ----------------------------------------------------------------

class H2:
    """An HTTP/2 client that says exactly what it is told (python3-h2)."""

    def __init__(self, src="127.0.0.2", window=None, handshake=True):
        self.sock = socket.create_connection(("127.0.0.1", PORT), timeout=5,
                                             source_address=(src, 0))
        cfg = h2.config.H2Configuration(client_side=True,
                                        header_encoding="utf-8")
        self.c = h2.connection.H2Connection(config=cfg)
        self.status = {}        # stream id -> grpc-status (str)
        self.reset = set()
        self.closed = False
        if handshake:
            self.c.initiate_connection()
            if window is not None:
                self.c.update_settings(
                    {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
            self.flush()

    def flush(self):
        data = self.c.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def pump(self, secs=0.0):
        """Reads what has come, for up to secs."""
        end = time.time() + secs
        while not self.closed:
            left = end - time.time()
            self.sock.settimeout(max(left, 0.001))
            try:
                data = self.sock.recv(1 << 20)
            except (socket.timeout, BlockingIOError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.c.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            for ev in events:
                if isinstance(ev, (h2.events.ResponseReceived,
                                   h2.events.TrailersReceived)):
                    for k, v in ev.headers:
                        if k == "grpc-status":
                            self.status[ev.stream_id] = v
                elif isinstance(ev, h2.events.StreamReset):
                    self.reset.add(ev.stream_id)
            self.flush()
            if left <= 0:
                break

    def start(self, path, msg=None):
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "sagad"), ("content-type", "application/grpc"),
            ("te", "trailers")], end_stream=False)
        if msg is not None:
            self.c.send_data(sid, b"\0" + len(msg).to_bytes(4, "big") + msg,
                             end_stream=True)
        self.flush()
        return sid

    def send(self, sid, data):
        """DATA within the flow-control windows; False once refused."""
        while data:
            if sid in self.status or sid in self.reset or self.closed:
                return False
            try:
                w = min(self.c.local_flow_control_window(sid),
                        self.c.max_outbound_frame_size, len(data))
            except h2.exceptions.StreamClosedError:
                return False
            if w <= 0:
                self.pump(0.05)
                continue
            try:
                self.c.send_data(sid, data[:w])
            except (h2.exceptions.StreamClosedError,
                    h2.exceptions.FlowControlError):
                return False
            data = data[w:]
            self.flush()
        return True

    def eof_within(self, secs):
        self.pump(secs)
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def closed_by_peer(s):
    """Reads what the server sent (its SETTINGS); True at EOF or reset."""
    s.settimeout(0.01)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def grpc_code(v):
    return int(v) if v is not None else None


# --- the cases --------------------------------------------------------------------

def case_big(orch):
    """1: replies over 1 MiB; 4 MiB request and reply 20 times in a row."""
    big = b"x" * BIG
    # The bound is 1 s. On a machine loaded past twice its cores (a shared
    # VM under make -j check) scheduling alone can take that: the bound is
    # widened then, and the output says so. The stall this case guards
    # against never ends at all.
    bound = SLOW
    load = os.getloadavg()[0]
    if load > 2 * os.cpu_count():
        bound *= 3
        print("# load average %.1f on %d cores: calls bounded at %.0f s"
              % (load, os.cpu_count(), bound), flush=True)
    c0, w0 = cpu(), time.time()
    for i in range(20):
        t0 = time.time()
        s = orch.run("Big", {"blob": big}, request_id="big-%d" % i,
                     timeout=10)
        t1 = time.time()
        equal(S.Name(s.state), "STATE_COMPLETED", "big Run %d" % i)
        equal(len(s.context["blob"]), BIG, "big Run %d: context size" % i)
        g = orch.get("big-%d" % i, timeout=10)
        t2 = time.time()
        equal(len(g.context["blob"]), BIG, "big Get %d: context size" % i)
        check(t1 - t0 < bound, "big Run %d took %.2f s" % (i, t1 - t0))
        check(t2 - t1 < bound, "big Get %d took %.2f s" % (i, t2 - t1))
    ok("20 Runs and Gets of a 4 MiB saga through python3-grpcio's default "
       "channel, each under %.0f s (%.1f s in all, %.1f s of the master's "
       "CPU)" % (bound, time.time() - w0, cpu() - c0))
    # The step client's reply path: a participant answering 1.9 MB.
    req = b"r" * (1900 * 1024)
    t0 = time.time()
    s = orch.run("Echo", {"reserve_req": req}, request_id="echo-big",
                 timeout=10)
    dt = time.time() - t0
    equal(S.Name(s.state), "STATE_COMPLETED", "Echo of 1.9 MB")
    equal(s.context["reserve_resp"], b"reserved:" + req[::-1],
          "the participant's 1.9 MB reply, stored whole")
    check(dt < 2.0 * SLOW, "Echo of 1.9 MB took %.2f s" % dt)
    ok("a participant's 1.9 MB reply reaches the saga in %.2f s" % dt)
    within_budget("big replies")


def case_context(orch):
    """2: 100k context keys: refused at once, nobody else waits."""
    ctx = {"k%d" % i: b"v" for i in range(100000)}
    req = Orch.request("Big", ctx, request_id="ctx-100k")
    c0, t0 = cpu(), time.time()
    fut = orch.run_rpc.future(req, timeout=10)
    hdt = served("100k keys", 1.0)
    code, details = rpc_error(fut.result)
    dt, dc = time.time() - t0, cpu() - c0
    equal(code, SC.INVALID_ARGUMENT, "Run with 100k context keys")
    check("max_context_entries" in details, "the error names the limit: %r"
          % details)
    equal(rpc_error(orch.get, "ctx-100k")[0], SC.NOT_FOUND,
          "a refused Run leaves nothing stored")
    check(dt < 2.0 * SLOW and dc < SLOW, "100k keys cost %.2f s, %.2f s CPU"
          % (dt, dc))
    ok("a Run with 100,000 context keys is INVALID_ARGUMENT in %.2f s "
       "(%.2f s CPU); Health meanwhile in %.3f s" % (dt, dc, hdt))
    s = orch.run("Big", {"k%d" % i: b"v" for i in range(1000)},
                 request_id="ctx-1000")
    equal(S.Name(s.state), "STATE_COMPLETED", "Run with 1,000 keys")
    # The participant adds order_id: one key past the limit.
    s = orch.run("Big", {"k%d" % i: b"v" for i in range(1024)},
                 request_id="ctx-1024")
    equal(S.Name(s.state), "STATE_COMPENSATED",
          "a step reply that takes the context past the limit")
    check("max_context_entries" in s.error, "saga error: %r" % s.error)
    ok("1,000 keys run; a reply taking 1,024 keys past the limit fails its "
       "step, which is compensated")


def case_memory(orch):
    """3: many streams each claiming 4 MiB and sending 1 MB of it."""
    body = b"\0" + (4 * 1024 * 1024).to_bytes(4, "big") + b"z" * 1000000
    refused = sent = 0
    conns = []
    for _ in range(8):
        # Each opened when it is used: idle, idle_timeout_ms would close it.
        h = H2()
        conns.append(h)
        for _ in range(16):
            sid = h.start("/saga.v1.Orchestrator/Run")
            if h.send(sid, body):
                sent += 1
            h.pump(0)
    for h in conns:
        h.pump(0.2)
    refused = sum(1 for h in conns for v in h.status.values()
                  if grpc_code(v) == 8)
    hdt = served("memory", 1.0)
    # A well-behaved Run of 1 MB is served too.
    s = orch.run("Big", {"blob": b"m" * 1000000}, request_id="mem-1",
                 timeout=5 * SLOW)
    equal(S.Name(s.state), "STATE_COMPLETED", "a 1 MB Run during the attack")
    within_budget("memory")
    for h in conns:
        h.close()
    check(refused > 0, "no stream was refused RESOURCE_EXHAUSTED")
    ok("128 streams x 1 MB of a claimed 4 MiB: %d refused RESOURCE_EXHAUSTED,"
       " peak RSS %.0f MB; Health in %.3f s, a 1 MB Run served"
       % (refused, hwm_mb(), hdt))


def case_amplify(orch):
    """4: Gets of a 4 MiB saga with a zero window, never read."""
    h = H2(window=0)
    msg = saga_pb2.GetRequest(id="big-0").SerializeToString()
    c0, t0 = cpu(), time.time()
    sids = [h.start("/saga.v1.Orchestrator/Get", msg) for _ in range(150)]
    # Until the answers stop coming for 2 s once they have begun (the few
    # replies the connection's share holds stay queued), 30 s at most.
    last, since = 0, time.time()
    while time.time() - t0 < 30 and (last == 0 or
                                     time.time() - since < 2.0):
        h.pump(0.1)
        if len(h.status) != last:
            last, since = len(h.status), time.time()
    refused = sum(1 for s in sids if grpc_code(h.status.get(s)) == 8)
    codes = {}
    for s in sids:
        c = grpc_code(h.status.get(s))
        codes[c] = codes.get(c, 0) + 1
    print("# amplify: %d answered in %.2f s, %.2f s CPU; grpc-status: %s" % (
        len(h.status), time.time() - t0, cpu() - c0, codes), flush=True)
    hdt = served("amplification", 1.0)
    within_budget("amplification")
    # The connection's share (16 MiB) holds 4 replies of 3.9 MB: the others
    # end at once, RESOURCE_EXHAUSTED (or UNAVAILABLE when a loaded Redis
    # is slower than the store's command timeout), none waits in a queue.
    queued = codes.get(None, 0)
    check(queued <= 5, "%d Gets of a 4 MiB saga queued on one connection"
          % queued)
    check(refused >= 1, "no Get refused RESOURCE_EXHAUSTED")
    h.close()
    ok("150 Gets of a 4 MiB saga, window 0: %d queued, %d RESOURCE_EXHAUSTED,"
       " peak RSS %.0f MB; Health in %.3f s" % (queued, refused, hwm_mb(),
                                                hdt))
    time.sleep(2.5)
    check(SANITIZED or rss_mb() < 80, "RSS %.0f MB 2.5 s after the attack"
          % rss_mb())
    ok("memory returned after it: RSS %.0f MB" % rss_mb())


def case_conns(orch):
    """5: handshake floods, idle connections, the per-address cap."""
    base = nfds()
    socks = []
    for n in range(5):                      # 500 > max_connections 400
        src = "127.0.0.%d" % (3 + n)
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", PORT), timeout=5,
                                         source_address=(src, 0))
            s.sendall(b"PRI * HTTP")        # 10 bytes of the preface
            socks.append(s)
    hdt = served("handshake flood", 2.0)
    time.sleep(2.5)                         # handshake_timeout_ms = 1000
    alive = sum(1 for s in socks if not closed_by_peer(s))
    for s in socks:
        s.close()
    equal(alive, 0, "connections stuck in their handshake after 2.5 s")
    ok("500 connections sending 10 bytes of the preface: Health in %.3f s, "
       "all closed by handshake_timeout_ms" % hdt)

    idle = [H2(src="127.0.0.2") for _ in range(100)]
    extra = H2(src="127.0.0.2")
    check(extra.eof_within(1.0), "the 101st connection from one address "
          "was not closed (max_connections_per_ip = 100)")
    extra.close()
    served("per-address cap", 1.0)
    ok("max_connections_per_ip: the 101st connection is closed, others "
       "served")
    t0 = time.time()
    gone = sum(1 for h in idle if h.eof_within(max(0.1, 5 - (time.time() -
                                                            t0))))
    equal(gone, len(idle), "idle connections closed within 5 s")
    for h in idle:
        h.close()
    time.sleep(0.5)
    check(nfds() <= base + 10, "descriptors: %d, %d before" % (nfds(), base))
    ok("100 idle connections: GOAWAY and closed by idle_timeout_ms")
    within_budget("connections")


def hpack_int(v, prefix, first):
    m = (1 << prefix) - 1
    if v < m:
        return bytes([first | v])
    out = [first | m]
    v -= m
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def hpack_lit(name, value, index=False):
    """A literal with a new name, no Huffman."""
    return (bytes([0x40 if index else 0x00]) + hpack_int(len(name), 7, 0) +
            name + hpack_int(len(value), 7, 0) + value)


def case_hpack(orch):
    """7: header blocks of references to one big table entry."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5,
                                 source_address=("127.0.0.2", 0))
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            try:
                if not s.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
              SettingsFrame(0).serialize())
    threading.Thread(target=drain, daemon=True).start()
    head = (b"\x83\x86" + hpack_lit(b":path", b"/grpc.health.v1.Health/Check")
            + hpack_lit(b":authority", b"sagad")
            + hpack_lit(b"content-type", b"application/grpc"))
    big = hpack_lit(b"x-a", b"a" * 4000, index=True)
    refs = b"\xbe" * 16000                  # dynamic entry 62, 16,000 times
    c0 = cpu()
    nblocks = 300
    for i in range(nblocks):
        block = head + (big if i == 0 else b"") + refs
        sid = 1 + 2 * i
        frames = []
        chunks = [block[j:j + 16000] for j in range(0, len(block), 16000)]
        for j, ch in enumerate(chunks):
            last = j == len(chunks) - 1
            f = (HeadersFrame(sid) if j == 0 else ContinuationFrame(sid))
            f.data = ch
            f.flags.add("END_HEADERS") if last else None
            if j == 0:
                f.flags.add("END_STREAM")
            frames.append(f.serialize())
        s.sendall(b"".join(frames))
    hdt = served("hpack", 1.0)
    time.sleep(0.5)
    dc = cpu() - c0
    stop.set()
    s.close()
    check(dc < 2.0 * SLOW, "%d header blocks cost the master %.2f s of CPU"
          % (nblocks, dc))
    ok("%d header blocks of 16,000 references to a 4,000-byte entry: %.2f s "
       "of CPU; Health in %.3f s" % (nblocks, dc, hdt))


def case_watch(orch):
    """8: one client's never-read Watch streams do not starve the others."""
    fut = orch.run_future("Slow", {"delay": "order:3000"},
                          request_id="slow-watch", timeout=30)
    for _ in range(50):
        code, s = rpc_error(orch.get, "slow-watch")
        if code == SC.OK and S.Name(s.state) == "STATE_RUNNING":
            break
        time.sleep(0.1)
    msg = saga_pb2.GetRequest(id="slow-watch").SerializeToString()
    hs = [H2(window=0) for _ in range(2)]
    sids = [(h, h.start("/saga.v1.Orchestrator/Watch", msg))
            for h in hs for _ in range(300)]
    for h in hs:
        h.pump(0.5)
    refused = sum(1 for h, sid in sids if grpc_code(h.status.get(sid)) == 8)
    t0 = time.time()
    it = orch.watch_rpc(saga_pb2.GetRequest(id="slow-watch"), timeout=10)
    ev = next(it)
    dt = time.time() - t0
    it.cancel()
    equal(ev.saga_id, "slow-watch", "the well-behaved Watch's first event")
    check(dt < SLOW, "the well-behaved Watch took %.2f s" % dt)
    check(refused >= 600 - 128, "only %d of 600 Watches refused" % refused)
    for h in hs:
        h.close()
    equal(S.Name(fut.result().state), "STATE_COMPLETED", "the slow saga")
    ok("600 never-read Watches from one address: %d refused "
       "RESOURCE_EXHAUSTED; another client's Watch answered in %.3f s"
       % (refused, dt))


def case_emfile(orch):
    """6: out of descriptors: no busy loop, no log flood, still served."""
    old = resource.prlimit(PID, resource.RLIMIT_NOFILE)
    lim = nfds() + 40
    resource.prlimit(PID, resource.RLIMIT_NOFILE, (lim, old[1]))
    lines0 = sum(1 for _ in open(LOG))
    socks = []
    try:
        c0 = cpu()
        for n in range(3):
            for _ in range(100):
                socks.append(socket.create_connection(
                    ("127.0.0.1", PORT), timeout=5,
                    source_address=("127.0.0.%d" % (3 + n), 0)))
        time.sleep(3.0)
        hdt = served("EMFILE", 3.0)
        dc = cpu() - c0
        logged = [ln for ln in open(LOG)][lines0:]
        acc = [ln for ln in logged if "accept" in ln]
        check(dc < SLOW, "the master burnt %.2f s of CPU in 3 s" % dc)
        check(len(acc) <= 8, "%d accept lines logged in ~4 s" % len(acc))
        check(len(acc) >= 1, "nothing logged about accept() failing")
    finally:
        for s in socks:
            s.close()
        resource.prlimit(PID, resource.RLIMIT_NOFILE, old)
    ok("300 connections with %d descriptors: %.2f s of CPU in 3 s, %d log "
       "lines, Health in %.3f s" % (lim, dc, len(acc), hdt))
    print("# " + acc[0].strip(), flush=True)


def case_rss(orch):
    """10: the peak stayed within the budget; the idle master is small."""
    time.sleep(1.5)
    within_budget("all the attacks")
    served("after everything", 0.5)
    check(SANITIZED or rss_mb() < 64, "idle RSS %.0f MB" % rss_mb())
    ok("peak RSS %.0f MB %s limits.memory_mb = %d; idle RSS %.0f MB"
       % (hwm_mb(), "(ASan: not checked against)" if SANITIZED else
          "within", MEMORY_MB, rss_mb()))


CASES = {"big": case_big, "context": case_context, "memory": case_memory,
         "amplify": case_amplify, "conns": case_conns, "hpack": case_hpack,
         "watch": case_watch, "emfile": case_emfile, "rss": case_rss}


def main():
    orch = Orch(PORT)
    for name in sys.argv[1:]:
        t0 = time.time()
        CASES[name](orch)
        print("# %s: %.1f s" % (name, time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
