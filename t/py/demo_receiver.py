"""demo_receiver.py - the callback receiver of `./run.sh demo`: a plain HTTP
server (python's http.server, nothing to install) that catches the POSTs
sagad makes to an async saga's callback_url, answers 200, and keeps each
body, pretty-printed, as DIR/<saga id>.json for the demo to show.

It listens on a port the kernel picks on 127.0.0.1 and writes that port to
PORTFILE once it accepts, so the caller never races another program for a
port. It stops on SIGTERM or SIGINT.

Usage: demo_receiver.py PORTFILE DIR
"""

import json
import os
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORTFILE = sys.argv[1]
DIR = sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        try:
            saga = json.loads(body)
            saga_id = str(saga.get("id", ""))
            text = json.dumps(saga, indent=2, sort_keys=True)
        except ValueError:
            saga_id, text = "", body
        # The id names a file: keep it to characters that cannot escape DIR.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", saga_id) or "unnamed"
        tmp = os.path.join(DIR, "." + name + ".tmp")
        with open(tmp, "w") as f:
            f.write("POST %s (%s)\n%s\n" % (
                self.path, self.headers.get("Content-Type", "?"), text))
        os.replace(tmp, os.path.join(DIR, name + ".json"))
        print("callback for saga %s on %s" % (saga_id, self.path), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def main():
    os.makedirs(DIR, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(PORTFILE + ".tmp", "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.replace(PORTFILE + ".tmp", PORTFILE)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
