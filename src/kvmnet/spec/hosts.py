"""Many hypervisors in one spec: where each network and guest lives, the per-host
split, and the checks of the `hosts:` keys. Pure.

Placement rules (docs/CLUSTER.md):
- A network without `hosts:` lives on every host; with it, on those hosts only.
  Overlay networks live in OVN and reach every host; they take no `hosts:`.
- A guest with `hosts:` is pinned: kvmnet manages its NICs there (and warns when
  the domain is not defined there). A guest without `hosts:` lives wherever its
  domain is defined, among the hosts that have all its networks: it is in the
  split of each of them, so its DHCP reservations are made on each (a migrated
  guest keeps its address), and only a host without its domain stays quiet.
- The split pins every guest NIC's MAC to the one the whole spec gives it, so a
  generated MAC never depends on which guests a host's share holds.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kvmnet.errors import close_matches
from kvmnet.model.derive import nic_macs
from kvmnet.model.spec import Guest, Host, Network, Spec
from kvmnet.model.uri import is_local, spec_uri_problem

if TYPE_CHECKING:
    from kvmnet.spec.findings import Findings
    from kvmnet.spec.load import Path_

# DRIVER[+TRANSPORT]://[USER@][HOST][:PORT][/PATH][?PARAMS], as virsh -c takes it
_NETNS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\Z")


def network_hosts(spec: Spec, name: str) -> tuple[str, ...]:
    net = spec.networks[name]
    if net.hosts is None or net.mode == "overlay":
        return tuple(spec.hosts)
    return tuple(h for h in spec.hosts if h in net.hosts)


def guest_hosts(spec: Spec, name: str) -> tuple[str, ...]:
    """Pinned: its hosts. Floating: every host that has all the networks of its NICs."""
    g = spec.guests[name]
    if g.hosts is not None:
        return tuple(h for h in spec.hosts if h in g.hosts)
    nets = {n.network for n in g.interfaces if n.network in spec.networks}
    homes = [set(network_hosts(spec, n)) for n in sorted(nets)]
    return tuple(h for h in spec.hosts if all(h in s for s in homes))


def floating(spec: Spec) -> frozenset[str]:
    """Guests that live wherever their domain is defined (no `hosts:`)."""
    return frozenset(g for g, guest in spec.guests.items() if guest.hosts is None)


def _pinned_macs(spec: Spec) -> dict[str, Guest]:
    macs = nic_macs(spec)
    return {g: guest.model_copy(update={"hosts": None, "interfaces": [
        nic.model_copy(update={"mac": macs[(g, i)]}) for i, nic in enumerate(guest.interfaces)]})
        for g, guest in spec.guests.items()}


def _unplaced(net: Network) -> Network:
    return net if net.hosts is None else net.model_copy(update={"hosts": None})


def split(spec: Spec) -> dict[str, Spec]:
    """Host name -> the single-host spec kvmnet plans against that host's URI: its
    networks (overlay ones too, so guest NICs on them render; OVN itself is planned
    once, by ovn_share) and its guests, without `hosts:` keys: a share is a plain
    single-host spec. Empty when the spec has no `hosts:`."""
    guests = _pinned_macs(spec)
    net_homes = {n: set(network_hosts(spec, n)) for n in spec.networks}
    guest_homes = {g: set(guest_hosts(spec, g)) for g in spec.guests}
    out: dict[str, Spec] = {}
    for h in spec.hosts:
        out[h] = spec.model_copy(update={
            "hosts": {}, "ovn": None,
            "networks": {n: _unplaced(net) for n, net in spec.networks.items()
                         if h in net_homes[n]},
            "guests": {g: guests[g] for g in spec.guests if h in guest_homes[g]}})
    return out


def ovn_share(spec: Spec) -> Spec | None:
    """The part planned once against OVN northbound: the overlay networks and every
    guest (their NICs on overlay networks are the logical ports)."""
    if spec.ovn is None:
        return None
    return spec.model_copy(update={
        "hosts": {}, "host": Host(),
        "networks": {n: net for n, net in spec.networks.items() if net.mode == "overlay"},
        "guests": _pinned_macs(spec)})


def share_host(spec: Spec, a: str, b: str) -> bool:
    """Do networks a and b live on a common host? (Always, in a single-host spec.)"""
    if not spec.hosts:
        return True
    return bool(set(network_hosts(spec, a)) & set(network_hosts(spec, b)))


def share_refs(a: str, b: str) -> list[Path_]:
    """The spec paths share_host(spec, a, b) depends on (a finding's refs)."""
    return [("hosts",), *(("networks", n, k) for n in (a, b) for k in ("hosts", "mode"))]


# -- checks ------------------------------------------------------------------

def check_hosts(f: Findings, spec: Spec) -> None:
    """The `hosts:` section and every `hosts:` list that points into it."""
    if not spec.hosts:
        for section, items in (("networks", spec.networks), ("guests", spec.guests)):
            for name, item in items.items():
                if item.hosts is not None:
                    f.error((section, name, "hosts"), "hosts: names hypervisors of the "
                            "top-level hosts: section, which this spec has not: add hosts: "
                            "{NAME: {uri: qemu+ssh://root@NAME/system}}, or remove it",
                            key=True, refs=[("hosts",)])
        return
    _entries(f, spec)
    if spec.host != Host():
        f.error(("host",), "host bridges describe one machine and cannot go with "
                "hosts:; write a spec per hypervisor for its host bridges and apply it "
                "there (kvmnet apply FILE -c qemu:///system)", key=True)
    for name, net in spec.networks.items():
        if net.hosts is None:
            continue
        path: Path_ = ("networks", name, "hosts")
        if net.mode == "overlay":
            f.error(path, "an overlay network lives in OVN and reaches every host through "
                    "ovn-controller: remove hosts:", key=True, refs=[("networks", name, "mode")])
        else:
            _names(f, spec, path, net.hosts)
    for gname, guest in spec.guests.items():
        if guest.hosts is not None:
            _names(f, spec, ("guests", gname, "hosts"), guest.hosts)
        _guest_homes(f, spec, gname)


def _entries(f: Findings, spec: Spec) -> None:
    seen: dict[str, str] = {}
    for name, e in spec.hosts.items():
        path: Path_ = ("hosts", name)
        bad_uri = spec_uri_problem(e.uri)   # (an allow-list: issue 17, SECURITY.md)
        if bad_uri:
            f.error(path + ("uri",), bad_uri)
        elif e.uri in seen:
            f.error(path + ("uri",), f"{e.uri} is also the URI of host {seen[e.uri]}: each "
                    "hypervisor once (one spec entry per libvirtd)",
                    refs=[("hosts", seen[e.uri], "uri")])
        else:
            seen[e.uri] = name
        if e.netns is None:
            continue
        if not _NETNS_RE.match(e.netns):
            f.error(path + ("netns",), f"{e.netns!r} is not a network namespace name (as in "
                    "ip netns list)")
        elif not bad_uri and not is_local(e.uri):
            f.error(path + ("netns",), f"netns: applies to a libvirtd on this machine (a "
                    f"local URI such as qemu:///system); {e.uri} is reached over the network: "
                    "remove netns")


def _names(f: Findings, spec: Spec, path: Path_, names: list[str]) -> None:
    if not names:
        f.error(path, "an empty hosts: list puts it nowhere: name at least one host, or "
                "remove hosts: for every host", key=True)
    seen: set[str] = set()
    for i, h in enumerate(names):
        if h in seen:
            f.error(path + (i,), f"host {h} is listed twice: list it once")
        elif h not in spec.hosts:
            close = close_matches(h, list(spec.hosts), n=1)
            hint = (f"did you mean {close[0]!r}?" if close else
                    f"the hosts are {', '.join(spec.hosts)}")
            f.error(path + (i,), f"unknown host {h!r}: {hint}", refs=[("hosts", h)])
        seen.add(h)


def _guest_homes(f: Findings, spec: Spec, gname: str) -> None:
    """Each NIC's network must live on every host the guest may run on."""
    guest = spec.guests[gname]
    refs = [("hosts",), *(("networks", n.network, k) for n in guest.interfaces
                          if n.network is not None for k in ("hosts", "mode"))]
    if guest.hosts is None:
        if guest.interfaces and not guest_hosts(spec, gname):
            where = "; ".join(f"{n.network}: {', '.join(network_hosts(spec, n.network))}"
                              for n in guest.interfaces if n.network in spec.networks)
            f.error(("guests", gname), f"no host has all of {gname}'s networks ({where}): "
                    "put the networks on a common host, or pin the guest with hosts: [NAME]",
                    key=True, refs=refs)
        return
    pinned = [h for h in guest.hosts if h in spec.hosts]
    for i, nic in enumerate(guest.interfaces):
        if nic.network not in spec.networks:
            continue
        homes = network_hosts(spec, nic.network)
        missing = [h for h in pinned if h not in homes]
        if missing:
            f.error(("guests", gname, "interfaces", i, "network"), f"network {nic.network} "
                    f"lives on {', '.join(homes) or 'no host'}, not on {', '.join(missing)} "
                    f"where {gname} is pinned: add {', '.join(missing)} to networks."
                    f"{nic.network}.hosts, or pin {gname} elsewhere", refs=refs)
