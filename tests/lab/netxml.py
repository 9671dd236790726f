"""libvirt network XML for lab tests, built with lxml (independent of kvmnet's renderer),
and libvirt's test driver (test:///default) to define network XML in."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


@contextmanager
def fresh_test_driver() -> Iterator[Any]:
    """A test:///default whose state is new: it resets when its last connection closes
    (with it, every object looked up on it: drop them before leaving). libvirt is
    imported here, so that tests can skip when it is missing."""
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open("test:///default")
    try:
        yield conn
    finally:
        conn.close()


def define_network(conn: Any, xml: str) -> Any:
    """Define XML in test:///default, first removing the driver's stock network of that
    name (its 'default')."""
    name = etree.fromstring(xml.encode()).findtext("name")
    if name in conn.listNetworks() + conn.listDefinedNetworks():
        old = conn.networkLookupByName(name)
        if old.isActive():
            old.destroy()
        old.undefine()
        del old
    return conn.networkDefineXML(xml)
