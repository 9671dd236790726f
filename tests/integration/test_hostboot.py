"""A host bridge migration interrupted by a reboot, on a real kernel (hostboot.py).

The set-up of test_hostbridge.py with names of its own: ``kvr-host`` plays the
host, its NIC the veth ``kvreth0`` (10.239.7.2/24, a default route via
10.239.7.1 with metric 100, one more static route), ``kvr-lan`` the LAN with
the gateway. The spec has only ``host:``, so no libvirt is needed. A reboot is
simulated: the watchdog dies (SIGKILL), ROOT/run/kvmnet goes (it is tmpfs) and
the boot id changes (a fake ROOT/proc/sys/kernel/random/boot_id); then
`kvmnet rollback --boot` runs as the boot unit would (the first test runs the
installed unit's own ExecStart= with its Environment=).

Everything is named kvr-* (links kvr*), removed by name before each test and
after it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from kvmnet.apply.bridge.watchdog import start_time
from lab.hostnet import HostLan, make_root, netstate, wait_settled, watchdog_pid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

HOST_NS, LAN_NS = "kvr-host", "kvr-lan"
NIC, LAN_IF, BRIDGE = "kvreth0", "kvrlan0", "kvrbr0"
HOST_IP, GW = "10.239.7.2", "10.239.7.1"
KVMNET = Path(sys.executable).parent / "kvmnet"
NO_LIBVIRT = "qemu+unix:///system?socket=/nonexistent/kvmnet-no-libvirtd"
UNIT = "etc/systemd/system/kvmnet-boot-rollback.service"
LINK = "etc/systemd/system/sysinit.target.wants/kvmnet-boot-rollback.service"
KEPT = "var/lib/kvmnet/host-tx.json"

SPEC = f"""\
host:
  bridges:
    {BRIDGE}:
      ports: [{NIC}]
      stp: false
      address: [{HOST_IP}/24]
      gateway: {GW}
      metric: 100
"""


NET = HostLan(HOST_NS, LAN_NS, NIC, LAN_IF, (HOST_IP,), GW, "10.239.50.0/24")


def tree(root: Path) -> dict[str, tuple[bytes | str | None, int]]:
    """Every path under root but run/ and the fake proc/: bytes (or link target) + mode."""
    out: dict[str, tuple[bytes | str | None, int]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in ("run", "proc"):
            continue
        st = p.lstat()
        out[rel] = (os.readlink(p) if p.is_symlink() else None if p.is_dir()
                    else p.read_bytes(), st.st_mode)
    return out


def kvmnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KVMNET), *args], capture_output=True, text=True, timeout=90)


def apply(root: Path, spec: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return kvmnet("apply", str(spec), "-c", NO_LIBVIRT, "--netns", HOST_NS, "--yes",
                  "--root", str(root), "--confirm-timeout", str(timeout))


def reboot(root: Path) -> None:
    """What a reboot does to kvmnet: the watchdog dies without a word, /run is empty,
    and the kernel has a new boot id."""
    pid = watchdog_pid(root)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 10
    while start_time(pid) is not None and time.monotonic() < end:
        time.sleep(0.02)
    assert start_time(pid) is None
    shutil.rmtree(root / "run/kvmnet")
    boot_id = root / "proc/sys/kernel/random/boot_id"
    boot_id.parent.mkdir(parents=True)
    boot_id.write_text("00000000-kvr0-4000-8000-000000000001\n")


def unit_command(root: Path) -> tuple[list[str], dict[str, str]]:
    """The installed unit's ExecStart= and Environment=, as systemd would run them (the
    test paths hold no % or $, so shell-like splitting reads them the same)."""
    lines = (root / UNIT).read_text().splitlines()
    argv = shlex.split(next(x for x in lines if x.startswith("ExecStart="))[10:])
    name, value = shlex.split(next(x for x in lines if x.startswith("Environment="))[12:])[
        0].split("=", 1)
    return argv, {**os.environ, name: value}


def migrated() -> bool:
    links = netstate(HOST_NS)["links"]
    return links.get(NIC, {}).get("master") == BRIDGE


def v4(ns: str = HOST_NS) -> list[tuple[Any, ...]]:
    return [(a[0], a[2]) for a in netstate(ns)["addresses"] if a[1] == 2 and a[0] != "lo"]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(ROOT with a netplan tree, the spec file), the namespaces made."""
    NET.remove()
    root = tmp_path / "root"
    make_root(root, "netplan")
    spec = tmp_path / "kvr.yaml"
    spec.write_text(SPEC)
    try:
        NET.make()
        wait_settled(HOST_NS)
        yield root, spec
    finally:
        pid = watchdog_pid(root)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        NET.remove()


def test_a_reboot_before_confirm_is_rolled_back_at_boot(lab: tuple[Path, Path]) -> None:
    root, spec = lab
    before, files_before = netstate(HOST_NS), tree(root)
    res = apply(root, spec)
    assert res.returncode == 0, res.stdout + res.stderr
    assert migrated()
    assert (root / KEPT).is_file() and (root / UNIT).is_file()
    assert os.readlink(root / LINK) == "../kvmnet-boot-rollback.service"
    assert BRIDGE in (root / "etc/netplan/90-kvmnet.yaml").read_text()
    argv, env = unit_command(root)
    assert argv[1:] == ["-m", "kvmnet", "rollback", "--boot", "--root", str(root)]
    reboot(root)
    res = subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Rolled back (kvrbr0) at boot" in res.stdout, res.stdout
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert tree(root) == files_before  # config byte-identical; no journal, unit or link
    last = json.loads((root / "run/kvmnet/last-tx.json").read_text())
    assert last["outcome"] == "rolled back" and last["boot"] is True, last
    again = kvmnet("rollback", "--boot", "--root", str(root))
    assert again.returncode == 0 and "Nothing to roll back at boot" in again.stdout


def test_after_a_real_reboot_the_links_are_left_to_the_restored_config(
        lab: tuple[Path, Path]) -> None:
    """A fresh kernel has no bridge and the NIC on its own, unconfigured: the files go
    back, the links are already as they were (networking configures them later: adding
    addresses first would make ifupdown's ifup fail)."""
    root, spec = lab
    files_before = tree(root)
    res = apply(root, spec)
    assert res.returncode == 0, res.stdout + res.stderr
    reboot(root)
    with IPRoute(netns=HOST_NS, flags=0) as ipr:  # the bridge the old config made is gone
        ipr.link("del", index=ipr.link_lookup(ifname=BRIDGE)[0])
    assert v4() == []
    res = kvmnet("rollback", "--boot", "--root", str(root))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already as before" in res.stdout, res.stdout
    assert tree(root) == files_before
    assert v4() == []  # left alone
    assert BRIDGE not in netstate(HOST_NS)["links"]


def test_after_confirm_the_boot_rollback_does_nothing(lab: tuple[Path, Path]) -> None:
    root, spec = lab
    res = apply(root, spec)
    assert res.returncode == 0, res.stdout + res.stderr
    res = kvmnet("confirm", "--root", str(root))
    assert res.returncode == 0, res.stderr
    for rel in (KEPT, UNIT, LINK):
        assert not os.path.lexists(root / rel), rel
    assert not (root / "var/lib/kvmnet").exists()  # the folders apply made are gone too
    kept = tree(root)
    after = netstate(HOST_NS)
    reboot_id = root / "proc/sys/kernel/random/boot_id"
    reboot_id.parent.mkdir(parents=True)
    reboot_id.write_text("00000000-kvr0-4000-8000-000000000002\n")
    res = kvmnet("rollback", "--boot", "--root", str(root))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Nothing to roll back at boot" in res.stdout
    assert tree(root) == kept and netstate(HOST_NS) == after and migrated()
