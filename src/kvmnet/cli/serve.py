"""kvmnet serve: the read-only web page (kvmnet.web)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kvmnet.cli.common import ConnectOpt, commands
from kvmnet.cli.output import err

app = commands()


@app.command()
def serve(
    connect_: ConnectOpt = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", metavar="FILE", help="Also show what this spec would change (the plan, as "
                                       "kvmnet plan FILE shows it) and colour drift. A spec "
                                       "with hosts: gets a view per host and a summary.")] = None,
    listen: Annotated[str, typer.Option(
        "--listen", metavar="ADDR:PORT", help="Where to listen. Any address but loopback "
                                              "needs the token printed at start and TLS "
                                              "(or --insecure-http).")] = "127.0.0.1:8470",
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", metavar="FILE", help="The certificate's private key (PEM).")] = None,
    insecure_http: Annotated[bool, typer.Option(
        "--insecure-http", help="Allow plain HTTP on a non-loopback address (the token "
                                "still guards it, but travels in clear).")] = False,
    refresh: Annotated[float, typer.Option(
        "--refresh", metavar="SECONDS", min=0.5,
        help="How often the host is read again; the page follows.")] = 2.0,
    netns: Annotated[str | None, typer.Option(
        "--netns", metavar="NAME", help="Read host links inside this network namespace "
                                        "(labs, tests).")] = None,
    no_doctor: Annotated[bool, typer.Option(
        "--no-doctor", help="Leave out the doctor view (its checks run on every read).")
    ] = False,
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", metavar="GLOB", help="As plan's --scope: the spec shares the host, only "
                                        "networks matching GLOB are shown as removed when it "
                                        "leaves them out. Repeatable.")] = None,
    root: Annotated[Path, typer.Option(
        "--root", metavar="DIR", help="Where kvmnet's host files are (port forwards' state "
                                      "file) instead of /.")] = Path("/"),
) -> None:
    """Serve a read-only web page of the host: topology (live state coloured), networks,
    guests' NICs, leases, port forwards, doctor, and with --spec FILE the plan.

    It binds 127.0.0.1:8470 by default: from another machine, tunnel to it
    (ssh -L 8470:127.0.0.1:8470 HOST) and open http://127.0.0.1:8470/. The page
    refreshes itself when the host changes; /api/show, /api/leases, /api/doctor and
    /api/plan give the same JSON as the commands' --json. It never changes anything.
    """
    from kvmnet.web import require

    require()
    from kvmnet.service.look import Source
    from kvmnet.web.guard import parse_listen
    from kvmnet.web.serve import Options, run

    if spec is not None and not spec.is_file():
        raise typer.BadParameter(f"{spec}: no such file", param_hint="--spec")
    where = parse_listen(listen)
    src = Source(connect_, spec, netns, root, not no_doctor, tuple(scope or ()))
    run(Options(src, where, tls_cert, tls_key, insecure_http, refresh), err.print)
