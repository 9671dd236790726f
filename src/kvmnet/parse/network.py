"""libvirt network XML -> Network: the inverse of network_xml's render (its docstring
has the normalisation rules both sides share)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kvmnet.model.spec import (
    DhcpHost,
    DhcpRange,
    Dns,
    DnsForwarder,
    DnsHost,
    DnsSrv,
    DnsTxt,
    IPConfig,
    Lease,
    Nat,
    Network,
    PrefixForm,
    Spec,
    StaticRoute,
)
from kvmnet.model.types import IPAddr, ip_address
from kvmnet.parse.dnsmasq import options_into
from kvmnet.render.dnsmasq import OPTIONS
from kvmnet.render.network import (
    LIBVIRT_BRIDGED,
    MARK,
    NetworkXMLError,
    _root,
    default_prefix,
    render_network,
)
from kvmnet.render.xmlutil import (
    Element,
    Leftovers,
    Reader,
    qname,
)
from kvmnet.spec.errors import one_line


@dataclass(frozen=True)
class ParsedNetwork:
    """One parsed <network>. `unmodelled` names what went to network.xml_extra:
    elements by path ('portgroup', 'forward/pf'), attributes with '@' ('bridge@zone')."""

    name: str
    uuid: str | None
    network: Network
    managed: bool
    unmodelled: list[str] = field(default_factory=list)
    owner: str | None = None     # the mark's owner= (None: a bare mark, or none)
    record: str | None = None    # the mark's applied=: what kvmnet last defined (plan.drift)


# ---------------------------------------------------------------- parse


def parse_network(xml: str | bytes | Element) -> ParsedNetwork:
    """libvirt network XML (e.g. XMLDesc) -> ParsedNetwork; raises NetworkXMLError."""
    root = _root(xml)
    name = root.findtext("name") or ""   # verbatim: libvirt keeps "net " apart from "net"
    if not name.strip():
        raise NetworkXMLError("network XML has no <name>")
    try:
        return _Parser().network(root, name)
    except ValidationError as e:
        raise NetworkXMLError(f"network {name}: {one_line(e)}") from None
    except ValueError as e:
        raise NetworkXMLError(f"network {name}: {e}") from None


def netmask_prefix(text: str) -> int:
    """The prefix of a dotted netmask, as libvirt reads it: ipaddress would also take a
    prefix length ('24') or a host mask ('0.0.0.255'), which libvirt reads as the
    netmasks 0.0.0.24 and 0.0.0.255, not as /24."""
    mask = int(ipaddress.IPv4Address(text))
    inverse = ~mask & 0xFFFFFFFF
    if inverse & (inverse + 1):
        raise ValueError(f"netmask {text!r} is not a netmask (its one bits must come first)")
    return 32 - inverse.bit_length()


class _Parser(Leftovers):
    """One <network> into Network fields; what it does not read is kept (Leftovers)."""

    def network(self, root: Element, name: str) -> ParsedNetwork:
        r = Reader(root, "")
        r.drop("connections")
        r.child("name")
        uuid_el = r.child("uuid")
        f: dict[str, Any] = {}
        if r.attr("ipv6") == "yes":
            f["allow_guest_ipv6"] = True
        managed, owner, record = self.metadata(r.child("metadata"))
        self.forward(r.child("forward"), f)
        self.bridge(r.child("bridge"), f)
        if (el := r.child("mtu")) is not None:
            f["mtu"] = self.simple(el, "mtu", "size")
        if (el := r.child("mac")) is not None:
            f["mac"] = self.simple(el, "mac", "address")
        if (el := r.child("domain")) is not None:
            d = Reader(el, "domain")
            f["domain"], f["domain_local"] = d.attr("name"), _bool(d.attr("localOnly"))
            self.keep(d)
        if (el := r.child("dns")) is not None:
            f["dns"] = self.dns(el)
        self.ips(r.children("ip"), r.children("route"), f)
        rest = options_into(el, f) if (el := r.child(OPTIONS)) is not None else None
        self.keep(r)
        if rest is not None:  # (after <network>'s other leftovers, as libvirt orders them)
            self.keep_element("", rest)
        net = Network(**f, xml_extra=self.extra)
        uuid = ((uuid_el.text or "").strip() or None) if uuid_el is not None else None
        return ParsedNetwork(name, uuid, net, managed, self.names, owner, record)

    def simple(self, el: Element, path: str, attr: str) -> str | None:
        r = Reader(el, path)
        value = r.attr(attr)
        self.keep(r)
        return value

    def metadata(self, el: Element | None) -> tuple[bool, str | None, str | None]:
        """kvmnet's mark?, its owner, its record of what kvmnet applied."""
        marks = [] if el is None else (r := Reader(el, "metadata")).children(MARK)
        if el is not None:
            self.keep(r)
        first = {k: next((m.get(k) for m in marks if m.get(k)), None) for k in ("owner", "applied")}
        return bool(marks), first["owner"], first["applied"]

    def forward(self, el: Element | None, f: dict[str, Any]) -> None:
        if el is None:
            f["mode"] = "isolated"
            return
        r = Reader(el, "forward")
        mode, dev = r.attr("mode") or "nat", r.attr("dev")
        devs: list[str] = []
        for i, k in enumerate(r.children("interface")):
            ir = Reader(k, f"forward/interface[{i}]")
            ir.drop("connections")
            if (d := ir.attr("dev")) is None:
                self.keep_element("forward", k)
                continue
            devs.append(d)
            self.keep(ir)
        f["nat"] = self.nat(r.child("nat"))
        pool = bool(devs) or bool(r.leftover_children())
        if mode in ("nat", "route", "open"):
            f["mode"] = mode
            if len(devs) == 1 and dev in (None, devs[0]):
                dev, devs = devs[0], []
            f["uplink"], f["devices"] = dev, devs
        elif mode == "bridge" and not pool and dev is None:
            f["mode"] = "bridge"
        elif mode in ("bridge", "private", "vepa", "passthrough", "hostdev"):
            f["mode"] = "macvtap"
            f["macvtap_mode"] = None if mode == "bridge" else mode
            if not devs and dev is not None:  # libvirt makes the dev an interface
                devs = [dev]
            f["uplink"] = None if devs and dev in (None, devs[0]) else dev
            f["devices"] = devs
        else:
            raise ValueError(f"<forward mode='{mode}'> is not a libvirt forward mode kvmnet "
                             "knows")
        self.keep(r)

    def nat(self, el: Element | None) -> Nat | None:
        if el is None:
            return None
        r = Reader(el, "forward/nat")
        v: dict[str, Any] = {}
        if el.get("ipv6") == "yes":  # an explicit ipv6='no' stays verbatim
            v["ipv6"] = r.attr("ipv6") == "yes"
        if (a := r.child("address")) is not None:
            ar = Reader(a, "forward/nat/address")
            start = ar.attr("start")
            v["addresses"] = f"{start}-{ar.attr('end') or start}"
            self.keep(ar)
        if (p := r.child("port")) is not None:
            pr = Reader(p, "forward/nat/port")
            first = pr.attr("start")
            v["ports"] = f"{first}-{pr.attr('end') or first}"
            self.keep(pr)
        self.keep(r)
        return Nat(**v) if v else None

    def bridge(self, el: Element | None, f: dict[str, Any]) -> None:
        if el is None:
            return
        r = Reader(el, "bridge")
        f["bridge"] = r.attr("name")
        stp = r.attr("stp")
        if stp is not None:
            if stp not in ("on", "off"):
                raise ValueError(f"<bridge stp='{stp}'>: write on or off")
            f["stp"] = stp == "on"
        f["delay"] = r.int_attr("delay")
        self.keep(r)

    def dns(self, el: Element) -> Dns | None:
        r = Reader(el, "dns")
        v: dict[str, Any] = {"forward_plain_names": _bool(r.attr("forwardPlainNames"))}
        if el.get("enable") == "no":  # an explicit enable='yes' stays verbatim
            v["enable"] = _bool(r.attr("enable"))
        v["forwarders"] = self.items(r, "forwarder", DnsForwarder, ("domain", "addr"))
        v["txt"] = self.items(r, "txt", DnsTxt, ("name", "value"))
        v["srv"] = self.items(r, "srv", DnsSrv, ("service", "protocol", "domain", "target",
                                                 "port", "priority", "weight"))
        hosts: list[DnsHost] = []
        for k in r.children("host"):
            hr = Reader(k, f"dns/host[{len(hosts)}]")
            names = []
            for n in hr.children("hostname"):
                names.append(Reader(n, "").text())
            try:
                hosts.append(DnsHost(ip=hr.attr("ip"), names=names))
            except ValidationError:
                self.keep_element("dns", k)
                continue
            self.keep(hr)
        v["hosts"] = hosts
        self.keep(r)
        dns = Dns(**v)
        return None if dns == Dns() else dns

    def items(self, r: Reader, tag: str, model: Any, attrs: tuple[str, ...],
              path: str | None = None) -> list[Any]:
        """Each <tag> child as model(**attrs); one that does not fit is kept verbatim."""
        out: list[Any] = []
        path = r.path if path is None else path
        for k in r.children(tag):
            kr = Reader(k, f"{path}/{tag}[{len(out)}]")
            vals = {a: kr.attr(a) for a in attrs}
            try:
                out.append(model(**{a: x for a, x in vals.items() if x is not None}))
            except ValidationError:
                self.keep_element(path, k)
                continue
            self.keep(kr)
        return out

    def ips(self, ip_els: list[Element], route_els: list[Element], f: dict[str, Any]) -> None:
        ips: list[IPConfig] = []
        for k in ip_els:
            try:
                with self.all_or_nothing():
                    ips.append(self.ip(k, len(ips)))
            except (ValidationError, ValueError):
                self.keep_element("", k)
        routes: list[list[StaticRoute]] = [[] for _ in ips]
        readers: list[list[Reader]] = [[] for _ in ips]
        for k in route_els:
            rr = Reader(k, "route")
            try:
                route = self.route(rr)
                at = _route_home(route, ips)
            except (ValidationError, ValueError):
                at = None
            if at is None:
                self.keep_element("", k)
                continue
            routes[at].append(route)
            readers[at].append(rr)
        n = 0
        for rrs in readers:  # routes render grouped by IP block: index them that way
            for rr in rrs:
                rr.path = f"route[{n}]"
                self.keep(rr)
                n += 1
        ips = [c.model_copy(update={"routes": rs}) if rs else c
               for c, rs in zip(ips, routes, strict=True)]
        if ips and ips[0].address.version == 4:
            f["ipv4"] = ips.pop(0)
        if ips and ips[0].address.version == 6:
            f["ipv6"] = ips.pop(0)
        f["more_ips"] = ips

    def ip(self, el: Element, idx: int) -> IPConfig:
        r = Reader(el, f"ip[{idx}]")
        if el.get("family") == "ipv6":  # family='ipv4' is optional: kept as written
            r.attr("family")
        addr, form, plen = self.address(r)
        v: dict[str, Any] = {"address": f"{addr}/{plen}", "xml_prefix": form}
        if (t := r.child("tftp")) is not None:
            v["tftp"] = self.simple(t, f"ip[{idx}]/tftp", "root")
        if (d := r.child("dhcp")) is not None:
            self.dhcp(Reader(d, f"ip[{idx}]/dhcp"), v)
        ipc = IPConfig(**v)
        self.keep(r)
        return ipc

    def address(self, r: Reader) -> tuple[IPAddr, PrefixForm, int]:
        text = r.attr("address")
        if text is None:
            raise ValueError(f"<{qname(r.el)}> has no address")
        addr = ip_address(text)
        prefix, netmask = r.int_attr("prefix"), r.attr("netmask")
        if prefix is not None:
            return addr, "prefix", prefix
        if netmask is not None:
            return addr, "netmask", netmask_prefix(netmask)
        return addr, "none", default_prefix(addr)

    def dhcp(self, r: Reader, v: dict[str, Any]) -> None:
        ranges: list[DhcpRange] = []
        for k in r.children("range"):
            kr = Reader(k, f"{r.path}/range[{len(ranges)}]")
            try:
                with self.all_or_nothing():
                    ranges.append(DhcpRange(start=kr.attr("start"), end=kr.attr("end"),
                                            lease_time=self.lease(kr)))
            except (ValidationError, ValueError):
                self.keep_element(r.path, k)
                continue
            self.keep(kr)
        leases = {x.lease_time for x in ranges}
        if len(leases) == 1 and None not in leases:
            v["lease_time"] = leases.pop()
            ranges = [x.model_copy(update={"lease_time": None}) for x in ranges]
        v["dhcp"] = ranges
        hosts: list[DhcpHost] = []
        for k in r.children("host"):
            kr = Reader(k, f"{r.path}/host[{len(hosts)}]")
            vals = {a: kr.attr(a) for a in ("mac", "id", "name", "ip")}
            try:
                with self.all_or_nothing():
                    hosts.append(DhcpHost(**{a: x for a, x in vals.items() if x is not None},
                                          lease_time=self.lease(kr)))
            except (ValidationError, ValueError):
                self.keep_element(r.path, k)
                continue
            self.keep(kr)
        v["hosts"] = hosts
        if (b := r.child("bootp")) is not None:
            br = Reader(b, f"{r.path}/bootp")
            vals = {a: br.attr(a) for a in ("file", "server")}
            v["bootp"] = {a: x for a, x in vals.items() if x is not None}
            self.keep(br)
        self.keep(r)

    def lease(self, r: Reader) -> Lease | None:
        el = r.child("lease")
        if el is None:
            return None
        lr = Reader(el, f"{r.path}/lease")
        expiry = lr.int_attr("expiry")
        unit = lr.attr("unit")
        self.keep(lr)
        if expiry is None:
            raise ValueError("<lease> without expiry")
        if expiry == 0 or unit is None:  # libvirt ignores the unit of an infinite lease
            return Lease(expiry=expiry)
        return Lease.model_validate({"expiry": expiry, "unit": unit})

    def route(self, r: Reader) -> StaticRoute:
        if r.el.get("family") == "ipv6":
            r.attr("family")
        addr, form, plen = self.address(r)
        return StaticRoute(to=f"{addr}/{plen}", via=r.attr("gateway"),
                           metric=r.int_attr("metric"), xml_prefix=form)


def _route_home(route: StaticRoute, ips: list[IPConfig]) -> int | None:
    """The IP block a route belongs to: the one whose subnet holds the gateway."""
    same = [i for i, c in enumerate(ips) if c.address.version == route.via.version]
    for i in same:
        if route.via in ips[i].address.network:
            return i
    return same[0] if same else None


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    if value not in ("yes", "no"):
        raise ValueError(f"{value!r} is not yes or no")
    return value == "yes"


# ---------------------------------------------------------------- views


def with_libvirt_defaults(net: Network) -> Network:
    """What libvirt fills in on define: stp on and delay 0 on the bridges it makes."""
    if net.mode in LIBVIRT_BRIDGED:
        return net.model_copy(update={"stp": True if net.stp is None else net.stp,
                                      "delay": 0 if net.delay is None else net.delay})
    return net


def xml_view(spec: Spec, name: str, macs: dict[tuple[str, int], str] | None = None) -> Network:
    """spec.networks[name] as reading its XML back gives it: guests' reservations in
    `hosts`, fields the XML does not carry (adopt, autostart, forwards) at defaults."""
    return parse_network(render_network(spec, name, macs)).network
