"""An in-memory Backend: network and domain XML, flags, and every write call.

Beside kvmnet.backend.libvirt.Connection as httpx's MockTransport is beside its
real transport: plan reads it through kvmnet.backend.read like a libvirt host,
apply writes to it, and tests assert on `writes` and on the state after, with no
libvirtd and no monkeypatching. It behaves like libvirt 9's QEMU driver where
kvmnet depends on it (kvmnet.backend.fake_xml): a define fills in UUID, bridge
and MAC and keeps the running config apart until a restart; it refuses what
libvirt refuses (a redefinition with another UUID, a bridge name in use, starting
a running network, a duplicate DHCP host, a NIC that is not there), so a plan
that would fail on libvirt fails here too. `refuse` makes any one write fail, to
test what apply does then. Nothing here touches the host (is_test is True).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from kvmnet.backend import fake_xml
from kvmnet.backend.base import (
    DomainRecord,
    FilterRecord,
    NetworkRecord,
    NicOp,
    UpdateCommand,
    UpdateSection,
)
from kvmnet.backend.fake_xml import FakeError
from kvmnet.errors import LiveError
from kvmnet.parse.domain import edit_domain_nics, parse_nics
from kvmnet.render.xmlutil import parse_xml

T = TypeVar("T")


@dataclass
class FakeNetwork:
    xml: str                      # the persistent definition
    running: str | None = None    # the running config; None: inactive
    autostart: bool = False
    persistent: bool = True

    @property
    def uuid(self) -> str:
        return fake_xml.network_uuid(self.xml) or ""


@dataclass
class FakeDomain:
    xml: str
    running: str | None = None    # the running config; None: shut off
    metadata: str | None = None   # kvmnet's <nics> element


@dataclass
class FakeBackend:
    uri: str = "fake:///"
    networks: dict[str, FakeNetwork] = field(default_factory=dict)
    domains: dict[str, FakeDomain] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)   # write -> libvirt's reason
    nwfilters: dict[str, str] | None = field(default_factory=dict)  # name -> XML; None: none
    version: int | None = None    # what lib_version() answers (None: unknown)
    # one write at a time, as libvirtd's driver lock has it (apply --parallel's threads)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False,
                                   compare=False)

    @property
    def is_test(self) -> bool:
        return True

    def close(self) -> None:
        pass

    # -- loading a state (tests) ----------------------------------------------------
    def load_network(self, xml: str, active: bool = True, autostart: bool = False,
                     persistent: bool = True) -> None:
        """Hold this network as it is (no write is counted, nothing is filled in)."""
        self.networks[fake_xml.network_name(xml)] = FakeNetwork(
            xml, xml if active else None, autostart, persistent)

    def load_domain(self, xml: str, running: bool = False, metadata: str | None = None,
                    live_xml: str | None = None) -> None:
        name = parse_xml(xml).findtext("name") or ""
        self.domains[name] = FakeDomain(xml, (live_xml or xml) if running else None, metadata)

    def snapshot(self) -> dict[str, object]:
        """Everything held, comparable: equal snapshots = nothing changed."""
        return {"networks": {n: vars(x).copy() for n, x in sorted(self.networks.items())},
                "domains": {n: vars(x).copy() for n, x in sorted(self.domains.items())}}

    # -- reads ----------------------------------------------------------------------
    def lib_version(self) -> int | None:
        return self.version

    def fetch_networks(self) -> list[NetworkRecord]:
        return [NetworkRecord(name, n.uuid, n.xml, n.running is not None, n.autostart,
                              n.persistent, fake_xml.network_bridge(n.running)
                              if n.running else None)
                for name, n in self.networks.items()]

    def fetch_domains(self) -> list[DomainRecord]:
        return [DomainRecord(name, d.running is not None, d.xml, d.running, d.metadata)
                for name, d in self.domains.items()]

    def fetch_nwfilters(self) -> list[FilterRecord] | None:
        if self.nwfilters is None:
            return None
        return [FilterRecord(n, parse_xml(x).findtext("uuid") or "", x)
                for n, x in self.nwfilters.items()]

    def network_active(self, name: str) -> bool | None:
        n = self.networks.get(name)
        return None if n is None else n.running is not None

    def network_bridge(self, name: str) -> tuple[str, int | None]:
        xml = self._net(name).running
        if xml is None:
            raise LiveError(f"bridge of {name}: network is not active")
        return fake_xml.network_bridge(xml) or "", fake_xml.network_mtu(xml)

    def _net(self, name: str) -> FakeNetwork:
        n = self.networks.get(name)
        if n is None:
            raise LiveError(f"network {name}: Network not found: no network with matching "
                            f"name '{name}'")
        return n

    def _dom(self, name: str) -> FakeDomain:
        d = self.domains.get(name)
        if d is None:
            raise LiveError(f"domain {name}: Domain not found: no domain with matching "
                            f"name '{name}'")
        return d

    # -- writes ---------------------------------------------------------------------
    def write(self, what: str, fn: Callable[[], T]) -> T:
        with self._lock:
            self.writes.append(what)
            if what in self.refuse:
                raise LiveError(f"{what}: libvirt says: {self.refuse[what]}")
            try:
                return fn()
            except FakeError as e:
                raise LiveError(f"{what}: libvirt says: {e}") from None

    def define_network(self, name: str, xml: str, verb: str = "define") -> None:
        self.write(f"{verb} network {name}", lambda: self._define(xml))

    def _define(self, xml: str) -> None:
        name, uuid = fake_xml.network_name(xml), fake_xml.network_uuid(xml)
        cur = self.networks.get(name)
        for other, n in self.networks.items():
            if uuid and n.uuid == uuid and other != name:
                raise FakeError(f"network '{other}' is already defined with uuid {uuid}")
        if cur is not None and uuid != cur.uuid:
            raise FakeError(f"network '{name}' already exists with uuid {cur.uuid}")
        others = {b for o, n in self.networks.items()
                  if o != name and (b := fake_xml.network_bridge(n.xml))}
        xml = fake_xml.fill_network(xml, others)
        bridge = fake_xml.network_bridge(xml)
        if bridge in others:
            raise FakeError(f"bridge name '{bridge}' already in use.")
        if cur is None:
            self.networks[name] = FakeNetwork(xml)
        else:  # the running config stays until the network restarts
            cur.xml, cur.persistent = xml, True

    def start_network(self, name: str) -> None:
        n = self._net(name)

        def start() -> None:
            if n.running is not None:
                raise FakeError("network is already active")
            n.running = n.xml
        self.write(f"start network {name}", start)

    def stop_network(self, name: str) -> None:
        n = self._net(name)

        def stop() -> None:
            if n.running is None:
                raise FakeError(f"network '{name}' is not active")
            n.running = None
            if not n.persistent:
                del self.networks[name]
        self.write(f"stop network {name}", stop)

    def undefine_network(self, name: str) -> None:
        n = self._net(name)

        def undefine() -> None:
            if n.running is None:
                del self.networks[name]
            else:  # a running network stays, transient, until it is stopped
                n.persistent, n.autostart = False, False
        self.write(f"undefine network {name}", undefine)

    def set_network_autostart(self, name: str, on: bool) -> None:
        n = self._net(name)

        def autostart() -> None:
            if not n.persistent:
                raise FakeError("cannot set autostart for transient network")
            n.autostart = on
        self.write(f"autostart network {name}", autostart)

    def update_network(self, name: str, command: UpdateCommand, section: UpdateSection,
                       parent_index: int, xml: str, live: bool) -> None:
        n = self._net(name)

        def update() -> None:
            if live and n.running is None:
                raise FakeError("network is not running")
            new = fake_xml.update_network(n.xml, command, section, parent_index, xml)
            running = (fake_xml.update_network(n.running, command, section, parent_index, xml)
                       if live and n.running is not None else n.running)
            n.xml, n.running = new, running
        self.write(f"networkUpdate {command} {section} on {name}", update)

    def change_nic(self, domain: str, op: NicOp, mac: str, xml: str, live: bool) -> str:
        d = self._dom(domain)

        def change() -> None:
            if live and d.running is None:
                raise FakeError("domain is not running")
            new = _edit_nics(d.xml, op, mac, xml)
            running = _edit_nics(d.running, op, mac, xml) if live and d.running else d.running
            d.xml, d.running = new, running
        self.write(f"{op} NIC {mac} of {domain}", change)
        return ""

    def set_managed_macs(self, domain: str, xml: str) -> None:
        d = self._dom(domain)
        self.write(f"record kvmnet's NICs of {domain}", lambda: setattr(d, "metadata", xml))

    def nic_tap(self, domain: str, mac: str) -> str | None:
        return None  # (no taps: the fake changes no host)


    def define_nwfilter(self, name: str, xml: str, verb: str = "define") -> None:
        self.write(f"{verb} nwfilter {name}", lambda: self._define_filter(name, xml))

    def _define_filter(self, name: str, xml: str) -> None:
        if self.nwfilters is None:
            raise FakeError("this function is not supported by the connection driver")
        old = self.nwfilters.get(name)
        if old is not None and (parse_xml(old).findtext("uuid")
                                != parse_xml(xml).findtext("uuid")):
            raise FakeError(f"filter '{name}' already exists with another uuid")
        self.nwfilters[name] = xml

    def undefine_nwfilter(self, name: str) -> None:
        def undefine() -> None:
            if not self.nwfilters or name not in self.nwfilters:
                raise FakeError(f"Network filter not found: no nwfilter named '{name}'")
            self.nwfilters.pop(name)
        self.write(f"undefine nwfilter {name}", undefine)


def _edit_nics(domain_xml: str, op: NicOp, mac: str, nic_xml: str) -> str:
    have = any(n.mac == mac for n in parse_nics(domain_xml))
    if op == "attach" and have:
        raise FakeError(f"a NIC with MAC {mac} already exists")
    if op != "attach" and not have:
        raise FakeError(f"no matching network device was found (MAC {mac})")
    return edit_domain_nics(domain_xml, op, mac, nic_xml)
