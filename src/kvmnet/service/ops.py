"""The use cases behind the CLI, each one core call: load + read + plan, apply,
import, show. Returns typed results; never prints, never exits."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kvmnet.backend.base import Backend
from kvmnet.errors import Problem, SpecError
from kvmnet.model.live import HostState, LiveDomain, LiveNic, LiveState
from kvmnet.model.spec import Guest, GuestNic, Network, Ovn, Spec
from kvmnet.model.types import Addr
from kvmnet.model.uri import is_local
from kvmnet.model.vlan import VlanLive
from kvmnet.plan import Plan, host_needed, make_plan
from kvmnet.spec.check import check_file, errors
from kvmnet.spec.load import Positions
from kvmnet.spec.owner import default_owner


@dataclass(frozen=True)
class Planned:
    spec: Spec
    live: LiveState
    plan: Plan
    warnings: list[Problem]


def load_spec(path: Path) -> tuple[Spec, Positions, list[Problem]]:
    """The checked spec, with its owner (default_owner), and its warnings; SpecError with
    every type and semantic error."""
    spec, pos, problems = check_file(path)
    if errors(problems):
        raise SpecError(problems)
    if spec.owner is None:
        spec = spec.model_copy(update={"owner": default_owner(path)})
    return spec, pos, problems


def teardown(spec: Spec) -> Spec:
    """What `kvmnet destroy` plans: the spec's owner (and hosts) with no networks, guests,
    host bridges or OVN; plan then removes everything that owner holds."""
    return Spec(owner=spec.owner, hosts=spec.hosts)


def needs_libvirt(spec: Spec) -> bool:
    """A spec with only `host:` (bridges, bonds, VLANs) is applied without a libvirt
    connection. A spec with nothing in it (an owner only) needs one: it says "remove
    what this owner has", and that is in libvirt."""
    host = spec.host
    return bool(spec.networks or spec.guests) or not (host.bridges or host.bonds
                                                       or host.vlans)


def read_live(conn: Backend, netns: str | None = None, root: Path | None = None,
              host_if: Callable[[LiveState], bool] | None = None,
              firewall: bool = True, resolve: bool = False,
              vlans: Callable[[LiveState], bool] | None = None) -> LiveState:
    """`root`: where kvmnet's host files are (port forwards' state file and hook).
    `host_if`: read the host's links and routes only when it says so of what libvirt
    has (plan.host_needed: a no-op apply then skips netlink, its largest cost).
    `firewall`: False skips the nft read (plan of a spec without forwards, where
    kvmnet has none installed: backend/forward_files.has_forward_state).
    `resolve`: host.resolve_guests is on: ask systemd-resolved about the bridges too
    (the nsswitch.conf side is read on every local plan: kvmnet may have to undo it).
    `vlans`: read guests' VLANs (bridges, taps, the qemu hook) when it says so."""
    from kvmnet.backend.read import read_state

    reading = None
    local = not conn.is_test and is_local(conn.uri)
    if local and firewall:  # nft runs while libvirt is read
        from kvmnet.backend.firewall import start_read_firewall

        reading = start_read_firewall(netns, root or Path("/"))
    live = read_state(conn, HostState(readable=False))
    if local and (host_if is None or host_if(live)):
        live = replace(live, host=read_host_and_sockets(netns))
    if local and vlans is not None and vlans(live):
        version = conn.lib_version()
        # (None: no libvirt was asked, a host-only spec: kvmnet's qemu hook is libvirt's
        # side, left as it is, and no NIC of libvirt's can be seen)
        if version is not None:
            live = replace(live, vlans=read_live_vlans(version, netns, root))
    if local:
        from kvmnet.backend.names import read_names

        bridges = tuple(sorted({n.network.bridge for n in live.networks.values()
                                if n.network.bridge}))
        live = replace(live, names=read_names(root or Path("/"), bridges,
                                              resolved=resolve and _real_root(root)))
    return replace(live, firewall=reading() if reading else None)


def read_live_vlans(version: int, netns: str | None, root: Path | None) -> VlanLive:
    """Bridges' and taps' VLANs, whether libvirt (of `version`) sets them itself,
    kvmnet's qemu hook."""
    from kvmnet.backend.vlan_hook import hook_status
    from kvmnet.backend.vlans import LIBVIRT_NATIVE, read_vlans

    return read_vlans(netns, version >= LIBVIRT_NATIVE, hook_status(root or Path("/")))


def vlans_needed(spec: Spec, live: LiveState, root: Path | None = None) -> bool:
    """Does plan need the live VLANs? When a NIC of the spec has VLANs, or kvmnet set
    some it may have to take back (its records), or its qemu hook may have to go."""
    from kvmnet.backend.forward_files import VLAN_HOOK_FILE as HOOK_FILE

    return (any(nic.vlan is not None or nic.vlans or nic.portgroup
                for g in spec.guests.values() for nic in g.interfaces)
            or any(r.vlans is not None for d in live.domains.values() for r in d.records)
            or any(n.vlans is not None for d in live.domains.values() for n in d.nics)
            or os.path.lexists((root or Path("/")) / HOOK_FILE))


def _vlan_keys(d: LiveDomain, nic: LiveNic) -> dict[str, Any]:
    """A NIC's VLANs as the spec writes them: its `<vlan>`, or kvmnet's record (libvirt
    9, where kvmnet sets them)."""
    rec = d.record(nic.mac)
    v = nic.vlans or (rec.vlans if rec is not None else None)
    if v is None:
        return {}
    if not v.trunk:
        return {"vlan": v.untagged}
    return {"vlans": sorted(v.ids), "native": v.untagged}


def _real_root(root: Path | None) -> bool:
    """Is --root the host itself (not a tree of files for tests or an image)?"""
    return root is None or Path(root).resolve() == Path("/")


def read_host_and_sockets(netns: str | None = None) -> HostState:
    """The host's links and routes, and its socket table: what it listens on, and the
    SSH sessions open now (kvmnet.backend.sockets; not $SSH_CONNECTION, which sudo
    drops)."""
    from kvmnet.backend.host import read_host
    from kvmnet.backend.sockets import read_sockets

    host = read_host(netns)
    listening, sessions = read_sockets(netns, {ln.index: ln.name for ln in host.links.values()})
    return replace(host, listening=listening, ssh_sessions=sessions)


def _forwards_needed(spec: Spec, root: Path | None) -> bool:
    """Does plan need the firewall's live state? When the spec has port forwards, or
    kvmnet may have some installed (to remove them)."""
    if spec.has_forwards():
        return True
    from kvmnet.backend.forward_files import has_forward_state

    return has_forward_state(root or Path("/"))


def plan_file(path: Path, conn: Backend, adopt: frozenset[str] = frozenset(),
              netns: str | None = None, scope: tuple[str, ...] = (),
              root: Path | None = None) -> Planned:
    spec, pos, warnings = load_spec(path)
    return plan_spec(spec, pos, str(path), conn, adopt, netns, warnings, scope, root)


def plan_spec(spec: Spec, pos: Positions, file: str, conn: Backend,
              adopt: frozenset[str] = frozenset(), netns: str | None = None,
              warnings: list[Problem] | None = None, scope: tuple[str, ...] = (),
              root: Path | None = None) -> Planned:
    if spec.hosts:  # one host's share of it, from kvmnet.service.multihost, has none
        from kvmnet.errors import PlanError

        raise PlanError(f"{file} names several hosts (hosts:): plan and apply it with "
                        "kvmnet plan/apply FILE, which reach each host at its own URI")
    live = read_live(conn, netns, root, host_if=lambda lv: host_needed(spec, lv),
                     firewall=_forwards_needed(spec, root), resolve=spec.host.resolve_guests,
                     vlans=lambda lv: vlans_needed(spec, lv, root))
    if spec.ovn is not None:  # OVN: overlay networks are rows in OVN northbound
        live = with_nb(live, spec.ovn)
    plan = make_plan(spec, live, adopt, scope)
    # a finding about a whole network or guest points at its key, else at the value
    found = [Problem(pos.file_of(f.path, file), *pos.find(f.path, key=len(f.path) <= 2),
                     f"{'.'.join(map(str, f.path))}: {f.message}", f.severity)
             for f in plan.findings]
    errs = [p for p in found if p.severity == "error"]
    if errs:
        raise SpecError(errs + [p for p in found if p.severity == "warning"])
    return Planned(spec, live, plan, list(warnings or []) + found)


# -- import -----------------------------------------------------------------

def with_nb(live: LiveState, ovn: Ovn) -> LiveState:
    """`live` plus the OVN northbound rows (OVN)."""
    from kvmnet.backend.ovsdb import read_nb

    return replace(live, ovn=read_nb(ovn))


def import_spec(live: LiveState, names: list[str] | None = None,
                ovn: Ovn | None = None) -> tuple[Spec, list[str]]:
    """A spec of what is live; plan of it against the same host is empty. With `ovn`
    (and live.ovn read), kvmnet's overlay networks and their guest NICs too."""
    notes: list[str] = []
    nets = _import_networks(live, names, notes)
    guests = _import_guests(live, nets, names, notes)
    spec = Spec(networks=nets, guests=guests, owner=_import_owner(live, nets, notes))
    if live.nwfilters:  # guest firewalls: kvmnet's nwfilters
        spec = _import_firewalls(spec, live)
    if live.firewall is not None:  # the port forwards kvmnet installed (kvmnet.plan.forwards)
        from kvmnet.plan.forwards import installed_forwards, with_forwards

        spec = with_forwards(spec, installed_forwards(live.firewall))
    if ovn is not None and live.ovn is not None:  # OVN
        from kvmnet.parse.overlay import import_overlay, merge_overlay

        overlay, more = import_overlay(live.ovn, ovn)
        spec, notes = merge_overlay(spec, overlay), notes + more
    return spec, notes


def _import_firewalls(spec: Spec, live: LiveState) -> Spec:
    """kvmnet's set filters as `firewalls:` (peers as addresses) and each imported NIC's
    sets and anti-spoofing, from the filter its `<filterref>` names."""
    from kvmnet.model.firewall import SET_PREFIX
    from kvmnet.parse.nwfilter import import_set, nic_sets

    mine = {f.name: f.xml for f in (live.nwfilters or {}).values() if f.owned}
    sets = {n.removeprefix(SET_PREFIX): import_set(x) for n, x in sorted(mine.items())
            if n.startswith(SET_PREFIX)}
    refs = {n.mac: n.filterref for d in live.domains.values() for n in d.nics}
    guests = {}
    for g, guest in spec.guests.items():
        nics = []
        for nic in guest.interfaces:
            used, spoof = nic_sets(refs.get(nic.mac or ""), mine)
            upd: dict[str, Any] = {"firewalls": used} if used else {}
            nics.append(nic.model_copy(update={**upd, **({"antispoof": True} if spoof
                                                         else {})}))
        guests[g] = guest.model_copy(update={"interfaces": nics})
    return spec.model_copy(update={"firewalls": sets, "guests": guests})


def _import_owner(live: LiveState, nets: dict[str, Network], notes: list[str]) -> str | None:
    """The owner of the imported networks kvmnet manages, when they have one: plan of the
    imported spec then changes nothing. Several owners: none, and a note."""
    owners = sorted({ln.owner for n in nets if (ln := live.networks[n]).managed and ln.owner})
    if len(owners) > 1:
        notes.append(f"the imported networks have several owners ({', '.join(owners)}): "
                     "import each owner's networks by name (kvmnet import NETWORK...), or "
                     "adopt them into one owner")
    return owners[0] if len(owners) == 1 else None


def _import_networks(live: LiveState, names: list[str] | None,
                     notes: list[str]) -> dict[str, Network]:
    """The live networks asked for (all by default); unreadable ones are an error when
    named, else left out with a note."""
    from kvmnet.errors import LiveError

    wanted = names or sorted(live.networks)
    missing = [n for n in wanted if n not in live.networks]
    if missing:
        raise LiveError(f"no such network on {live.uri}: {', '.join(missing)} (live networks: "
                        f"{', '.join(sorted(live.networks)) or 'none'})")
    unreadable = [n for n in wanted if live.networks[n].problem]
    if unreadable and names:
        raise LiveError("; ".join(f"network {n} cannot be imported: {live.networks[n].problem}"
                                  for n in unreadable))
    for n in unreadable:
        notes.append(f"network {n} left out: kvmnet cannot read it ({live.networks[n].problem})")
    nets: dict[str, Network] = {}
    for n in (n for n in wanted if n not in unreadable):
        ln = live.networks[n]
        upd: dict[str, Any] = {"autostart": ln.autostart}
        if not ln.managed:
            upd["adopt"] = True
            notes.append(f"network {n} is not managed by kvmnet yet: imported with adopt: true")
        if ln.unmodelled:
            notes.append(f"network {n}: kept verbatim (xml_extra): {', '.join(ln.unmodelled)}")
        if ln.network.mode in ("nat", "route") and not ln.network.all_ips():
            notes.append(f"network {n} is mode {ln.network.mode} with no address, which "
                         "validate refuses (it NATs or routes nothing): give it an ipv4: "
                         "address, or write mode: isolated")
        nets[n] = ln.network.model_copy(update=upd)
    return nets


def _import_guests(live: LiveState, nets: dict[str, Network], names: list[str] | None,
                   notes: list[str]) -> dict[str, Guest]:
    """Guests' NICs on the imported networks (and, importing everything, on bridges); a
    reservation that names the guest becomes the NIC's ipv4 (and leaves the network's
    hosts, so nets is updated in place)."""
    guests: dict[str, Guest] = {}
    for dname, d in sorted(live.domains.items()):
        nics: list[GuestNic] = []
        for nic in d.nics:
            if nic.type == "network" and nic.source in nets:
                ipv4 = _reserved_for(nets[nic.source], nic.mac, dname)
                if ipv4 is not None:
                    nets[nic.source] = _drop_host(nets[nic.source], nic.mac)
                nics.append(GuestNic(network=nic.source, mac=nic.mac, model=nic.model,
                                     ipv4=ipv4, portgroup=nic.portgroup, mtu=nic.mtu,
                                     **_vlan_keys(d, nic)))
            elif nic.type == "bridge" and nic.source and not names:
                nics.append(GuestNic(bridge=nic.source, mac=nic.mac, model=nic.model,
                                     mtu=nic.mtu, **_vlan_keys(d, nic)))
            elif not names:
                notes.append(f"guest {dname}: NIC {nic.mac} of type {nic.type} is not "
                             "modelled by kvmnet: left out")
        if nics:
            guests[dname] = Guest(interfaces=nics)
    return guests


def _reserved_for(net: Network, mac: str, guest: str) -> Addr | None:
    """The address the network reserves for this guest's NIC (MAC and name), or None."""
    ip: Addr | None = None
    for ipc in net.all_ips():
        for h in ipc.hosts:
            if h.mac == mac and h.name == guest:
                ip = h.ip
    return ip


def _drop_host(net: Network, mac: str) -> Network:
    upd: dict[str, Any] = {}
    for key in ("ipv4", "ipv6"):
        c = getattr(net, key)
        if c is not None:
            upd[key] = c.model_copy(update={"hosts": [h for h in c.hosts if h.mac != mac]})
    return net.model_copy(update=upd)
