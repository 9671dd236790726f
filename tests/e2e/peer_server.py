"""A tiny HTTP server for a test namespace: answers "PEER <client address> <path>" and
appends the same line to a log file, so a test sees the source address that arrived.

    python3 peer_server.py PORT LOGFILE [::]   (run with `ip netns exec NS ...`)

With a third argument "::" it listens on IPv6 too (one dual-stack socket; an IPv4
client then shows as ::ffff:a.b.c.d).
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


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

    if sys.argv[3:] == ["::"]:
        DualStackServer(("::", port), Handler).serve_forever()
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
