"""Pure parsing of libvirt domain XML: the guest NICs kvmnet cares about."""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from kvmnet.model.live import LiveNic, NicRecord
from kvmnet.model.vlan import Vlans, parse_id

KVMNET_NS = "https://kvmnet.dev/xmlns/1"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


def parse_nics(xml: str) -> tuple[LiveNic, ...]:
    root = etree.fromstring(xml.encode(), _PARSER)
    nics: list[LiveNic] = []
    for el in root.iterfind("devices/interface"):
        mac_el = el.find("mac")
        if mac_el is None or not mac_el.get("address"):
            continue
        src = el.find("source")
        kind = el.get("type", "")
        source = None
        portgroup = None
        if src is not None:
            source = src.get("network") if kind == "network" else src.get("bridge") or src.get(
                "dev")
            portgroup = src.get("portgroup")
        model = el.find("model")
        target = el.find("target")
        mtu = el.find("mtu")
        ref = el.find("filterref")
        params = tuple(sorted((p.get("name", ""), p.get("value", ""))
                              for p in ref.iterfind("parameter"))) if ref is not None else ()
        nics.append(LiveNic(
            mac=mac_el.get("address", "").lower(),
            type=kind,
            source=source,
            model=model.get("type") if model is not None else None,
            target=target.get("dev") if target is not None else None,
            portgroup=portgroup,
            mtu=int(mtu.get("size", "0")) or None if mtu is not None else None,
            xml=etree.tostring(el, encoding="unicode"),
            vlans=parse_vlan(el.find("vlan")),
            filterref=ref.get("filter") if ref is not None else None,
            filter_params=params,
            link_down=el.find("link[@state='down']") is not None,
        ))
    return tuple(nics)


def parse_vlan(el: etree._Element | None) -> Vlans | None:
    """libvirt's `<vlan [trunk='yes']><tag id=N [nativeMode='untagged']/>...</vlan>`: one
    tag without trunk is an access VLAN; a trunk's tag with nativeMode untagged is its
    native VLAN (nativeMode tagged, which a Linux bridge cannot do, reads as tagged).
    None when absent or not VLAN ids."""
    if el is None:
        return None
    tags = [(t.get("id", ""), t.get("nativeMode")) for t in el.iterfind("tag")]
    try:
        ids = [parse_id(i) for i, _ in tags]
    except ValueError:
        return None
    if not ids:
        return None
    if el.get("trunk") != "yes" and len(ids) == 1:
        return Vlans((), ids[0])
    native = next((parse_id(i) for i, m in tags if m == "untagged"), None)
    try:
        return Vlans(tuple(sorted(set(ids) - {native})), native)
    except ValueError:
        return None


def parse_managed_macs(metadata_xml: str | None) -> frozenset[str]:
    """The MACs kvmnet attached, from its <kvmnet:nics> domain metadata element."""
    if not metadata_xml:
        return frozenset()
    root = etree.fromstring(metadata_xml.encode(), _PARSER)
    return frozenset(n.get("mac", "").lower() for n in root.iter("{*}nic", "nic")
                     if n.get("mac"))


def parse_nic_records(metadata_xml: str | None) -> tuple[NicRecord, ...]:
    """kvmnet's records of the NICs it attached, with their owner and index when the
    kvmnet that wrote them knew owners (a bare <nic mac=M/>: owner and index None)."""
    if not metadata_xml:
        return ()
    root = etree.fromstring(metadata_xml.encode(), _PARSER)
    out = []
    for n in root.iter("{*}nic", "nic"):
        mac = n.get("mac", "").lower()
        if not mac:
            continue
        index = n.get("index")
        try:
            vlans = Vlans.from_attrs(n.get("tagged"), n.get("untagged"))
        except ValueError:
            vlans = None  # (not kvmnet's writing: no VLAN is set from it)
        out.append(NicRecord(mac, n.get("owner") or None,
                             int(index) if index is not None and index.isdigit() else None,
                             vlans))
    return tuple(out)


def managed_macs_xml(macs: frozenset[str] | set[str]) -> str:
    """A record of NICs with no owner (what a kvmnet from before owners wrote)."""
    return nic_records_xml([NicRecord(m) for m in macs])


def nic_records_xml(records: Iterable[NicRecord]) -> str:
    root = etree.Element("nics")
    for r in sorted(records, key=lambda r: r.mac):
        el = etree.SubElement(root, "nic", mac=r.mac)
        if r.owner is not None:
            el.set("owner", r.owner)
        if r.index is not None:
            el.set("index", str(r.index))
        if r.vlans is not None:
            for k, v in r.vlans.attrs().items():
                el.set(k, v)
    return etree.tostring(root, encoding="unicode")


def edit_domain_nics(domain_xml: str, op: str, mac: str, nic_xml: str) -> str:
    """Domain XML with one <interface> attached, replaced or removed (matched by MAC):
    `op` is attach, update or detach. For drivers without device hotplug, and the fake."""
    root = etree.fromstring(domain_xml.encode(), _PARSER)
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    cur = []
    for i in devices.iterfind("interface"):
        m = i.find("mac")
        if m is not None and m.get("address", "").lower() == mac:
            cur.append(i)
    if op == "attach":
        devices.append(etree.fromstring(nic_xml.encode(), _PARSER))
    for old in cur:
        if op == "update":
            old.addprevious(etree.fromstring(nic_xml.encode(), _PARSER))
        devices.remove(old)
    return etree.tostring(root, encoding="unicode")
