"""auth_http_test.py - sagad's tokens on the HTTP listener (see t/auth.sh):
every endpoint of DESIGN.md's HTTP contract against every kind of caller
(no token, a wrong one, read, run, operate): 401 without a token or with an
unknown one, 403 with too weak a role, else the endpoint's own answer; the
probes, /metrics and the dashboard page need none.
"""

import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sync_lib import check, equal, ok  # noqa: E402

BASE = "http://127.0.0.1:%s" % os.environ["AUTH_HTTP_PORT"]
TOK = {"read": os.environ["TOK_READ"], "run": os.environ["TOK_RUN"],
       "operate": os.environ["TOK_OPERATE"]}
ROLES = ["read", "run", "operate"]


def call(method, path, auth=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def main():
    st, _, _ = call("POST", "/api/v1/sagas", "Bearer " + TOK["run"],
                    {"flow": "Booking", "requestId": "http-auth-1"})
    equal(st, 200, "the Run that makes a saga to read")
    open_ = [("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics"),
             ("GET", "/")]
    for method, path in open_:
        st, _, _ = call(method, path)
        check(st not in (401, 403), "%s %s without a token: %d"
              % (method, path, st))
    ok("/livez, /readyz, /metrics and / need no token")
    routes = [
        ("GET", "/api/v1/sagas?state=COMPLETED", None, "read", 200),
        ("GET", "/api/v1/sagas/http-auth-1", None, "read", 200),
        ("GET", "/api/v1/sagas/http-auth-1/events", None, "read", 200),
        ("POST", "/api/v1/sagas", {"flow": "Booking"}, "run", 200),
        ("POST", "/api/v1/sagas/http-auth-1:cancel", {"reason": "x"},
         "operate", 409),
        ("POST", "/api/v1/sagas/http-auth-1:retry", {}, "operate", 409),
        ("POST", "/api/v1/sagas/http-auth-1:resolve", {"note": "x"},
         "operate", 409),
    ]
    n = 0
    for method, path, body, need, allowed in routes:
        for auth in (None, "Bearer wrong-" + TOK["read"], "Basic abc",
                     TOK["operate"]):
            st, hd, b = call(method, path, auth, body)
            equal(st, 401, "%s %s with %r" % (method, path,
                                              (auth or "")[:8]))
            check(hd.get("WWW-Authenticate", "").startswith("Bearer"),
                  "401 without WWW-Authenticate: Bearer")
            check(TOK["operate"] not in b.decode(errors="replace"),
                  "the token is in the body")
            n += 1
        for role in ROLES:
            st, _, b = call(method, path, "Bearer " + TOK[role], body)
            if ROLES.index(role) < ROLES.index(need):
                equal(st, 403, "%s %s with a %s token" % (method, path, role))
                check(need in b.decode(), "403 names the role: %r" % b)
            else:
                equal(st, allowed, "%s %s with a %s token (%r)"
                      % (method, path, role, b[:200]))
            n += 1
    ok("%d HTTP requests: each role against each endpoint: 401, 403, "
       "allowed" % n)


if __name__ == "__main__":
    main()
