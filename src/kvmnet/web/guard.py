"""What keeps `kvmnet serve` safe: where it may listen, the token, the headers.

- It binds 127.0.0.1 by default (reach it through an SSH tunnel). On loopback the Host
  header must name loopback too, so a web page whose name was rebound to 127.0.0.1
  (DNS rebinding) gets nothing.
- Any other address needs the token kvmnet generated and printed once: as `?token=` on
  the first visit (it becomes an HttpOnly, SameSite=Strict cookie and leaves the URL),
  or `Authorization: Bearer TOKEN` for scripts; compared in constant time
  (hmac.compare_digest). Such an address also needs TLS unless --insecure-http.
- Every answer forbids framing, sniffing and any script but the page's own files
  (Content-Security-Policy without 'unsafe-inline'); nothing is cached.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from kvmnet.errors import KvmnetError

COOKIE = "kvmnet_token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def url(self, tls: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if tls else 'http'}://{host}:{self.port}/"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> Listen:
    """ADDR:PORT, [IPv6]:PORT, or :PORT (127.0.0.1); ADDR is an IP address or localhost."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise KvmnetError(f"--listen {text!r}: write ADDR:PORT, e.g. 127.0.0.1:8470 or "
                          "[::1]:8470 (port 0 picks a free one)")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise KvmnetError(f"--listen {text!r}: {host!r} is not an IP address; write the "
                              "address to listen on (0.0.0.0 for every IPv4 one)") from None
    return Listen(host, int(port))


def check_listen(where: Listen, tls: bool, insecure_http: bool) -> None:
    """Refuse a non-loopback address without TLS, unless the user asked for plain HTTP."""
    if where.loopback or tls or insecure_http:
        return
    raise KvmnetError(
        f"refusing to serve {where.host} without TLS: the token and the host's state "
        "would cross the network in clear text. Give --tls-cert FILE --tls-key FILE, or "
        "listen on 127.0.0.1 (the default) and use an SSH tunnel: ssh -L 8470:127.0.0.1:8470 "
        "HOST; or, on a network you trust, --insecure-http")


def token_ok(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class Guard:
    """ASGI middleware: the headers on every answer; the token or loopback Host check
    before any route runs."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool, tls: bool) -> None:
        self.app, self.token, self.loopback, self.tls = app, token, loopback, tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await _answer(send_with_headers, *refusal)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if self.token and "token" in query:  # first visit: a cookie, and a clean URL
            rest = urlencode({k: v for k, v in query.items() if k != "token"})
            location = scope.get("path", "/") + (f"?{rest}" if rest else "")
            cookie = (f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                      + ("; Secure" if self.tls else ""))
            await _answer(send_with_headers, 303, "", [(b"location", location.encode()),
                                                       (b"set-cookie", cookie.encode())])
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if self.loopback and _host_name(headers.get("host", "")) not in LOOPBACK_NAMES:
            return 421, "kvmnet serve answers only to http://127.0.0.1 or localhost.\n"
        if not self.token:
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        auth = headers.get("authorization", "")
        cookie = SimpleCookie(headers.get("cookie", ""))
        given = (query.get("token") or (auth[7:] if auth.startswith("Bearer ") else None)
                 or (cookie[COOKIE].value if COOKIE in cookie else None))
        if token_ok(given, self.token):
            return None
        return 401, ("A token is needed: open the URL `kvmnet serve` printed when it "
                     "started (…/?token=…), or send Authorization: Bearer TOKEN.\n")


def _host_name(host: str) -> str:
    """The name of a Host header, without its port ([::1]:8470 -> ::1)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


async def _answer(send: Send, status: int, text: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
