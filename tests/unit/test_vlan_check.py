"""VLAN checks (issue 20, point 1): each mistake a switch would refuse is an error at
the key it is about (FILE:LINE:COL), with what to write instead; a right spec is clean."""

from __future__ import annotations

import pytest

from kvmnet.model.derive import nic_vlans
from kvmnet.model.vlan import Vlans
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load_text

HEAD = """\
host:
  bridges:
    br0: {ports: [eno1], vlan_filtering: true, pvid: 1, vlans: [100, 200]}
    br1: {ports: [eno2]}
networks:
  lan:
    mode: bridge
    bridge: br0
    portgroups:
      office: {vlan: 100, default: true}
      router: {vlans: [100, 200], native: 100}
  nat1: {mode: nat, bridge: virbr9, ipv4: {address: 10.160.9.1/24}}
guests:
  g1:
    interfaces:
"""


def found(nics: str, head: str = HEAD) -> list[tuple[str, str]]:
    text = head + nics
    spec, pos = load_text(text, "t.yaml")
    return [(f"{p.line}:{p.col}", p.message) for p in check(spec, pos, "t.yaml")]


def test_the_agreed_shape_is_clean_and_each_nic_gets_its_vlans() -> None:
    nics = """\
      - {bridge: br0, vlan: 100}
      - {network: lan, vlans: [100, 200], native: 100}
      - {network: lan, portgroup: office}
      - {network: lan, portgroup: router}
      - {network: lan}
      - {bridge: br0}
      - {network: lan, portgroup: router, vlan: 200}
"""
    assert found(nics) == []
    spec, _ = load_text(HEAD + nics, "t.yaml")
    got = [nic_vlans(spec, "g1", i) for i in range(7)]
    assert got == [Vlans((), 100), Vlans((200,), 100), Vlans((), 100), Vlans((200,), 100),
                   Vlans((), 100),  # the default portgroup
                   None,            # the bridge's pvid, untagged
                   Vlans((), 200)]  # the NIC's own VLAN before its portgroup's (libvirt's)
    assert [v.text() if v else "none" for v in got[:2]] == ["access 100",
                                                             "trunk 100,200 native 100"]


@pytest.mark.parametrize(("nic", "where", "says"), [
    ("{bridge: br0, vlan: 300}", "16:29", "bridge br0 does not carry VLAN 300 (vlans: "
     "[100, 200], pvid: 1): add 300 to host.bridges.br0.vlans"),
    ("{bridge: br0, vlans: [100, 300]}", "16:36", "does not carry VLAN 300"),
    ("{bridge: br0, vlan: 100, vlans: [200]}", "16:41", "not both"),
    ("{bridge: br0, vlans: [200, 200]}", "16:36", "VLAN 200 is listed twice"),
    ("{bridge: br0, vlans: [100, 200], native: 300}", "16:50",
     "native VLAN 300 is not in vlans [100, 200]: add it to vlans"),
    ("{bridge: br0, native: 100}", "16:31", "write vlan: 100 for an access port"),
    ("{bridge: br1, vlan: 100}", "16:29", "bridge br1 does not filter VLANs"),
    ("{network: nat1, vlan: 100}", "16:31", "network nat1 is mode nat, not bridge"),
    ("{network: lan, portgroup: ofice}", "16:35", "no portgroup 'ofice': did you mean "
     "'office'?"),
    ("{bridge: br0, vlan: 4095}", "16:29", "4095 is out of range: input should be less "
     "than or equal to 4094: a VLAN id is 1-4094"),
    ("{bridge: br0, vlan: 0}", "16:29", "a VLAN id is 1-4094"),
    ("{bridge: br0, vlans: [100, true]}", "16:36", "expected a whole number, got true"),
])
def test_a_nic_s_vlan_mistake_is_an_error_at_its_key(nic: str, where: str,
                                                     says: str) -> None:
    text = HEAD + f"      - {nic}\n"
    loaded = load_partial_text(text)
    got = [(f"{p.line}:{p.col}", p.message) for p in loaded]
    assert any(w == where and says in m for w, m in got), got
    assert len(got) == 1, got


def load_partial_text(text: str) -> list:  # type: ignore[type-arg]
    import tempfile
    from pathlib import Path

    from kvmnet.spec.check import check_file

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "t.yaml"
        p.write_text(text)
        return check_file(p)[2]


def test_bridges_and_portgroups_are_checked_too() -> None:
    head = HEAD.replace("pvid: 1, vlans: [100, 200]}", "pvid: 1, vlans: [100, 200, 1]}")
    head = head.replace("br1: {ports: [eno2]}", "br1: {ports: [eno2], pvid: 5}")
    head = head.replace("native: 100}\n", "native: 100}\n      other: {vlan: 300, "
                        "default: true}\n")
    head = head.replace("ipv4: {address: 10.160.9.1/24}}", "ipv4: {address: "
                        "10.160.9.1/24}, portgroups: {x: {vlan: 100}}}")
    got = found("      - {bridge: br0}\n", head)
    msgs = "\n".join(f"{w} {m}" for w, m in got)
    assert len(got) == 5, msgs
    assert "3:75 host.bridges.br0.vlans.2: VLAN 1 is the bridge's pvid" in msgs
    assert "4:32 host.bridges.br1.pvid: pvid needs vlan_filtering: true" in msgs
    assert "portgroups.other.vlan: bridge br0 does not carry VLAN 300" in msgs
    assert "portgroups.other.default: portgroup office of network lan is already its " \
           "default" in msgs
    assert "networks.nat1.portgroups.x.vlan: network nat1 is mode nat" in msgs


def test_a_spec_with_vlan_errors_is_refused_as_a_whole() -> None:
    spec, pos = load_text(HEAD + "      - {bridge: br0, vlan: 300}\n", "t.yaml")
    assert errors(check(spec, pos, "t.yaml"))

