"""Guest NIC `<interface>` XML: golden files, libvirt's RelaxNG schema, and
libvirt's test driver accepting the device into a domain's config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from kvmnet.model.derive import nic_macs
from kvmnet.model.spec import Spec
from kvmnet.render.interface import (
    interface_element,
    overlay_port_id,
    render_interfaces,
)
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load
from lab.golden import assert_golden

libvirt = pytest.importorskip("libvirt")

DATA = Path(__file__).parent.parent / "data" / "interface"
CASES = sorted(p.name[: -len(".in.yaml")] for p in DATA.glob("*.in.yaml"))
DOMAIN_RNG = Path("/usr/share/libvirt/schemas/domain.rng")


def _child(el: etree._Element, path: str) -> etree._Element:
    found = el.find(path)
    assert found is not None, f"no <{path}> in {etree.tostring(el)!r}"
    return found


def _spec(case: str) -> Spec:
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == []
    return spec


def _nics(case: str) -> Iterator[tuple[str, int]]:
    spec = _spec(case)
    for g, guest in spec.guests.items():
        for i in range(len(guest.interfaces)):
            yield g, i


NICS = [(case, g, i) for case in CASES for g, i in _nics(case)]


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    assert_golden(DATA / f"{case}.out", render_interfaces(_spec(case)))


def test_seed() -> None:
    files = render_interfaces(_spec("seed"))
    assert sorted(files) == ["guests/web1/nic0.xml", "guests/web1/nic1.xml"]
    lan = etree.fromstring(files["guests/web1/nic1.xml"])
    assert lan.get("type") == "network"  # mode: bridge network: libvirt resolves it
    assert _child(lan, "source").get("network") == "lan"
    assert _child(lan, "mac").get("address") == "52:54:00:c5:97:8b"
    nat = etree.fromstring(files["guests/web1/nic0.xml"])
    assert _child(nat, "model").get("type") == "virtio"
    assert _child(nat, "mac").get("address") == nic_macs(_spec("seed"))[("web1", 0)]


def test_kinds() -> None:
    spec = _spec("variety")
    macs = nic_macs(spec)
    br = interface_element(spec, "app1", 1, macs)
    assert br.get("type") == "bridge" and _child(br, "source").items() == [("bridge", "br0")]
    nat = interface_element(spec, "app1", 0, macs)
    assert _child(nat, "source").items() == [("network", "default"), ("portgroup", "web")]
    assert _child(nat, "mtu").get("size") == "1400"
    ovn = interface_element(spec, "app2", 2, macs)
    assert ovn.get("type") == "bridge" and _child(ovn, "source").get("bridge") == "br-int"
    params = _child(ovn, "virtualport/parameters")
    assert params.get("interfaceid") == overlay_port_id("tenant", "app2", 2)
    assert _child(interface_element(spec, "app2", 0), "mac").get("address") == \
        macs[("app2", 0)]


@pytest.fixture(scope="module")
def domain_schema() -> etree.RelaxNG:
    if not DOMAIN_RNG.exists():
        pytest.skip("libvirt's RelaxNG schemas are not installed")
    return etree.RelaxNG(etree.parse(str(DOMAIN_RNG)))


def _wrap(iface: etree._Element) -> etree._Element:
    dom = etree.Element("domain", type="test")
    etree.SubElement(dom, "name").text = "kvmnet-schema"
    etree.SubElement(dom, "memory").text = "131072"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type").text = "hvm"
    etree.SubElement(dom, "devices").append(iface)
    return dom


@pytest.mark.parametrize(("case", "guest", "idx"), NICS)
def test_valid_against_domain_rng(domain_schema: etree.RelaxNG, case: str, guest: str,
                                  idx: int) -> None:
    dom = _wrap(interface_element(_spec(case), guest, idx))
    assert domain_schema.validate(dom), domain_schema.error_log


# --- libvirt's test driver ------------------------------------------------------------

def _network_xml(name: str, spec: Spec) -> str:
    """Minimal libvirt network the NIC's source names (its real XML is another renderer's)."""
    net = spec.networks[name]
    el = etree.Element("network")
    etree.SubElement(el, "name").text = name
    if net.mode == "bridge":
        etree.SubElement(el, "forward", mode="bridge")
        etree.SubElement(el, "bridge", name=net.bridge or "br0")
    elif net.mode == "macvtap":
        fwd = etree.SubElement(el, "forward", mode="bridge")
        for dev in net.devices or [net.uplink or "eth0"]:
            etree.SubElement(fwd, "interface", dev=dev)
    else:
        etree.SubElement(el, "bridge", name=f"kvt-{name}"[:15])
        if net.mode in ("nat", "route", "open"):
            etree.SubElement(el, "forward", mode=net.mode)
        etree.SubElement(el, "ip", address="10.250.0.1", prefix="24")
    return etree.tostring(el, encoding="unicode")


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    c = libvirt.open("test:///default")
    yield c
    c.close()


def _ensure_network(conn: Any, spec: Spec, name: str) -> Any | None:
    """Define and start `name` unless it exists; return it when we made it."""
    try:
        conn.networkLookupByName(name)
        return None
    except libvirt.libvirtError:
        pass
    net = conn.networkDefineXML(_network_xml(name, spec))
    net.create()
    return net


def _attach(conn: Any, xml: str) -> tuple[str, Any | None]:
    """Attach to the config of test:///default's 'test' domain; the test driver of
    older libvirt (< 10) lacks attachDeviceFlags, so then define a scratch copy of
    'test' with the device added, as the config attach would."""
    dom = conn.lookupByName("test")
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    try:
        dom.attachDeviceFlags(xml, flags)
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
    else:
        return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), None
    doc = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    _child(doc, "name").text = "kvmnet-nic-test"
    doc.remove(_child(doc, "uuid"))
    _child(doc, "devices").append(etree.fromstring(xml))
    scratch = conn.defineXML(etree.tostring(doc, encoding="unicode"))
    return scratch.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), scratch


def _canon(iface: etree._Element) -> bytes:
    """C14N of a copy without what libvirt adds (target, alias, address) or whitespace."""
    el = etree.fromstring(etree.tostring(iface))
    for tag in ("target", "alias", "address"):
        for child in el.findall(tag):
            el.remove(child)
    for node in el.iter():
        node.text = node.text if node.text and node.text.strip() else None
        node.tail = None
    return etree.tostring(el, method="c14n")


@pytest.mark.parametrize(("case", "guest", "idx"), NICS)
def test_test_driver_takes_it(conn: Any, case: str, guest: str, idx: int) -> None:
    spec = _spec(case)
    ours = interface_element(spec, guest, idx)
    mac = _child(ours, "mac").get("address")
    made: list[Any] = []
    nic = spec.guests[guest].interfaces[idx]
    if nic.network is not None and spec.networks[nic.network].mode != "overlay":
        made.append(_ensure_network(conn, spec, nic.network))
    xml = etree.tostring(ours, encoding="unicode")
    desc, scratch = _attach(conn, xml)
    try:
        doc = etree.fromstring(desc)
        found = [i for i in doc.findall("devices/interface")
                 if _child(i, "mac").get("address") == mac]
        assert len(found) == 1, f"{mac} not in the domain's config"
        assert _child(found[0], "source").attrib == _child(ours, "source").attrib
        # libvirt reads it back as we wrote it, children in the same order.
        assert _canon(found[0]) == _canon(ours)
    finally:
        if scratch is not None:
            scratch.undefine()
        else:
            conn.lookupByName("test").detachDeviceFlags(
                xml, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        for net in made:
            if net is not None:
                net.destroy()
                net.undefine()
