"""Persistence of port forwards: a libvirt network hook, not a boot service.

Why a hook: kvmnet's rules are only useful next to a running NAT network (its bridge,
and libvirt's own rules that kvmnet's accept must come before), and libvirt runs its
network hooks exactly then: `NETWORK started begin -` after it has set up the bridge
and its firewall rules, at every `net-start`, at every autostart after a reboot, and
after its own daemon restarts a network. A boot service would run before or after
libvirtd without knowing when a network comes up, and not at all on a later
net-destroy + net-start. The hook needs no kvmnet run and does not re-read any spec:
its only input is the state file apply writes (ROOT/var/lib/kvmnet/forwards.json, the
forwards installed). What survives without the hook (seen with libvirt 9.0 on the
iptables backend): a network restart or a libvirtd restart leave table inet kvmnet and
KVMNET_FWD alone, and libvirt re-adds its jumps to FORWARD only when they are missing,
so kvmnet's stays first. What needs it: a reboot or anything else that empties the
ruleset (a firewall reload), and libvirt re-creating its nftables table.

Where: ROOT/etc/libvirt/hooks/network.d/kvmnet-forwards (libvirt >= 6.5 runs every
executable in network.d/ after the classic `network` script, so kvmnet never
overwrites an admin's own hook). libvirt looks for hook scripts when the daemon starts
or reloads (SIGHUP), so a *new* hook needs one `systemctl reload libvirtd` (or
virtnetworkd); apply says so when it writes one.

The script (kvmnet.backend.forward_files writes it) is plain sh: it consumes the network
XML libvirt writes to its stdin, acts on `started` only, and always exits 0, because a
failing hook makes libvirt refuse to start the network. It runs `python -m
kvmnet.backend.hook` (this module: keep its name, installed hooks call it) with the
interpreter kvmnet was installed with; the Python part below logs to
ROOT/var/log/kvmnet/hook.log and installs the rules with kvmnet.backend.firewall, the
same code apply uses.

Test it the way libvirt calls it:
    ip netns exec NS ROOT/etc/libvirt/hooks/network.d/kvmnet-forwards NET started begin - \\
        < /run/libvirt/network/NET.xml
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from kvmnet.backend.firewall import install_rules, state_lock
from kvmnet.errors import KvmnetError
from kvmnet.model.forward import parse_state


def run_hook(state: Path, network: str, operation: str) -> str:
    """What the hook does for one libvirt call; a line for the log."""
    if operation != "started":
        return f"{network} {operation}: nothing to do"
    from kvmnet.backend.files import read_trusted

    with state_lock(state):
        try:  # (root's own file only: its forwards become rules)
            data = read_trusted(state, "the forwards state file")
            fwds = parse_state(data.decode() if data is not None else "")
        except (OSError, ValueError, KvmnetError) as e:
            return f"{network} started: cannot read {state}: {e}"
        try:
            done = install_rules(fwds)
        except KvmnetError as e:
            return f"{network} started: FAILED: {e}"
    return (f"{network} started: {len(fwds)} forward(s): "
            + (", ".join(done) if done else "already in place"))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m kvmnet.backend.hook",
                                description="kvmnet's libvirt network hook (see module doc)")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--log", type=Path, help="append the line here (else stdout)")
    p.add_argument("network")
    p.add_argument("operation")
    p.add_argument("rest", nargs="*")
    args = p.parse_args(argv)
    try:
        line = run_hook(args.state, args.network, args.operation)
    except Exception as e:  # noqa: BLE001 - the hook must never fail libvirt's start
        line = f"{args.network} {args.operation}: FAILED: {e!r}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{stamp} kvmnet-hook[{os.getpid()}] {line}\n"
    if args.log is None:
        print(text, end="", flush=True)
        return 0
    from kvmnet.backend.forward_files import append_line

    append_line(args.log, text)  # never through a symlink, in a folder only root can change
    return 0


if __name__ == "__main__":
    sys.exit(main())
