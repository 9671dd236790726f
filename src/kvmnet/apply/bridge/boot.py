"""A host change that a reboot interrupted: rolled back at boot, before networking.

The journal in ROOT/run/kvmnet (store.py) lives on tmpfs and the watchdog in
memory, so a reboot before `kvmnet confirm` (what an admin does after losing
SSH to a change that broke the network) used to keep the new persistent
config with nothing left to roll it back. So apply also keeps a copy of the
journal on disk, ROOT/var/lib/kvmnet/host-tx.json (written before anything
changes, gone when the transaction ends), with the boot id of the kernel it
ran under, and installs kvmnet-boot-rollback.service. At boot that unit runs
`kvmnet rollback --boot`, which rolls back when the recorded boot id is not
the current one: files first (the essential part: the network comes up from
them), then the links, only if the change is still visible there. (The copy is
the journal itself, with `persisted`: one record, one codec, kvmnet.apply.bridge.journal.)

Why sysinit.target.wants/ and not network-pre.target.wants/: network-pre.target
is a passive target, in the boot only when some unit pulls it in (a
firewall), so a link there may never fire; sysinit.target is in every boot.
The unit orders itself (DefaultDependencies=no) after local-fs.target and
before sysinit.target, network-pre.target and the network daemons, so it runs
before any of them reads the config.

netplan turns etc/netplan into networkd or NetworkManager files from a
systemd generator, before any unit runs: after restoring netplan files the
boot rollback runs `netplan generate` so that this boot already uses them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kvmnet.apply.bridge import migrate as hostbridge
from kvmnet.apply.bridge import persist
from kvmnet.apply.bridge import undo as hostundo
from kvmnet.apply.bridge.journal import Journal, Outcome, Persisted
from kvmnet.apply.bridge.links import Link
from kvmnet.apply.bridge.store import (
    STATE_DIR,
    UNIT,
    UNIT_DIR,
    WANTS_DIR,
    clear,
    end,
    persisted_path,
    read_copy,
    read_journal,
    tx_lock,
    write_copy,
)
from kvmnet.backend.files import make_dirs, symlink_atomic, write_bytes_atomic
from kvmnet.backend.host import iproute
from kvmnet.backend.netns import netns_path
from kvmnet.errors import LiveError

BOOT_ID = "proc/sys/kernel/random/boot_id"
NETWORK_DAEMONS = ("systemd-networkd.service", "NetworkManager.service",
                   "networking.service", "ifupdown-pre.service", "netplan-ovs-cleanup.service")


def boot_id(root: Path) -> str:
    """This boot's id: ROOT/proc/... when the root has one (a test fakes a reboot
    there), else the running kernel's."""
    own = Path(root) / BOOT_ID
    path = own if own.is_file() else Path("/") / BOOT_ID
    try:
        return path.read_text().strip()
    except OSError as e:
        raise LiveError(f"cannot read the boot id ({path}): {e.strerror or e}") from None


# -- while the transaction runs ----------------------------------------------------

def save(root: Path, j: Journal) -> Journal:
    """Keep the journal on disk too; the first time, record this boot and install the
    unit. Called before anything on the host changes. Returns the journal as kept (with
    `persisted`): the caller writes that one to run/ as well."""
    if j.persisted is not None:
        write_copy(root, j)
        return j
    dirs = _missing(root, STATE_DIR)
    dirs += [d for d in _missing(root, WANTS_DIR) if d not in dirs]
    made = Persisted(boot_id=boot_id(root), new_dirs=tuple(dirs), unit="")
    j = dataclasses.replace(j, persisted=made)
    try:  # the unit first: without the journal its ConditionPathExists keeps it idle
        j = dataclasses.replace(j, persisted=dataclasses.replace(made,
                                                                 unit=install_unit(root)))
        write_copy(root, j)
    except BaseException:
        clear(root, j)  # (and the folders it made)
        raise
    return j


def _missing(root: Path, rel: str) -> list[str]:
    parts = Path(rel).parts
    return [d for d in ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            if not (Path(root) / d).exists()]


# -- the unit -----------------------------------------------------------------------

def _plain(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise LiveError(f"cannot put {value!r} in a systemd unit: it holds control characters")
    return value


def _quote(value: str, exec_line: bool = False) -> str:
    """One word for a unit file: double quotes, C escapes, % doubled (and $, which only
    command lines expand)."""
    value = _plain(value).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (value.replace("$", "$$") if exec_line else value) + '"'


def unit_text(root: Path, python: str | None = None) -> str:
    """kvmnet-boot-rollback.service for `root`."""
    import kvmnet

    root = Path(root)
    journal = _plain(str(persisted_path(root)))
    pkg = str(Path(kvmnet.__file__).resolve().parents[1])
    cmd = [python or sys.executable, "-m", "kvmnet", "rollback", "--boot", "--root", str(root)]
    return (
        "# Written by kvmnet apply while a host network change waits for `kvmnet confirm`;\n"
        "# removed when it is confirmed or rolled back. After a reboot before that, it\n"
        "# restores the network config the host had before the change.\n"
        "[Unit]\n"
        "Description=kvmnet: roll back a host network change left unconfirmed by a reboot\n"
        "DefaultDependencies=no\n"
        "After=local-fs.target\n"
        f"RequiresMountsFor={_quote(str(root / STATE_DIR))}\n"
        f"Before=sysinit.target network-pre.target {' '.join(NETWORK_DAEMONS)}\n"
        "Wants=network-pre.target\n"
        "Conflicts=shutdown.target\n"
        "Before=shutdown.target\n"
        f"ConditionPathExists={journal.replace('%', '%%')}\n"
        "\n[Service]\n"
        "Type=oneshot\n"
        "TimeoutStartSec=120\n"  # (a oneshot waits forever by default: boot must go on)
        f"Environment={_quote('PYTHONPATH=' + pkg)}\n"
        f"ExecStart={' '.join(_quote(a, exec_line=True) for a in cmd)}\n"
        "\n[Install]\n"
        "WantedBy=sysinit.target\n")


def systemd_runs() -> bool:
    """Is systemd PID 1 (sd_booted(3): /run/systemd/system exists)?"""
    return os.path.isdir("/run/systemd/system")


def install_unit(root: Path) -> str:
    """Write the unit and enable it: by systemctl when systemd runs this very root,
    else by writing the wants/ link (it works from the next boot: what it is for)."""
    root = Path(root)
    unit = root / UNIT_DIR / UNIT
    make_dirs(unit.parent)
    write_bytes_atomic(unit, unit_text(root).encode(), 0o644)
    systemctl = shutil.which("systemctl")
    if root == Path("/") and systemctl and systemd_runs():
        r = subprocess.run([systemctl, "enable", "--quiet", UNIT], capture_output=True,
                           text=True, timeout=30, check=False)
        if r.returncode == 0:
            return "systemctl enable"
    link = root / WANTS_DIR / UNIT
    make_dirs(link.parent)
    symlink_atomic(f"../{UNIT}", link)
    return f"{WANTS_DIR}/{UNIT}"


# -- at boot ------------------------------------------------------------------------

def boot_rollback(root: Path) -> Outcome:
    """Roll back a change a reboot interrupted. Outcome "nothing to do" when there is
    none (or no reboot happened since); LiveError, the copy kept for another try, when
    something could not be put back.

    A watchdog cannot be running after a real reboot; after a simulated one it leaves
    by itself once end() has removed the run journal."""
    nothing = Outcome(outcome="nothing to do", reason="no host change was waiting for "
                      f"confirm ({persisted_path(root)} does not exist)")
    if not any(os.path.lexists(Path(root) / p) for p in (
            f"{STATE_DIR}/host-tx.json", f"{UNIT_DIR}/{UNIT}", f"{WANTS_DIR}/{UNIT}")):
        return nothing  # (without taking the lock: it writes)
    with tx_lock(root):
        j = read_copy(root)
        if j is None:
            clear(root, None)  # a unit left behind: nothing for it to do any more
            return nothing
        was, now = (j.persisted.boot_id if j.persisted else None), boot_id(root)
        if was == now:
            live = read_journal(root) is not None
            return Outcome(outcome="nothing to do", txid=j.txid, reason=(
                "no reboot since the apply: " + ("its watchdog still guards it (`kvmnet "
                "confirm` or `kvmnet rollback`)" if live else "its journal under run/kvmnet "
                "is gone: `kvmnet confirm` keeps it, `kvmnet rollback` undoes it")))
        t0 = time.monotonic()
        done, errors = _undo(root, j)
        if errors:
            raise LiveError("boot rollback incomplete: " + "; ".join(errors)
                            + f" (journal kept: {persisted_path(root)}; fix and run "
                            "`kvmnet rollback --boot` again)")
        return end(root, j, "rolled back", f"rebooted before `kvmnet confirm` (boot "
                   f"{was} -> {now})", seconds=round(time.monotonic() - t0, 3), done=done,
                   boot=True)


def _undo(root: Path, j: Journal) -> tuple[list[str], list[str]]:
    """Every step, newest first: files, then links. (done, errors)"""
    done: list[str] = []
    errors: list[str] = []
    netplan = False
    for step in reversed(j.steps):
        try:
            done += persist.restore(root, step.files)
        except (OSError, LiveError) as e:
            errors.append(f"files: {e}")
        netplan |= any(c.path.startswith("etc/netplan/") for c in step.files)
    if netplan and not errors:
        try:
            done += _netplan_generate(root)
        except LiveError as e:
            errors.append(str(e))
    for step in reversed(j.steps):
        try:
            done += _links(step.links, j.netns)
        except LiveError as e:
            errors.append(str(e))
    return done, errors


def _links(links: Sequence[Link], netns: str | None) -> list[str]:
    """Put the links back as rollback does, if the change still shows (a bridge that
    was not there is, or a port's master differs). After a real reboot it does not:
    the links are fresh, and the restored config sets them up when networking starts
    (adding its addresses first would make ifupdown's ifup fail on them)."""
    if netns and not os.path.exists(netns_path(netns)):
        return [f"network namespace {netns} is gone (a reboot): no links to put back"]
    with iproute(netns) as ipr:
        now = {x.name: x for x in hostbridge.snapshot(ipr, [x.name for x in links])}
        gone = [x.name for x in links if x.exists and not now[x.name].exists]
        links = [x for x in links if x.name not in gone]
        if not any(now[x.name].exists != x.exists or (x.exists and now[x.name].master
                                                      != x.master) for x in links):
            return [f"links {', '.join(x.name for x in links) or '-'} already as before"]
        done = hostundo.restore(ipr, links)
        after = hostbridge.snapshot(ipr, [x.name for x in links])
    problems = hostundo.differences(links, after)
    if problems:
        raise LiveError("; ".join(problems))
    return done + [f"{name} does not exist (yet): nothing to put back" for name in gone]


def _netplan_generate(root: Path) -> list[str]:
    """Regenerate netplan's networkd/NetworkManager files from the restored YAML: its
    generator ran before this boot's units, from the YAML being rolled back."""
    netplan = shutil.which("netplan")
    if netplan is None:
        return ["netplan not found: run `netplan generate` before the network starts"]
    r = subprocess.run([netplan, "generate", "--root-dir", str(root)], capture_output=True,
                       text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise LiveError(f"netplan generate failed: {(r.stderr or r.stdout).strip()}")
    return ["netplan generate"]
