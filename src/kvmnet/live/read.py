"""read: the live state of a libvirt connection (and the host), into LiveState.

Each object is fetched raw (XMLDesc) and parsed by a pure function. Objects
that vanish between listing and reading are skipped, not fatal.
"""

from __future__ import annotations

from typing import Any

import libvirt

from kvmnet.errors import LiveError
from kvmnet.live.conn import Connection, one_line
from kvmnet.live.domain_xml import KVMNET_NS, parse_managed_macs, parse_nics
from kvmnet.render.network_parse import parse_network
from kvmnet.state import HostState, LiveDomain, LiveNetwork, LiveState

_GONE = (libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_DOMAIN)


def read_networks(conn: Connection) -> dict[str, LiveNetwork]:
    out: dict[str, LiveNetwork] = {}
    nets = conn.read("list networks", conn.raw.listAllNetworks)
    for n in nets:
        try:
            ln = _read_network(n)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _GONE:
                continue
            raise _failed(f"read network {n.name()}", e) from None
        out[ln.name] = ln
    return out


def _failed(what: str, e: libvirt.libvirtError) -> LiveError:
    """A read that failed for another reason than the object going away (libvirtd
    went away, permission): one line, with libvirt's words."""
    return LiveError(f"{what}: {one_line(e)}")


def _read_network(n: Any) -> LiveNetwork:
    active = bool(n.isActive())
    split = True
    try:
        xml = n.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    except libvirt.libvirtError as e:  # the test driver knows no flags
        if e.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        xml = n.XMLDesc(0)
        split = False
    parsed = parse_network(xml)
    bridge = None
    if active:
        try:
            bridge = n.bridgeName()
        except libvirt.libvirtError:
            bridge = None
    return LiveNetwork(
        name=parsed.name, network=parsed.network, managed=parsed.managed, active=active,
        autostart=bool(n.autostart()), persistent=bool(n.isPersistent()), uuid=n.UUIDString(),
        bridge=bridge or parsed.network.bridge, xml=xml, unmodelled=tuple(parsed.unmodelled),
        split_config=split)


def read_domains(conn: Connection) -> dict[str, LiveDomain]:
    out: dict[str, LiveDomain] = {}
    for d in conn.read("list domains", conn.raw.listAllDomains):
        try:
            out[d.name()] = _read_domain(d)
        except libvirt.libvirtError as e:
            if e.get_error_code() in _GONE:
                continue
            raise _failed(f"read domain {d.name()}", e) from None
    return out


def _read_domain(d: Any) -> LiveDomain:
    running = bool(d.isActive())
    persistent = bool(d.isPersistent())
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
