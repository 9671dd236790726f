"""libvirt network XML for lab tests, built with lxml (independent of kvmnet's renderer)."""

from __future__ import annotations

import ipaddress

from lxml import etree


def network_xml(
    name: str,
    bridge: str,
    address: str,
    *,
    forward: str | None = "nat",
    dhcp: tuple[str, str] | None = None,
    hosts: list[dict[str, str]] | None = None,
) -> str:
    """A libvirt <network>.

    ADDRESS is the host side, "10.200.77.1/24". FORWARD is "nat", "route", "open" or
    None (isolated). DHCP is (start, end); HOSTS are {"mac", "ip", "name"?} dicts.
    """
    iface = ipaddress.ip_interface(address)
    net = etree.Element("network")
    etree.SubElement(net, "name").text = name
    if forward:
        etree.SubElement(net, "forward", mode=forward)
    etree.SubElement(net, "bridge", name=bridge, stp="off", delay="0")
    ip = etree.SubElement(net, "ip", address=str(iface.ip), prefix=str(iface.network.prefixlen))
    if dhcp or hosts:
        dh = etree.SubElement(ip, "dhcp")
        if dhcp:
            etree.SubElement(dh, "range", start=dhcp[0], end=dhcp[1])
        for h in hosts or []:
            dh.append(dhcp_host_xml(**h, as_element=True))
    return etree.tostring(net, encoding="unicode")


def dhcp_host_xml(mac: str, ip: str, name: str | None = None, as_element: bool = False):
    """<host mac= ip= name=/> for networkUpdate(..., IP_DHCP_HOST, ...)."""
    el = etree.Element("host", mac=mac, ip=ip)
    if name:
        el.set("name", name)
    return el if as_element else etree.tostring(el, encoding="unicode")
