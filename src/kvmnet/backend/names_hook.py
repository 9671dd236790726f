"""The libvirt network hook that gives a network's new bridge its DNS in systemd-resolved
again (host.resolve_guests): resolved forgets a link's settings when the link goes, and
libvirt makes a new bridge at every start of a network, also one kvmnet did not start
(a reboot, `virsh net-start`, libvirtd restarting it).

ROOT/etc/libvirt/hooks/network.d/kvmnet-names (beside kvmnet-forwards: see
kvmnet.backend.hook for how libvirt runs these) passes the network XML libvirt writes to
its stdin to `python -m kvmnet.backend.names_hook`, which acts on `started` of a network
kvmnet manages that has a domain: its bridge asks its own addresses for `~DOMAIN`
(backend.resolved). It always exits 0; a line per call goes to
ROOT/var/log/kvmnet/hook.log.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kvmnet.backend.forward_files import LIBVIRT_CONF, hook_env
from kvmnet.backend.forward_files import NAMES_HOOK_FILE as HOOK_FILE
from kvmnet.model.live import LinkDns
from kvmnet.render.network import is_managed
from kvmnet.render.xmlutil import parse_xml


def link_for(xml: str) -> tuple[str, LinkDns] | None:
    """(bridge, what resolved should hold) for a network XML; None when there is
    nothing to set (not kvmnet's, no bridge, no domain, no address, DNS off)."""
    root = parse_xml(xml)
    bridge = root.find("bridge")
    domain = root.find("domain")
    dns = root.find("dns")
    ips = [ip.get("address") for ip in root.iterfind("ip") if ip.get("address")]
    if (not is_managed(root) or bridge is None or not bridge.get("name") or domain is None
            or not domain.get("name") or not ips
            or (dns is not None and dns.get("enable") == "no")):
        return None
    return str(bridge.get("name")), LinkDns(tuple(str(a) for a in ips),
                                            (f"~{domain.get('name')}",))


def run_names_hook(xml: str, network: str, operation: str,
                   set_link: Callable[[str, LinkDns], None] | None = None) -> str:
    if operation != "started":
        return f"{network} {operation}: nothing to do"
    found = link_for(xml)
    if found is None:
        return f"{network} started: no domain of kvmnet's to route"
    if set_link is None:
        from kvmnet.backend import resolved

        set_link = resolved.set_link
    bridge, link = found
    set_link(bridge, link)
    return (f"{network} started: systemd-resolved: {bridge} asks "
            f"{', '.join(link.servers)} for {', '.join(link.domains)}")


def hook_text(root: Path, python: str | None = None) -> str:
    return f"""#!/bin/sh
# kvmnet-hook v1: written by `kvmnet apply` (host.resolve_guests with systemd-resolved).
# libvirt runs it as: kvmnet-names NETWORK OPERATION SUBOPERATION - (network XML on
# stdin). When a network kvmnet manages has started, its new bridge gets its DNS in
# systemd-resolved again. It always exits 0.
{hook_env(root, python)}if [ "$2" = started ] && [ -x "$PY" ]; then
    "$PY" -m kvmnet.backend.names_hook --log "$LOG" -- "$@" >/dev/null 2>&1
else
    cat >/dev/null
fi
exit 0
"""


def install(root: Path) -> str | None:
    """Write the hook (0755) when libvirt's folder is there; what was done, or None."""
    from kvmnet.backend.files import make_dirs, read_regular, write_bytes_atomic

    if not (Path(root) / LIBVIRT_CONF).is_dir():
        return None
    path = Path(root) / HOOK_FILE
    text = hook_text(root)
    old = read_regular(path)
    if old is not None and old[0].decode(errors="replace") == text:
        return None
    make_dirs(path.parent)
    write_bytes_atomic(path, text.encode(), 0o755)
    return f"wrote the libvirt hook {path} (reload libvirtd once so it sees it)"


def main(argv: list[str] | None = None) -> int:
    """`python -m kvmnet.backend.names_hook [--log FILE] -- NETWORK OPERATION ...`, the
    network XML on stdin. The line goes to FILE through the safe path (never through a
    symlink, only in a folder root alone can change), else to stdout. Always 0."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m kvmnet.backend.names_hook")
    p.add_argument("--log", type=Path, help="append the line here (else stdout)")
    p.add_argument("network")
    p.add_argument("operation")
    p.add_argument("rest", nargs="*")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        line = run_names_hook(sys.stdin.read(), args.network, args.operation)
    except Exception as e:  # noqa: BLE001 - the hook must never fail libvirt's start
        line = f"{args.network} {args.operation}: FAILED: {e!r}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{stamp} kvmnet-names[{os.getpid()}] {line}\n"
    if args.log is None:
        print(text, end="", flush=True)
        return 0
    from kvmnet.backend.forward_files import append_line

    append_line(args.log, text)  # never through a symlink, in a folder only root can change
    return 0


if __name__ == "__main__":
    sys.exit(main())
