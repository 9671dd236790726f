"""A tiny HTTP server for a test namespace: answers "PEER <client address> <path>" and
appends the same line to a log file, so a test sees the source address that arrived.

    python3 peer_server.py PORT LOGFILE      (run with `ip netns exec NS ...`)
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    port, log = int(sys.argv[1]), sys.argv[2]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            line = f"PEER {self.client_address[0]} {self.path}\n"
            with open(log, "a") as f:
                f.write(line)
            body = line.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
