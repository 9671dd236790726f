"""The network XML plan writes itself: kvmnet's ownership mark, the UUID that makes a
define a redefinition, and the virNetworkUpdate calls that change DHCP reservations,
DNS hosts and DNS TXT and SRV records live."""

from __future__ import annotations

import ipaddress

from lxml import etree

from kvmnet.model.spec import DhcpHost, DnsHost, DnsSrv, DnsTxt, Network
from kvmnet.plan.core import Update
from kvmnet.render.network import KVMNET_NS


def mark_managed(xml: str, owner: str | None = None, record: str | None = None) -> str:
    """The same network XML with kvmnet's ownership mark, naming `owner` (a mark there
    already, bare or another owner's, is given this owner) and, when given, kvmnet's
    `record` of what it applies (plan.fields.record)."""
    root = etree.fromstring(xml.encode())
    md = root.find("metadata")
    if md is None:
        md = etree.Element("metadata")
        name = root.find("name")
        uuid = root.find("uuid")
        anchor = uuid if uuid is not None else name
        if anchor is not None:
            anchor.addnext(md)
        else:
            root.insert(0, md)
    mark = md.find(f"{{{KVMNET_NS}}}managed")
    if mark is None:
        mark = etree.SubElement(md, f"{{{KVMNET_NS}}}managed", nsmap={"kvmnet": KVMNET_NS})
    if owner is not None:
        mark.set("owner", owner)
    if record is not None:
        mark.set("applied", record)
    return etree.tostring(root, encoding="unicode")


def with_record(xml: str, record: str) -> str:
    """The network XML with kvmnet's record of what it applies on its mark (the XML plan
    defines carries the mark already: render.network)."""
    root = etree.fromstring(xml.encode())
    mark = root.find(f"metadata/{{{KVMNET_NS}}}managed")
    if mark is None:
        return mark_managed(xml, None, record)
    mark.set("applied", record)
    return etree.tostring(root, encoding="unicode")


def _bridge_el(root: etree._Element) -> etree._Element:
    bridge = root.find("bridge")
    if bridge is None:
        bridge = etree.Element("bridge")
        anchor = root.find("forward")
        if anchor is None:
            anchor = root.find("uuid")
        if anchor is None:
            anchor = root.find("name")
        if anchor is not None:
            anchor.addnext(bridge)
        else:
            root.insert(0, bridge)
    return bridge


def stp_off(xml: str) -> str:
    """The same network XML with spanning tree off on its bridge (kvmnet's default for a
    bridge libvirt makes: see plan.networks.default_stp)."""
    root = etree.fromstring(xml.encode())
    _bridge_el(root).set("stp", "off")
    return etree.tostring(root, encoding="unicode")


def keep_live_fills(xml: str, live: Network) -> str:
    """Redefinition XML with what libvirt filled in on the live network (the bridge's
    name, STP, forward delay and MAC) wherever the spec leaves it out: plan compares
    without them (plan.networks.LIBVIRT_FILLS), so a redefine must not change them either
    (else libvirt would fill them afresh: a new MAC the guests' neighbour entries do not
    know, STP back on)."""
    root = etree.fromstring(xml.encode())
    attrs = {"name": live.bridge, "stp": None if live.stp is None else
             ("on" if live.stp else "off"), "delay": live.delay}
    have = root.find("bridge")
    missing = {k: v for k, v in attrs.items()
               if v is not None and (have is None or have.get(k) is None)}
    if missing:
        bridge = _bridge_el(root)
        for k, v in missing.items():
            bridge.set(k, str(v))
    if live.mac and root.find("mac") is None:
        mac = etree.Element("mac", address=live.mac)
        anchor = root.find("mtu")
        if anchor is None:
            anchor = _bridge_el(root)
        anchor.addnext(mac)
    return etree.tostring(root, encoding="unicode")


def with_uuid(xml: str, uuid: str | None) -> str:
    """Network XML that redefines the existing network (same UUID), not a new one."""
    if not uuid:
        return xml
    root = etree.fromstring(xml.encode())
    old = root.find("uuid")
    if old is not None:
        old.text = uuid
    else:
        el = etree.Element("uuid")
        el.text = uuid
        name = root.find("name")
        if name is not None:
            name.addnext(el)
        else:
            root.insert(0, el)
    return etree.tostring(root, encoding="unicode")


def _ip_index(xml: str) -> dict[str, int]:
    root = etree.fromstring(xml.encode())
    return {str(ipaddress.ip_address(ip.get("address", "0.0.0.0"))): i
            for i, ip in enumerate(root.iterfind("ip")) if ip.get("address")}


def _host_key(h: DhcpHost) -> str:
    return h.mac or h.id or h.name or str(h.ip)


def _host_xml(h: DhcpHost) -> str:
    el = etree.Element("host")
    if h.mac:
        el.set("mac", h.mac)
    if h.id:
        el.set("id", h.id)
    if h.name:
        el.set("name", h.name)
    el.set("ip", str(h.ip))
    if h.lease_time is not None:
        lease = etree.SubElement(el, "lease", expiry=str(h.lease_time.expiry))
        if h.lease_time.expiry:
            lease.set("unit", h.lease_time.unit)
    return etree.tostring(el, encoding="unicode")


def host_updates(wanted: Network, live: Network, live_xml: str) -> list[Update] | None:
    """Deletes, then modifies, then adds; None when libvirt would refuse one of them: it
    refuses to add a reservation that shares a MAC, id, name or address with one the
    network still holds at that moment (seen with libvirt 9.0), e.g. two reservations
    that swap addresses. The caller then redefines the network instead."""
    index = _ip_index(live_xml)
    out: list[Update] = []
    for w, lv in zip(wanted.all_ips(), live.all_ips(), strict=False):
        if w.hosts == lv.hosts:
            continue
        pi = index.get(str(lv.address.ip), -1)
        wmap = {_host_key(h): h for h in w.hosts}
        lmap = {_host_key(h): h for h in lv.hosts}
        state = {k: h for k, h in lmap.items() if k in wmap}
        out += [Update("delete", "ip-dhcp-host", pi, _host_xml(h))
                for k, h in lmap.items() if k not in wmap]
        for k, h in wmap.items():
            if k in lmap and lmap[k] != h:
                out.append(Update("modify", "ip-dhcp-host", pi, _host_xml(h)))
                state[k] = h
        for k, h in wmap.items():
            if k not in lmap:
                if any(_dhcp_clash(h, o) for o in state.values()):
                    return None
                out.append(Update("add-last", "ip-dhcp-host", pi, _host_xml(h)))
                state[k] = h
    return out


def _dhcp_clash(a: DhcpHost, b: DhcpHost) -> bool:
    return a.ip == b.ip or any(x is not None and x == y for x, y in (
        (a.mac, b.mac), (a.id, b.id), (a.name, b.name)))


def _dns_xml(h: DnsHost) -> str:
    el = etree.Element("host", ip=str(h.ip))
    for n in h.names:
        etree.SubElement(el, "hostname").text = n
    return etree.tostring(el, encoding="unicode")


def dns_updates(wanted: Network, live: Network) -> list[Update] | None:
    """None when libvirt would refuse: it deletes the one DNS host that shares the
    address or a name with the one given ("multiple matching DNS HOST records" when
    several do, e.g. one name on two addresses) and adds none whose address is taken."""
    w = list(wanted.dns.hosts) if wanted.dns else []
    lv = list(live.dns.hosts) if live.dns else []
    # libvirt 9.0 cannot modify a DNS host: a changed one is deleted and added.
    state = list(lv)
    out: list[Update] = []
    for h in [h for h in lv if h not in w]:
        if sum(1 for o in state if o.ip == h.ip or set(o.names) & set(h.names)) != 1:
            return None
        state.remove(h)
        out.append(Update("delete", "dns-host", -1, _dns_xml(h)))
    for h in [h for h in w if h not in lv]:
        if any(o.ip == h.ip for o in state):
            return None
        state.append(h)
        out.append(Update("add-last", "dns-host", -1, _dns_xml(h)))
    return out


def _txt_xml(t: DnsTxt) -> str:
    return etree.tostring(etree.Element("txt", name=t.name, value=t.value), encoding="unicode")


def _srv_xml(s: DnsSrv) -> str:
    el = etree.Element("srv")
    for k in ("service", "protocol", "domain", "target", "port", "priority", "weight"):
        v = getattr(s, k)
        if v is not None:
            el.set(k, str(v))
    return etree.tostring(el, encoding="unicode")


def _srv_match(given: DnsSrv, other: DnsSrv) -> bool:
    """libvirt's match of an SRV record: every field of domain, service, protocol and
    target that `given` has is the same in `other`."""
    return all(getattr(given, k) is None or getattr(given, k) == getattr(other, k)
               for k in ("domain", "service", "protocol", "target"))


def record_updates(wanted: Network, live: Network) -> list[Update] | None:
    """TXT and SRV records that went and came, as virNetworkUpdate calls; None when
    libvirt would refuse one: it deletes a TXT record by name and an SRV record by the
    domain, service, protocol and target it gives, only when exactly one matches, and
    adds none that matches one the network holds at that moment. (libvirt rewrites
    dnsmasq's config and restarts dnsmasq for these; the network and its guests' links
    stay as they are.)"""
    out: list[Update] = []
    w_txt, l_txt = (list(n.dns.txt) if n.dns else [] for n in (wanted, live))
    state_txt = list(l_txt)
    for t in [t for t in l_txt if t not in w_txt]:
        if sum(1 for o in state_txt if o.name == t.name) != 1:
            return None
        state_txt.remove(t)
        out.append(Update("delete", "dns-txt", -1, _txt_xml(t)))
    for t in [t for t in w_txt if t not in l_txt]:
        if any(o.name == t.name for o in state_txt):
            return None
        state_txt.append(t)
        out.append(Update("add-last", "dns-txt", -1, _txt_xml(t)))
    w_srv, l_srv = (list(n.dns.srv) if n.dns else [] for n in (wanted, live))
    state_srv = list(l_srv)
    for s in [s for s in l_srv if s not in w_srv]:
        if sum(1 for o in state_srv if _srv_match(s, o)) != 1:
            return None
        state_srv.remove(s)
        out.append(Update("delete", "dns-srv", -1, _srv_xml(s)))
    for s in [s for s in w_srv if s not in l_srv]:
        if any(_srv_match(s, o) or _srv_match(o, s) for o in state_srv):
            return None
        state_srv.append(s)
        out.append(Update("add-last", "dns-srv", -1, _srv_xml(s)))
    return out
