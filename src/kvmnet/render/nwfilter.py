"""Guest firewalls as libvirt nwfilter XML, built with lxml (kvmnet.model.firewall has
the names and the ownership mark).

A set's rules become nwfilter `<rule>`s in order (priority 100, 101, ...; the first
match decides), one per peer block and port range, for IPv4 (`tcp`, `udp`, `icmp`,
`all`) and IPv6 (`tcp-ipv6`, `udp-ipv6`, `icmpv6`, `all-ipv6`) as the peer's family
says (both without a peer). A peer or a port is the remote's for direction `out` and
the guest's own port for `in`: nwfilter's attributes name the packet's fields in the
rule's direction (srcipaddr of an `in` rule is the peer).

How libvirt instantiates them (its ebiptables driver, read in libvirt 9.0's source and
test data, nwfilterxml2firewalldata) decides the XML:
- an accept keeps libvirt's state matching: NEW,ESTABLISHED in its direction, and the
  replies (ESTABLISHED, conntrack's reply direction) the other way;
- a rule without a `state` attribute that is not such an accept is instantiated in BOTH
  directions with the addresses mirrored: a plain `drop in` would also drop what the
  guest sends (its DHCP requests too). So kvmnet's drops and rejects name every state
  (`state='NEW,ESTABLISHED,RELATED,INVALID'`), which libvirt instantiates in the rule's
  direction only; so do the defaults (a last rule, priority 1000, on everything);
- `stateful: false` is libvirt's `statematch='false'`: the rule holds both ways,
  mirrored, with no connection tracking.
What libvirt filters: all a guest sends (its physdev-in, routed or bridged), and what
reaches it across its bridge (other guests, the LAN of a bridge network); not what the
host routes to it (from a LAN, a port forward) nor the host's own packets to it
(libvirt's rules match --physdev-is-bridged on the way to a guest, and it hooks FORWARD
and INPUT, not OUTPUT). So a default_in drop is enforced on the way back too: the
guest's answers (conntrack's reply direction) to what no in rule accepted are dropped,
and a TCP connection or a ping from there does not complete (a one-way UDP datagram
still arrives). The NIC's combination filter holds that, for the strictest defaults of
all its sets: with default_in drop and default_out accept, an accept of the guest's own
connections (priority 999, libvirt's state matching: NEW,ESTABLISHED in conntrack's
original direction) and a drop of its other answers (ESTABLISHED,RELATED, priority
1000); with default_out drop and default_in accept, an accept in (999) so that the
answers to connections to the guest leave.

A NIC's combination filter holds filterrefs, libvirt's clean-traffic first (with
anti-spoofing; the NIC's `<filterref>` passes IP = its reservation), then the sets, and
that accept.
"""

from __future__ import annotations

import ipaddress

from lxml import etree

from kvmnet.model.firewall import (
    ANTISPOOF,
    DEFAULT_PRIORITY,
    FIRST_PRIORITY,
    STRICTNESS,
    FirewallRule,
    FirewallSet,
    filter_uuid,
    nic_filter,
    set_filter,
)
from kvmnet.model.spec import Spec
from kvmnet.model.types import IPNet, PortRange

_ELEMENT = {("tcp", 4): "tcp", ("tcp", 6): "tcp-ipv6", ("udp", 4): "udp",
            ("udp", 6): "udp-ipv6", ("icmp", 4): "icmp", ("icmpv6", 6): "icmpv6",
            ("all", 4): "all", ("all", 6): "all-ipv6"}
ELEMENT_PROTO = {el: proto for (proto, _), el in _ELEMENT.items()}
ELEMENT_FAMILY = {el: fam for (_, fam), el in _ELEMENT.items()}


ALL_STATES = "NEW,ESTABLISHED,RELATED,INVALID"   # one direction only (see above)
ANSWERS = "ESTABLISHED,RELATED"
REPLIES_PRIORITY = DEFAULT_PRIORITY - 1


class UnresolvedPeer(ValueError):
    """A rule's peer names what has no address (checks report it first)."""


def peer_blocks(spec: Spec, rule: FirewallRule) -> list[IPNet] | None:
    """The peer's address blocks; None: anywhere."""
    if rule.peer:
        return list(dict.fromkeys(rule.peer))
    if rule.network is not None:
        net = spec.networks.get(rule.network)
        blocks = [c.address.network for c in net.all_ips()] if net else []
        what = f"network {rule.network}"
    elif rule.guest is not None:
        g = spec.guests.get(rule.guest)
        blocks = [ipaddress.ip_network(a) for n in (g.interfaces if g else ())
                  for a in (n.ipv4, n.ipv6) if a is not None]
        what = f"guest {rule.guest}"
    elif rule.host:
        blocks = [ipaddress.ip_network(c.address.ip) for n in spec.networks.values()
                  for c in n.all_ips()]
        what = "the host"
    else:
        return None
    if not blocks:
        raise UnresolvedPeer(f"{what} has no address in the spec")
    return sorted(set(blocks), key=lambda b: (b.version, b))


def _families(rule: FirewallRule, blocks: list[IPNet] | None) -> list[tuple[int, IPNet | None]]:
    fams = {"icmp": (4,), "icmpv6": (6,)}.get(rule.proto, (4, 6))
    if blocks is None:
        return [(f, None) for f in fams]
    return [(b.version, b) for b in blocks if b.version in fams]


def rule_elements(spec: Spec, rule: FirewallRule, priority: int) -> list[etree._Element]:
    out = []
    for fam, block in _families(rule, peer_blocks(spec, rule)):
        port_list: list[PortRange | None] = [*rule.ports] or [None]
        for ports in port_list:
            el = etree.Element("rule", action=rule.action, direction=rule.direction,
                               priority=str(priority))
            if not rule.stateful:
                el.set("statematch", "false")
            match = etree.SubElement(el, _ELEMENT[(rule.proto, fam)])
            if rule.stateful and rule.action != "accept":
                match.set("state", ALL_STATES)
            if block is not None:
                side = "src" if rule.direction == "in" else "dst"
                match.set(f"{side}ipaddr", str(block.network_address))
                match.set(f"{side}ipmask", str(block.prefixlen))
            if ports is not None:
                match.set("dstportstart", str(ports.first))
                if ports.last != ports.first:
                    match.set("dstportend", str(ports.last))
            out.append(el)
    return out


def _root(name: str) -> etree._Element:
    root = etree.Element("filter", name=name, chain="root")
    etree.SubElement(root, "uuid").text = filter_uuid(name)
    return root


def set_element(spec: Spec, name: str, fs: FirewallSet | None = None) -> etree._Element:
    fs = fs if fs is not None else spec.firewalls[name]
    root = _root(set_filter(name))
    for i, rule in enumerate(fs.rules):
        root.extend(rule_elements(spec, rule, FIRST_PRIORITY + i))
    for direction, action in (("in", fs.default_in), ("out", fs.default_out)):
        if action != "accept":
            _all(root, action, direction, DEFAULT_PRIORITY, ALL_STATES)
    return root


def _all(root: etree._Element, action: str, direction: str, priority: int,
         state: str | None) -> None:
    for el in ("all", "all-ipv6"):
        r = etree.SubElement(root, "rule", action=action, direction=direction,
                             priority=str(priority))
        m = etree.SubElement(r, el)
        if state:
            m.set("state", state)


def effective_defaults(spec: Spec, sets: tuple[str, ...]) -> tuple[str, str]:
    """(in, out): the strictest default of the sets, per direction."""
    fss = [spec.firewalls[s] for s in sets if s in spec.firewalls]
    pick = [max((getattr(f, f"default_{d}") for f in fss), key=lambda a: STRICTNESS[a],
                default="accept") for d in ("in", "out")]
    return pick[0], pick[1]


def nic_element(spec: Spec, sets: tuple[str, ...], antispoof: bool) -> etree._Element:
    root = _root(nic_filter(sets, antispoof))
    for ref in ([ANTISPOOF] if antispoof else []) + [set_filter(s) for s in sets]:
        etree.SubElement(root, "filterref", filter=ref)
    d_in, d_out = effective_defaults(spec, sets)
    if d_in != "accept" and d_out == "accept":
        # the guest's own connections (and the answers to them)...
        _all(root, "accept", "out", REPLIES_PRIORITY, None)
        # ...but not its answers to what no in rule accepted: what the host routes to a
        # guest, and the host's own packets, reach it unfiltered; this stops them there
        _all(root, "drop", "out", DEFAULT_PRIORITY, ANSWERS)
    elif d_out != "accept" and d_in == "accept":  # the answers to connections to it
        _all(root, "accept", "in", REPLIES_PRIORITY, None)
    return root


def filterref_element(sets: tuple[str, ...], antispoof: bool,
                      ip: str | None) -> etree._Element | None:
    """A NIC's `<filterref>` (None: the NIC is not filtered)."""
    if not sets and not antispoof:
        return None
    el = etree.Element("filterref", filter=nic_filter(sets, antispoof))
    if antispoof and ip is not None:
        etree.SubElement(el, "parameter", name="IP", value=ip)
    return el


def wanted_filters(spec: Spec) -> dict[str, str]:
    """Every nwfilter the spec needs, by name: each set NICs use (and each set it
    defines) and each combination its NICs use, as XML text."""
    out = {set_filter(n): etree.tostring(set_element(spec, n), encoding="unicode")
           for n in spec.firewalls}
    for g, guest in spec.guests.items():
        for i in range(len(guest.interfaces)):
            sets, spoof = spec.nic_firewall(g, i)
            if sets or spoof:
                name = nic_filter(sets, spoof)
                out.setdefault(name, etree.tostring(nic_element(spec, sets, spoof),
                                                    encoding="unicode"))
    return out


def render_filters(spec: Spec) -> dict[str, str]:
    """{'nwfilters/NAME.xml': xml} for `kvmnet render`."""
    return {f"nwfilters/{n}.xml": etree.tostring(etree.fromstring(x), pretty_print=True,
                                                 encoding="unicode")
            for n, x in sorted(wanted_filters(spec).items())}
