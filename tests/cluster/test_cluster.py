"""One spec, three real hypervisors reached over ssh, an OVN overlay between them, and
hypervisors that fail (issue 26). The lab: tests/lab/cluster.py; the world and the
spec: clusterlab.py. kvmnet reaches every hypervisor only by
qemu+ssh://root@10.164.0.1N/system; the tests look at the hypervisors through their
libvirtd's socket file and their namespaces.

The tests run in order and share the world: apply from nothing, the guests' traffic,
then the faults, each of which ends with an apply that converges.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

import kvmnet.cli.multihost as cli_multihost
from kvmnet.cli.main import main
from kvmnet.render.interface import overlay_port_id
from kvmnet.service.multihost import Session
from lab import cluster_net
from lab.cluster import CONNECT_TIMEOUT, EXT_INET, INET_ADDR, RUN, Cluster

from .clusterlab import GUESTS, OV, OV_GW, World, as_json, kvmnet, spec

pytestmark = pytest.mark.e2e
NEEDS = ("sshd", "libvirtd", "virtlogd", "ovsdb-server", "ovs-vswitchd", "ovn-northd",
         "ovn-controller", "qemu-system-x86_64", "busybox", "wget", "nsenter", "unshare")
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.skip("the cluster lab needs root (namespaces, daemons)")
    missing = [b for b in NEEDS if shutil.which(b, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/setup test installs them)")
    cluster = Cluster().start()
    w = World(cluster, tmp_path_factory.mktemp("cluster"))
    try:
        w.define_guests()
        yield w
    finally:
        w.close()
        cluster.stop()
        times = {**cluster.seconds, **w.seconds, **TIMES}
        print("\ncluster timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in times.items()))


def links(ns: str) -> dict[str, bool]:
    """Link name -> admin up, in namespace NS."""
    with IPRoute(netns=ns, flags=0) as ipr:
        return {m.get_attr("IFLA_IFNAME"): bool(m["flags"] & 1) for m in ipr.get_links()}


def plan_json(path: Path) -> tuple[int, dict[str, Any]]:
    proc = kvmnet("plan", str(path), "--json", "--detailed-exitcode")
    return proc.returncode, as_json(proc)


def assert_converged(path: Path) -> None:
    rc, data = plan_json(path)
    assert rc == 0, data
    assert {h: d["status"] for h, d in data["hosts"].items()} == {
        "hv1": "unchanged", "hv2": "unchanged", "hv3": "unchanged"}
    assert data["ovn"]["status"] == "unchanged"


# ------------------------------------------------------------------ the cluster works

def test_apply_from_nothing_then_every_plan_is_empty(world: World) -> None:
    path = world.write(spec(world.cluster))
    rc, first = plan_json(path)
    assert rc == 2 and all(d["changes"] for d in first["hosts"].values()), first
    t0 = time.monotonic()
    proc = kvmnet("apply", str(path), "--yes", "--json")
    TIMES["first apply"] = time.monotonic() - t0
    data = as_json(proc)
    assert proc.returncode == 0, data
    assert data["summary"]["applied"] == ["hv1", "hv2", "hv3"], data["summary"]
    assert data["ovn"]["status"] == "changed" and data["ovn"]["ok"]
    for hv in world.cluster.hvs:     # each host's own NAT island, in its own namespace
        assert links(hv.netns).get("kvtc-nat0") is True, hv.name
    assert_converged(path)


def test_guests_get_their_leases_on_their_own_hosts(world: World) -> None:
    world.boot()
    lease = world.leases
    assert lease[("kvt-cl-a", "eth0")] == "10.164.10.10"       # hv1's dnsmasq
    assert lease[("kvt-cl-b", "eth0")] == "10.164.10.11"       # hv2's dnsmasq
    assert lease[("kvt-cl-a", "eth1")] == "10.164.20.10"       # OVN's DHCP
    last = int(lease[("kvt-cl-b", "eth1")].rsplit(".", 1)[1])
    assert lease[("kvt-cl-b", "eth1")].startswith("10.164.20.") and 100 <= last <= 199
    for guest, hv in GUESTS.items():   # each overlay port is bound where its guest runs
        port = overlay_port_id(OV, guest, 1)
        chassis = world.cluster.sbctl("--bare", "--columns=chassis", "find", "Port_Binding",
                                      f"logical_port={port}").strip()
        name = world.cluster.sbctl("--bare", "--columns=name", "list", "Chassis", chassis)
        assert name.strip() == f"kvt-cl-{hv}", (guest, name)


def test_guests_on_two_hypervisors_reach_each_other_over_geneve(world: World) -> None:
    a_ip, b_ip = world.leases[("kvt-cl-a", "eth1")], world.leases[("kvt-cl-b", "eth1")]
    rc, out = world.guest_run("kvt-cl-a", f"ping -c 3 -W 2 {b_ip}")
    assert rc == 0, out
    rc, out = world.guest_run("kvt-cl-b", f"ping -c 3 -W 2 {a_ip}")
    assert rc == 0, out


def test_overlay_guest_reaches_the_outside_through_the_router(world: World) -> None:
    """kvt-cl-inet has no route to the overlay subnet: only the router's SNAT (on hv3,
    the gateway chassis, behind a Geneve hop from hv2) can make it answer a guest on
    hv2. (ICMP: the lab's userspace OVS datapath reads a guest's tap with a raw socket
    and forwards TCP with the checksum the guest left to "hardware", so TCP across the
    overlay fails here, as it would not with the kernel datapath.)"""
    routes = world.cluster.inet(["ip", "-4", "route"]).stdout
    assert "10.164.20." not in routes and "default" not in routes, routes
    rc, out = world.guest_run("kvt-cl-b", f"ip route replace default via {OV_GW} dev eth1 && "
                              f"ping -c 3 -W 3 {EXT_INET}", timeout=40)
    assert rc == 0, out
    # the way through hv2's own NAT does not lead there: it is the router or nothing
    rc, out = world.guest_run("kvt-cl-b", "ip route replace default via 10.164.10.1 dev eth0 "
                              f"&& ping -c 2 -W 2 {EXT_INET}")
    assert rc == 1 and "0 packets received" in out, out


def test_nat_guest_reaches_its_own_hosts_outside(world: World) -> None:
    """The internet (on the underlay) sees each guest as its own hypervisor. (busybox
    1.35's own `wget -T` segfaults: busybox `timeout` bounds it.)"""
    for guest, hv in GUESTS.items():
        rc, out = world.guest_run(guest, "ip route replace default via 10.164.10.1 dev eth0 "
                                  f"&& timeout 10 wget -q -O - http://{INET_ADDR}/cgi-bin/peer")
        assert rc == 0, (guest, out)
        seen = out.strip().strip("[]").removeprefix("::ffff:")   # busybox httpd's form
        assert seen == world.cluster.hv(hv).addr, (guest, out)


# ------------------------------------------------------------------ faults

def test_libvirtd_killed_mid_apply(world: World, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """hv2's libvirtd dies after its first change (a new network) and before its second
    (a NIC for its guest): the others finish, hv2's section says what failed, the next
    apply converges it."""
    data = spec(world.cluster, extra_net=True)
    data["guests"]["kvt-cl-b"]["interfaces"].append({"network": "kvt-cl-x", "model": "virtio"})
    path = world.write(data, "extra.yaml")
    hv2 = world.cluster.hv("hv2")
    killed: list[str] = []
    real = cli_multihost._progress

    def progress(name: str, i: int, total: int, a: Any, res: Any) -> None:
        if name == "hv2" and res is None and i == 2 and not killed:
            world.cluster.kill_libvirtd(hv2)
            killed.append(f"{a.kind} {a.target}")
        real(name, i, total, a, res)

    monkeypatch.setattr(cli_multihost, "_progress", progress)
    assert main(["apply", str(path), "--yes"]) == 1
    cap = capsys.readouterr()
    assert killed == ["nic.attach guest/kvt-cl-b/" + killed[0].rsplit("/", 1)[1]], killed
    assert "3 host(s): 2 applied (hv1, hv3), 0 without changes, 1 failed (hv2)" in cap.out
    assert "hv2: FAILED: nic.attach guest/kvt-cl-b/" in cap.out, cap.out
    assert "kvmnet: error: apply failed on hv2" in cap.err
    conn = world.conns["hv1"]
    assert conn.networkLookupByName("kvt-cl-x").isActive()
    monkeypatch.undo()

    world.cluster.start_libvirtd(hv2)          # the operator restarts it
    world.reconnect("hv2")
    proc = kvmnet("apply", str(path), "--yes", "--json")
    again = as_json(proc)
    assert proc.returncode == 0, again
    assert again["summary"]["applied"] == ["hv2"], again["summary"]
    assert [a["kind"] for a in again["hosts"]["hv2"]["actions"]] == ["nic.attach"]
    assert_converged(path)
    world.write(data)   # the world's spec from now on


def test_unreachable_hypervisor_while_planning(world: World) -> None:
    """hv3's underlay cable is pulled: its ssh connection fails after ssh's
    ConnectTimeout; hv1, hv2 and OVN are planned anyway."""
    path = world.dir / "cluster.yaml"
    hv3 = world.cluster.hv("hv3")
    cluster_net.set_underlay(hv3, up=False)
    try:
        t0 = time.monotonic()
        rc, data = plan_json(path)
        TIMES[f"plan with hv3 unreachable (ConnectTimeout {CONNECT_TIMEOUT})"] = (
            time.monotonic() - t0)
    finally:
        cluster_net.set_underlay(hv3, up=True)
    assert rc == 1, data
    assert data["hosts"]["hv3"]["status"] == "failed"
    assert data["hosts"]["hv3"]["error"] == (
        f"cannot connect to {hv3.uri}: ssh to {hv3.addr} failed: connect to host {hv3.addr} "
        "port 22: Connection timed out; it did not answer within ssh's ConnectTimeout")
    assert data["hosts"]["hv1"]["status"] == data["hosts"]["hv2"]["status"] == "unchanged"
    assert data["ovn"]["status"] == "unchanged"
    assert data["summary"]["failed"] == ["hv3"]
    assert_converged(path)


def test_northbound_down_during_apply(world: World, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """NB goes down between the plan and the apply of a change with a libvirt part (a
    NIC on a new overlay network for kvt-cl-a) and an OVN part (the network, its port):
    OVN fails with a clear message, every host's part is whole, the next apply (NB
    back) converges."""
    data = spec(world.cluster, extra_net=True)
    data["guests"]["kvt-cl-b"]["interfaces"].append({"network": "kvt-cl-x", "model": "virtio"})
    data["networks"]["kvt-cl-ov2"] = {"mode": "overlay", "mtu": 1442, "ipv4": {
        "address": "10.164.21.1/24", "dhcp": "10.164.21.100-10.164.21.199"}}
    data["guests"]["kvt-cl-a"]["interfaces"].append({"network": "kvt-cl-ov2",
                                                     "model": "virtio"})
    path = world.write(data, "ov2.yaml")

    class NbDies(Session):
        def apply(self, *args: Any, **kwargs: Any) -> Any:
            cluster_net.stop_db("nb")
            return super().apply(*args, **kwargs)

    monkeypatch.setattr(cli_multihost, "Session", NbDies)
    try:
        assert main(["apply", str(path), "--yes"]) == 1
    finally:
        cluster_net.start_db("nb")
    cap = capsys.readouterr()
    assert "3 host(s): 1 applied (hv1), 2 without changes, 0 failed; OVN northbound: " \
           "failed" in cap.out, cap.out
    assert ("OVN northbound: FAILED: ovn.create ovn/switch/kvt-cl-ov2 failed: cannot connect "
            f"to OVN northbound {world.cluster.nb_remote}") in cap.out, cap.out
    monkeypatch.undo()
    rc, after = plan_json(path)       # the hosts' parts are whole: only OVN is left
    assert rc == 2, after
    assert [h for h, d in after["hosts"].items() if d["changes"]] == []
    assert {a["kind"] for a in after["ovn"]["actions"]} == {"ovn.create"}
    # and with only ovn-northd down: kvmnet writes northbound alone, so the apply
    # succeeds; the new port reaches the southbound database when northd is back
    port = overlay_port_id("kvt-cl-ov2", "kvt-cl-a", 2)
    cluster_net.stop_northd()
    try:
        proc = kvmnet("apply", str(path), "--yes", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert as_json(proc)["ovn"]["status"] == "changed"
        assert not bound(world, port)
    finally:
        cluster_net.start_northd()
    deadline = time.monotonic() + 30
    while not bound(world, port):
        assert time.monotonic() < deadline, "the port never reached the SB database"
        time.sleep(0.3)
    assert_converged(path)


def bound(world: World, port: str) -> bool:
    return bool(world.cluster.sbctl("--bare", "--columns=_uuid", "find", "Port_Binding",
                                    f"logical_port={port}").strip())


def test_changed_host_key_is_refused(world: World) -> None:
    """hv1's sshd comes back with another host key: kvmnet refuses hv1 (ssh's strict
    host key check), never adds the new key, and plans the others."""
    hv1 = world.cluster.hv("hv1")
    known = RUN / "admin/known_hosts"
    before = known.read_bytes()
    keys = hv1.dir / "ssh"
    saved = {p.name: p.read_bytes() for p in keys.glob("ssh_host_ed25519_key*")}
    path = world.dir / "ov2.yaml"
    cluster_net.stop_sshd(hv1)
    cluster_net.new_host_key(hv1)
    cluster_net.sshd(hv1)
    try:
        rc, data = plan_json(path)
    finally:
        cluster_net.stop_sshd(hv1)
        for name, raw in saved.items():
            (keys / name).write_bytes(raw)
        os.chmod(keys / "ssh_host_ed25519_key", 0o600)
        cluster_net.sshd(hv1)
    assert rc == 1, data
    err = data["hosts"]["hv1"]["error"]
    assert "ssh to 10.164.0.11 refused: its host key is not the one known_hosts holds" in err
    assert "never accepts a changed key" in err and "\n" not in err, err
    assert data["hosts"]["hv2"]["status"] == data["hosts"]["hv3"]["status"] == "unchanged"
    assert known.read_bytes() == before
    assert_converged(path)

