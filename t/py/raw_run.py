"""raw_run.py - one saga.v1.Orchestrator/Run over plain HTTP/2 (python3-h2),
with metadata that gRPC clients refuse to send (non-ASCII bytes, control
characters), for t/ids.sh. Prints the grpc-status and grpc-message, and
reset=CODE or goaway=CODE when the HTTP/2 layer refused the stream.

usage: raw_run.py PORT REQUEST_HEX [KEY=VALUE ...]
  VALUE may hold \\xHH escapes (decoded to that byte).
"""

import socket
import sys
import urllib.parse

import h2.config
import h2.connection
import h2.events


def unescape(s):
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def main():
    port = int(sys.argv[1])
    body = bytes.fromhex(sys.argv[2])
    md = []
    for kv in sys.argv[3:]:
        k, v = kv.split("=", 1)
        md.append((k.encode(), unescape(v)))
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False,
        normalize_outbound_headers=False, validate_inbound_headers=False))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [
        (b":method", b"POST"), (b":scheme", b"http"),
        (b":path", b"/saga.v1.Orchestrator/Run"),
        (b":authority", b"127.0.0.1:%d" % port),
        (b"content-type", b"application/grpc"), (b"te", b"trailers"),
    ] + md)
    conn.send_data(sid, b"\0" + len(body).to_bytes(4, "big") + body,
                   end_stream=True)
    sock.sendall(conn.data_to_send())
    status, message = None, ""
    done = False
    while not done:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, (h2.events.ResponseReceived,
                               h2.events.TrailersReceived)):
                for k, v in ev.headers:
                    if k == b"grpc-status":
                        status = int(v)
                    elif k == b"grpc-message":
                        message = urllib.parse.unquote(v.decode())
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length,
                                               ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                print("reset=%d" % ev.error_code)
                done = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                print("goaway=%d" % ev.error_code)
                done = True
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
        sock.sendall(conn.data_to_send())
    print("status=%s" % status)
    print("message=%s" % message)


if __name__ == "__main__":
    main()
