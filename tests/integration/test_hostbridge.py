"""Moving a host's NIC into a bridge, live, on a real kernel (issue 5).

Two network namespaces: ``kvt-hb-host`` plays the host, its NIC is the veth
``kvthbeth0`` (10.230.1.2/24 + 10.230.1.3/24, a default route with metric 100,
one more static route); ``kvt-hb-lan`` plays the LAN, with the gateway
10.230.1.1 on the other end. A TCP echo server runs in the host namespace and
a client in the LAN namespace keeps one connection busy across the change.
`kvmnet apply` runs as a CLI with ``--netns kvt-hb-host`` against the lab's
libvirtd (``--scope kvt-hb-*`` keeps other tests' networks out of the plan) and
``--root`` a temporary tree, so the only things it touches are those two
namespaces and that tree.

Everything is named kvt-hb-* (links kvthb*), removed by name before each test
and after it; watchdogs the tests leave behind are stopped by their pid file.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import IPRoute

from kvmnet.apply.bridge import migrate as hostbridge
from kvmnet.apply.bridge import undo as hostundo
from kvmnet.apply.bridge.watchdog import start_time
from kvmnet.errors import LiveError
from kvmnet.model.spec import HostBridge
from lab.hostnet import HostLan, TcpSession, make_root, netstate, wait_settled, watchdog_pid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

HOST_NS, LAN_NS = "kvt-hb-host", "kvt-hb-lan"
NIC, LAN_IF, BRIDGE, OTHER_BR = "kvthbeth0", "kvthblan0", "kvthbbr0", "kvthbold0"
HOST_IP, HOST_IP2, GW, NOBODY = "10.230.1.2", "10.230.1.3", "10.230.1.1", "10.230.1.99"
PORT = 7007
KVMNET = Path(sys.executable).parent / "kvmnet"
TIMINGS = os.environ.get("KVMNET_HB_TIMINGS")  # a file: measurements are appended there

SPEC = f"""\
host:
  bridges:
    {BRIDGE}:
      ports: [{NIC}]
      stp: {{stp}}
{{delay}}      address: [{HOST_IP}/24, {HOST_IP2}/24]
      gateway: {GW}
      metric: 100
{{check}}"""



# -- the namespaces ---------------------------------------------------------------------

NET = HostLan(HOST_NS, LAN_NS, NIC, LAN_IF, (HOST_IP, HOST_IP2), GW, "10.230.50.0/24")


# -- the config tree under --root ---------------------------------------------------

def tree(root: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file and folder under root except kvmnet's own run/ state: bytes + mode."""
    out: dict[str, tuple[bytes | None, int]] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == "run" or rel.startswith("run/"):
            continue
        out[rel] = (None if p.is_dir() else p.read_bytes(), p.stat().st_mode)
    return out


# -- processes -----------------------------------------------------------------------

def echo_session(port: int = PORT) -> TcpSession:
    """A TCP connection from the LAN to a server on the host, kept busy."""
    return TcpSession(HOST_NS, LAN_NS, HOST_IP, port)


def kvmnet(*args: str, within: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KVMNET), *args], capture_output=True, text=True, timeout=within)


def outcome(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "run/kvmnet/last-tx.json").read_text())
    except FileNotFoundError:
        return None


def wait_outcome(root: Path, within: float) -> dict[str, Any]:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if (got := outcome(root)) is not None and not (root / "run/kvmnet/host-tx.json").exists():
            return got
        time.sleep(0.05)
    log = root / "run/kvmnet/watchdog.log"
    raise AssertionError(f"no outcome within {within} s; watchdog.log:\n"
                         + (log.read_text() if log.exists() else "(none)"))


def record(name: str, **values: float) -> None:
    """Timings for the report (KVMNET_HB_TIMINGS=FILE, one JSON line per measurement)."""
    if not TIMINGS:
        return
    with open(TIMINGS, "a") as f:
        f.write(json.dumps({"test": name, **{k: round(v, 4) for k, v in values.items()}})
                + "\n")


# -- fixtures ------------------------------------------------------------------------

class Lab:
    def __init__(self, root: Path, uri: str, spec_dir: Path) -> None:
        self.root, self.uri, self.spec_dir = root, uri, spec_dir

    def spec(self, stp: bool = False, delay: int | None = None, check: str | None = None
             ) -> Path:
        text = SPEC.format(stp=str(stp).lower(),
                           delay=f"      forward_delay: {delay}\n" if delay is not None else "",
                           check=f"      check: {check}\n" if check else "")
        path = self.spec_dir / "hb.yaml"
        path.write_text(text)
        return path

    def apply_args(self, spec: Path, timeout: float) -> list[str]:
        return ["apply", str(spec), "-c", self.uri, "--netns", HOST_NS, "--scope", "kvt-hb-*",
                "--yes", "--root", str(self.root), "--confirm-timeout", str(timeout)]

    def apply(self, spec: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        return kvmnet(*self.apply_args(spec, timeout))


@contextmanager
def exclusive() -> Iterator[None]:
    """One kvt-hb test at a time on this machine, also across pytest sessions: they all
    use the same namespace names."""
    fd = os.open("/run/lock/kvt-hb.lock" if os.path.isdir("/run/lock") else "/tmp/kvt-hb.lock",
                 os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lab(tmp_path: Path, uri: str, renderer: str) -> Iterator[Lab]:
    with exclusive():
        yield from _lab_unlocked(tmp_path, uri, renderer)


def _lab_unlocked(tmp_path: Path, uri: str, renderer: str) -> Iterator[Lab]:
    NET.remove()
    root = tmp_path / "root"
    make_root(root, renderer)
    try:
        NET.make()
        wait_settled(HOST_NS)
        yield Lab(root, uri, tmp_path)
    finally:
        pid = watchdog_pid(root)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        NET.remove()


@pytest.fixture
def lab(tmp_path: Path, libvirtd: Any) -> Iterator[Lab]:
    """Namespaces + a netplan tree under --root."""
    yield from _lab(tmp_path, libvirtd.uri, "netplan")


@pytest.fixture
def lab_ifupdown(tmp_path: Path, libvirtd: Any) -> Iterator[Lab]:
    """Namespaces + an ifupdown tree (interfaces.d/ does not exist yet) under --root."""
    yield from _lab(tmp_path, libvirtd.uri, "ifupdown")


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[None]:
    """Only the namespaces (library-level tests, no libvirt)."""
    with exclusive():
        NET.remove()
        try:
            NET.make()
            wait_settled(HOST_NS)
            yield
        finally:
            NET.remove()


# -- through the CLI -----------------------------------------------------------------

def assert_migrated(before: dict[str, Any]) -> None:
    now = netstate(HOST_NS)
    nic_mac = before["links"][NIC]["mac"]
    assert now["links"][BRIDGE]["kind"] == "bridge"
    assert now["links"][BRIDGE]["mac"] == nic_mac
    assert now["links"][BRIDGE]["up"]
    assert now["links"][NIC]["master"] == BRIDGE and now["links"][NIC]["up"]
    v4 = [(a[0], a[2], a[3]) for a in now["addresses"] if a[1] == 2 and a[0] != "lo"]
    assert v4 == sorted([(BRIDGE, HOST_IP, 24), (BRIDGE, HOST_IP2, 24)])
    default = [r for r in now["routes"] if r[0] == 2 and r[3] == 0 and r[1] == 254]
    assert [(r[4], r[5], r[9]) for r in default] == [(GW, 100, BRIDGE)]
    assert any(r[2] == "10.230.50.0" and r[9] == BRIDGE and r[5] == 20 for r in now["routes"])


def test_migration_keeps_the_tcp_session_and_confirm_keeps_it(lab: Lab) -> None:
    before, files_before = netstate(HOST_NS), tree(lab.root)
    session = echo_session()
    try:
        t0 = time.monotonic()
        res = lab.apply(lab.spec(), timeout=4)
        applied = time.monotonic() - t0
        assert res.returncode == 0, res.stdout + res.stderr
        assert "kvmnet confirm" in res.stderr + res.stdout
        assert_migrated(before)
        result = session.finish()
    finally:
        session.close()
    assert result["before"] and result["after"] and result["same"], result
    assert result["gap"] < 1.0, result
    # the persistent config: netplan's file replaced atomically, the old one backed up
    new = (lab.root / "etc/netplan/90-kvmnet.yaml").read_text()
    assert BRIDGE in new and NIC in new and "10.230.1.2/24" in new
    # pinned: after a reboot the bridge has the MAC it has now (issue 19, item 8)
    pinned = yaml.safe_load(new)["network"]["bridges"][BRIDGE]["macaddress"]
    assert pinned == before["links"][NIC]["mac"]
    backups = list((lab.root / "var/backups/kvmnet/etc/netplan").glob("90-kvmnet.yaml.*"))
    assert [b.read_bytes() for b in backups] == [files_before["etc/netplan/90-kvmnet.yaml"][0]]
    watchdog = watchdog_pid(lab.root)
    assert watchdog is not None
    # detached: another session, and not a child of the (finished) apply
    assert os.getsid(watchdog) not in (os.getsid(0), watchdog)
    res = kvmnet("confirm", "--root", str(lab.root))
    assert res.returncode == 0, res.stderr
    assert outcome(lab.root)["outcome"] == "confirmed"
    time.sleep(5)  # past the confirm timeout: nothing comes back
    assert start_time(watchdog) is None
    assert not (lab.root / "run/kvmnet/host-tx.json").exists()
    assert_migrated(before)
    again = kvmnet("plan", str(lab.spec()), "-c", lab.uri, "--netns", HOST_NS, "--scope",
                   "kvt-hb-*", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left to do
    record("good migration", apply_s=applied, tcp_gap_s=result["gap"],
           probes=result["probes"])


def test_no_confirm_rolls_back_live_state_and_files_exactly(lab: Lab) -> None:
    before, files_before = netstate(HOST_NS), tree(lab.root)
    session = echo_session()
    try:
        res = lab.apply(lab.spec(), timeout=3)
        done = time.monotonic()
        assert res.returncode == 0, res.stdout + res.stderr
        assert_migrated(before)
        assert tree(lab.root) != files_before
        last = wait_outcome(lab.root, within=15)
        waited = time.monotonic() - done
        result = session.finish()
    finally:
        session.close()
    assert last["outcome"] == "rolled back" and "confirm" in last["reason"], last
    assert 2.0 <= waited <= 8.0, waited
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert tree(lab.root) == files_before
    assert result["after"] and result["same"], result  # the session survived both ways
    assert result["gap"] < 1.0, result
    res = kvmnet("confirm", "--root", str(lab.root))
    assert res.returncode == 1 and "nothing to confirm" in res.stderr
    offset = time.time() - time.monotonic()
    record("rollback by timeout", rollback_s=last["seconds"], tcp_gap_s=result["gap"],
           after_apply_s=waited, gap_end_after_rollback_s=result["at"] - (last["at"] - offset))


def test_failing_self_check_rolls_back_at_once(lab_ifupdown: Lab) -> None:
    lab = lab_ifupdown
    before, files_before = netstate(HOST_NS), tree(lab.root)
    t0 = time.monotonic()
    res = lab.apply(lab.spec(check=NOBODY), timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 1
    assert "self-check failed" in res.stderr and NOBODY in res.stderr, res.stderr
    assert "rolled back" in res.stderr
    last = outcome(lab.root)
    assert last is not None and last["outcome"] == "rolled back"
    assert "self-check" in last["reason"]
    assert took < 30  # not the 120 s confirm timeout
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert tree(lab.root) == files_before  # interfaces.d/ and its file are gone again
    record("rollback by failed self-check", rollback_s=last["seconds"], apply_s=took)


def test_rollback_command_restores_at_once(lab_ifupdown: Lab) -> None:
    lab = lab_ifupdown
    before, files_before = netstate(HOST_NS), tree(lab.root)
    res = lab.apply(lab.spec(), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert_migrated(before)
    assert (lab.root / f"etc/network/interfaces.d/kvmnet-{BRIDGE}").is_file()
    watchdog = watchdog_pid(lab.root)
    res = kvmnet("rollback", "--root", str(lab.root))
    assert res.returncode == 0, res.stderr
    assert "Rolled back" in res.stdout
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert tree(lab.root) == files_before
    end = time.monotonic() + 5
    while watchdog and start_time(watchdog) is not None and time.monotonic() < end:
        time.sleep(0.05)
    assert watchdog is not None and start_time(watchdog) is None
    res = kvmnet("rollback", "--root", str(lab.root))
    assert res.returncode == 1 and "nothing to roll back" in res.stderr


def test_watchdog_rolls_back_after_apply_is_killed(lab: Lab) -> None:
    """STP with a 2 s forward delay keeps apply busy for ~4 s once the NIC is in the
    bridge (the port learns before it forwards; then the self-check): SIGKILL it there,
    half way. The watchdog, in a session of its own, notices and rolls back."""
    before, files_before = netstate(HOST_NS), tree(lab.root)
    proc = subprocess.Popen([str(KVMNET), *lab.apply_args(lab.spec(stp=True, delay=2), 60)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and netstate(HOST_NS)["links"].get(NIC, {}).get(
                "master") != BRIDGE:
            time.sleep(0.01)
        assert netstate(HOST_NS)["links"][NIC]["master"] == BRIDGE
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert proc.wait(10) == -signal.SIGKILL  # it was still running when killed
    finally:
        if proc.poll() is None:
            proc.kill()
    last = wait_outcome(lab.root, within=30)
    assert last["outcome"] == "rolled back"
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert tree(lab.root) == files_before
    record("rollback after SIGKILL of apply", rollback_s=last["seconds"],
           after_kill_s=time.monotonic() - killed)


def test_a_pending_change_blocks_the_next_apply(lab: Lab) -> None:
    res = lab.apply(lab.spec(), timeout=60)
    assert res.returncode == 0, res.stderr
    more = lab.spec_dir / "more.yaml"
    more.write_text(lab.spec().read_text().replace(f"{HOST_IP2}/24]", f"{HOST_IP2}/24, "
                                                   "10.230.1.4/24]"))
    again = lab.apply(more, timeout=60)
    assert again.returncode == 1
    assert "waiting for confirm" in again.stderr and "kvmnet rollback --root" in again.stderr
    res = kvmnet("rollback", "--root", str(lab.root))
    assert res.returncode == 0, res.stderr


# -- the netlink layer alone ---------------------------------------------------------

def test_migrate_and_restore_are_exact_with_policy_routes(bare: None) -> None:
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        nic = ipr.link_lookup(ifname=NIC)[0]
        ipr.route("add", dst="10.230.60.0/24", gateway=GW, oif=nic, table=100)
        ipr.link("set", index=nic, mtu=1400)
    wait_settled(HOST_NS)
    before = netstate(HOST_NS)
    hb = HostBridge(ports=[NIC], stp=True, forward_delay=4, address=[f"{HOST_IP}/24"])
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        snap = hostbridge.snapshot(ipr, [BRIDGE, NIC])
        assert hostbridge.refusals(BRIDGE, hb, snap) == []
        hostbridge.migrate(ipr, BRIDGE, hb, snap)
    now = netstate(HOST_NS)
    assert now["links"][NIC]["master"] == BRIDGE
    assert any(r[1] == 100 and r[2] == "10.230.60.0" and r[9] == BRIDGE for r in now["routes"])
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        br = hostbridge.snapshot(ipr, [BRIDGE])[0]
        assert (br.stp, br.forward_delay) == (1, 400)
        hostundo.restore(ipr, snap)
        assert hostundo.restore(ipr, snap) == []  # a second run has nothing to do
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before


def test_a_port_of_another_bridge_is_refused(bare: None) -> None:
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        ipr.link("add", ifname=OTHER_BR, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=NIC)[0],
                 master=ipr.link_lookup(ifname=OTHER_BR)[0])
        snap = hostbridge.snapshot(ipr, [BRIDGE, NIC])
    reasons = hostbridge.refusals(BRIDGE, HostBridge(ports=[NIC]), snap)
    assert len(reasons) == 1 and f"already a port of {OTHER_BR}" in reasons[0]


def test_restore_of_a_vanished_link_says_so(bare: None) -> None:
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        snap = hostbridge.snapshot(ipr, [NIC])
        ipr.link("del", index=ipr.link_lookup(ifname=NIC)[0])
        with pytest.raises(LiveError, match="gone"):
            hostundo.restore(ipr, snap)


def test_self_check_ping(bare: None) -> None:
    from kvmnet.backend.probe import ping

    assert ping("127.0.0.1", within=2) is not None  # our own namespace, raw socket
    assert ping("::1", within=2) is not None
    assert ping(GW, HOST_NS, within=2) is not None  # made inside the host namespace
    t0 = time.monotonic()
    assert ping(NOBODY, HOST_NS, within=0.6) is None
    assert time.monotonic() - t0 < 2


# -- a spec with only host: needs no libvirt; the SSH session guard ---------------------

NO_LIBVIRT = "qemu+unix:///system?socket=/nonexistent/kvmnet-no-libvirtd"


def test_host_only_spec_plans_and_applies_without_libvirt(tmp_path: Path, bare: None) -> None:
    """The libvirt URI points at nothing, yet a spec with only host: plans and applies."""
    root = tmp_path / "root"
    make_root(root, "netplan")
    spec = Lab(root, NO_LIBVIRT, tmp_path).spec()
    plan = kvmnet("plan", str(spec), "-c", NO_LIBVIRT, "--netns", HOST_NS, "--json",
                  "--detailed-exitcode")
    assert plan.returncode == 2, plan.stderr
    kinds = [a["kind"] for a in json.loads(plan.stdout)["actions"]]
    assert kinds == ["host.bridge"]
    before = netstate(HOST_NS)
    done = kvmnet("apply", str(spec), "-c", NO_LIBVIRT, "--netns", HOST_NS, "--yes",
                  "--root", str(root), "--confirm-timeout", "0")
    assert done.returncode == 0, done.stderr
    assert_migrated(before)
    again = kvmnet("plan", str(spec), "-c", NO_LIBVIRT, "--netns", HOST_NS,
                   "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


def test_moving_the_ssh_sessions_address_without_gateway_is_refused(tmp_path: Path,
                                                                   bare: None) -> None:
    """An SSH session is a TCP connection from the LAN to port 22 on the host's address
    (a real listening socket and a real established connection in the namespaces), as
    `sudo kvmnet apply` sees it: no $SSH_CONNECTION (sudo drops it). kvmnet finds it in
    the kernel's socket table; a forged $SSH_CONNECTION changes nothing."""
    spec = tmp_path / "nogw.yaml"
    spec.write_text(SPEC.format(stp="false", delay="", check="").replace(
        f"      gateway: {GW}\n", ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KVMNET), *args, "-c", NO_LIBVIRT, "--netns", HOST_NS],
                              capture_output=True, text=True, env={**env, **extra}, timeout=60)

    before = netstate(HOST_NS)
    session = echo_session(22)
    try:
        r = run("apply", str(spec), "--yes", "--root", str(tmp_path / "root"))
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"an SSH session is open to {HOST_IP}, which is on {NIC}" in r.stderr
        assert f"gateway: {GW}" in r.stderr and "Traceback" not in r.stderr
        assert netstate(HOST_NS) == before
        # with the gateway in the spec the same session is fine to plan
        ok = run("plan", str(Lab(tmp_path, NO_LIBVIRT, tmp_path).spec()))
        assert ok.returncode == 0, ok.stderr
        assert session.finish()["after"]  # the session was up all along
    finally:
        session.close()
    # no session now: a forged $SSH_CONNECTION does not make one
    gone = run("plan", str(spec), SSH_CONNECTION=f"10.230.1.50 51234 {HOST_IP} 22")
    assert gone.returncode == 0, gone.stderr
    assert "SSH session" not in gone.stdout + gone.stderr
