"""Overlay networks on a real OVN (tests/lab/ovn.py): central + two hypervisor
namespaces joined by Geneve over a veth underlay.

kvmnet writes the northbound database; a "guest" on each hypervisor is a
namespace plugged into br-int the way libvirt plugs a tap for
`<virtualport type='openvswitch'>`; each gets its address from OVN's DHCP and
pings the other across the tunnel. Then: plan is empty, apply makes zero
writes, import round-trips, rows kvmnet does not own are never touched, and
what leaves the spec is deleted. The libvirt side is test:///default (no
guests there: kvmnet only warns that they are not defined).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvmnet.apply.runner import run
from kvmnet.backend.libvirt import Connection
from kvmnet.backend.ovsdb import read_nb
from kvmnet.errors import PlanError
from kvmnet.model.spec import Ovn, Spec
from kvmnet.render.interface import overlay_port_id
from kvmnet.service.ops import import_spec, plan_file, read_live, with_nb
from kvmnet.spec.dump import dump
from lab.macs import planned_macs
from lab.ovn import OvnLab, dhcp, ping

NET = "kvt-ov1"
KVMNET = Path(sys.executable).parent / "kvmnet"
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def ovn_lab() -> Iterator[OvnLab]:
    if os.geteuid() != 0:
        pytest.skip("the OVN lab needs root (network namespaces, OVS daemons)")
    missing = [b for b in ("ovsdb-server", "ovs-vswitchd", "ovn-northd", "ovn-controller",
                           "busybox") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (openvswitch-switch, ovn-central, "
                    "ovn-host, busybox-static)")
    lab = OvnLab()
    t0 = time.monotonic()
    lab.start()
    TIMES["lab start"] = time.monotonic() - t0
    try:
        yield lab
    finally:
        lab.stop()
        print("\nOVN lab timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in TIMES.items()))


@pytest.fixture
def conn() -> Iterator[Connection]:
    c = Connection.open("test:///default")
    yield c
    c.close()


def spec_text(nb: str, guests: bool = True, network: bool = True) -> str:
    data: dict[str, Any] = {"ovn": {"northbound": nb}, "networks": {}, "guests": {}}
    if network:
        data["networks"][NET] = {"mode": "overlay", "ipv4": {
            "address": "10.240.1.1/24", "dhcp": "10.240.1.100-10.240.1.199",
            "lease_time": "1h"}}
    if guests:
        data["guests"] = {
            "kvt-g1": {"interfaces": [{"network": NET, "ipv4": "10.240.1.11"}]},
            "kvt-g2": {"interfaces": [{"network": NET}]},   # dynamic: OVN picks from the range
        }
    return yaml.safe_dump(data)


def write(tmp_path: Path, text: str) -> Path:
    """The suite's specs are one owner's (generated MACs are salted with it)."""
    p = tmp_path / "spec.yaml"
    p.write_text(text if "owner:" in text else f"owner: kvt-ovn\n{text}")
    return p


def apply_file(path: Path, conn: Connection, allow_destroy: bool = False) -> int:
    p = plan_file(path, conn)
    t0 = time.monotonic()
    report = run(p.plan, conn, p.live, allow_destroy)
    TIMES.setdefault("apply", time.monotonic() - t0)
    assert report.ok, [r.message for r in report.results if r.status == "failed"]
    return report.writes


def cli_apply(path: Path) -> dict[str, Any]:
    res = subprocess.run([str(KVMNET), "apply", str(path), "-c", "test:///default", "--yes",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_two_guests_on_two_hypervisors_get_dhcp_and_ping(
        ovn_lab: OvnLab, conn: Connection, tmp_path: Path) -> None:
    central = ovn_lab.central
    path = write(tmp_path, spec_text(central.nb_remote))
    spec = Spec.model_validate(yaml.safe_load(path.read_text()))

    t0 = time.monotonic()
    p = plan_file(path, conn)
    TIMES["first plan"] = time.monotonic() - t0
    kinds = [(a.kind, a.target) for a in p.plan.actions]
    assert kinds == [("ovn.create", f"ovn/switch/{NET}"), ("ovn.create", f"ovn/dhcp/{NET}"),
                     ("ovn.create", f"ovn/port/{NET}/kvt-g1/0"),
                     ("ovn.create", f"ovn/port/{NET}/kvt-g2/0")]
    assert apply_file(path, conn) == 4          # one NB transaction per action

    # guests plugged as libvirt plugs a tap: iface-id = the interfaceid kvmnet renders
    macs = planned_macs(spec, "test:///default", owner="kvt-ovn")
    g1 = ovn_lab.hvs[0].plug_guest("g1", overlay_port_id(NET, "kvt-g1", 0), macs[("kvt-g1", 0)])
    g2 = ovn_lab.hvs[1].plug_guest("g2", overlay_port_id(NET, "kvt-g2", 0), macs[("kvt-g2", 0)])
    try:
        _dhcp_ping_plan_import(ovn_lab, conn, tmp_path, path, g1, g2)
    finally:
        ovn_lab.hvs[0].unplug_guest(g1)
        ovn_lab.hvs[1].unplug_guest(g2)


def _dhcp_ping_plan_import(ovn_lab: OvnLab, conn: Connection, tmp_path: Path, path: Path,
                           g1: str, g2: str) -> None:
    central = ovn_lab.central
    t0 = time.monotonic()
    a1, a2 = dhcp(g1), dhcp(g2)
    TIMES["dhcp both"] = time.monotonic() - t0
    assert a1 == "10.240.1.11/24"
    ip2 = a2.split("/")[0]
    assert a2.endswith("/24") and 100 <= int(ip2.rsplit(".", 1)[1]) <= 199, a2
    t0 = time.monotonic()
    assert ping(g1, ip2), f"{g1} cannot ping {ip2} across the Geneve tunnel"
    assert ping(g2, "10.240.1.11")
    TIMES["ping both ways"] = time.monotonic() - t0
    chassis = central.sbctl("--bare", "--columns=chassis", "find", "Port_Binding",
                            f"logical_port={overlay_port_id(NET, 'kvt-g1', 0)}").strip()
    assert chassis, "port of g1 is not bound to a chassis"

    # idempotence: plan is empty, a second apply (the CLI, own process) makes 0 writes
    t0 = time.monotonic()
    again = plan_file(path, conn)
    TIMES["plan after apply"] = time.monotonic() - t0
    assert not again.plan.changes, [a.summary for a in again.plan.actions]
    out = cli_apply(path)
    assert out["writes"] == 0 and out["ok"]

    # import: the overlay part comes back and plans to nothing
    ovn = Ovn(northbound=central.nb_remote)
    imported, notes = import_spec(with_nb(read_live(conn), ovn), ovn=ovn)
    assert NET in imported.networks and {"kvt-g1", "kvt-g2"} <= set(imported.guests)
    ipath = tmp_path / "imported.yaml"
    ipath.write_text(dump(imported))
    # (test:///default's own network "default" comes back with adopt: true: not ours)
    assert [a.kind for a in plan_file(ipath, conn).plan.actions] == ["network.adopt"]


def test_ownership_and_removal(ovn_lab: OvnLab, conn: Connection, tmp_path: Path) -> None:
    central = ovn_lab.central
    path = write(tmp_path, spec_text(central.nb_remote))
    apply_file(path, conn)                      # (already there from the first test: 0)
    # rows kvmnet does not own: a switch of its own and a port on kvmnet's switch
    central.nbctl("ls-add", "kvt-foreign", "--", "set", "Logical_Switch", "kvt-foreign",
                  "other_config:subnet=10.240.2.0/24")
    central.nbctl("lsp-add", NET, "kvt-foreign-port", "--", "lsp-set-addresses",
                  "kvt-foreign-port", "0a:00:00:00:02:01 10.240.1.250")
    assert not plan_file(path, conn).plan.changes

    # the network leaves the spec: kvmnet's ports and DHCP go, its switch is kept
    # (a foreign port is on it), the foreign rows stay untouched
    gone = write(tmp_path, spec_text(central.nb_remote, guests=False, network=False))
    p = plan_file(gone, conn)
    by_target = {a.target: a for a in p.plan.actions}
    assert by_target[f"ovn/switch/{NET}"].skipped
    assert {a.kind for a in p.plan.actions} == {"ovn.remove"}
    assert run(p.plan, conn, p.live).ok
    st = read_nb(Ovn(northbound=central.nb_remote))
    assert set(st.switches) == {NET, "kvt-foreign"}
    assert set(st.ports) == {"kvt-foreign-port"} and not st.dhcp

    # once the foreign port is gone the switch is deleted; the foreign switch never is
    central.nbctl("lsp-del", "kvt-foreign-port")
    p = plan_file(gone, conn)
    assert [(a.kind, a.target) for a in p.plan.actions] == [("ovn.remove", f"ovn/switch/{NET}")]
    assert run(p.plan, conn, p.live).writes == 1
    st = read_nb(Ovn(northbound=central.nb_remote))
    assert set(st.switches) == {"kvt-foreign"}
    assert st.switches["kvt-foreign"].other_config == {"subnet": "10.240.2.0/24"}
    assert not plan_file(gone, conn).plan.changes


def test_removing_a_switch_with_bound_ports_needs_allow_destroy(
        ovn_lab: OvnLab, conn: Connection, tmp_path: Path) -> None:
    central = ovn_lab.central
    path = write(tmp_path, spec_text(central.nb_remote))
    apply_file(path, conn)
    spec = Spec.model_validate(yaml.safe_load(path.read_text()))
    mac = planned_macs(spec, "test:///default", owner="kvt-ovn")[("kvt-g1", 0)]
    g = ovn_lab.hvs[0].plug_guest("g3", overlay_port_id(NET, "kvt-g1", 0), mac)
    try:
        port = overlay_port_id(NET, "kvt-g1", 0)
        deadline = time.monotonic() + 20
        while central.nbctl("get", "Logical_Switch_Port", port, "up").strip() != "true":
            assert time.monotonic() < deadline, "port never came up"
            time.sleep(0.2)
        gone = write(tmp_path, spec_text(central.nb_remote, guests=False, network=False))
        p = plan_file(gone, conn)
        with pytest.raises(PlanError, match="--allow-destroy"):
            run(p.plan, conn, p.live)
        assert run(p.plan, conn, p.live, allow_destroy=True).ok
        assert not read_nb(Ovn(northbound=central.nb_remote)).ports
    finally:
        ovn_lab.hvs[0].unplug_guest(g)


def test_router_with_snat_to_an_external_network(
        ovn_lab: OvnLab, conn: Connection, tmp_path: Path) -> None:
    """A guest on hv2 reaches an outside host behind hv1 (the gateway chassis) that
    has no route back to the overlay subnet: only SNAT makes the ping answer."""
    central, hv1, hv2 = ovn_lab.central, *ovn_lab.hvs
    ext_ns = hv1.add_external("kvt-phys", "10.240.3.254/24")
    data = yaml.safe_load(spec_text(central.nb_remote))
    data["networks"][NET]["router"] = {"external": {
        "physnet": "kvt-phys", "address": "10.240.3.10/24", "gateway": "10.240.3.254",
        "chassis": [hv1.name]}, "snat": True}
    path = write(tmp_path, yaml.safe_dump(data))
    p = plan_file(path, conn)
    assert ("ovn.create", f"ovn/router/{NET}") in [(a.kind, a.target) for a in p.plan.actions]
    apply_file(path, conn)
    assert not plan_file(path, conn).plan.changes
    spec = Spec.model_validate(data)
    macs = planned_macs(spec, "test:///default", owner="kvt-ovn")
    g = hv2.plug_guest("g4", overlay_port_id(NET, "kvt-g2", 0), macs[("kvt-g2", 0)])
    try:
        dhcp(g)
        assert ping(g, "10.240.1.1"), "the router's inside port does not answer"
        t0 = time.monotonic()
        assert ping(g, "10.240.3.254", tries=15), "no SNAT: outside host unreachable"
        TIMES["ping through SNAT"] = time.monotonic() - t0
        assert not ping(ext_ns, "10.240.1.11", tries=1)   # the outside has no way in
    finally:
        hv2.unplug_guest(g)
    # import brings the router back
    ovn = Ovn(northbound=central.nb_remote)
    imported, _ = import_spec(with_nb(read_live(conn), ovn), ovn=ovn)
    router = imported.networks[NET].router
    assert router is not None and router.snat and router.external.chassis == [hv1.name]
    # the router leaves the spec: router, its switch and ports go, the network stays
    del data["networks"][NET]["router"]
    path = write(tmp_path, yaml.safe_dump(data))
    p = plan_file(path, conn)
    assert {a.kind for a in p.plan.actions} == {"ovn.remove"}
    assert (f"ovn/router/{NET}" in [a.target for a in p.plan.actions])
    assert run(p.plan, conn, p.live).ok
    assert not plan_file(path, conn).plan.changes
    st = read_nb(ovn)
    assert not st.routers and set(st.switches) == {NET, "kvt-foreign"}
