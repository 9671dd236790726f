"""Run the page: bind the socket (so a taken port is a clear error), make the token when
one is needed, print where to go once, then let uvicorn serve until Ctrl-C."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kvmnet.errors import KvmnetError
from kvmnet.service.look import Source
from kvmnet.web.guard import Listen, check_listen


@dataclass(frozen=True)
class Options:
    source: Source
    listen: Listen
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False
    refresh: float = 2.0


def bind(where: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in where.host else socket.AF_INET
    try:
        return socket.create_server((where.host, where.port), family=family, backlog=64)
    except OSError as e:
        raise KvmnetError(f"cannot listen on {where.host}:{where.port}: {e.strerror}"
                          + ("; another program has that port: pick another with --listen "
                             "ADDR:PORT" if e.errno == 98 else "")) from None


def run(opts: Options, say: Callable[[str], None]) -> None:
    import uvicorn

    from kvmnet.web.app import Config, guarded

    tls = opts.tls_cert is not None
    if tls != (opts.tls_key is not None):
        raise KvmnetError("give both --tls-cert FILE and --tls-key FILE, or neither")
    for f in (opts.tls_cert, opts.tls_key):
        if f is not None and not f.is_file():
            raise KvmnetError(f"{f}: no such file")
    check_listen(opts.listen, tls, opts.insecure_http)
    token = None if opts.listen.loopback else secrets.token_urlsafe(32)
    sock = bind(opts.listen)
    where = Listen(opts.listen.host, sock.getsockname()[1])
    app = guarded(Config(opts.source, token, where.loopback, tls, opts.refresh))
    url = where.url(tls)
    if token:
        say(f"kvmnet serve: {url}?token={token}\n"
            "  (the token is printed only now; every request without it is refused)")
    else:
        say(f"kvmnet serve: {url}\n  (only this host can reach it; from elsewhere: "
            f"ssh -L {where.port}:127.0.0.1:{where.port} THIS-HOST, then open "
            f"http://127.0.0.1:{where.port}/)")
    say("read-only; Ctrl-C stops it.")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=str(opts.tls_cert) if opts.tls_cert else None,
                            ssl_keyfile=str(opts.tls_key) if opts.tls_key else None,
                            server_header=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
