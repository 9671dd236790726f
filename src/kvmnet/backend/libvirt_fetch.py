"""The reads of the real Backend: every network's and domain's raw XML and flags.

The calls libvirtd answers are made here, back to back; kvmnet.backend.read
parses what they return. Objects that vanish between listing and reading are
skipped, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import libvirt

from kvmnet.backend.base import DomainRecord, NetworkRecord
from kvmnet.backend.libvirt_errors import one_line
from kvmnet.errors import LiveError
from kvmnet.parse.domain import KVMNET_NS

_GONE = (libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_DOMAIN)
T = TypeVar("T")


class Connection(Protocol):
    """What the reads need of kvmnet.backend.libvirt.Connection."""

    raw: Any

    def read(self, what: str, fn: Callable[[], T]) -> T: ...


def fetch_networks(conn: Connection) -> list[NetworkRecord]:
    """Every network's persistent XML and, when active, its bridge; the flags (active,
    autostart, persistent) come from three filtered listings, not from three calls per
    network."""
    nets = conn.read("list networks", conn.raw.listAllNetworks)
    if not nets:
        return []

    def listed(flag: int) -> frozenset[str]:
        return _uuids(conn, "list networks", conn.raw.listAllNetworks, flag)

    flags = _Flags(listed(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE),
                   listed(libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART),
                   listed(libvirt.VIR_CONNECT_LIST_NETWORKS_PERSISTENT))
    out = []
    for n in nets:
        try:
            out.append(_fetch_network(n, flags))
        except libvirt.libvirtError as e:
            if e.get_error_code() in _GONE:
                continue
            raise _failed(f"read network {n.name()}", e) from None
    if not flags.split:  # (found out on some network: true of them all)
        out = [NetworkRecord(r.name, r.uuid, r.xml, r.active, r.autostart, r.persistent,
                             r.bridge, split_config=False) for r in out]
    return out


def _uuids(conn: Connection, what: str, list_all: Callable[[int], Any], flag: int
           ) -> frozenset[str]:
    """The UUIDs of a filtered listing (UUIDString is kept by the binding: no call)."""
    return frozenset(o.UUIDString() for o in conn.read(what, lambda: list_all(flag)))


@dataclass
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


def _fetch_network(n: Any, flags: _Flags) -> NetworkRecord:
    uuid = n.UUIDString()
    xml = _xml(n, flags)
    active = uuid in flags.active
    bridge = None
    if active:
        try:
            bridge = n.bridgeName()
        except libvirt.libvirtError:
            bridge = None
    return NetworkRecord(n.name(), uuid, xml, active, uuid in flags.autostart,
                         uuid in flags.persistent, bridge, flags.split)


def fetch_domains(conn: Connection) -> list[DomainRecord]:
    """Every domain's XML (persistent and running config) and kvmnet's metadata; running
    and persistent come from two filtered listings."""
    doms = conn.read("list domains", conn.raw.listAllDomains)
    if not doms:
        return []
    running, persistent = (_uuids(conn, "list domains", conn.raw.listAllDomains, f)
                           for f in (libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE,
                                     libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT))
    out = []
    for d in doms:
        uuid = d.UUIDString()
        try:
            out.append(_fetch_domain(d, uuid in running, uuid in persistent))
        except libvirt.libvirtError as e:
            if e.get_error_code() in _GONE:
                continue
            raise _failed(f"read domain {d.name()}", e) from None
    return out


def _fetch_domain(d: Any, running: bool, persistent: bool) -> DomainRecord:
    xml = d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if persistent else 0)
    live_xml = d.XMLDesc(0) if running else None
    try:
        meta = d.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, KVMNET_NS,
                          libvirt.VIR_DOMAIN_AFFECT_CONFIG if persistent else 0)
    except libvirt.libvirtError as e:
        # none recorded (or a driver without metadata); anything else is not "none"
        if e.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                                      libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
            raise
        meta = None
    return DomainRecord(d.name(), running, xml, live_xml, meta)
