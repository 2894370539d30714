"""async_receiver.py - a callback receiver for t/async.sh: a plain HTTP
server (python's http.server) that writes one JSON line per POST it gets
into a log file and answers by path:

  /ok/...      200
  /flaky/...   500 to the first two POSTs of a saga id, then 200
  /reject/...  400
  /close/...   200 with "Connection: close" (the client must reconnect)
  /hang/...    200 after 1.5 s; its arrival is noted in LOGFILE.started first

Each connection it accepts adds a line to LOGFILE.conns, so a test can
count the connections its callbacks came on (keep-alive).

Usage: async_receiver.py PORT LOGFILE
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
LOG = sys.argv[2]
lock = threading.Lock()
seen = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            with open(LOG + ".conns", "a") as f:
                f.write("%s:%d\n" % self.client_address[:2])

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        try:
            saga_id = json.loads(body).get("id", "")
        except ValueError:
            saga_id = ""
        if self.path.startswith("/hang/"):
            with lock:
                with open(LOG + ".started", "a") as f:
                    f.write(saga_id + "\n")
            time.sleep(1.5)
        with lock:
            seen[saga_id] = seen.get(saga_id, 0) + 1
            nth = seen[saga_id]
            if self.path.startswith("/flaky/"):
                status = 500 if nth <= 2 else 200
            elif self.path.startswith("/reject/"):
                status = 400
            else:
                status = 200
            with open(LOG, "a") as f:
                f.write(json.dumps({
                    "path": self.path, "id": saga_id, "nth": nth,
                    "status": status,
                    "content_type": self.headers.get("Content-Type", ""),
                    "body": body}) + "\n")
        out = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if self.path.startswith("/close/"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, fmt, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
