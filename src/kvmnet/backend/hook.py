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

The script is plain sh: it consumes the network XML libvirt writes to its stdin, acts
on `started` only, and always exits 0, because a failing hook makes libvirt refuse to
start the network. It runs `python -m kvmnet.backend.hook` with the interpreter kvmnet
was installed with; the Python part logs to ROOT/var/log/kvmnet/hook.log.

Test it the way libvirt calls it:
    ip netns exec NS ROOT/etc/libvirt/hooks/network.d/kvmnet-forwards NET started begin - \\
        < /run/libvirt/network/NET.xml
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from kvmnet.errors import KvmnetError, LiveError

HOOK_FILE = "etc/libvirt/hooks/network.d/kvmnet-forwards"
LOG_FILE = "var/log/kvmnet/hook.log"
MARK = "# kvmnet-hook v1"
STATE_FILE = "var/lib/kvmnet/forwards.json"  # the forwards installed (live/firewall.sync)


def hook_path(root: Path) -> Path:
    return Path(root) / HOOK_FILE


def state_path(root: Path) -> Path:
    return Path(root) / STATE_FILE


def has_forward_state(root: Path = Path("/")) -> bool:
    """Has kvmnet ever left port forwards here that are not cleanly gone? Its state file,
    the lock beside it (removed only after a sync that left no forwards finished) or its
    libvirt hook: if none exists, kvmnet's rules cannot exist, and a spec without
    forwards needs no nft read (a no-op apply then runs no nft, nor loads the firewall
    code: this is here, not in live/firewall)."""
    path = state_path(root)
    return any(os.path.lexists(p) for p in (path, path.with_suffix(".lock"), hook_path(root)))


def hook_text(root: Path, python: str | None = None) -> str:
    import shlex

    root = Path(root).resolve()
    py = shlex.quote(python or sys.executable)
    state = shlex.quote(str(state_path(root)))
    log = shlex.quote(str(root / LOG_FILE))
    return f"""#!/bin/sh
{MARK}: written by `kvmnet apply`, removed by it when no forwards are left.
# libvirt runs it as: kvmnet-forwards NETWORK OPERATION SUBOPERATION - (network XML on
# stdin). When a network has started, it puts kvmnet's port forward rules back, from
# the state file kvmnet apply wrote. It always exits 0: a failing hook would stop
# libvirt from starting the network.
cat >/dev/null
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH
PY={py}
STATE={state}
LOG={log}
if [ "$2" = started ] && [ -x "$PY" ] && [ -f "$STATE" ]; then
    mkdir -p "$(dirname "$LOG")" 2>/dev/null
    "$PY" -m kvmnet.backend.hook --state "$STATE" "$@" </dev/null >>"$LOG" 2>&1
fi
exit 0
"""


def hook_status(root: Path) -> str | None:
    """'ok' (kvmnet's current hook, executable), 'stale' (anything else there), None."""
    path = hook_path(root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "stale"
    return "ok" if text == hook_text(root) and os.access(path, os.X_OK) else "stale"


def install(root: Path) -> bool:
    """Write the hook (0755); True when it did not exist before (libvirtd must reload)."""
    from kvmnet.backend.files import (
        write_bytes_atomic,  # here: a run that only reads never needs it
    )

    path = hook_path(root)
    existed = path.exists()
    if hook_status(root) == "ok":
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, hook_text(root).encode(), 0o755)
    except OSError as e:
        raise LiveError(f"cannot write the libvirt hook {path}: {e.strerror or e}") from None
    return not existed


def remove(root: Path) -> bool:
    path = hook_path(root)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise LiveError(f"cannot remove the libvirt hook {path}: {e.strerror or e}") from None
    return True


def run_hook(state: Path, network: str, operation: str) -> str:
    """What the hook does for one libvirt call; a line for the log."""
    from kvmnet.backend.firewall import install_rules, state_lock
    from kvmnet.model.forward import parse_state

    if operation != "started":
        return f"{network} {operation}: nothing to do"
    with state_lock(state):
        try:
            fwds = parse_state(state.read_text())
        except (OSError, ValueError) as e:
            return f"{network} started: cannot read {state}: {e}"
        try:
            done = install_rules(fwds)
        except KvmnetError as e:
            return f"{network} started: FAILED: {e}"
    return (f"{network} started: {len(fwds)} forward(s): "
            + (", ".join(done) if done else "already in place"))


def main(argv: list[str] | None = None) -> int:
    import argparse  # here: apply imports this module to read the hook's status

    p = argparse.ArgumentParser(prog="python -m kvmnet.backend.hook",
                                description="kvmnet's libvirt network hook (see module doc)")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("network")
    p.add_argument("operation")
    p.add_argument("rest", nargs="*")
    args = p.parse_args(argv)
    try:
        line = run_hook(args.state, args.network, args.operation)
    except Exception as e:  # noqa: BLE001 - the hook must never fail libvirt's start
        line = f"{args.network} {args.operation}: FAILED: {e!r}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} kvmnet-hook[{os.getpid()}] {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
