"""Host bridges carry IPv6 through the live migration (issue 23, points 2 and 4), on a
real kernel.

Two network namespaces, as in test_hostbridge.py: ``kvt-vh-host`` plays the host, its
NIC is the veth ``kvtheth0``; ``kvt-vh-lan`` plays the LAN and its router, on the
other end (``kvthlan0``). The host has 10.163.1.2/24 and the static fd00:163:1::2/64
with both default routes (via 10.163.1.1 and fd00:163:1::1, metric 100); for the SLAAC
test the LAN's router is a real dnsmasq advertising 2001:db8:163:1::/64 (router
advertisements only), and the host forwards IPv6 with accept_ra=2, as a KVM host with
IPv6 networks does. A TCP echo server on the host and a client in the LAN keep one
IPv6 connection busy across the change; the longest pause between two answered
probes is the number reported (KVMNET_HB_TIMINGS=FILE appends it there, and pytest
prints it with -s).

`kvmnet apply` runs as a CLI with ``--netns kvt-vh-host``, a libvirt URI that points at
nothing (a spec with only host: needs no libvirt) and ``--root`` a temporary tree: it
touches only these two namespaces and that tree. Everything is named kvt-vh-* (links
kvth*), removed by name before each test and after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from kvmnet.backend.host import read_host
from kvmnet.backend.netns import entered
from kvmnet.backend.probe import ping
from lab.hostnet import TcpSession, make_root, netstate, wait_settled, watchdog_pid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

HOST_NS, LAN_NS = "kvt-vh-host", "kvt-vh-lan"
NIC, LAN_IF, BRIDGE = "kvtheth0", "kvthlan0", "kvthbr0"
HOST4, GW4 = "10.163.1.2", "10.163.1.1"
HOST6, GW6, NOBODY6 = "fd00:163:1::2", "fd00:163:1::1", "fd00:163:1::99"
RA_PREFIX, RA_ROUTER = "2001:db8:163:1::", "2001:db8:163:1::1"
BEYOND = "2001:db8:163:99::1"   # off-link, behind the router: needs the default route
NIC_MAC = "52:54:00:16:30:02"
SLAAC = "2001:db8:163:1:5054:ff:fe16:3002"   # EUI-64 of NIC_MAC in RA_PREFIX
PORT = 7163
KVMNET = Path(sys.executable).parent / "kvmnet"
NO_LIBVIRT = "qemu+unix:///system?socket=/nonexistent/kvmnet-no-libvirtd"
TIMINGS = os.environ.get("KVMNET_HB_TIMINGS")
DNSMASQ = "/usr/sbin/dnsmasq"


# -- the namespaces ---------------------------------------------------------------

def _sysctl(ns: str, key: str, value: int) -> None:
    with entered(ns), open(f"/proc/sys/{key.replace('.', '/')}", "w") as f:
        f.write(str(value))


def remove() -> None:
    for ns in (HOST_NS, LAN_NS):
        if ns in pr_netns.listnetns():
            pr_netns.remove(ns)


def make(forwarding: bool = False) -> None:
    """Host and LAN; with `forwarding` the host forwards IPv6 and takes router
    advertisements anyway (accept_ra=2, on its NIC and on links made later)."""
    for ns in (HOST_NS, LAN_NS):
        pr_netns.create(ns)
        with IPRoute(netns=ns, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    if forwarding:
        _sysctl(HOST_NS, "net.ipv6.conf.all.forwarding", 1)
        for conf in ("default", "all"):
            _sysctl(HOST_NS, f"net.ipv6.conf.{conf}.accept_ra", 2)
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        ipr.link("add", ifname=NIC, kind="veth", peer=LAN_IF, address=NIC_MAC)
        ipr.link("set", index=ipr.link_lookup(ifname=LAN_IF)[0], net_ns_fd=LAN_NS)
        nic = ipr.link_lookup(ifname=NIC)[0]
        if forwarding:
            _sysctl(HOST_NS, f"net.ipv6.conf.{NIC}.accept_ra", 2)
        ipr.link("set", index=nic, state="up")
        ipr.addr("add", index=nic, address=HOST4, prefixlen=24)
        ipr.addr("add", index=nic, address=HOST6, prefixlen=64)
        ipr.route("add", dst="0.0.0.0/0", gateway=GW4, oif=nic, priority=100)
        ipr.route("add", dst="::/0", gateway=GW6, oif=nic, priority=100, family=10)
    with IPRoute(netns=LAN_NS, flags=0) as lan:
        idx = lan.link_lookup(ifname=LAN_IF)[0]
        lan.addr("add", index=idx, address=GW4, prefixlen=24)
        lan.addr("add", index=idx, address=GW6, prefixlen=64)
        lan.addr("add", index=idx, address=RA_ROUTER, prefixlen=64)
        lan.addr("add", index=lan.link_lookup(ifname="lo")[0], address=BEYOND, prefixlen=128)
        lan.link("set", index=idx, state="up")
    wait_settled(HOST_NS)
    wait_settled(LAN_NS)


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Path]:
    """The namespaces; yields a --root tree (netplan) for apply."""
    yield from _lan(tmp_path, forwarding=False)


@pytest.fixture
def slaac_lan(tmp_path: Path) -> Iterator[Path]:
    """The namespaces, the host forwarding IPv6, and dnsmasq in the LAN advertising
    RA_PREFIX; yields once the host's NIC has its SLAAC address and default route."""
    if not os.access(DNSMASQ, os.X_OK):
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    for root in _lan(tmp_path, forwarding=True):
        ra = subprocess.Popen(
            ["ip", "netns", "exec", LAN_NS, DNSMASQ, "--keep-in-foreground",
             "--conf-file=/dev/null", "--port=0", f"--interface={LAN_IF}",
             "--bind-interfaces", "--enable-ra", f"--dhcp-range={RA_PREFIX},ra-only,64,1h",
             f"--ra-param={LAN_IF},4,600", f"--pid-file={tmp_path}/dnsmasq.pid",
             f"--dhcp-leasefile={tmp_path}/leases", "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: SLAAC in _addresses(NIC) and _ra_default(NIC), 20,
                  "the NIC's SLAAC address and default route from the router")
            wait_settled(HOST_NS)
            yield root
        finally:
            ra.terminate()
            ra.wait(10)


def _lan(tmp_path: Path, forwarding: bool) -> Iterator[Path]:
    remove()
    root = tmp_path / "root"
    make_root(root, "netplan")
    try:
        make(forwarding)
        yield root
    finally:
        pid = watchdog_pid(root)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        remove()


# -- reading the host ---------------------------------------------------------------

def _addresses(link: str) -> dict[str, dict[str, Any]]:
    """The link's IPv6 addresses: flags and lifetimes."""
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        found = ipr.link_lookup(ifname=link)
        if not found:
            return {}
        return {a.get_attr("IFA_ADDRESS"): {"flags": a.get_attr("IFA_FLAGS"),
                                            **(a.get_attr("IFA_CACHEINFO") or {})}
                for a in ipr.get_addr(family=10, index=found[0])}


def _ra_default(link: str) -> list[tuple[str, int]]:
    """(gateway, metric) of the IPv6 default routes the kernel learned on `link`."""
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        found = ipr.link_lookup(ifname=link)
        return [(r.get_attr("RTA_GATEWAY"), r.get_attr("RTA_PRIORITY"))
                for r in ipr.get_routes(family=10, oif=found[0] if found else -1)
                if r["dst_len"] == 0 and r["proto"] == 9] if found else []


def _wait(cond: Any, within: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {within} s")


# -- processes -----------------------------------------------------------------------

def v6_session(to: str, port: int = PORT) -> TcpSession:
    """A TCP connection over IPv6 from the LAN to a server on the host, kept busy."""
    return TcpSession(HOST_NS, LAN_NS, to, port)


def kvmnet(*args: str, within: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    return subprocess.run([str(KVMNET), *args], capture_output=True, text=True,
                          timeout=within, env=env)


def apply(root: Path, spec: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return kvmnet("apply", str(spec), "-c", NO_LIBVIRT, "--netns", HOST_NS, "--yes",
                  "--root", str(root), "--confirm-timeout", str(timeout))


def plan_is_empty(spec: Path) -> subprocess.CompletedProcess[str]:
    return kvmnet("plan", str(spec), "-c", NO_LIBVIRT, "--netns", HOST_NS,
                  "--detailed-exitcode")


def outcome(root: Path, within: float) -> dict[str, Any]:
    end = time.monotonic() + within
    while time.monotonic() < end:
        path = root / "run/kvmnet/last-tx.json"
        if path.exists() and not (root / "run/kvmnet/host-tx.json").exists():
            return dict(json.loads(path.read_text()))
        time.sleep(0.05)
    raise AssertionError(f"no outcome within {within} s")


def record(name: str, **values: float) -> None:
    """The measurements: printed (pytest -s) and appended to KVMNET_HB_TIMINGS."""
    line = json.dumps({"test": name, **{k: round(v, 4) for k, v in values.items()}})
    print(line)
    if TIMINGS:
        with open(TIMINGS, "a") as f:
            f.write(line + "\n")


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "v6.yaml"
    path.write_text(f"host:\n  bridges:\n    {BRIDGE}:\n      ports: [{NIC}]\n{text}")
    return path


STATIC = f"""\
      address: [{HOST4}/24, "{HOST6}/64"]
      gateway: {GW4}
      gateway6: "{{gw6}}"
      metric: 100
"""


# -- static IPv6 -------------------------------------------------------------------

def test_ipv6_session_survives_the_migration_and_the_rollback(lan: Path,
                                                              tmp_path: Path) -> None:
    before = netstate(HOST_NS)
    spec = spec_file(tmp_path, STATIC.format(gw6=GW6))
    session = v6_session(HOST6)
    try:
        res = apply(lan, spec, timeout=3)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{GW4} answered" in res.stdout + res.stderr
        assert f"{GW6} answered" in res.stdout + res.stderr
        now = netstate(HOST_NS)
        v6 = [(a[0], a[2], a[3]) for a in now["addresses"] if a[1] == 10 and a[5] == 0]
        assert v6 == [(BRIDGE, HOST6, 64)]
        default6 = [(r[4], r[5], r[9]) for r in now["routes"]
                    if r[0] == 10 and r[3] == 0 and r[1] == 254]
        assert default6 == [(GW6, 100, BRIDGE)]
        assert now["links"][BRIDGE]["mac"] == NIC_MAC
        files = (lan / "etc/netplan/90-kvmnet.yaml").read_text()
        assert f"via: {GW6}" in files and f"{HOST6}/64" in files
        last = outcome(lan, within=15)     # no confirm: the watchdog rolls back
        result = session.finish()
    finally:
        session.close()
    assert last["outcome"] == "rolled back", last
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert result["after"] and result["same"], result
    record("IPv6 session through migration and rollback", tcp_gap_s=result["gap"],
           probes=result["probes"], rollback_s=last["seconds"])


@pytest.mark.parametrize("mistake", ["gateway6", "check"])
def test_an_ipv6_mistake_rolls_back_exactly(lan: Path, tmp_path: Path, mistake: str
                                            ) -> None:
    """A gateway6 (or check:) nobody answers on: the self-check fails, apply rolls back
    at once, and the host's IPv6 addresses and routes are exactly as before."""
    before = netstate(HOST_NS)
    text = STATIC.format(gw6=NOBODY6 if mistake == "gateway6" else GW6)
    if mistake == "check":
        text += f'      check: "{NOBODY6}"\n'
    t0 = time.monotonic()
    res = apply(lan, spec_file(tmp_path, text), timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert "self-check failed" in res.stderr and NOBODY6 in res.stderr, res.stderr
    assert "rolled back" in res.stderr
    wait_settled(HOST_NS)
    after = netstate(HOST_NS)
    assert [a for a in after["addresses"] if a[1] == 10] == \
        [a for a in before["addresses"] if a[1] == 10]
    assert [r for r in after["routes"] if r[0] == 10] == \
        [r for r in before["routes"] if r[0] == 10]
    assert after == before
    assert sorted(p.name for p in (lan / "etc/netplan").iterdir()) == [
        "01-netcfg.yaml", "90-kvmnet.yaml"]
    assert "an older kvmnet config" in (lan / "etc/netplan/90-kvmnet.yaml").read_text()
    record(f"IPv6 {mistake} mistake rolled back", apply_s=took)


# -- SLAAC -------------------------------------------------------------------------

def test_slaac_address_and_default_route_carry_over(slaac_lan: Path, tmp_path: Path
                                                    ) -> None:
    """The NIC's SLAAC address moves to the bridge, which has the NIC's MAC and so makes
    the same address from the next advertisement (its lifetime is renewed there, not a
    second address made); the default route is there at once (a copy of the NIC's) and
    the bridge learns its own; an IPv6 session to the SLAAC address survives; a second
    plan is empty; rollback puts the NIC's IPv6 back exactly."""
    before = netstate(HOST_NS)
    seen = read_host(HOST_NS)   # what plan sees: the namespace's own sysctls
    assert seen.default_accept_ra == 2
    nic = seen.links[NIC]
    assert (nic.accept_ra, nic.forwarding6) == (2, True)
    assert f"{SLAAC}/64" in nic.dynamic and f"{HOST6}/64" not in nic.dynamic
    spec = spec_file(tmp_path, f"      address: [{HOST4}/24]\n      gateway: {GW4}\n"
                     "      slaac: true\n")
    session = v6_session(SLAAC)
    try:
        res = apply(slaac_lan, spec, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        assert ping(BEYOND, HOST_NS, within=2) is not None   # off-link: a default route
        moved = _addresses(BRIDGE)
        assert SLAAC in moved and SLAAC not in _addresses(NIC)
        lft = moved[SLAAC]["ifa_valid"]
        learned = _wait(lambda: _ra_default(BRIDGE), 20, "default route the bridge "
                        "learned from an advertisement")
        _wait(lambda: _addresses(BRIDGE)[SLAAC]["ifa_valid"] > lft, 20,
              "renewal of the SLAAC address's lifetime on the bridge")
        slaacs = [a for a in _addresses(BRIDGE) if a.startswith(RA_PREFIX[:-1])]
        assert slaacs == [SLAAC], slaacs     # the same address, not a second one
        again = plan_is_empty(spec)
        assert again.returncode == 0, again.stdout + again.stderr
        res = kvmnet("rollback", "--root", str(slaac_lan))
        assert res.returncode == 0, res.stdout + res.stderr
        result = session.finish()
    finally:
        session.close()
    wait_settled(HOST_NS)
    assert netstate(HOST_NS) == before
    assert result["after"] and result["same"], result
    assert ping(BEYOND, HOST_NS, within=2) is not None
    record("SLAAC migration and rollback", tcp_gap_s=result["gap"],
           probes=result["probes"], bridge_learned_route_s=learned)


# -- the SSH guard over IPv6 ---------------------------------------------------------

@pytest.mark.parametrize("to", ["global", "link-local"])
def test_an_ipv6_ssh_session_is_seen_and_guarded(lan: Path, tmp_path: Path, to: str
                                                 ) -> None:
    """An SSH session over IPv6 (a real connection to port 22 on the host's NIC, read
    from the kernel's socket table, no $SSH_CONNECTION): without gateway6 apply refuses
    to move its address and says what to add; to the NIC's link-local address it
    refuses whatever the spec says (the session is bound to the NIC)."""
    with IPRoute(netns=HOST_NS, flags=0) as ipr:
        ll = next(a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(
            family=10, index=ipr.link_lookup(ifname=NIC)[0]) if a["scope"] == 253)
    before = netstate(HOST_NS)
    no_gw6 = STATIC.format(gw6="").replace('      gateway6: ""\n', "")
    spec = spec_file(tmp_path, no_gw6 if to == "global" else STATIC.format(gw6=GW6))
    session = v6_session(HOST6 if to == "global" else f"{ll}%{LAN_IF}", port=22)
    try:
        r = apply(lan, spec, timeout=0)
        assert r.returncode == 1, r.stdout + r.stderr
        if to == "global":
            assert f"an SSH session is open to {HOST6}, which is on {NIC}" in r.stderr
            assert f"gateway6: {GW6}" in r.stderr
        else:
            assert f"an SSH session is open to {ll}, the link-local address of {NIC}" \
                in r.stderr
        assert "Traceback" not in r.stderr
        assert netstate(HOST_NS) == before
        assert session.finish()["after"]    # the session was up all along
    finally:
        session.close()
    assert not (lan / "run/kvmnet/host-tx.json").exists()
