"""The one door to libvirt: open a connection, read raw XML, make write calls.

`Connection` is the real kvmnet.backend.base.Backend. Every write goes through
`Connection.write` so it can be counted (idempotence tests and benchmarks
assert "zero writes") and so every libvirt error becomes a LiveError with the
object's name and libvirt's own words. The reads are in libvirt_fetch.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libvirt
from lxml import etree

from kvmnet.backend.base import (
    DomainRecord,
    FilterRecord,
    NetworkRecord,
    NicOp,
    UpdateCommand,
    UpdateSection,
)
from kvmnet.backend.libvirt_errors import (
    BINDING_ERRORS,
    explain_open_error,
    one_line,
    unreadable,
)
from kvmnet.backend.libvirt_fetch import fetch_domains, fetch_networks
from kvmnet.errors import LiveError
from kvmnet.model.firewall import PREFIX
from kvmnet.model.uri import is_test
from kvmnet.parse.domain import KVMNET_NS, edit_domain_nics

T = TypeVar("T")

DEFAULT_URI = "qemu:///system"


def default_uri(uri: str | None) -> str:
    return uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_silence, None)


@dataclass
class Connection:
    """A libvirt connection with counted writes."""

    uri: str
    raw: Any
    writes: list[str] = field(default_factory=list)
    # network handles by name, from define and lookups: create's start and autostart,
    # and redefine's stop, define and start, then need no networkLookupByName each
    _nets: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, uri: str | None = None) -> Connection:
        u = default_uri(uri)
        try:
            raw = libvirt.open(u)
        except libvirt.libvirtError as e:
            raise LiveError(explain_open_error(u, e)) from None
        if raw is None:  # pragma: no cover - old bindings
            raise LiveError(f"cannot connect to {u}")
        return cls(u, raw)

    @property
    def is_test(self) -> bool:
        """test:/// drivers: in-process, nothing on the real host may change."""
        return is_test(self.uri)

    def close(self) -> None:
        # the cached handles hold the connection: dropped first, so that closing it
        # really closes it (a test:/// driver resets only when its last reference goes)
        self._nets.clear()
        try:
            self.raw.close()
        except libvirt.libvirtError:
            pass

    # -- reads -------------------------------------------------------------
    def read(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except libvirt.libvirtError as e:
            raise LiveError(f"{what}: {one_line(e)}") from None
        except BINDING_ERRORS as e:
            raise LiveError(f"{what}: {unreadable(e)}") from None

    # -- writes ------------------------------------------------------------
    def write(self, what: str, fn: Callable[[], T], raw_errors: bool = False) -> T:
        """Run one write call; count it; turn a libvirt error into a LiveError
        (unless the caller handles libvirt's error itself)."""
        self.writes.append(what)
        try:
            return fn()
        except libvirt.libvirtError as e:
            if raw_errors:
                raise
            raise LiveError(f"{what}: libvirt says: {one_line(e)}") from None
        except BINDING_ERRORS as e:
            raise LiveError(f"{what}: {unreadable(e)}") from None

    # -- the Backend reads -------------------------------------------------
    def fetch_networks(self) -> list[NetworkRecord]:
        return fetch_networks(self)

    def fetch_domains(self) -> list[DomainRecord]:
        return fetch_domains(self)

    def lib_version(self) -> int | None:
        if isinstance(self.raw, NoLibvirt):   # (no libvirt was asked: nothing to tell)
            return None
        try:
            return int(self.raw.getLibVersion())
        except (libvirt.libvirtError, *BINDING_ERRORS):
            return None

    def fetch_nwfilters(self) -> list[FilterRecord] | None:
        try:
            filters = self.raw.listAllNWFilters()
        except libvirt.libvirtError:
            # no nwfilter driver (the test driver; modular daemons without
            # virtnwfilterd): a plan that needs one says so (kvmnet.plan.firewalls)
            return None
        out = []
        for f in filters:  # (name and UUID are the binding's: no call)
            try:
                name = f.name()
                mine = name.startswith(PREFIX)
                out.append(FilterRecord(name, f.UUIDString(), f.XMLDesc(0) if mine else ""))
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_NWFILTER:
                    raise LiveError(f"read nwfilter {f.name()}: {one_line(e)}") from None
        return out

    def network_active(self, name: str) -> bool | None:
        try:  # (gone: what a removal wants; another apply or a person did it)
            net = self.raw.networkLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return None
            raise LiveError(f"network {name}: {e.get_error_message() or e}") from None
        return bool(self.read(f"state of network {name}", net.isActive))

    def network_bridge(self, name: str) -> tuple[str, int | None]:
        net = self._net(name)
        bridge = self.read(f"bridge of {name}", net.bridgeName)
        xml = self.read(f"network {name}", net.XMLDesc)
        mtu_el = etree.fromstring(xml.encode()).find("mtu")
        mtu = int(mtu_el.get("size", "0")) if mtu_el is not None else None
        return str(bridge), mtu or None

    def _net(self, name: str) -> Any:
        """The network's handle: looked up once per connection (a handle names the
        network by its UUID, which a redefine keeps; undefine forgets it)."""
        net = self._nets.get(name)
        if net is None:
            net = self.read(f"network {name}", lambda: self.raw.networkLookupByName(name))
            self._nets[name] = net
        return net

    def _dom(self, name: str) -> Any:
        return self.read(f"domain {name}", lambda: self.raw.lookupByName(name))

    # -- the Backend writes ------------------------------------------------
    def define_network(self, name: str, xml: str, verb: str = "define") -> None:
        net = self.write(f"{verb} network {name}", lambda: self.raw.networkDefineXML(xml))
        if net is not None:
            self._nets[name] = net

    def start_network(self, name: str) -> None:
        self.write(f"start network {name}", self._net(name).create)

    def stop_network(self, name: str) -> None:
        self.write(f"stop network {name}", self._net(name).destroy)

    def undefine_network(self, name: str) -> None:
        self.write(f"undefine network {name}", self._net(name).undefine)
        self._nets.pop(name, None)

    def set_network_autostart(self, name: str, on: bool) -> None:
        net = self._net(name)
        self.write(f"autostart network {name}", lambda: net.setAutostart(1 if on else 0))

    def update_network(self, name: str, command: UpdateCommand, section: UpdateSection,
                       parent_index: int, xml: str, live: bool) -> None:
        net = self._net(name)
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if live:
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        self.write(f"networkUpdate {command} {section} on {name}",
                   lambda: net.update(_CMD[command], _SECTION[section], parent_index, xml,
                                      flags))

    def change_nic(self, domain: str, op: NicOp, mac: str, xml: str, live: bool) -> str:
        dom = self._dom(domain)
        call = {"attach": dom.attachDeviceFlags, "update": dom.updateDeviceFlags,
                "detach": dom.detachDeviceFlags}[op]
        what = f"{op} NIC {mac} of {domain}"
        config, running = libvirt.VIR_DOMAIN_AFFECT_CONFIG, libvirt.VIR_DOMAIN_AFFECT_LIVE
        first = self._nic_call(what, lambda: call(xml, config | (running if live else 0)))
        if first is None:
            return ""
        if first[0] not in _REFUSED:
            raise _nic_error(what, first)
        # The driver refuses the flags together, or this change: libvirt 11's test driver
        # takes no AFFECT_CONFIG on attach and cannot hotplug an <interface type='network'>
        # at all; libvirt 9's has no device hotplug. The running guest first (a real error
        # there stops before the definition changes), then the definition on its own.
        note = ""
        if live:
            err = self._nic_call(f"{what} (running guest)", lambda: call(xml, running))
            if err is not None:
                if err[0] not in _REFUSED:
                    raise _nic_error(what, err)
                note = (f"this libvirt driver cannot {op} a NIC of a running guest "
                        f"({err[1]}): changed {domain}'s definition only, in effect "
                        "from its next start")
        err = self._nic_call(f"{what} (definition)", lambda: call(xml, config))
        if err is not None:
            if err[0] not in _REFUSED:
                raise _nic_error(what, err)
            # No per-device call for the definition: redefine the domain with the NIC
            # edited (defineXML validates the whole definition).
            new = edit_domain_nics(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), op, mac, xml)
            self.write(f"{what} (redefine)", lambda: self.raw.defineXML(new))
        return note

    def _nic_call(self, what: str, fn: Callable[[], object]) -> tuple[int, str] | None:
        """One device call: None when it worked, else libvirt's error code and message
        (not the exception: its traceback would keep the domain, and so the connection,
        alive past close()). A call the driver refused changed nothing: not a write."""
        count = len(self.writes)
        try:
            self.write(what, fn, raw_errors=True)
        except libvirt.libvirtError as e:
            code = int(e.get_error_code() or 0)
            if code in _REFUSED:
                del self.writes[count:]
            return code, one_line(e)
        return None

    def set_managed_macs(self, domain: str, xml: str) -> None:
        dom = self._dom(domain)
        self.write(f"record kvmnet's NICs of {domain}",
                   lambda: dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, "kvmnet",
                                           KVMNET_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG))

    def nic_tap(self, domain: str, mac: str) -> str | None:
        from kvmnet.parse.domain import parse_nics

        dom = self._dom(domain)
        xml = self.read(f"domain {domain}", lambda: dom.XMLDesc(0))
        return next((n.target for n in parse_nics(xml) if n.mac == mac), None)

    def define_nwfilter(self, name: str, xml: str, verb: str = "define") -> None:
        self.write(f"{verb} nwfilter {name}", lambda: self.raw.nwfilterDefineXML(xml))

    def undefine_nwfilter(self, name: str) -> None:
        f = self.read(f"nwfilter {name}", lambda: self.raw.nwfilterLookupByName(name))
        self.write(f"undefine nwfilter {name}", f.undefine)


# What a driver answers when it cannot make a device change this way (the API, the flags
# or the device type): kvmnet then changes the running guest and the definition apart.
_REFUSED = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                      libvirt.VIR_ERR_INVALID_ARG})


def _nic_error(what: str, err: tuple[int, str]) -> LiveError:
    return LiveError(f"{what}: libvirt says: {err[1]}")


_CMD = {
    "add-last": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
    "delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
    "modify": libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
}
_SECTION = {
    "ip-dhcp-host": libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
    "dns-host": libvirt.VIR_NETWORK_SECTION_DNS_HOST,
    "ip-dhcp-range": libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE,
    "dns-txt": libvirt.VIR_NETWORK_SECTION_DNS_TXT,
    "dns-srv": libvirt.VIR_NETWORK_SECTION_DNS_SRV,
}


class NoLibvirt:
    """Stands in for a libvirt connection when the spec needs none (only `host:`):
    nothing to list, and any other call is a bug that fails loudly."""

    def listAllNetworks(self, flags: int = 0) -> list[Any]:  # noqa: N802 (libvirt's name)
        return []

    def listAllDomains(self, flags: int = 0) -> list[Any]:  # noqa: N802
        return []

    def listAllNWFilters(self, flags: int = 0) -> list[Any]:  # noqa: N802
        return []

    def close(self) -> int:
        return 0


@contextmanager
def connect(uri: str | None, needed: bool = True) -> Iterator[Connection]:
    """Open uri; with needed=False (a spec without networks or guests) contact nothing."""
    if not needed:
        yield Connection(default_uri(uri), NoLibvirt())
        return
    conn = Connection.open(uri)
    try:
        yield conn
    finally:
        conn.close()
