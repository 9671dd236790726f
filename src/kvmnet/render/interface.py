"""A guest NIC as libvirt domain `<interface>` XML, built with lxml.

A NIC on a libvirt network is `type='network'` whatever the network's mode
(nat, route, bridge over a host bridge, macvtap...): libvirt resolves the
network to a bridge or a direct device itself. A NIC on a host bridge is
`type='bridge'`. A NIC on an `overlay` network is a port of OVN's
integration bridge: `type='bridge'` on br-int with an openvswitch
virtualport whose interfaceid names the OVN logical port.

Children come in the order libvirt writes them (mac, source, virtualport,
model, mtu) so libvirt's own XML for the device reads back the same.
"""

from __future__ import annotations

from lxml import etree

from kvmnet.model.derive import nic_macs, nic_vlans
from kvmnet.model.spec import GuestNic, Spec
from kvmnet.model.vlan import Vlans
from kvmnet.render.guard import require_vlan

OVN_BRIDGE = "br-int"


def overlay_port_id(network: str, guest: str, index: int) -> str:
    """Stable OVN logical port name (a UUID) for a guest NIC on an overlay network."""
    import uuid  # here: uuid imports platform (~5 ms of every start-up otherwise)

    space = uuid.uuid5(uuid.NAMESPACE_URL, "https://kvmnet.invalid/ovn-port")
    return str(uuid.uuid5(space, f"{network}/{guest}/{index}"))


def interface_element(spec: Spec, guest: str, idx: int,
                      macs: dict[tuple[str, int], str] | None = None,
                      vlan_xml: bool = True) -> etree._Element:
    """`<interface>` of NIC `idx` of `guest`; macs from derive.nic_macs (computed if None).
    `vlan_xml`: its VLANs as libvirt's `<vlan>` (libvirt 11 and later set them on the
    tap of a Linux bridge with vlan_filtering); False: left out, kvmnet sets them
    (libvirt 9: kvmnet.backend.vlans)."""
    nic = spec.guests[guest].interfaces[idx]
    mac = (macs if macs is not None else nic_macs(spec))[(guest, idx)]
    overlay = nic.network is not None and (
        nic.network in spec.networks and spec.networks[nic.network].mode == "overlay")
    kind = "bridge" if nic.bridge is not None or overlay else "network"
    el = etree.Element("interface", type=kind)
    etree.SubElement(el, "mac", address=mac)
    src = etree.SubElement(el, "source")
    if overlay:
        assert nic.network is not None
        src.set("bridge", OVN_BRIDGE)
        vport = etree.SubElement(el, "virtualport", type="openvswitch")
        etree.SubElement(vport, "parameters",
                         interfaceid=overlay_port_id(nic.network, guest, idx))
    elif nic.network is not None:
        src.set("network", nic.network)
        if nic.portgroup:
            src.set("portgroup", nic.portgroup)
    else:
        assert nic.bridge is not None
        src.set("bridge", nic.bridge)
    vlans = nic_vlans(spec, guest, idx) if vlan_xml and not overlay else None
    if vlans is not None:
        el.append(vlan_element(vlans))
    _tail(el, nic)
    if not overlay:
        _filterref(el, spec, guest, idx)
    return el


def vlan_element(vlans: Vlans) -> etree._Element:
    """libvirt's `<vlan>`: one tag for an access port; a trunk (trunk='yes') with its
    native VLAN's tag nativeMode='untagged'. Ids are checked again here (render.guard's
    rule: refused where written)."""
    el = etree.Element("vlan")
    if not vlans.trunk:
        assert vlans.untagged is not None
        etree.SubElement(el, "tag", id=str(require_vlan(vlans.untagged)))
        return el
    el.set("trunk", "yes")
    for v in sorted(vlans.ids):
        tag = etree.SubElement(el, "tag", id=str(require_vlan(v)))
        if v == vlans.untagged:
            tag.set("nativeMode", "untagged")
    return el


def link_down(xml: str) -> str:
    """The same `<interface>` with its link down (`<link state='down'/>`, where libvirt
    writes it: after `<model>`'s siblings it orders itself; libvirt accepts any place)."""
    from kvmnet.render.xmlutil import parse_xml

    el = parse_xml(xml)
    for old in el.findall("link"):
        el.remove(old)
    etree.SubElement(el, "link", state="down")
    return etree.tostring(el, encoding="unicode")


def _filterref(el: etree._Element, spec: Spec, guest: str, idx: int) -> None:
    """The guest firewall's `<filterref>` (kvmnet.render.nwfilter), before `<mtu>`, where
    libvirt writes it."""
    sets, spoof = spec.nic_firewall(guest, idx)
    if not sets and not spoof:
        return
    from kvmnet.render.nwfilter import filterref_element

    nic = spec.guests[guest].interfaces[idx]
    ref = filterref_element(sets, spoof, str(nic.ipv4) if nic.ipv4 else None)
    assert ref is not None
    mtu = el.find("mtu")
    if mtu is not None:
        mtu.addprevious(ref)
    else:
        el.append(ref)


# A NIC without `model:` gets virtio: libvirt's own default on i440fx is an
# emulated rtl8139, slow and missing from minimal guest kernels. Plan does
# not change the model of an existing NIC whose spec leaves it unset.
DEFAULT_MODEL = "virtio"


def _tail(el: etree._Element, nic: GuestNic) -> None:
    etree.SubElement(el, "model", type=nic.model or DEFAULT_MODEL)
    if nic.mtu is not None:
        etree.SubElement(el, "mtu", size=str(nic.mtu))


def interface_xml(spec: Spec, guest: str, idx: int,
                  macs: dict[tuple[str, int], str] | None = None, vlan_xml: bool = True) -> str:
    el = interface_element(spec, guest, idx, macs, vlan_xml)
    return etree.tostring(el, pretty_print=True, encoding="unicode")


def render_interfaces(spec: Spec, macs: dict[tuple[str, int], str] | None = None
                      ) -> dict[str, str]:
    """{'guests/GUEST/nicN.xml': xml} for every NIC of every guest (N from 0)."""
    macs = nic_macs(spec) if macs is None else macs
    return {f"guests/{g}/nic{i}.xml": interface_xml(spec, g, i, macs)
            for g, guest in spec.guests.items()
            for i in range(len(guest.interfaces))}
