"""Network XML: golden files, libvirt's schema and test driver as judges, parse <-> render.

Golden cases: tests/data/network/CASE.in.yaml -> CASE.out.xml (CASE.NET.out.xml when
the spec has several networks), plus examples/seed.yaml -> seed.NET.out.xml.
Rewrite them with KVMNET_REGEN_GOLDEN=1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from kvmnet.model.derive import dhcp_hosts
from kvmnet.model.spec import Network, Spec
from kvmnet.parse.network import parse_network, with_libvirt_defaults, xml_view
from kvmnet.render.network import (
    KVMNET_NS,
    NetworkXMLError,
    build_network,
    is_managed,
    network_xml,
    render_network,
)
from kvmnet.render.xmlutil import canonical, pretty
from kvmnet.spec.load import load, load_text
from lab.netxml import define_network, fresh_test_driver

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "network"
SEED = ROOT / "examples" / "seed.yaml"
RNG = Path("/usr/share/libvirt/schemas/network.rng")
REGEN = os.environ.get("KVMNET_REGEN_GOLDEN") == "1"
NO_START = ("bridge", "macvtap")  # need a real host bridge / NIC: define only


def _cases() -> list[tuple[str, Path, str, Path]]:
    """(id, spec file, network, golden file) for every golden case."""
    out = []
    inputs = [(p.name[: -len(".in.yaml")], p) for p in sorted(DATA.glob("*.in.yaml"))]
    for case, path in inputs + [("seed", SEED)]:
        spec, _ = load(path)
        many = len(spec.networks) > 1 or path == SEED
        for net in spec.networks:
            stem = f"{case}.{net}" if many else case
            out.append((stem, path, net, DATA / f"{stem}.out.xml"))
    return out


CASES = _cases()
IDS = [c[0] for c in CASES]


def _spec(path: Path) -> Spec:
    return load(path)[0]


def _expected(spec: Spec, name: str) -> Network:
    """What parse gives back: guests' reservations in hosts, non-XML fields at defaults."""
    net = spec.networks[name]
    hosts = dhcp_hosts(spec, name)
    ips = [c.model_copy(update={"hosts": hosts[i]}) for i, c in enumerate(net.all_ips())]
    upd: dict[str, Any] = {"adopt": False, "autostart": True, "forwards": []}
    if net.ipv4:
        upd["ipv4"] = ips.pop(0)
    if net.ipv6:
        upd["ipv6"] = ips.pop(0)
    upd["more_ips"] = ips
    return net.model_copy(update=upd)


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize(("case", "path", "net", "golden"), CASES, ids=IDS)
def test_golden(case: str, path: Path, net: str, golden: Path) -> None:
    text = network_xml(_spec(path), net)
    if REGEN:
        golden.write_text(text)
    assert golden.exists(), f"{golden.name} missing: run with KVMNET_REGEN_GOLDEN=1"
    assert text == golden.read_text()


def test_golden_set_is_exact() -> None:
    """No stale or missing golden files."""
    want = {c[3].name for c in CASES}
    have = {p.name for p in DATA.glob("*.out.xml")}
    if REGEN:
        for stale in have - want:
            (DATA / stale).unlink()
        have = want
    assert have == want


def test_every_mode_has_a_golden_case() -> None:
    modes = {_spec(p).networks[n].mode for _, p, n, _ in CASES}
    assert modes >= {"nat", "route", "open", "isolated", "bridge", "macvtap"}


@pytest.fixture(scope="module")
def relaxng() -> etree.RelaxNG:
    if not RNG.exists():
        pytest.skip(f"{RNG} not installed")
    return etree.RelaxNG(etree.parse(str(RNG)))


@pytest.mark.parametrize(("case", "path", "net", "golden"), CASES, ids=IDS)
def test_golden_is_valid_for_libvirt_schema(relaxng: etree.RelaxNG, case: str, path: Path,
                                            net: str, golden: Path) -> None:
    doc = etree.fromstring(network_xml(_spec(path), net).encode())
    assert relaxng.validate(doc), relaxng.error_log


@pytest.mark.parametrize(("case", "path", "net", "golden"), CASES, ids=IDS)
def test_parse_render_is_identity(case: str, path: Path, net: str, golden: Path) -> None:
    spec = _spec(path)
    parsed = parse_network(network_xml(spec, net))
    assert parsed.name == net
    assert parsed.managed
    assert parsed.unmodelled == []
    assert parsed.network == _expected(spec, net)
    assert xml_view(spec, net) == parsed.network


# ---------------------------------------------------------------- libvirt's test driver


@pytest.mark.parametrize(("case", "path", "net", "golden"), CASES, ids=IDS)
def test_golden_defines_in_libvirt(case: str, path: Path, net: str, golden: Path) -> None:
    """render -> define (+ start) -> XMLDesc -> parse gives the model back, modulo
    what libvirt fills in (uuid, stp/delay of its own bridges, a MAC)."""
    spec = _spec(path)
    pytest.importorskip("libvirt")
    with fresh_test_driver() as conn:
        vnet = define_network(conn, network_xml(spec, net))
        try:
            if spec.networks[net].mode not in NO_START:
                vnet.create()
            desc = vnet.XMLDesc(0)
            if vnet.isActive():
                vnet.destroy()
        finally:
            vnet.undefine()
            del vnet
    parsed = parse_network(desc)
    assert parsed.managed and parsed.name == net and parsed.uuid
    want = with_libvirt_defaults(_expected(spec, net))
    if want.mac is None:
        want = want.model_copy(update={"mac": parsed.network.mac})
    if want.dns is not None:  # the test driver has no dnsmasq namespace: it drops
        # <dnsmasq:options> (the real network driver keeps them: tests/e2e/test_7_dns.py)
        want = want.model_copy(update={"dns": want.dns.model_copy(
            update={"wildcards": [], "cnames": [], "ptr": None, "forwarders": [
                f for f in want.dns.forwarders if not f.local_only]})})
    if want.ipv6 is not None and want.ipv6.slaac:   # (the same: an RA-only dnsmasq range)
        want = want.model_copy(update={"ipv6": want.ipv6.model_copy(update={"slaac": None})})
    assert parsed.network == want


# ---------------------------------------------------------------- mapping details


def _net(yaml: str) -> Spec:
    return load_text(yaml)[0]


def _roundtrip(xml: str) -> tuple[Network, str]:
    p = parse_network(xml)
    return p.network, etree.tostring(build_network(p.name, p.network, uuid=p.uuid,
                                                   managed=False)).decode()


def test_ownership_mark() -> None:
    spec = _net("networks: {n: {mode: isolated, bridge: virbr9}}")
    el = render_network(spec, "n")
    assert is_managed(el) and is_managed(etree.tostring(el).decode())
    assert el.find(f"metadata/{{{KVMNET_NS}}}managed") is not None
    assert not is_managed("<network><name>x</name></network>")
    unmanaged = build_network("n", spec.networks["n"], managed=False)
    assert unmanaged.find("metadata") is None


def test_other_metadata_is_kept_beside_the_mark() -> None:
    xml = ("<network><name>m</name><metadata><a:x xmlns:a='http://a/'>1</a:x>"
           f"<k:managed xmlns:k='{KVMNET_NS}'/></metadata></network>")
    p = parse_network(xml)
    assert p.managed
    assert p.unmodelled == ["metadata/a:x"]
    assert p.network.xml_extra == {"metadata": ['<a:x xmlns:a="http://a/">1</a:x>']}
    meta = build_network("m", p.network).find("metadata")
    assert meta is not None
    assert [etree.QName(k).localname for k in meta] == ["managed", "x"]


def test_unmodelled_xml_survives_verbatim() -> None:
    xml = """<network trustGuestRxFilters='no'>
      <name>u</name>
      <forward mode='bridge'/>
      <bridge name='br0' macTableManager='libvirt'/>
      <ip address='10.0.0.1' prefix='24' localPtr='yes'>
        <dhcp><range start='10.0.0.5' end='10.0.0.9'/><future x='1'/></dhcp>
      </ip>
      <portgroup name='web' default='yes'><vlan><tag id='42'/></vlan></portgroup>
    </network>"""
    net, out = _roundtrip(xml)
    assert sorted(parse_network(xml).unmodelled) == [
        "@trustGuestRxFilters", "bridge@macTableManager", "ip[0]/dhcp/future",
        "ip[0]@localPtr", "portgroup"]
    assert net.xml_extra[""] == [
        '<portgroup name="web" default="yes"><vlan><tag id="42"/></vlan></portgroup>']
    assert net.xml_extra["bridge@"] == ['macTableManager="libvirt"']
    assert canonical(out) == canonical(xml)


def test_attributes_follow_libvirt_order_with_extras() -> None:
    xml = "<network><name>z</name><bridge name='virbr1' zone='trusted' stp='on' delay='0'/>" \
          "<ip family='ipv4' address='10.1.0.1' netmask='255.255.0.0'/></network>"
    _, out = _roundtrip(xml)
    el = etree.fromstring(out.encode())
    bridge, ip = el.find("bridge"), el.find("ip")
    assert bridge is not None and ip is not None
    assert list(bridge.attrib) == ["name", "zone", "stp", "delay"]
    assert list(ip.attrib) == ["family", "address", "netmask"]


@pytest.mark.parametrize(("attrs", "form", "prefix"), [
    ("prefix='24'", "prefix", 24),
    ("netmask='255.255.255.0'", "netmask", 24),
    ("", "none", 8),
])
def test_prefix_forms_are_kept(attrs: str, form: str, prefix: int) -> None:
    xml = f"<network><name>p</name><ip address='10.2.3.1' {attrs}/></network>"
    net, out = _roundtrip(xml)
    assert net.ipv4 is not None
    assert (net.ipv4.xml_prefix, net.ipv4.address.network.prefixlen) == (form, prefix)
    assert canonical(out) == canonical(xml)


def test_ip_blocks_keep_xml_order() -> None:
    xml = """<network><name>o</name>
      <ip address='10.0.0.1' prefix='24'/><ip address='10.0.1.1' prefix='24'/>
      <ip family='ipv6' address='fd00::1' prefix='64'/>
    </network>"""
    net, out = _roundtrip(xml)
    assert net.ipv4 and net.ipv6 is None and len(net.more_ips) == 2
    assert canonical(out) == canonical(xml)


def test_forward_dev_and_interface_are_one_uplink() -> None:
    for fwd in ("<forward mode='nat' dev='eth1'/>",
                "<forward mode='nat'><interface dev='eth1'/></forward>",
                "<forward mode='nat' dev='eth1'><interface dev='eth1' connections='3'/>"
                "</forward>"):
        xml = f"<network><name>f</name>{fwd}<ip address='10.0.0.1' prefix='24'/></network>"
        net = parse_network(xml).network
        assert (net.mode, net.uplink, net.devices) == ("nat", "eth1", [])


def test_forward_modes_map_to_kvmnet_modes() -> None:
    def mode(fwd: str) -> tuple[str, str | None]:
        n = parse_network(f"<network><name>f</name>{fwd}</network>").network
        return n.mode, n.macvtap_mode

    assert mode("") == ("isolated", None)
    assert mode("<forward/>") == ("nat", None)
    assert mode("<forward mode='bridge'/>") == ("bridge", None)
    assert mode("<forward mode='bridge'><interface dev='e'/></forward>") == ("macvtap", None)
    assert mode("<forward mode='private' dev='e'/>") == ("macvtap", "private")
    assert mode("<forward mode='hostdev'><pf dev='e'/></forward>") == ("macvtap", "hostdev")


def test_one_lease_time_for_all_ranges_is_the_blocks() -> None:
    xml = """<network><name>l</name><ip address='10.0.0.1' prefix='24'><dhcp>
      <range start='10.0.0.2' end='10.0.0.9'><lease expiry='2' unit='hours'/></range>
      <range start='10.0.0.20' end='10.0.0.29'><lease expiry='2' unit='hours'/></range>
    </dhcp></ip></network>"""
    net, out = _roundtrip(xml)
    assert net.ipv4 and str(net.ipv4.lease_time) == "2h"
    assert all(r.lease_time is None for r in net.ipv4.dhcp)
    assert canonical(out) == canonical(xml)


def test_routes_join_the_block_of_their_gateway() -> None:
    xml = """<network><name>r</name><forward mode='route'/>
      <ip address='10.0.0.1' prefix='24'/><ip address='10.9.0.1' prefix='24'/>
      <route address='10.50.0.0' prefix='16' gateway='10.9.0.7'/>
    </network>"""
    net, out = _roundtrip(xml)
    assert net.ipv4 and not net.ipv4.routes
    assert [str(r.to) for r in net.more_ips[0].routes] == ["10.50.0.0/16"]
    assert canonical(out) == canonical(xml)


def test_explicit_defaults_stay_as_written() -> None:
    xml = "<network><name>d</name><forward mode='nat'><nat ipv6='no'/></forward>" \
          "<dns enable='yes'/><ip address='10.0.0.1' prefix='24'/></network>"
    p = parse_network(xml)
    assert p.unmodelled == ["forward/nat@ipv6", "dns@enable"]
    _, out = _roundtrip(xml)
    assert canonical(out) == canonical(xml)


def test_unfit_items_are_kept_not_dropped() -> None:
    xml = """<network><name>k</name><ip address='10.0.0.1' prefix='24'><dhcp>
      <host mac='52:54:00:00:00:01' name='noip'/>
      <host mac='52:54:00:00:00:02' ip='10.0.0.2'/>
    </dhcp></ip></network>"""
    p = parse_network(xml)
    assert p.unmodelled == ["ip[0]/dhcp/host"]
    assert p.network.ipv4 and len(p.network.ipv4.hosts) == 1
    assert p.network.xml_extra["ip[0]/dhcp"] == ['<host mac="52:54:00:00:00:01" name="noip"/>']


def test_runtime_connections_are_dropped() -> None:
    p = parse_network("<network connections='4'><name>c</name><forward mode='bridge'>"
                      "<interface dev='e1' connections='2'/></forward></network>")
    assert p.unmodelled == []


@pytest.mark.parametrize("xml", [
    "<network><name>x</name",
    "<domain><name>x</name></domain>",
    "<network/>",
    "<network><name>x</name><forward mode='warp'/></network>",
    "<network><name>x</name><mtu size='12'/></network>",
])
def test_bad_xml_is_a_typed_error(xml: str) -> None:
    with pytest.raises(NetworkXMLError):
        parse_network(xml)


def test_overlay_is_not_a_libvirt_network() -> None:
    spec = _net("networks: {o: {mode: overlay}}")
    with pytest.raises(NetworkXMLError, match="overlay"):
        render_network(spec, "o")


def test_bad_extra_path_is_a_typed_error() -> None:
    net = Network(mode="isolated", xml_extra={"ip[3]@": ['localPtr="yes"']})
    with pytest.raises(NetworkXMLError, match="ip"):
        build_network("b", net)


def test_an_unfit_block_is_kept_whole_once() -> None:
    xml = """<network><name>w</name><ip address='10.0.0.1' prefix='24'/>
      <ip address='230.0.0.1'><dhcp><range start='230.0.0.2' end='230.0.0.3'>
        <lease expiry='1' unit='hours' odd='1'/></range></dhcp></ip>
    </network>"""
    p = parse_network(xml)
    assert p.unmodelled == ["ip"]
    assert len(p.network.xml_extra[""]) == 1 and "odd" in p.network.xml_extra[""][0]


_TWO = """networks:
  a: {mode: nat, ipv4: {address: 10.9.1.1/24, dhcp: 10.9.1.100-10.9.1.199}}
  b: {mode: isolated, ipv4: {address: 10.9.2.1/24}}
guests:
  g: {interfaces: [{network: a, ipv4: 10.9.1.10}]}
"""


def test_one_render_serves_check_and_plan_of_the_same_spec() -> None:
    """network_xml renders a network of a spec once (check, then plan, ask for the same
    text); another spec, or another MAC map, gets its own render."""
    from kvmnet.model.derive import nic_macs

    one, other = _net(_TWO), _net(_TWO.replace("10.9.1.10", "10.9.1.11"))
    assert nic_macs(one) is nic_macs(one)  # the same map for the same spec
    first = network_xml(one, "a", nic_macs(one))
    assert network_xml(one, "a", nic_macs(one)) is first  # (the same string: not rendered)
    assert "10.9.1.10" in first
    assert "10.9.1.11" in network_xml(other, "a", nic_macs(other))  # not the other's text
    assert network_xml(one, "a", nic_macs(one)) == first  # and back
    fresh = pretty(render_network(one, "a", nic_macs(one)))
    assert first == fresh
    taken = nic_macs(one, taken=[nic_macs(one)[("g", 0)]])  # a MAC in use elsewhere:
    assert taken[("g", 0)] != nic_macs(one)[("g", 0)]       # a new one, and the shared map
    assert nic_macs(one)[("g", 0)] in first                  # is left as it was


def test_a_render_error_is_raised_every_time() -> None:
    spec = _net("networks: {o: {mode: overlay}}")
    for _ in range(2):
        with pytest.raises(NetworkXMLError, match="overlay"):
            network_xml(spec, "o")


def test_unreadable_xml_values_are_said_in_kvmnets_words() -> None:
    """libvirt's XML is read in lax mode ("9000" is 9000); what still does not fit is
    reported as the spec loader reports it (spec.errors), not in pydantic's words."""
    assert parse_network("<network><name>n</name><mtu size='9000'/></network>").network.mtu == 9000
    with pytest.raises(NetworkXMLError) as e:
        parse_network("<network><name>n</name><mtu size='big'/>"
                      "<bridge name='br0' delay='-1'/></network>")
    assert str(e.value) == ("network n: delay: -1 is out of range: input should be greater "
                            "than or equal to 0; mtu: expected a whole number, got str 'big'")


@pytest.mark.parametrize("yaml", [
    "networks: {n: {mode: isolated, ipv4: {address: 10.9.0.1/24}}}\n",
    "networks: {n: {mode: nat, bridge: virbr9, delay: 0}}\n",
])
def test_stp_off_default_is_valid_and_reads_back_off(relaxng: etree.RelaxNG, yaml: str) -> None:
    """What plan creates for a network whose spec leaves `stp` out (plan.networks
    default_stp): libvirt's schema takes it, and it reads back as stp off, the rest kept."""
    from kvmnet.plan.netxml import stp_off

    xml = render_network(_net(yaml), "n")
    off = stp_off(pretty(xml))
    assert relaxng.validate(etree.fromstring(off.encode())), relaxng.error_log
    before, after = parse_network(pretty(xml)).network, parse_network(off).network
    assert after.stp is False
    assert after.model_copy(update={"stp": before.stp}) == before


def test_redefine_keeps_what_libvirt_filled_in() -> None:
    """A redefine of a network whose spec leaves out the bridge's name, STP, delay and MAC
    keeps the live ones (plan compares without them; libvirt would fill them afresh: a
    new MAC, STP on); what the spec says wins."""
    from kvmnet.plan.netxml import keep_live_fills

    live = parse_network(pretty(render_network(_net(
        "networks: {n: {mode: nat, bridge: virbr7, stp: false, delay: 0, "
        "mac: '52:54:00:0a:0b:0c', ipv4: {address: 10.9.0.1/24}}}\n"), "n"))).network
    bare = pretty(render_network(_net(
        "networks: {n: {mode: nat, mtu: 1400, ipv4: {address: 10.9.0.1/24}}}\n"), "n"))
    got = parse_network(keep_live_fills(bare, live)).network
    assert (got.bridge, got.stp, got.delay, got.mac, got.mtu) == (
        "virbr7", False, 0, "52:54:00:0a:0b:0c", 1400)
    said = pretty(render_network(_net(
        "networks: {n: {mode: nat, stp: true, mac: '52:54:00:0a:0b:0d'}}\n"), "n"))
    got = parse_network(keep_live_fills(said, live)).network
    assert (got.bridge, got.stp, got.mac) == ("virbr7", True, "52:54:00:0a:0b:0d")
