"""auth_test.py - sagad's tokens with roles (see t/auth.sh), from
python3-grpcio: every Orchestrator method against every kind of caller (no
token, a wrong one, read, run, operate), as DESIGN.md's contract says:
missing or unknown UNAUTHENTICATED, too weak a role PERMISSION_DENIED, else
the method's own answer. Health needs no token.

  auth_test.py matrix            the whole table
  auth_test.py works TOKEN       ListFlows with TOKEN succeeds
  auth_test.py refused TOKEN     ListFlows with TOKEN is UNAUTHENTICATED
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import SC, Orch, check, equal, fail, ok  # noqa: E402
from sync_lib import saga_pb2, health_pb2  # noqa: E402

PORT = int(os.environ["AUTH_PORT"])
TOK = {"read": os.environ["TOK_READ"], "run": os.environ["TOK_RUN"],
       "operate": os.environ["TOK_OPERATE"]}
ROLES = ["read", "run", "operate"]


def md(token):
    return None if token is None else (("authorization", "Bearer " + token),)


def call(stub, req, token, stream=False, raw=None):
    try:
        r = stub(req, metadata=raw if raw is not None else md(token),
                 timeout=20)
        if stream:
            for _ in r:
                pass
        return SC.OK, ""
    except Exception as e:  # grpc.RpcError
        return e.code(), e.details()


def matrix():
    o = Orch(PORT)
    # A saga to read, cancel, retry and resolve (the last three answer
    # FAILED_PRECONDITION on a COMPLETED saga: the role was enough).
    o.run_rpc(saga_pb2.RunRequest(flow="Booking", request_id="auth-1"),
              metadata=md(TOK["run"]), timeout=20)
    rpcs = [
        ("Get", o.get_rpc, saga_pb2.GetRequest(id="auth-1"), "read", False),
        ("Watch", o.watch_rpc, saga_pb2.GetRequest(id="auth-1"), "read",
         True),
        ("List", o.list_rpc, saga_pb2.ListRequest(page_size=5), "read",
         False),
        ("ListFlows", o.flows_rpc, saga_pb2.ListFlowsRequest(), "read",
         False),
        ("Run", o.run_rpc, saga_pb2.RunRequest(flow="Booking"), "run",
         False),
        ("Cancel", o.cancel_rpc, saga_pb2.CancelRequest(id="auth-1"),
         "operate", False),
        ("Retry", o.retry_rpc, saga_pb2.RetryRequest(id="auth-1"),
         "operate", False),
        ("Resolve", o.resolve_rpc,
         saga_pb2.ResolveRequest(id="auth-1", note="checked"), "operate",
         False),
    ]
    n = 0
    for name, stub, req, need, stream in rpcs:
        code, det = call(stub, req, None, stream)
        equal(code, SC.UNAUTHENTICATED, "%s without a token" % name)
        check("Bearer" in det, "%s: the message says what to send: %r"
              % (name, det))
        code, det = call(stub, req, "not-a-token-" + "x" * 20, stream)
        equal(code, SC.UNAUTHENTICATED, "%s with a wrong token" % name)
        for wrong in ("Basic " + TOK["operate"], "Bearer", "Bearer x",
                      TOK["operate"]):
            code, _ = call(stub, req, None, stream,
                           (("authorization", wrong),))
            equal(code, SC.UNAUTHENTICATED, "%s with authorization %r"
                  % (name, wrong[:9]))
        for role in ROLES:
            code, det = call(stub, req, TOK[role], stream)
            if ROLES.index(role) < ROLES.index(need):
                equal(code, SC.PERMISSION_DENIED,
                      "%s with a %s token" % (name, role))
                check(need in det, "%s: the message names the role "
                      "needed: %r" % (name, det))
            else:
                check(code not in (SC.UNAUTHENTICATED, SC.PERMISSION_DENIED),
                      "%s with a %s token: refused %s %r"
                      % (name, role, code, det))
                if name in ("Cancel", "Retry", "Resolve"):
                    equal(code, SC.FAILED_PRECONDITION,
                          "%s of a COMPLETED saga, %s token" % (name, role))
                else:
                    equal(code, SC.OK, "%s with a %s token" % (name, role))
            n += 1
    ok("%d calls: each role against each RPC: UNAUTHENTICATED, "
       "PERMISSION_DENIED, allowed" % (n + 6 * len(rpcs)))
    # Health stays open.
    r = o.check_rpc(health_pb2.HealthCheckRequest(service=""), timeout=10)
    equal(r.status, health_pb2.HealthCheckResponse.SERVING, "Health.Check")
    ok("grpc.health.v1.Health needs no token")
    # A Cancel names its caller in the log: a saga still running is needed;
    # a sync saga's Run returns at its end, so the Cancel of the ended one
    # above is what the log shows (refused, never logged as asked).


def works(token):
    o = Orch(PORT)
    code, det = call(o.flows_rpc, saga_pb2.ListFlowsRequest(), token)
    equal(code, SC.OK, "ListFlows with the token (%s)" % det)


def refused(token):
    o = Orch(PORT)
    code, _ = call(o.flows_rpc, saga_pb2.ListFlowsRequest(), token)
    equal(code, SC.UNAUTHENTICATED, "ListFlows with the token")


def main():
    if sys.argv[1] == "matrix":
        matrix()
    elif sys.argv[1] == "works":
        works(sys.argv[2])
    elif sys.argv[1] == "refused":
        refused(sys.argv[2])
    else:
        fail("unknown subcommand " + sys.argv[1])


if __name__ == "__main__":
    main()
