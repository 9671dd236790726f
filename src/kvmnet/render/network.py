"""libvirt network XML: Spec -> <network>, and libvirt's XMLDesc -> Network.

Render and parse are inverse mappings, judged by libvirt itself in the tests:
render -> define -> XMLDesc -> parse gives the model back, and parse -> render
of each of libvirt's own test networks defines to the same XMLDesc. Order of
elements and attributes follows libvirt's formatter (virNetworkDefFormatBuf)
so our output equals libvirt's.

What kvmnet does not model is kept verbatim in Network.xml_extra (key: parent
path such as 'forward' or 'ip[0]/dhcp'; keys ending in '@' hold attributes)
and named in ParsedNetwork.unmodelled. Only libvirt's runtime counters
(`connections=`) and comments are dropped.

Parse normalises as libvirt formats, so that parse -> render is a no-op:
- forward dev equal to the one/first <interface>: libvirt writes both; the
  model keeps it once (uplink for nat/route/open, devices for macvtap);
- forward mode 'bridge' with interfaces (or pf/PCI addresses) is macvtap,
  without them a host bridge; macvtap mode 'bridge' is macvtap_mode None;
  <forward/> without a mode is nat;
- IP blocks in XML order: a leading IPv4 block is `ipv4`, an IPv6 block right
  after it `ipv6`, the rest `more_ips` (all_ips() gives the XML order back);
- one lease time on every range of a block becomes IPConfig.lease_time;
- a <route> belongs to the block whose subnet holds its gateway.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from kvmnet.errors import KvmnetError
from kvmnet.model.derive import dhcp_hosts
from kvmnet.model.spec import (
    DhcpHost,
    Dns,
    IPConfig,
    Lease,
    Network,
    PrefixForm,
    Spec,
    StaticRoute,
)
from kvmnet.model.types import IPAddr, IPIface, IPNet
from kvmnet.render import dnsmasq
from kvmnet.render.guard import require_dns_name, require_one_line
from kvmnet.render.xmlutil import (
    Element,
    insert_extras,
    on_off,
    order_children,
    parse_xml,
    pretty,
    qname,
    sub,
    yes_no,
)

KVMNET_NS = "https://kvmnet.dev/xmlns/1"
MARK = f"{{{KVMNET_NS}}}managed"
LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")  # libvirt makes the bridge

# libvirt's formatting order (src/conf/network_conf.c, virNetworkDefFormatBuf)
_CHILDREN: dict[str, tuple[str, ...]] = {
    "network": ("name", "uuid", "title", "description", "metadata", "forward", "bridge",
                "mtu", "mac", "domain", "dns", "vlan", "bandwidth", "port", "ip", "route",
                "virtualport", "portgroup", "dnsmasq:options"),
    "forward": ("driver", "nat", "pf", "interface|address"),
    "nat": ("address", "port"),
    "dns": ("forwarder", "txt", "srv", "host"),
    "ip": ("tftp", "dhcp"),
    "dhcp": ("range", "host", "bootp"),
}
_ATTRS: dict[str, tuple[str, ...]] = {
    "network": ("connections", "ipv6", "trustGuestRxFilters"),
    "forward": ("dev", "mode", "managed"),
    "bridge": ("name", "zone", "stp", "delay", "macTableManager"),
    "domain": ("name", "localOnly", "register"),
    "dns": ("enable", "forwardPlainNames"),
    "ip": ("family", "address", "netmask", "prefix", "localPtr"),
    "route": ("family", "address", "netmask", "prefix", "gateway", "metric"),
    "host": ("mac", "id", "name", "ip"),
    "srv": ("service", "protocol", "domain", "target", "port", "priority", "weight"),
}
_REPEATED = ("ip", "route", "range", "host", "forwarder", "txt", "srv", "interface")


class NetworkXMLError(KvmnetError, ValueError):
    """Network XML kvmnet cannot read or write (malformed, or a value out of range)."""


# ---------------------------------------------------------------- render


def render_network(spec: Spec, name: str,
                   macs: dict[tuple[str, int], str] | None = None) -> Element:
    """<network> for spec.networks[name], with the guests' DHCP reservations."""
    net = spec.networks[name]
    if net.mode == "overlay":
        raise NetworkXMLError(f"network {name} is mode overlay: OVN, not a libvirt network")
    return build_network(name, net, hosts=dhcp_hosts(spec, name, macs), owner=spec.owner)


# check renders every network (to find what cannot be written as XML) and plan renders
# each again to compare and define it: one render serves both (1000 networks: ~0.14 s).
# The last spec's XML by network name, for that spec and MAC map by identity (a Spec is
# frozen, and derive.nic_macs hands every caller the same map for the same spec).
_rendered: tuple[Spec, object, dict[str, str]] | None = None


def network_xml(spec: Spec, name: str, macs: dict[tuple[str, int], str] | None = None) -> str:
    global _rendered
    memo = _rendered
    if memo is None or memo[0] is not spec or memo[1] is not macs:
        memo = _rendered = (spec, macs, {})
    xml = memo[2].get(name)
    if xml is None:
        xml = memo[2][name] = pretty(render_network(spec, name, macs))
    return xml


def build_network(name: str, net: Network, *, hosts: dict[int, list[DhcpHost]] | None = None,
                  uuid: str | None = None, managed: bool = True,
                  owner: str | None = None) -> Element:
    """<network> for one Network; `hosts` per IP block replaces its own `hosts:`;
    `managed`: with kvmnet's mark, naming `owner` (a spec's owner) when given."""
    root = etree.Element("network")
    if net.allow_guest_ipv6:
        root.set("ipv6", "yes")
    sub(root, "name").text = name
    if uuid:
        sub(root, "uuid").text = uuid
    if managed:
        mark = etree.SubElement(sub(root, "metadata"), MARK, nsmap={"kvmnet": KVMNET_NS})
        if owner is not None:
            mark.set("owner", owner)
    _forward(root, net)
    if net.bridge is not None or net.stp is not None or net.delay is not None:
        sub(root, "bridge", ("name", net.bridge), ("stp", on_off(net.stp)), ("delay", net.delay))
    if net.mtu:
        sub(root, "mtu", ("size", net.mtu))
    if net.mac:
        sub(root, "mac", ("address", net.mac))
    if net.domain:
        sub(root, "domain", ("name", net.domain), ("localOnly", yes_no(net.domain_local)))
    if net.dns:
        _dns(root, net.dns)
    ips = net.all_ips()
    block_hosts = [hosts[i] if hosts is not None else ipc.hosts for i, ipc in enumerate(ips)]
    for ipc, hs in zip(ips, block_hosts, strict=True):
        _ip(root, ipc, hs)
    for ipc in ips:
        for r in ipc.routes:
            _route(root, r)
    _portgroups(root, net)
    _dnsmasq_options(root, dnsmasq.options(net, [h for hs in block_hosts for h in hs],
                                           block_hosts))
    before = _forward_of(root)
    try:
        insert_extras(root, net.xml_extra, _ATTRS)
    except ValueError as e:
        raise NetworkXMLError(f"network {name}: {e}") from None
    _merge_options(root)
    after = _forward_of(root)
    if after != before:
        raise NetworkXMLError(
            f"network {name}: xml_extra changes its <forward> ({_shown(before)} -> "
            f"{_shown(after)}): that is the network's mode and uplink, which its mode: and "
            "uplink: keys say (and the plan shows): write them there, and remove it from "
            "xml_extra")
    _order(root)
    return root


def _portgroups(root: Element, net: Network) -> None:
    """libvirt portgroups by name (and which is the default). Their VLANs go on each NIC
    that uses one (render.interface): libvirt 9 refuses `<vlan>` in a network on a Linux
    bridge, so a portgroup's VLANs there would not even define."""
    for pname, pg in net.portgroups.items():
        sub(root, "portgroup", ("name", pname), ("default", "yes" if pg.default else None))


def _forward_of(root: Element) -> tuple[str, str] | None:
    """What decides a network's mode and uplink: its <forward>, mode and dev."""
    fwd = root.find("forward")
    return None if fwd is None else (fwd.get("mode") or "nat", fwd.get("dev") or "")


def _shown(fwd: tuple[str, str] | None) -> str:
    if fwd is None:
        return "no <forward>: isolated"
    return f"<forward mode='{fwd[0]}'" + (f" dev='{fwd[1]}'" if fwd[1] else "") + ">"


def _forward(root: Element, net: Network) -> None:
    if net.mode == "isolated":
        return
    mode = (net.macvtap_mode or "bridge") if net.mode == "macvtap" else net.mode
    # As libvirt formats it: dev is the first interface, the uplink an interface too.
    devs = net.devices or ([net.uplink] if net.uplink else [])
    fwd = sub(root, "forward", ("dev", net.uplink or (devs[0] if devs else None)),
              ("mode", mode))
    nat = net.nat
    if nat and (nat.addresses or nat.ports or nat.ipv6):
        el = sub(fwd, "nat", ("ipv6", "yes" if nat.ipv6 else None))
        if nat.addresses:
            sub(el, "address", ("start", nat.addresses.start), ("end", nat.addresses.end))
        if nat.ports:
            sub(el, "port", ("start", nat.ports.first), ("end", nat.ports.last))
    for dev in devs:
        sub(fwd, "interface", ("dev", dev))


def _dnsmasq_options(root: Element, opts: list[str]) -> None:
    if opts:
        el = etree.SubElement(root, dnsmasq.OPTIONS, nsmap={"dnsmasq": dnsmasq.DNSMASQ_NS})
        for o in opts:
            etree.SubElement(el, dnsmasq.OPTION, value=o)


def _merge_options(root: Element) -> None:
    """One <dnsmasq:options>, kvmnet's options first: libvirt reads every one there is
    and writes them back as one (a second one comes from xml_extra)."""
    found = root.findall(dnsmasq.OPTIONS)
    for extra in found[1:]:
        for opt in list(extra):
            found[0].append(opt)
        root.remove(extra)


def _dns(root: Element, dns: Dns) -> None:
    # libvirt writes these into dnsmasq's config and hosts files, a line each
    require_one_line("network DNS", dns)
    require_dns_name("network DNS", *(n for h in dns.hosts for n in h.names),
                     *(t.name for t in dns.txt), *(f.domain for f in dns.forwarders if f.domain),
                     *(x for s in dns.srv for x in (s.service, s.domain, s.target) if x))
    el = sub(root, "dns", ("enable", None if dns.enable else "no"),
             ("forwardPlainNames", yes_no(dns.forward_plain_names)))
    for f in dns.forwarders:
        if not f.local_only:  # (a dnsmasq option: render.dnsmasq)
            sub(el, "forwarder", ("domain", f.domain), ("addr", f.addr))
    for t in dns.txt:
        sub(el, "txt", ("name", t.name), ("value", t.value))
    for s in dns.srv:
        sub(el, "srv", ("service", s.service), ("protocol", s.protocol), ("domain", s.domain),
            ("target", s.target), ("port", s.port), ("priority", s.priority),
            ("weight", s.weight))
    for h in dns.hosts:
        host = sub(el, "host", ("ip", h.ip))
        for n in h.names:
            sub(host, "hostname").text = n
    if not len(el) and not el.attrib:
        root.remove(el)


def _prefix_attrs(iface: IPIface | IPNet, form: PrefixForm) -> tuple[tuple[str, Any], ...]:
    plen = iface.network.prefixlen if isinstance(iface, IPIface) else iface.prefixlen
    addr = iface.ip if isinstance(iface, IPIface) else iface.network_address
    if form == "netmask" and addr.version == 4:
        return (("netmask", iface.netmask),)
    if form == "none" and plen == default_prefix(addr):
        return ()
    return (("prefix", plen),)


def _ip(root: Element, ipc: IPConfig, hosts: list[DhcpHost]) -> None:
    addr = ipc.address
    el = sub(root, "ip", ("family", "ipv6" if addr.version == 6 else None), ("address", addr.ip),
             *_prefix_attrs(addr, ipc.xml_prefix))
    if ipc.tftp:
        sub(el, "tftp", ("root", ipc.tftp))
    if not (ipc.dhcp or hosts or ipc.bootp):
        return
    dhcp = sub(el, "dhcp")
    for r in ipc.dhcp:
        _lease(sub(dhcp, "range", ("start", r.start), ("end", r.end)),
               r.lease_time or ipc.lease_time)
    for h in hosts:
        _lease(sub(dhcp, "host", ("mac", h.mac), ("id", h.id), ("name", h.name), ("ip", h.ip)),
               h.lease_time)
    if ipc.bootp:
        sub(dhcp, "bootp", ("file", ipc.bootp.get("file")), ("server", ipc.bootp.get("server")))


def _lease(parent: Element, lease: Lease | None) -> None:
    if lease is not None:
        sub(parent, "lease", ("expiry", lease.expiry),
            ("unit", lease.unit if lease.expiry else None))


def _route(root: Element, r: StaticRoute) -> None:
    sub(root, "route", ("family", "ipv6" if r.to.version == 6 else None),
        ("address", r.to.network_address), *_prefix_attrs(r.to, r.xml_prefix),
        ("gateway", r.via), ("metric", r.metric))


def _order(el: Element) -> None:
    order = _CHILDREN.get(qname(el))
    if order is None:
        return
    order_children(el, order)
    for k in el:
        if isinstance(k.tag, str) and qname(k) in ("forward", "nat", "dns", "ip", "dhcp"):
            _order(k)


def default_prefix(addr: IPAddr) -> int:
    """The prefix libvirt assumes for an <ip> or <route> that gives none (classful)."""
    if addr.version == 6:
        return 64
    first = int(addr) >> 24
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    raise NetworkXMLError(f"{addr} is a class D/E address: give a prefix")


# ---------------------------------------------------------------- marks


def is_managed(xml: str | bytes | Element) -> bool:
    """Does this network carry kvmnet's ownership mark?"""
    return _root(xml).find(f"metadata/{MARK}") is not None


def _root(xml: str | bytes | Element) -> Element:
    try:
        root = xml if isinstance(xml, etree._Element) else parse_xml(xml)
    except etree.XMLSyntaxError as e:
        raise NetworkXMLError(f"network XML is not well-formed: {e}") from None
    if root.tag != "network":
        raise NetworkXMLError(f"expected a <network> document, got <{root.tag}>")
    return root
