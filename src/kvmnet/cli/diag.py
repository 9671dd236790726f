"""CLI commands to see and diagnose: graph (a topology picture), doctor (host checks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmnet.cli.common import ConnectOpt, JsonOpt, commands, load_checked
from kvmnet.cli.output import err, out, styled
from kvmnet.errors import KvmnetError

if TYPE_CHECKING:
    from kvmnet.render.graph import Graph

app = commands()

NetnsOpt = Annotated[str | None, typer.Option(
    "--netns", metavar="NAME", help="Look at the host links inside this network namespace "
                                    "(labs, tests).")]
OptFile = Annotated[Path | None, typer.Argument(metavar="FILE", show_default=False,
                                                help="The kvmnet YAML spec.")]

GRAPH_FORMATS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".svg": "svg", ".png": "png",
                 ".pdf": "pdf"}


def topology(file: Path | None, uri: str | None, netns: str | None) -> Graph:
    """The picture of a spec file, or of what is live at URI."""
    from kvmnet.render.graph import build_graph

    if file is not None:
        spec, _ = load_checked(file)
        return build_graph(spec, title=str(file))
    spec, facts, title = _live_spec(uri, netns)
    return build_graph(spec, facts, title)


def _live_spec(uri: str | None, netns: str | None) -> tuple[Any, Any, str]:
    """The live state as a Spec with the host's facts (kvmnet.service.views)."""
    from kvmnet.backend.libvirt import connect
    from kvmnet.backend.neigh import guest_addresses
    from kvmnet.service.ops import read_live
    from kvmnet.service.views import live_topology

    with connect(uri) as conn:
        live = read_live(conn, netns)
        rows = guest_addresses(conn, live, None, netns)
    spec, facts = live_topology(live, rows)
    return spec, facts, live.uri


def draw(g: Graph, fmt: str) -> bytes:
    """The picture drawn by Graphviz's dot (the graphviz package runs it: an argument
    list, the DOT on stdin)."""
    import graphviz

    from kvmnet.render.graph_text import dot_graph

    try:
        data: bytes = dot_graph(g).pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise KvmnetError("graphviz is not installed (no 'dot' command): apt-get install "
                          "graphviz (Debian/Ubuntu) or dnf install graphviz (Fedora); or "
                          "write .dot or .mmd instead") from None
    except graphviz.CalledProcessError as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        raise KvmnetError(f"dot -T{fmt} failed: {stderr.strip()}") from None
    return data


@app.command()
def graph(
    output: Annotated[Path, typer.Option(
        "-o", "--output", metavar="OUT",
        help="Where to write; the extension picks the format: .svg, .png, .pdf (Graphviz), "
             ".dot, .mmd (Mermaid).", show_default=False)],
    file: OptFile = None,
    connect_: ConnectOpt = None,
    netns: NetnsOpt = None,
) -> None:
    """Draw the topology: host NICs and bridges, libvirt networks (mode, subnet, DHCP,
    bridge), guests' NICs (MAC, address), port forwards, the uplink and the route the LAN
    router needs for routed networks. From FILE, or from what is live at -c URI."""
    if (file is None) == (connect_ is None):
        raise typer.BadParameter("give either FILE or -c URI (not both)")
    kind = GRAPH_FORMATS.get(output.suffix.lower())
    if kind is None:
        raise typer.BadParameter(f"unknown extension {output.suffix or '(none)'}: use "
                                 f"{', '.join(GRAPH_FORMATS)}", param_hint="-o")
    from kvmnet.backend.files import write_bytes_atomic
    from kvmnet.render.graph_text import to_dot, to_mermaid

    g = topology(file, connect_, netns)
    data = (to_mermaid(g).encode() if kind == "mermaid" else to_dot(g).encode()
            if kind == "dot" else draw(g, kind))
    write_bytes_atomic(output, data, 0o644)  # (the picture came from dot's stdout)
    out.print(f"wrote {output}")


def doctor_notes(uri: str, netns: str | None) -> list[str]:
    """What doctor says before its checks: that it only reads, and what it looks at."""
    notes = ["kvmnet doctor reads only: it changes nothing; each fix is for you to run."]
    where = f"network namespace {netns}" if netns else "this machine"
    if uri.startswith("test:"):
        notes.append(f"note: {uri} is libvirt's test driver, which keeps its networks in "
                     f"memory; the host checks (forwarding, firewall, bridges, MTUs) are of "
                     f"{where}'s real host networking, not of that URI.")
    return notes


_MARK = {"ok": (" ok ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red"),
         "skip": ("skip", "dim")}


@app.command()
def doctor(
    file: OptFile = None,
    connect_: ConnectOpt = None,
    as_json: JsonOpt = False,
    netns: NetnsOpt = None,
    sysfs_root: Annotated[Path | None, typer.Option(
        "--sysfs-root", metavar="DIR", help="Read /sys from DIR (tests).")] = None,
    proc_root: Annotated[Path | None, typer.Option(
        "--proc-root", metavar="DIR", help="Read /proc from DIR (tests).")] = None,
) -> None:
    """Check the host for what breaks guest networking, each with what it means and the
    exact fix: libvirtd, IPv4 forwarding, br_netfilter, a FORWARD DROP policy, libvirt's
    firewall backend, dnsmasq, Wi-Fi bridge ports, subnets on host routes, MTUs, missing or
    down bridges, duplicate MACs. With FILE, its networks are checked too. Exit 1 if any
    check fails.

    Read-only: it changes nothing; every fix is a command for you to run. On a test:///
    URI the host checks are still of this machine's real host.
    """
    from kvmnet.doctor.run import doctor as run

    spec = load_checked(file, as_json)[0] if file is not None else None
    facts, checks = run(connect_, spec, str(file) if file else "FILE", netns, sysfs_root,
                        proc_root)
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        from kvmnet.service.views import doctor_data

        out.json(doctor_data(facts.uri, netns, checks))
    else:
        out.print(*doctor_notes(facts.uri, netns))
        for c in checks:
            out.print(styled(_MARK[c.status], f" {c.title}: {c.message}"))
            for line in c.fix.splitlines() if c.status in ("warn", "fail") else ():
                out.print(styled(f"       fix: {line}"))
        counts = {s: sum(1 for c in checks if c.status == s) for s in _MARK}
        (err if failed else out).print(
            f"{counts['fail']} failed, {counts['warn']} warning(s), {counts['ok']} ok, "
            f"{counts['skip']} skipped.")
    if failed:
        raise typer.Exit(1)
