"""apply: run a Plan's actions in order against a live connection.

Apply consumes only a Plan. Each action makes the fewest libvirt write
calls that do its job; everything goes through Connection.write so the
calls are counted. Host-side actions marked `skipped` are reported, never
run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import libvirt
from lxml import etree

from kvmnet.apply.bridge.options import HostOptions
from kvmnet.backend.libvirt import Connection
from kvmnet.errors import LiveError, PlanError
from kvmnet.model.live import LiveState
from kvmnet.parse.domain import KVMNET_NS, managed_macs_xml
from kvmnet.plan import Action, Plan, Update

if TYPE_CHECKING:
    from kvmnet.backend.ovsdb import NbSessions

_CMD = {
    "add-last": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
    "delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
    "modify": libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
}
_SECTION = {
    "ip-dhcp-host": libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
    "dns-host": libvirt.VIR_NETWORK_SECTION_DNS_HOST,
    "ip-dhcp-range": libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE,
}


@dataclass
class Result:
    action: Action
    status: str              # done | skipped | failed
    seconds: float = 0.0
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return {**self.action.as_dict(), "status": self.status,
                "seconds": round(self.seconds, 3), "message": self.message}


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    writes: int = 0

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results)


Progress = Callable[[int, int, Action, Result | None], None]


def check_allowed(plan: Plan, allow_destroy: bool) -> None:
    blocked = [a for a in plan.actions if a.needs_allow_destroy and not allow_destroy]
    if blocked:
        names = "; ".join(a.summary for a in blocked)
        raise PlanError(f"refusing to remove networks with guests attached ({names}): "
                        "detach the guests first, or pass --allow-destroy")


def run(plan: Plan, conn: Connection, live: LiveState, allow_destroy: bool = False,
        progress: Progress | None = None, netns: str | None = None,
        host: HostOptions | None = None) -> Report:
    """Run every action; stop at the first failure (what is done stays done: a
    second apply finishes the job, since plan only lists what still differs)."""
    check_allowed(plan, allow_destroy)
    report = Report()
    start_writes = len(conn.writes)
    total = len(plan.actions)
    nb: NbSessions | None = None  # OVN: northbound connections, for ovn.* actions
    for i, action in enumerate(plan.actions, 1):
        if progress:
            progress(i, total, action, None)
        t0 = time.monotonic()
        if action.skipped:
            res = Result(action, "skipped", 0.0, action.skipped)
        else:
            if action.ovn is not None and nb is None:
                from kvmnet.backend.ovsdb import NbSessions

                nb = NbSessions()
            try:
                msg = _do(action, conn, live, netns, host, nb)
                res = Result(action, "done", time.monotonic() - t0, msg)
            except LiveError as e:
                res = Result(action, "failed", time.monotonic() - t0, str(e))
        report.results.append(res)
        if progress:
            progress(i, total, action, res)
        if res.status == "failed":
            break
    if nb is not None:
        nb.close()
    report.writes = len(conn.writes) - start_writes
    return report


def _net(conn: Connection, name: str) -> Any:
    return conn.read(f"network {name}", lambda: conn.raw.networkLookupByName(name))


def _do(a: Action, conn: Connection, live: LiveState, netns: str | None,
        host: HostOptions | None = None, nb: NbSessions | None = None) -> str:
    kind, _, name = a.target.partition("/")
    if a.ovn is not None:  # ovn.*: one northbound transaction, counted (OVN)
        if nb is None:
            raise LiveError(f"{a.kind} {a.target}: no OVN northbound session")
        return nb.apply(a.ovn, conn.write)
    if a.kind == "firewall.sync":  # kvmnet.backend.firewall: rules, state file, libvirt hook
        from kvmnet.backend.firewall import sync

        return sync(a.forwards, netns, (host or HostOptions()).root)
    if a.kind == "host.bridge":  # a transaction of its own: journal, watchdog, confirm
        from kvmnet.apply.bridge.transaction import apply_bridge

        return apply_bridge(a, netns, host or HostOptions())
    if a.kind == "network.create":
        net = conn.write(f"define network {name}", lambda: conn.raw.networkDefineXML(a.xml))
        _start(conn, net, name)
        if a.autostart:
            conn.write(f"autostart network {name}", lambda: net.setAutostart(1))
        return ""
    if a.kind in ("network.adopt", "network.redefine"):
        verb = "mark" if a.kind == "network.adopt" else "redefine"
        if not a.restart:
            conn.write(f"{verb} network {name}", lambda: conn.raw.networkDefineXML(a.xml))
            return ""
        # stop, define, start: defining while stopped makes the new config the
        # running one on every driver
        net = _net(conn, name)
        conn.write(f"stop network {name}", net.destroy)
        conn.write(f"{verb} network {name}", lambda: conn.raw.networkDefineXML(a.xml))
        _start(conn, net, name)
        return _reconnect(conn, live, name, netns)
    if a.kind == "network.update":
        net = _net(conn, name)
        for u in a.updates:
            _update(conn, net, name, u, a.live)
        return f"{len(a.updates)} live update(s)"
    if a.kind == "network.start":
        _start(conn, _net(conn, name), name)
        return ""
    if a.kind == "network.autostart":
        net = _net(conn, name)
        conn.write(f"autostart network {name}",
                   lambda: net.setAutostart(1 if a.autostart else 0))
        return ""
    if a.kind == "network.remove":
        try:  # (gone already: what the spec wants; another apply or a person did it)
            net = conn.raw.networkLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return "already gone"
            raise LiveError(f"network {name}: {e.get_error_message() or e}") from None
        if a.restart and conn.read(f"state of network {name}", net.isActive):
            conn.write(f"stop network {name}", net.destroy)
        conn.write(f"undefine network {name}", net.undefine)
        return ""
    if a.kind in ("nic.attach", "nic.update", "nic.detach"):
        return _nic(a, conn)
    raise LiveError(f"unknown action {a.kind}")  # pragma: no cover


def _start(conn: Connection, net: Any, name: str) -> None:
    """Start a defined network; when libvirt cannot (dnsmasq failed, a bridge or an
    address is taken), say in what state that leaves it."""
    try:
        conn.write(f"start network {name}", net.create)
    except LiveError as e:
        raise LiveError(f"{e} (network {name} is defined but not running: fix the cause "
                        "and apply again to start it)") from None


def _update(conn: Connection, net: Any, name: str, u: Update, live: bool) -> None:
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if live:
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    conn.write(f"networkUpdate {u.command} {u.section} on {name}",
               lambda: net.update(_CMD[u.command], _SECTION[u.section],
                                  u.parent_index, u.xml, flags))


def _reconnect(conn: Connection, live: LiveState, name: str, netns: str | None) -> str:
    """Put running guests' taps back into the network's new bridge (libvirt does not)."""
    if conn.is_test:
        return ""
    net = _net(conn, name)
    bridge = conn.read(f"bridge of {name}", net.bridgeName)
    mtu_el = etree.fromstring(conn.read(f"network {name}", net.XMLDesc).encode()).find("mtu")
    mtu = int(mtu_el.get("size", "0")) if mtu_el is not None else None
    from kvmnet.backend.host import set_master

    done = []
    for d in live.domains.values():
        for n in d.live_nics:
            if n.type == "network" and n.source == name and n.target:
                set_master(n.target, bridge, netns, mtu or None)
                done.append(f"{d.name}:{n.target}")
    return f"reconnected {', '.join(done)}" if done else ""


def _nic(a: Action, conn: Connection) -> str:
    dom = conn.read(f"domain {a.domain}", lambda: conn.raw.lookupByName(a.domain))
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if a.live:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    what = f"{a.kind.split('.')[1]} NIC {a.mac} of {a.domain}"
    call = {"nic.attach": dom.attachDeviceFlags, "nic.update": dom.updateDeviceFlags,
            "nic.detach": dom.detachDeviceFlags}[a.kind]
    note = ""
    if a.kind == "nic.attach":
        # Record the NIC as kvmnet's before it exists: a crash in between leaves a record
        # of a NIC that is not there (the next apply attaches it), never a NIC kvmnet
        # does not know it attached (it could not detach it ever again).
        _record(conn, dom, a)
    try:
        conn.write(what, lambda: call(a.xml, flags), raw_errors=True)
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise LiveError(f"{what}: libvirt says: {e.get_error_message() or e}") from None
        # A driver without device hotplug: edit the persistent definition instead.
        xml = edit_domain_nics(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), a.kind,
                               a.mac or "", a.xml)
        conn.write(f"{what} (redefine)", lambda: conn.raw.defineXML(xml))
        note = "this driver cannot hotplug NICs: changed the definition only"
    if a.kind != "nic.attach":  # (a detach is recorded once the NIC is gone)
        _record(conn, dom, a)
    return note


def _record(conn: Connection, dom: Any, a: Action) -> None:
    """Write the MACs of the NICs kvmnet attached into the domain's metadata."""
    if a.managed_macs is None:
        return
    xml = managed_macs_xml(set(a.managed_macs))
    conn.write(f"record kvmnet's NICs of {a.domain}",
               lambda: dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, "kvmnet",
                                       KVMNET_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG))


def edit_domain_nics(domain_xml: str, kind: str, mac: str, nic_xml: str) -> str:
    """Domain XML with one <interface> attached, replaced or removed (matched by MAC)."""
    root = etree.fromstring(domain_xml.encode())
    devices = root.find("devices")
    if devices is None:
        devices = etree.SubElement(root, "devices")
    cur = []
    for i in devices.iterfind("interface"):
        m = i.find("mac")
        if m is not None and m.get("address", "").lower() == mac:
            cur.append(i)
    new = etree.fromstring(nic_xml.encode())
    if kind == "nic.attach":
        devices.append(new)
    for old in cur:
        if kind == "nic.update":
            old.addprevious(new)
        devices.remove(old)
    return etree.tostring(root, encoding="unicode")
