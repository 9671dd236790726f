"""Bonds and VLAN sub-interfaces in plan, without a kernel: the host.bridge action's
lines, the NICs it refuses (missing, Wi-Fi, another's port, a live link of another
kind), the SSH guard on a bond's NIC, the order of the bridges, the MAC the bridge
pins through its bond, what the live host's links say of bonds and VLANs (netlink
parse), the graph, doctor's Wi-Fi check. The kernel's side: test_hostbond.py."""

from __future__ import annotations

from kvmnet.doctor.links import check_wireless
from kvmnet.model.live import HostLink, HostRoute, HostState, LiveState
from kvmnet.model.spec import HostBond, HostVlan, Spec
from kvmnet.parse.netlink import parse_link
from kvmnet.plan import make_plan
from kvmnet.plan.host_lower import lower_links, nics_below, step_links
from kvmnet.render.graph import live_host_links
from kvmnet.spec.load import load_text

SPEC = """\
host:
  bonds:
    bond0: {ports: [eno1, eno2], primary: eno1}
  vlans:
    bond0.100: {link: bond0, id: 100}
  bridges:
    br100: {ports: [bond0.100]}
    br0:
      ports: [bond0]
      address: 192.168.1.2/24
      gateway: 192.168.1.1
"""
ENO1 = HostLink("eno1", 2, "", None, True, "52:54:00:00:00:01",
                addresses=("192.168.1.2/24",), perm_mac="52:54:00:00:00:01")
ENO2 = HostLink("eno2", 3, "", None, True, "52:54:00:00:00:02")
DEFAULT = HostRoute("0.0.0.0/0", "eno1", "192.168.1.1", 100)


def spec(text: str = SPEC) -> Spec:
    return load_text(text)[0]


def live(links: list[HostLink], ssh: tuple[str, ...] = ()) -> LiveState:
    host = HostState(links={x.name: x for x in links}, routes=(DEFAULT,), readable=True,
                     ssh_sessions=ssh)
    return LiveState("qemu:///system", {}, {}, host)


def test_bond_bridge_first_then_its_vlan_bridge() -> None:
    plan = make_plan(spec(), live([ENO1, ENO2]))
    assert [a.target for a in plan.actions] == ["host/br0", "host/br100"]
    br0, br100 = plan.actions
    assert br0.details == (
        "+ bridge br0: stp off, MAC 52:54:00:00:00:01 (eno1's permanent MAC)",
        "+ bond bond0: active-backup, miimon 100 ms, ports eno1, eno2",
        "~ bond0: enslave to br0",
        "~ eno1: enslave to bond0 (it goes down and up)",
        "~ eno2: enslave to bond0 (it goes down and up)",
        "~ address 192.168.1.2/24: eno1 -> br0",
        "~ route 0.0.0.0/0 via 192.168.1.1 metric 100: eno1 -> br0")
    assert "+ VLAN bond0.100: id 100 on bond0" in br100.details
    assert not any("bond bond0" in d for d in br100.details)  # br0's step makes it
    assert br0.host is not None and br0.host.bridges["br0"].mac == "52:54:00:00:00:01"


def test_step_links_top_down() -> None:
    host = spec().host
    assert lower_links(host, "br100") == ["bond0", "bond0.100"]  # (made by br0 first)
    assert step_links(host, "br0") == ["br0", "bond0", "eno1", "eno2"]
    assert nics_below(host, "br0") == ["eno1", "eno2"]
    assert nics_below(host, "br100") == []


def test_a_missing_wifi_or_taken_bond_nic_is_refused() -> None:
    wifi = HostLink("eno2", 3, "", None, True, wireless=True)
    plan = make_plan(spec(), live([ENO1, wifi]))
    assert any("eno2 is a wireless interface" in e.message for e in plan.errors), plan.errors
    taken = HostLink("eno2", 3, "", "virbr9", True)
    plan = make_plan(spec(), live([ENO1, taken]))
    assert any("eno2 is already a port of virbr9" in e.message for e in plan.errors)
    plan = make_plan(spec(), live([ENO1]))
    assert any("eno2 does not exist on the host" in e.message for e in plan.errors)


def test_a_live_link_of_another_kind_or_mode_is_refused() -> None:
    bond = HostLink("bond0", 9, "bond", None, True, bond_mode="balance-rr")
    plan = make_plan(spec(), live([ENO1, ENO2, bond]))
    assert any("bond bond0 runs in mode balance-rr, the spec says active-backup" in e.message
               for e in plan.errors), plan.errors
    vlan = HostLink("bond0.100", 10, "vlan", None, True, vlan=("bond0", 200))
    plan = make_plan(spec(), live([ENO1, ENO2, vlan]))
    assert any("bond0.100 exists as VLAN 200 on bond0" in e.message for e in plan.errors)
    dummy = HostLink("bond0", 9, "dummy", None, True)
    plan = make_plan(spec(), live([ENO1, ENO2, dummy]))
    assert any("bond0 exists on the host as a dummy link, not a bond" in e.message
               for e in plan.errors)


def test_ssh_session_on_a_bond_nic_needs_the_gateway() -> None:
    nogw = SPEC.replace("      gateway: 192.168.1.1\n", "")
    plan = make_plan(spec(nogw), live([ENO1, ENO2], ssh=("192.168.1.2",)))
    [e] = [e for e in plan.errors if "SSH session" in e.message]
    assert "which is on eno1, and the spec gives br0 no gateway" in e.message
    assert e.path == ("host", "bonds", "bond0", "ports", 0)
    assert not [e for e in make_plan(spec(), live([ENO1, ENO2], ssh=("192.168.1.2",))).errors
                if "SSH" in e.message]


def test_a_bond_only_vlans_ride_on_cannot_strand_the_address() -> None:
    text = """\
host:
  bonds: {bond0: {ports: [eno1, eno2]}}
  vlans: {bond0.100: {link: bond0, id: 100}}
  bridges: {br100: {ports: [bond0.100]}}
"""
    plan = make_plan(spec(text), live([ENO1, ENO2]))
    assert any("eno1 carries 192.168.1.2/24 and bond bond0 is in no bridge" in e.message
               for e in plan.errors), plan.errors


def test_an_applied_bond_plans_nothing() -> None:
    links = [HostLink("eno1", 2, "", "bond0", True, "52:54:00:00:00:01"),
             HostLink("eno2", 3, "", "bond0", True, "52:54:00:00:00:01"),
             HostLink("bond0", 4, "bond", "br0", True, bond_mode="active-backup"),
             HostLink("bond0.100", 5, "vlan", "br100", True, vlan=("bond0", 100)),
             HostLink("br0", 6, "bridge", None, True, "52:54:00:00:00:01",
                      addresses=("192.168.1.2/24",), vlan_filtering=False),
             HostLink("br100", 7, "bridge", None, True, vlan_filtering=False)]
    host = HostState(links={x.name: x for x in links},
                     routes=(HostRoute("0.0.0.0/0", "br0", "192.168.1.1", 100),))
    plan = make_plan(spec(), LiveState("qemu:///system", {}, {}, host))
    assert not plan.actions and not plan.errors


def test_vlan_filtering_is_not_turned_on_under_a_live_bridge() -> None:
    text = SPEC.replace("      gateway: 192.168.1.1\n",
                        "      gateway: 192.168.1.1\n      vlan_filtering: true\n")
    br0 = HostLink("br0", 6, "bridge", None, True, vlan_filtering=False)
    plan = make_plan(spec(text), live([ENO1, ENO2, br0]))
    assert any("br0 exists with VLAN filtering off" in e.message for e in plan.errors)


def test_netlink_messages_say_bond_mode_vlan_and_filtering() -> None:
    names = {4: "bond0", 5: "bond0.100", 6: "br0"}
    bond = parse_link({"ifname": "bond0", "index": 4, "flags": 1,
                       "linkinfo": {"kind": "bond", "data": {"IFLA_BOND_MODE": 4}}}, names)
    vlan = parse_link({"ifname": "bond0.100", "index": 5, "flags": 1, "link": 4,
                       "linkinfo": {"kind": "vlan", "data": {"IFLA_VLAN_ID": 100}}}, names)
    br = parse_link({"ifname": "br0", "index": 6, "flags": 1, "linkinfo": {
        "kind": "bridge", "data": {"IFLA_BR_VLAN_FILTERING": 1}}}, names)
    assert bond is not None and bond.bond_mode == "802.3ad"
    assert vlan is not None and vlan.vlan == ("bond0", 100)
    assert br is not None and br.vlan_filtering is True


def test_show_and_import_know_the_live_bond_and_vlan() -> None:
    links = {x.name: x for x in [
        HostLink("eno1", 2, "", "bond0", True), HostLink("eno2", 3, "", "bond0", True),
        HostLink("bond0", 4, "bond", "br0", True, bond_mode="active-backup"),
        HostLink("bond0.100", 5, "vlan", "br100", True, vlan=("bond0", 100)),
        HostLink("br0", 6, "bridge", None, True), HostLink("br100", 7, "bridge", None, True)]}
    bonds, vlans = live_host_links(HostState(links=links), ["br0", "br100"])
    assert bonds == {"bond0": HostBond(ports=["eno1", "eno2"], mode="active-backup")}
    assert vlans == {"bond0.100": HostVlan(link="bond0", id=100)}


def test_doctor_fails_a_wifi_nic_in_a_bond() -> None:
    from kvmnet.doctor.checks import Facts

    f = Facts(uri="qemu:///system", spec=spec(), wireless=frozenset({"eno2"}),
              spec_file="s.yaml")
    c = check_wireless(f)
    assert c.status == "fail" and "eno2 in bond0" in c.message
    assert "# remove eno2 from host.bonds.bond0.ports in s.yaml" in c.fix
