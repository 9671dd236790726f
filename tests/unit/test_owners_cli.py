"""Owners, as a user meets them (issue 19, items 1 and 2): two spec files on one host,
apply and plan and destroy run through the CLI in-process on test:///default (its state
kept alive between commands by a held connection), asserting what they print and what
libvirt then holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from kvmnet.cli.main import main
from kvmnet.render.network import KVMNET_NS, build_network
from kvmnet.spec.load import load_text

URI = "test:///default"
NET_A = ("  kvt-ua-a:\n    mode: nat\n    bridge: kvtuaa\n"
         "    ipv4: {address: 10.153.1.1/24, dhcp: 10.153.1.100-10.153.1.199}\n")
NET_B = ("  kvt-ua-b:\n    mode: isolated\n    bridge: kvtuab\n"
         "    ipv4: {address: 10.153.2.1/24}\n")
GUEST_A = "guests:\n  test:\n    interfaces: [{network: kvt-ua-a, ipv4: 10.153.1.10}]\n"


@pytest.fixture
def held() -> Iterator[libvirt.virConnect]:
    """test:///default keeps its state while a connection is open (each command opens
    its own): a fresh one per test, closed after."""
    libvirt.registerErrorHandler(lambda *_: None, None)
    c = libvirt.open(URI)
    yield c
    c.close()


def kvmnet(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main([*argv, "-c", URI])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def nets(c: libvirt.virConnect) -> set[str]:
    return {n.name() for n in c.listAllNetworks()}


def test_two_specs_leave_each_other_alone(tmp_path: Path, held: libvirt.virConnect,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("networks:\n" + NET_A + GUEST_A)
    b.write_text("networks:\n" + NET_B)
    assert kvmnet(capsys, "apply", "--yes", str(a))[0] == 0
    rc, out, err = kvmnet(capsys, "plan", str(b))
    assert rc == 0, err
    # b's plan creates its network and removes nothing of a's: it says so, with a's owner
    assert "network.create network/kvt-ua-b" in out
    assert "remove" not in out and "detach" not in out
    assert f"network/kvt-ua-a (owned by {a.resolve()})" in out
    assert "Left alone" in out
    assert kvmnet(capsys, "apply", "--yes", str(b))[0] == 0
    assert {"kvt-ua-a", "kvt-ua-b"} <= nets(held)
    # and each is a no-op afterwards, each naming the other's network as left alone
    rc, out, _ = kvmnet(capsys, "plan", "--detailed-exitcode", str(a))
    assert rc == 0 and f"network/kvt-ua-b (owned by {b.resolve()})" in out
    # the owner is recorded in libvirt's XML
    mark = etree.fromstring(held.networkLookupByName("kvt-ua-b").XMLDesc(0).encode()).find(
        f"metadata/{{{KVMNET_NS}}}managed")
    assert mark is not None and mark.get("owner") == str(b.resolve())
    rc, out, _ = kvmnet(capsys, "plan", "--json", str(b))
    assert '"owner": "' + str(b.resolve()) in out and '"left_alone"' in out


def test_another_owners_network_needs_adopt(tmp_path: Path, held: libvirt.virConnect,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    a, c = tmp_path / "a.yaml", tmp_path / "c.yaml"
    a.write_text("networks:\n" + NET_A)
    c.write_text("owner: team-c\nnetworks:\n" + NET_A)
    assert kvmnet(capsys, "apply", "--yes", str(a))[0] == 0
    rc, out, err = kvmnet(capsys, "plan", str(c))
    assert rc == 1
    assert f"network kvt-ua-a on {URI} is owned by {a.resolve()} (another spec)" in err
    assert "'adopt: true' on networks.kvt-ua-a (or --adopt kvt-ua-a)" in err
    assert f"{c}:3:3:" in err    # located at the network's key
    rc, out, err = kvmnet(capsys, "apply", "--yes", "--adopt", "kvt-ua-a", str(c))
    assert rc == 0, err
    assert f"adopt kvt-ua-a: move it from owner {a.resolve()} to team-c" in out
    # now a is the one refused, and c's plan is empty
    assert "is owned by team-c" in kvmnet(capsys, "plan", str(a))[2]
    assert kvmnet(capsys, "plan", "--detailed-exitcode", str(c))[0] == 0


def test_destroy_removes_only_the_owners_objects(tmp_path: Path, held: libvirt.virConnect,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("networks:\n" + NET_A + GUEST_A)
    b.write_text("networks:\n" + NET_B)
    assert kvmnet(capsys, "apply", "--yes", str(a))[0] == 0
    assert kvmnet(capsys, "apply", "--yes", str(b))[0] == 0
    macs = _macs(held)
    assert len(macs) == 2        # the test driver's own NIC and a's
    # a's network has a guest attached: --allow-destroy, as apply; the plan is shown
    rc, out, err = kvmnet(capsys, "destroy", "--yes", str(a))
    assert rc == 1 and "--allow-destroy" in err and "kvt-ua-a" in nets(held)
    assert "network.remove network/kvt-ua-a" in out and "nic.detach guest/test/" in out
    assert "kvt-ua-b" not in out.split("Left alone")[0]
    # without --yes on a pipe: nothing changes
    rc, out, err = kvmnet(capsys, "destroy", "--allow-destroy", str(a))
    assert rc == 1 and "stdin is not a terminal" in err and "kvt-ua-a" in nets(held)
    rc, out, err = kvmnet(capsys, "destroy", "--yes", "--allow-destroy", str(a))
    assert rc == 0, err
    assert "kvt-ua-a" not in nets(held) and "kvt-ua-b" in nets(held)
    assert _macs(held) == macs - {m for m in macs if m != "aa:bb:cc:dd:ee:ff"}
    rc, out, _ = kvmnet(capsys, "destroy", "--yes", str(a))
    assert rc == 0 and f"Nothing to destroy: {a.resolve()} holds nothing on {URI}" in out


def _macs(c: libvirt.virConnect) -> set[str]:
    root = etree.fromstring(c.lookupByName("test").XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    return {m.get("address") for m in root.iterfind("devices/interface/mac")}


def test_bare_marks_of_earlier_versions(tmp_path: Path, held: libvirt.virConnect,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The upgrade path: a network an earlier kvmnet marked (a bare <kvmnet:managed/>) is
    claimed by the spec that lists it, and left alone by one that does not."""
    spec, _ = load_text("networks:\n" + NET_B, "b.yaml")
    xml = etree.tostring(build_network("kvt-ua-b", spec.networks["kvt-ua-b"]), encoding="unicode")
    assert 'owner=' not in xml     # what an earlier kvmnet wrote
    held.networkDefineXML(xml).create()
    other = tmp_path / "other.yaml"
    other.write_text("networks:\n" + NET_A)
    rc, out, _ = kvmnet(capsys, "plan", str(other))
    assert rc == 0 and "network.remove" not in out
    assert ("network/kvt-ua-b (marked by a kvmnet from before owners): list it in this spec "
            "(or pass --adopt kvt-ua-b) to manage or remove it") in out
    b = tmp_path / "b.yaml"
    b.write_text("networks:\n" + NET_B)
    rc, out, err = kvmnet(capsys, "apply", "--yes", str(b))
    assert rc == 0, err
    assert f"claim kvt-ua-b: record its owner {b.resolve()}" in out
    assert f'owner="{b.resolve()}"' in held.networkLookupByName("kvt-ua-b").XMLDesc(0)
    assert kvmnet(capsys, "plan", "--detailed-exitcode", str(b))[0] == 0


def test_scope_does_not_hide_guests(tmp_path: Path, held: libvirt.virConnect,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--scope limits which networks are removed; a guest NIC follows its owner, so a
    spec that drops its guest detaches its NIC whatever the scope says."""
    a = tmp_path / "a.yaml"
    a.write_text("owner: web\nnetworks:\n" + NET_A + GUEST_A)
    assert kvmnet(capsys, "apply", "--yes", str(a))[0] == 0
    a.write_text("owner: web\nnetworks:\n" + NET_A)
    rc, out, _ = kvmnet(capsys, "plan", "--scope", "kvt-ua-*", str(a))
    assert rc == 0 and "nic.detach guest/test/" in out


def test_a_spec_without_networks_or_guests_says_libvirt_was_not_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "host.yaml"
    f.write_text("host:\n  bridges:\n    kvtuabr0: {ports: []}\n")
    rc, out, _ = kvmnet(capsys, "plan", str(f))
    assert rc == 0
    assert "matches the spec" not in out
    assert (f"has no networks or guests, so libvirt at {URI} was not read and nothing there "
            "was compared; its host bridges were not compared (test:/// has no host)") in out
    assert f"kvmnet destroy {f}" in out


# -- MACs: salted per owner and host (issue 19, item 5) ------------------------------------

def _mac_for(capsys: pytest.CaptureFixture[str], spec: Path, uri: str, nic: str = "test/0"
             ) -> str:
    rc = main(["mac", "--spec", str(spec), "--for", nic, "-c", uri])
    out = capsys.readouterr().out
    assert rc == 0
    return out.strip()


def test_generated_macs_differ_per_owner_and_host(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("networks:\n" + NET_A + GUEST_A)
    b.write_text("networks:\n" + NET_A + GUEST_A)
    hv1, hv2 = "qemu+ssh://root@hv1/system", "qemu+ssh://root@hv2/system"
    # one spec, two hosts (a guest web1 bridged to one LAN on each): two MACs
    assert _mac_for(capsys, a, hv1) != _mac_for(capsys, a, hv2)
    # one host, two owners: two MACs; each the same every time
    assert _mac_for(capsys, a, hv1) != _mac_for(capsys, b, hv1)
    assert _mac_for(capsys, a, hv1) == _mac_for(capsys, a, "qemu+ssh://HV1/system")


def test_mac_render_and_apply_agree(tmp_path: Path, held: libvirt.virConnect,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("networks:\n" + NET_A + GUEST_A)
    mac = _mac_for(capsys, a, URI)
    assert main(["render", str(a), "-c", URI]) == 0
    rendered = capsys.readouterr().out
    assert f'<mac address="{mac}"/>' in rendered            # the NIC
    assert f'mac="{mac}"' in rendered                       # its DHCP reservation
    assert kvmnet(capsys, "apply", "--yes", str(a))[0] == 0
    assert mac in _macs(held)


def test_mac_for_a_guest_the_spec_does_not_have(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("networks:\n" + NET_A + GUEST_A)
    rc = main(["mac", "--spec", str(a), "--for", "tset/0"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"--for tset/0: {a} has no guest tset (did you mean test?); its guests: test" in err
    rc = main(["mac", "--spec", str(a), "--for", "test/1"])
    err = capsys.readouterr().err
    assert rc == 1 and "guest test in" in err and "has 1 NIC(s): INDEX is 0 to 0" in err


# -- plans a person reads (issue 19, item 3) ------------------------------------------------

def test_plan_summary_and_the_allow_destroy_exit_code(tmp_path: Path, held: libvirt.virConnect,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("networks:\n" + NET_A + NET_B + GUEST_A)
    rc, out, _ = kvmnet(capsys, "plan", str(a))
    assert rc == 0
    assert ("Plan: 3 to add, 0 to change, 0 to destroy (3 live, 0 with a network restart, "
            "0 disruptive to running guests).") in out
    assert kvmnet(capsys, "apply", "--yes", str(a))[0] == 0
    a.write_text("networks:\n" + NET_B)     # kvt-ua-a goes, with the guest's NIC on it
    rc, out, _ = kvmnet(capsys, "plan", str(a))
    assert rc == 3                          # apply would refuse: README's exit codes
    assert "[needs --allow-destroy] network.remove network/kvt-ua-a" in out
    assert "0 to add, 0 to change, 2 to destroy" in out
    assert ("network/kvt-ua-a: guests are attached, so apply refuses without "
            "--allow-destroy.") in out
    assert kvmnet(capsys, "plan", "--allow-destroy", str(a))[0] == 0
    assert kvmnet(capsys, "plan", "--allow-destroy", "--detailed-exitcode", str(a))[0] == 2
    rc, out, _ = kvmnet(capsys, "plan", "--json", str(a))
    assert rc == 3 and '"destroy": 2' in out and '"needs_allow_destroy": 1' in out


def test_apply_json_keeps_the_warnings(tmp_path: Path, held: libvirt.virConnect,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("networks:\n" + NET_A + "guests:\n  nosuch:\n"
                 "    interfaces: [{network: kvt-ua-a}]\n")
    rc, out, _ = kvmnet(capsys, "apply", "--yes", "--json", str(a))
    assert rc == 0
    import json

    data = json.loads(out)
    assert data["ok"] and [w["message"] for w in data["warnings"]] == [
        "guests.nosuch: guest nosuch is not defined on test:///default: its NICs are not "
        "attached (kvmnet never creates guests); its DHCP reservations are still made"]


# -- checks (issue 19, item 4) --------------------------------------------------------------

V6 = """networks:
  kvt-ua-v6:
    mode: nat
    bridge: kvtuav6
    ipv4: {address: 10.153.9.1/24, dhcp: 10.153.9.100-10.153.9.199}
    ipv6: {address: "fd00:153:9::1/64", dhcp: "fd00:153:9::100-fd00:153:9::1ff"}
guests:
  test:
    interfaces: [{network: kvt-ua-v6, ipv6: "fd00:153:9::10"}]
"""


def test_a_nics_ipv6_is_a_dhcpv6_reservation(tmp_path: Path, held: libvirt.virConnect,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """libvirt's IPv6 <host> has no MAC: the reservation is by the guest's name; libvirt
    (its own XML parser, in the test driver) takes it, and a second plan is empty."""
    f = tmp_path / "v6.yaml"
    f.write_text(V6)
    rc, out, err = kvmnet(capsys, "apply", "--yes", str(f))
    assert rc == 0, err
    # IPv6 on NAT without nat: {ipv6: true} is routed: said, not refused
    assert "IPv6 on NAT network kvt-ua-v6 is routed, not masqueraded" in err
    assert "nat: {ipv6: true}" in err
    root = etree.fromstring(held.networkLookupByName("kvt-ua-v6").XMLDesc(0).encode())
    hosts = [dict(h.attrib) for h in root.iterfind("ip[@family='ipv6']/dhcp/host")]
    assert hosts == [{"name": "test", "ip": "fd00:153:9::10"}]
    assert kvmnet(capsys, "plan", "--detailed-exitcode", str(f))[0] == 0


def test_a_new_network_may_not_overlap_one_it_does_not_own(
        tmp_path: Path, held: libvirt.virConnect, capsys: pytest.CaptureFixture[str]) -> None:
    """test:///default's own network 'default' (192.168.122.0/24, virbr0) is not
    kvmnet's: a spec may not take its subnet, and says so before any write."""
    f = tmp_path / "clash.yaml"
    f.write_text("networks:\n  kvt-ua-clash:\n    mode: nat\n    bridge: kvtuacl\n"
                 "    ipv4: {address: 192.168.122.129/25}\n")
    before = nets(held)
    rc, _, err = kvmnet(capsys, "apply", "--yes", str(f))
    assert rc == 1
    assert ("192.168.122.128/25 overlaps 192.168.122.0/24 of network default (not kvmnet's): "
            "pick a subnet no other network uses") in err
    assert nets(held) == before
