"""The libvirt qemu hook that puts guests' taps on their VLANs at every start, where
libvirt cannot (libvirt 9 allows `<vlan>` only on Open vSwitch ports; 11 does it
itself on a Linux bridge with vlan_filtering, and there kvmnet writes no hook).

ROOT/etc/libvirt/hooks/qemu.d/kvmnet-vlans (libvirt >= 6.5 runs every executable in
qemu.d/ after the classic `qemu` script, so an admin's own hook stays). libvirt runs it
as `kvmnet-vlans GUEST OPERATION SUBOPERATION -` with the domain's XML on stdin. It acts
on `start` (the taps exist and are in their bridge, QEMU has not run the guest yet: no
frame has left it), `started` and `reconnect` (libvirtd restarted; the same again),
reading the VLANs from kvmnet's record of the NICs it attached (the domain's
`<metadata>`: `<kvmnet:nic mac=... tagged="100,200" untagged="100"/>`), never from a
spec. Each value is checked where it enters (a MAC, VLAN ids, a tap name) and again
where it is written (backend.vlans.set_port). It always exits 0: a failing hook stops
libvirt from starting the guest; a line per call goes to ROOT/var/log/kvmnet/hook.log.

libvirt looks for hook scripts when its daemon starts or reloads: a new hook needs one
`systemctl reload libvirtd` (or virtqemud); apply says so when it writes one.

Test it the way libvirt calls it:
    ROOT/etc/libvirt/hooks/qemu.d/kvmnet-vlans GUEST start begin - < live-domain.xml
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kvmnet.backend.forward_files import LIBVIRT_CONF, hook_env
from kvmnet.backend.forward_files import VLAN_HOOK_FILE as HOOK_FILE
from kvmnet.model.types import parse_ifname, parse_mac
from kvmnet.model.vlan import Vlans

OPERATIONS = ("start", "started", "reconnect")


def ports_for(xml: str) -> list[tuple[str, Vlans]]:
    """(tap, VLANs) of each NIC of a domain XML that kvmnet's record gives VLANs and
    that has a tap; what is not a MAC, VLAN ids or an interface name is left out."""
    from kvmnet.parse.domain import KVMNET_NS, parse_nic_records, parse_nics
    from kvmnet.render.xmlutil import parse_xml

    root = parse_xml(xml)
    meta = root.find(f"metadata/{{{KVMNET_NS}}}nics")
    if meta is None:
        return []
    from lxml import etree

    records = parse_nic_records(etree.tostring(meta, encoding="unicode"))
    taps = {n.mac: n.target for n in parse_nics(xml) if n.target}
    out = []
    for r in records:
        try:
            mac = parse_mac(r.mac)
            tap = parse_ifname(taps.get(mac, ""))
        except ValueError:
            continue
        if r.vlans is not None:
            out.append((tap, r.vlans))
    return out


def run_vlan_hook(xml: str, guest: str, operation: str,
                  set_port: Callable[[str, Vlans], str] | None = None) -> str:
    if operation not in OPERATIONS:
        return f"{guest} {operation}: nothing to do"
    ports = ports_for(xml)
    if not ports:
        return f"{guest} {operation}: no NIC with VLANs of kvmnet's"
    if set_port is None:
        from kvmnet.backend.vlans import set_port as real

        def set_port(tap: str, v: Vlans) -> str:
            return real(tap, v)
    done = []
    for tap, v in ports:
        try:
            done.append(set_port(tap, v) or f"{tap}: {v.text()} already")
        except Exception as e:  # noqa: BLE001 - one tap's failure must not stop the others
            done.append(f"{tap}: FAILED: {e}")
    return f"{guest} {operation}: " + "; ".join(done)


def hook_text(root: Path, python: str | None = None) -> str:
    return f"""#!/bin/sh
# kvmnet-hook v1: written by `kvmnet apply` (guests' VLANs where libvirt cannot set them).
# libvirt runs it as: kvmnet-vlans GUEST OPERATION SUBOPERATION - (domain XML on stdin).
# When a guest starts, its taps get the VLANs kvmnet recorded for its NICs. It always
# exits 0: a failing hook would stop libvirt from starting the guest.
{hook_env(root, python)}case "$2" in
start|started|reconnect)
    if [ -x "$PY" ]; then
        "$PY" -m kvmnet.backend.vlan_hook --log "$LOG" -- "$@" >/dev/null 2>&1
    else
        cat >/dev/null
    fi ;;
*) cat >/dev/null ;;
esac
exit 0
"""


def hook_status(root: Path) -> str | None:
    """'ok' (this kvmnet's hook, executable), 'stale' (anything else there), None."""
    from kvmnet.backend.files import read_regular

    path = Path(root) / HOOK_FILE
    try:
        old = read_regular(path)
    except OSError:
        return "stale"
    if old is None:
        return None
    return "ok" if old[0].decode(errors="replace") == hook_text(root) and os.access(
        path, os.X_OK) else "stale"


def install(root: Path) -> str:
    """Write the hook (0755); what was done."""
    from kvmnet.backend.files import make_dirs, write_bytes_atomic
    from kvmnet.errors import LiveError

    if not (Path(root) / LIBVIRT_CONF).is_dir():
        raise LiveError(f"{Path(root) / LIBVIRT_CONF} does not exist: guests' VLANs need "
                        "the libvirt daemon of this machine to run kvmnet's qemu hook; "
                        "nothing was changed")
    path = Path(root) / HOOK_FILE
    if hook_status(root) == "ok":
        return ""
    make_dirs(path.parent)
    write_bytes_atomic(path, hook_text(root).encode(), 0o755)
    return (f"wrote the libvirt qemu hook {path}: reload libvirtd once (systemctl reload "
            "libvirtd, or virtqemud) so that it runs at guests' next starts")


def remove(root: Path) -> str:
    from kvmnet.backend import files

    path = Path(root) / HOOK_FILE
    return f"removed the libvirt qemu hook {path}" if files.remove(path) else ""


def main(argv: list[str] | None = None) -> int:
    """`python -m kvmnet.backend.vlan_hook [--log FILE] -- GUEST OPERATION ...`, the
    domain XML on stdin. The line goes to FILE through the safe path, else to stdout.
    Always 0."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m kvmnet.backend.vlan_hook")
    p.add_argument("--log", type=Path, help="append the line here (else stdout)")
    p.add_argument("guest")
    p.add_argument("operation")
    p.add_argument("rest", nargs="*")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    guest = args.guest if args.guest.isprintable() else repr(args.guest)
    try:
        line = run_vlan_hook(sys.stdin.read(), guest, args.operation)
    except Exception as e:  # noqa: BLE001 - the hook must never fail libvirt's start
        line = f"{guest} {args.operation}: FAILED: {e!r}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{stamp} kvmnet-vlans[{os.getpid()}] {line}\n"
    if args.log is None:
        print(text, end="", flush=True)
        return 0
    from kvmnet.backend.forward_files import append_line

    append_line(args.log, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
