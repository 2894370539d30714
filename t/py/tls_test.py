"""t/py/tls_test.py - the python3-grpcio side of t/tls.sh (issue 15).

  serve PORT CERT KEY CLIENT_CA|- LOG   a saga participant over TLS (mTLS with
                                        a CA): every method answers an empty
                                        StepReply, logs its path to LOG; a
                                        path ending in /Slow waits 3 s
  health PORT CA [CERT KEY]             Health/Check over a secure channel:
                                        exit 0 if SERVING, 1 if refused
  flows PORT CA CERT KEY                ListFlows over mTLS: names printed
  alpn PORT CA none|PROTO               a TLS client that does not offer h2
                                        (no ALPN, or only PROTO): exit 0 if
                                        sagad refuses the handshake
  subject PORT CA                       the CN of sagad's certificate, as a
                                        new connection (ALPN h2) sees it
  https PORT CA PATH [CERT KEY]         GET https://127.0.0.1:PORT/PATH: the
                                        status printed, exit 0 if 200, 1 if
                                        the handshake was refused
  silent PORT SECONDS                   a TCP client that never starts its
                                        TLS handshake: exit 0 if sagad closes
                                        it within SECONDS
"""
import socket
import ssl
import sys
import time
from concurrent import futures

import grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def serve(port, cert, key, client_ca, log):
    out = open(log, "a", buffering=1)

    def handler(path):
        def h(req, ctx):
            out.write(path + "\n")
            if path.endswith("/Slow"):
                time.sleep(3)
            return b""
        return h

    class Generic(grpc.GenericRpcHandler):
        def service(self, details):
            return grpc.unary_unary_rpc_method_handler(handler(details.method))

    srv = grpc.server(futures.ThreadPoolExecutor(8))
    srv.add_generic_rpc_handlers((Generic(),))
    if client_ca == "-":
        creds = grpc.ssl_server_credentials([(read(key), read(cert))])
    else:
        creds = grpc.ssl_server_credentials(
            [(read(key), read(cert))], root_certificates=read(client_ca),
            require_client_auth=True)
    srv.add_secure_port("127.0.0.1:%d" % port, creds)
    srv.start()
    srv.wait_for_termination()


def channel(port, ca, cert=None, key=None):
    if cert:
        creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    else:
        creds = grpc.ssl_channel_credentials(read(ca))
    return grpc.secure_channel("127.0.0.1:%d" % port, creds)


def health(port, ca, cert=None, key=None):
    ch = channel(port, ca, cert, key)
    try:
        rep = ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
    except grpc.RpcError as e:
        print("refused: %s: %s" % (e.code().name, e.details()))
        return 1
    # HealthCheckResponse{status: SERVING} is 08 01.
    if rep != b"\x08\x01":
        print("unexpected reply %r" % rep)
        return 2
    print("SERVING")
    return 0


def flows(port, ca, cert, key):
    ch = channel(port, ca, cert, key)
    rep = ch.unary_unary("/saga.v1.Orchestrator/ListFlows")(b"", timeout=5)
    # The flow names are printable runs inside the reply: enough to check.
    print(rep.decode("ascii", "replace"))
    return 0


def alpn(port, ca, proto):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if proto != "none":
        ctx.set_alpn_protocols([proto])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t = ctx.wrap_socket(s, server_hostname="localhost")
    except ssl.SSLError as e:
        print("refused: %s" % e)
        return 0
    print("accepted with ALPN %r" % t.selected_alpn_protocol())
    return 1


def subject(port, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.set_alpn_protocols(["h2"])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="localhost")
    for rdn in t.getpeercert()["subject"]:
        for k, v in rdn:
            if k == "commonName":
                print(v)
    t.close()
    return 0


def silent(port, secs):
    s = socket.create_connection(("127.0.0.1", port), timeout=secs)
    t0 = time.monotonic()
    try:
        data = s.recv(1)
    except socket.timeout:
        print("still open after %.1f s" % (time.monotonic() - t0))
        return 1
    except ConnectionResetError:
        data = b""
    print("closed after %.1f s (%r)" % (time.monotonic() - t0, data))
    return 0 if data == b"" else 1


def https(port, ca, path, cert=None, key=None):
    import urllib.request
    import urllib.error
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    try:
        with urllib.request.urlopen("https://127.0.0.1:%d%s" % (port, path),
                                    context=ctx, timeout=5) as r:
            print(r.status, r.read(200).decode("utf-8", "replace"))
            return 0 if r.status == 200 else 2
    except urllib.error.HTTPError as e:
        print("HTTP %d" % e.code)
        return 2
    except (urllib.error.URLError, ssl.SSLError, OSError) as e:
        print("refused: %s" % e)
        return 1


def main(argv):
    cmd = argv[1]
    if cmd == "serve":
        serve(int(argv[2]), argv[3], argv[4], argv[5], argv[6])
        return 0
    if cmd == "health":
        return health(int(argv[2]), *argv[3:])
    if cmd == "flows":
        return flows(int(argv[2]), *argv[3:])
    if cmd == "alpn":
        return alpn(int(argv[2]), argv[3], argv[4])
    if cmd == "https":
        return https(int(argv[2]), *argv[3:])
    if cmd == "silent":
        return silent(int(argv[2]), float(argv[3]))
    if cmd == "subject":
        return subject(int(argv[2]), argv[3])
    print("unknown command %s" % cmd)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
