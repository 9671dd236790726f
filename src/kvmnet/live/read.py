"""read: the live state of a libvirt connection (and the host), into LiveState.

Each object is fetched raw (XMLDesc) and parsed by a pure function. Objects
that vanish between listing and reading are skipped, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import libvirt

from kvmnet.errors import LiveError
from kvmnet.live.conn import Connection, one_line
from kvmnet.live.domain_xml import KVMNET_NS, parse_managed_macs, parse_nics
from kvmnet.records import record
from kvmnet.render.network_parse import parse_network
from kvmnet.render.network_xml import MARK, NetworkXMLError
from kvmnet.state import HostState, LiveDomain, LiveNetwork, LiveState

_GONE = (libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_DOMAIN)


def read_networks(conn: Connection) -> dict[str, LiveNetwork]:
    """Every network: per network its persistent XML and, when active, its bridge; the
    flags (active, autostart, persistent) come from three filtered listings, not from
    three calls per network."""
    out: dict[str, LiveNetwork] = {}
    nets = conn.read("list networks", conn.raw.listAllNetworks)
    if not nets:
        return out

    def listed(flag: int) -> frozenset[str]:
        return _uuids(conn, "list networks", conn.raw.listAllNetworks, flag)

    flags = _Flags(listed(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE),
                   listed(libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART),
                   listed(libvirt.VIR_CONNECT_LIST_NETWORKS_PERSISTENT))
    # every network's XML first, then the parsing: libvirtd answers calls that come
    # back to back faster than calls with ~0.1 ms of parsing between them
    fetched = []
    for n in nets:
        try:
            fetched.append(_fetch_network(n, flags))
        except libvirt.libvirtError as e:
            if e.get_error_code() in _GONE:
                continue
            raise _failed(f"read network {n.name()}", e) from None
    for f in fetched:
        ln = _parse_network(*f, flags)
        out[ln.name] = ln
    return out


def _uuids(conn: Connection, what: str, list_all: Callable[[int], Any], flag: int
           ) -> frozenset[str]:
    """The UUIDs of a filtered listing (UUIDString is kept by the binding: no call)."""
    return frozenset(o.UUIDString() for o in conn.read(what, lambda: list_all(flag)))


@record
class _Flags:
    """UUIDs of the active, autostarted and persistent networks; `split` turns False when
    the driver cannot show the persistent XML apart (the test driver), so that it is
    asked once per connection, not once per network."""

    active: frozenset[str]
    autostart: frozenset[str]
    persistent: frozenset[str]
    split: bool = True


def _failed(what: str, e: libvirt.libvirtError) -> LiveError:
    """A read that failed for another reason than the object going away (libvirtd
    went away, permission): one line, with libvirt's words."""
    return LiveError(f"{what}: {one_line(e)}")


def _xml(n: Any, flags: _Flags) -> str:
    if flags.split:
        try:
            return str(n.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
        except libvirt.libvirtError as e:  # the test driver knows no flags
            if e.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG,
                                          libvirt.VIR_ERR_NO_SUPPORT):
                raise
            flags.split = False
    return str(n.XMLDesc(0))


def _fetch_network(n: Any, flags: _Flags) -> tuple[Any, str, str, str | None]:
    """(the network, its UUID, its XML, its bridge when active): the calls to libvirtd."""
    uuid = n.UUIDString()
    xml = _xml(n, flags)
    bridge = None
    if uuid in flags.active:
        try:
            bridge = n.bridgeName()
        except libvirt.libvirtError:
            bridge = None
    return n, uuid, xml, bridge


def _parse_network(n: Any, uuid: str, xml: str, bridge: str | None,
                   flags: _Flags) -> LiveNetwork:
    active = uuid in flags.active
    try:
        parsed = parse_network(xml)
    except NetworkXMLError as e:
        return _unreadable(n.name(), xml, str(e), active, bridge, uuid, flags)
    return LiveNetwork(
        name=parsed.name, network=parsed.network, managed=parsed.managed, active=active,
        autostart=uuid in flags.autostart, persistent=uuid in flags.persistent, uuid=uuid,
        bridge=bridge or parsed.network.bridge, xml=xml, unmodelled=tuple(parsed.unmodelled),
        split_config=flags.split)


_MACVTAP = {"private", "vepa", "passthrough", "hostdev"}


def _unreadable(name: str, xml: str, problem: str, active: bool, bridge: str | None,
                uuid: str, flags: _Flags) -> LiveNetwork:
    """A network libvirt holds but kvmnet's model cannot (a value outside what a spec may
    say: a domain with a space, an MTU above 65535, a bridge name with ':'). Not
    kvmnet's: kept as its name, mode and bridge, so it never blocks a plan of other
    networks and is never changed. With kvmnet's mark it is an error: kvmnet wrote it,
    so someone changed it by hand, and plan must not guess."""
    from kvmnet.render.xmlutil import parse_xml
    from kvmnet.spec.model import MODES, Mode, Network
    from kvmnet.spec.types import parse_ifname

    root = parse_xml(xml)
    if root.find(f"metadata/{MARK}") is not None:
        raise LiveError(f"network {name} is managed by kvmnet but cannot be read any more "
                        f"({problem}): correct it with virsh net-edit {name}, or remove it")
    fwd = root.find("forward")
    mode = "isolated" if fwd is None else fwd.get("mode", "nat")
    mode = "macvtap" if mode in _MACVTAP else mode
    el = root.find("bridge")
    defined = el.get("name") if el is not None else None
    try:
        ifname = parse_ifname(defined) if defined else None
    except ValueError:
        ifname = None
    net = Network.model_construct(mode=cast(Mode, mode if mode in MODES else "nat"),
                                  bridge=ifname)
    return LiveNetwork(name=name, network=net, managed=False, active=active,
                       autostart=uuid in flags.autostart, persistent=uuid in flags.persistent,
                       uuid=uuid, bridge=bridge or defined, xml=xml, problem=problem)


def read_domains(conn: Connection) -> dict[str, LiveDomain]:
    """Every domain's NICs (persistent and running config) and kvmnet's record of the NICs
    it attached; running and persistent come from two filtered listings."""
    out: dict[str, LiveDomain] = {}
    doms = conn.read("list domains", conn.raw.listAllDomains)
    if not doms:
        return out
    running, persistent = (_uuids(conn, "list domains", conn.raw.listAllDomains, f)
                           for f in (libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE,
                                     libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT))
    for d in doms:
        uuid = d.UUIDString()
        try:
            out[d.name()] = _read_domain(d, uuid in running, uuid in persistent)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _GONE:
                continue
            raise _failed(f"read domain {d.name()}", e) from None
    return out


def _read_domain(d: Any, running: bool, persistent: bool) -> LiveDomain:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0
    nics = parse_nics(d.XMLDesc(flags))
    live_nics = parse_nics(d.XMLDesc(0)) if running else ()
    try:
        meta = d.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, KVMNET_NS,
                          libvirt.VIR_DOMAIN_AFFECT_CONFIG if persistent else 0)
    except libvirt.libvirtError as e:
        # none recorded (or a driver without metadata); anything else is not "none"
        if e.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                                      libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        meta = None
    return LiveDomain(name=d.name(), running=running, nics=nics, live_nics=live_nics,
                      managed_macs=parse_managed_macs(meta))


def read_state(conn: Connection, host: HostState | None = None) -> LiveState:
    return LiveState(uri=conn.uri, networks=read_networks(conn), domains=read_domains(conn),
                     host=host or HostState(readable=False), is_test=conn.is_test)
