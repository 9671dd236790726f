"""The XML edits libvirt makes itself, for the in-memory fake (kvmnet.backend.fake).

What libvirt 9 does on networkDefineXML (fills in a UUID, a bridge name with STP
and delay, a MAC) and on virNetworkUpdate of DHCP hosts, DHCP ranges and DNS
hosts, including the calls it refuses, so that a plan that would fail on libvirt
fails on the fake too. Pure: XML text in, XML text out; FakeError out when
libvirt would refuse.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from collections.abc import Callable, Iterable

from lxml import etree

from kvmnet.render.xmlutil import Element, parse_xml

# forward modes (None: no <forward>) for which libvirt makes and names the bridge
_BRIDGED = (None, "nat", "route", "open")
# libvirt's element order inside <network> (virNetworkDefFormatBuf), enough to place
# what the fake fills in
_ORDER = ("name", "uuid", "title", "description", "metadata", "forward", "bridge", "mtu",
          "mac")


class FakeError(Exception):
    """What libvirt would refuse, in its words."""


def _tostring(root: Element) -> str:
    return etree.tostring(root, encoding="unicode")


def _place(root: Element, el: Element) -> None:
    """Insert el after the last child that comes before it in libvirt's order."""
    before = _ORDER[:_ORDER.index(el.tag)]
    last = None
    for child in root:
        if child.tag in before:
            last = child
    if last is None:
        root.insert(0, el)
    else:
        last.addnext(el)


def _mode(root: Element) -> str | None:
    fwd = root.find("forward")
    return None if fwd is None else fwd.get("mode", "nat")


def network_name(xml: str) -> str:
    name = parse_xml(xml).findtext("name")
    if not name:
        raise FakeError("network XML has no <name>")
    return name


def network_uuid(xml: str) -> str | None:
    return parse_xml(xml).findtext("uuid")


def network_bridge(xml: str) -> str | None:
    el = parse_xml(xml).find("bridge")
    return None if el is None else el.get("name")


def network_mtu(xml: str) -> int | None:
    el = parse_xml(xml).find("mtu")
    return None if el is None else int(el.get("size", "0")) or None


def fill_network(xml: str, bridges_in_use: Iterable[str]) -> str:
    """The XML as libvirt keeps it after a define: a UUID; for the networks whose bridge
    libvirt makes, a bridge name (the lowest free virbrN), STP on, delay 0, and a MAC."""
    root = parse_xml(xml)
    name = root.findtext("name") or ""
    if root.find("uuid") is None:
        el = etree.Element("uuid")
        el.text = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"kvmnet-fake:{name}"))
        _place(root, el)
    if _mode(root) not in _BRIDGED:
        return _tostring(root)
    br = root.find("bridge")
    if br is None:
        br = etree.Element("bridge")
        _place(root, br)
    if not br.get("name"):
        used = set(bridges_in_use)
        br.set("name", next(f"virbr{i}" for i in range(len(used) + 1)
                            if f"virbr{i}" not in used))
    br.set("stp", br.get("stp", "on"))
    br.set("delay", br.get("delay", "0"))
    if root.find("mac") is None:
        digest = hashlib.sha256(name.encode()).digest()
        mac = etree.Element("mac", address="52:54:00:" + ":".join(f"{b:02x}" for b in
                                                                   digest[:3]))
        _place(root, mac)
    return _tostring(root)


# -- virNetworkUpdate -----------------------------------------------------------------

def update_network(xml: str, command: str, section: str, parent_index: int,
                   item_xml: str) -> str:
    """One virNetworkUpdate call on a network's XML."""
    root = parse_xml(xml)
    item = parse_xml(item_xml)
    edit = _SECTIONS.get(section)
    if edit is None:
        raise FakeError(f"can't update '{section}' section of network")
    edit(root, command, parent_index, item)
    return _tostring(root)


def _ip_for_dhcp(root: Element, parent_index: int) -> Element:
    ips = root.findall("ip")
    if parent_index >= 0:
        if parent_index >= len(ips):
            raise FakeError(f"couldn't update dhcp host entry - no <ip> element found at "
                            f"index {parent_index} in network")
        return ips[parent_index]
    # -1: "the one and only <ip> that has a <dhcp> element"
    with_dhcp = [ip for ip in ips if ip.find("dhcp") is not None]
    if len(with_dhcp) != 1:
        raise FakeError("couldn't update dhcp host entry - no <ip> element or several with "
                        "<dhcp> found in network")
    return with_dhcp[0]


def _dhcp(ip: Element) -> Element:
    el = ip.find("dhcp")
    return el if el is not None else etree.SubElement(ip, "dhcp")


def _drop_if_empty(el: Element) -> None:
    """libvirt formats no <dhcp> or <dns> that holds nothing."""
    parent = el.getparent()
    if parent is not None and len(el) == 0 and not el.attrib:
        parent.remove(el)


_HOST_KEYS = ("mac", "id", "name", "ip")


def _same(a: Element, b: Element, key: str) -> bool:
    x, y = a.get(key), b.get(key)
    if key == "mac" and x and y:
        return x.lower() == y.lower()
    return x is not None and x == y


def _dhcp_host(root: Element, command: str, parent_index: int, host: Element) -> None:
    dhcp = _dhcp(_ip_for_dhcp(root, parent_index))
    hosts = dhcp.findall("host")
    if command == "add-last":
        if any(_same(host, h, k) for h in hosts for k in _HOST_KEYS):
            raise FakeError(f"there is an existing dhcp host entry in network that matches "
                            f"\"{_tostring(host)}\"")
        dhcp.append(host)
        return
    if command == "delete":  # the first entry that every attribute given matches
        found = [h for h in hosts if all(_same(host, h, k) for k in _HOST_KEYS if host.get(k))]
    else:  # modify: the first entry with the same MAC, id, name or address
        found = [h for h in hosts if any(_same(host, h, k) for k in _HOST_KEYS)]
    if not found:
        raise FakeError(f"couldn't locate a matching dhcp host entry in network "
                        f"(\"{_tostring(host)}\")")
    if command == "modify":
        found[0].addprevious(host)
    dhcp.remove(found[0])
    _drop_if_empty(dhcp)


def _dhcp_range(root: Element, command: str, parent_index: int, rng: Element) -> None:
    dhcp = _dhcp(_ip_for_dhcp(root, parent_index))
    same = [r for r in dhcp.findall("range")
            if (r.get("start"), r.get("end")) == (rng.get("start"), rng.get("end"))]
    if command == "add-last":
        if same:
            raise FakeError("there is an existing dhcp range entry in network that matches")
        hosts = dhcp.find("host")  # ranges come before hosts
        if hosts is not None:
            hosts.addprevious(rng)
        else:
            dhcp.append(rng)
    elif command == "delete" and same:
        dhcp.remove(same[0])
        _drop_if_empty(dhcp)
    else:
        raise FakeError(f"couldn't {command} dhcp range entry in network")


def _dns_of(root: Element) -> Element:
    dns = root.find("dns")
    if dns is None:
        dns = etree.Element("dns")
        after = root.find("mac") if root.find("mac") is not None else root.find("bridge")
        if after is not None:
            after.addnext(dns)
        else:
            root.append(dns)
    return dns


def _dns_host(root: Element, command: str, _parent_index: int, host: Element) -> None:
    dns = root.find("dns")
    hosts = dns.findall("host") if dns is not None else []
    names = {h.text for h in host.iterfind("hostname")}
    matching = [h for h in hosts if h.get("ip") == host.get("ip")
                or names & {n.text for n in h.iterfind("hostname")}]
    if command == "add-last":
        if any(h.get("ip") == host.get("ip") for h in hosts):
            raise FakeError("there is already at least one DNS HOST record with a matching "
                            "field in network")
        _dns_of(root).append(host)
        return
    if command != "delete":
        raise FakeError("DNS HOST records cannot be modified, only added or deleted")
    if len(matching) != 1:
        raise FakeError("couldn't locate a matching DNS HOST record in network" if not matching
                        else "multiple matching DNS HOST records were found in network")
    assert dns is not None
    dns.remove(matching[0])
    _drop_if_empty(dns)


_SRV_KEYS = ("domain", "service", "protocol", "target")
_DNS_ORDER = ("forwarder", "txt", "srv", "host")


def _dns_record(root: Element, command: str, _parent_index: int, rec: Element) -> None:
    """A TXT record (matched by name) or an SRV record (by the fields it gives of
    domain, service, protocol and target), as libvirt matches them."""
    dns = root.find("dns")
    tag = str(rec.tag)
    keys = ("name",) if tag == "txt" else _SRV_KEYS
    found = [r for r in (dns.findall(tag) if dns is not None else [])
             if all(r.get(k) == rec.get(k) for k in keys if rec.get(k) is not None)]
    if command == "add-last":
        if found:
            raise FakeError(f"there is already a DNS {tag.upper()} record matching all "
                            "specified fields")
        dns = _dns_of(root)
        dns.append(rec)
        dns[:] = sorted(dns, key=lambda e: _DNS_ORDER.index(str(e.tag)))
        return
    if command != "delete":
        raise FakeError(f"DNS {tag.upper()} records cannot be modified, only added or deleted")
    if len(found) != 1:
        raise FakeError(f"couldn't locate a matching DNS {tag.upper()} record in network"
                        if not found else f"multiple DNS {tag.upper()} records match")
    assert dns is not None
    dns.remove(found[0])
    _drop_if_empty(dns)


_SECTIONS: dict[str, Callable[[Element, str, int, Element], None]] = {
    "ip-dhcp-host": _dhcp_host,
    "ip-dhcp-range": _dhcp_range,
    "dns-host": _dns_host,
    "dns-txt": _dns_record,
    "dns-srv": _dns_record,
}
