"""read: the live state behind a Backend (and the host), into LiveState.

The backend fetches each object raw (its XML and flags: kvmnet.backend.base);
the pure parsers here and in kvmnet.parse turn the records into the model.
"""

from __future__ import annotations

from typing import cast

from kvmnet.backend.base import Backend, DomainRecord, NetworkRecord
from kvmnet.errors import LiveError
from kvmnet.model.live import HostState, LiveDomain, LiveFilter, LiveNetwork, LiveState
from kvmnet.parse.domain import parse_managed_macs, parse_nic_records, parse_nics
from kvmnet.parse.network import parse_network
from kvmnet.render.network import MARK, NetworkXMLError


def read_networks(backend: Backend) -> dict[str, LiveNetwork]:
    """Every network, by name. The backend fetches all XML first, then it is parsed:
    libvirtd answers calls that come back to back faster than calls with ~0.1 ms of
    parsing between them."""
    out: dict[str, LiveNetwork] = {}
    for r in backend.fetch_networks():
        ln = network_from_record(r)
        out[ln.name] = ln
    return out


def network_from_record(r: NetworkRecord) -> LiveNetwork:
    try:
        parsed = parse_network(r.xml)
    except NetworkXMLError as e:
        return _unreadable(r, str(e))
    return LiveNetwork(
        name=parsed.name, network=parsed.network, managed=parsed.managed, owner=parsed.owner,
        active=r.active,
        autostart=r.autostart, persistent=r.persistent, uuid=r.uuid,
        bridge=r.bridge or parsed.network.bridge, xml=r.xml,
        unmodelled=tuple(parsed.unmodelled), split_config=r.split_config,
        record=parsed.record)


_MACVTAP = {"private", "vepa", "passthrough", "hostdev"}


def _unreadable(r: NetworkRecord, problem: str) -> LiveNetwork:
    """A network libvirt holds but kvmnet's model cannot (a value outside what a spec may
    say: a domain with a space, an MTU above 65535, a bridge name with ':'). Not
    kvmnet's: kept as its name, mode and bridge, so it never blocks a plan of other
    networks and is never changed. With kvmnet's mark it is an error: kvmnet wrote it,
    so someone changed it by hand, and plan must not guess."""
    from kvmnet.model.spec import MODES, Mode, Network
    from kvmnet.model.types import parse_ifname
    from kvmnet.render.xmlutil import parse_xml

    name = r.name
    root = parse_xml(r.xml)
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
    return LiveNetwork(name=name, network=net, managed=False, active=r.active,
                       autostart=r.autostart, persistent=r.persistent, uuid=r.uuid,
                       bridge=r.bridge or defined, xml=r.xml, problem=problem)


def read_domains(backend: Backend) -> dict[str, LiveDomain]:
    """Every domain's NICs (persistent and running config) and kvmnet's record of the NICs
    it attached."""
    return {r.name: domain_from_record(r) for r in backend.fetch_domains()}


def domain_from_record(r: DomainRecord) -> LiveDomain:
    live_nics = parse_nics(r.live_xml) if r.running and r.live_xml else ()
    return LiveDomain(name=r.name, running=r.running, nics=parse_nics(r.xml),
                      live_nics=live_nics, managed_macs=parse_managed_macs(r.metadata),
                      records=parse_nic_records(r.metadata))


def read_nwfilters(backend: Backend) -> dict[str, LiveFilter] | None:
    """Every nwfilter and whether it is kvmnet's; None when the driver has none."""
    from kvmnet.model.firewall import owned

    records = backend.fetch_nwfilters()
    if records is None:
        return None
    return {r.name: LiveFilter(r.name, r.uuid, r.xml, owned(r.name, r.uuid)) for r in records}


def read_state(backend: Backend, host: HostState | None = None) -> LiveState:
    return LiveState(uri=backend.uri, networks=read_networks(backend),
                     domains=read_domains(backend), host=host or HostState(readable=False),
                     is_test=backend.is_test,
                     nwfilters=read_nwfilters(backend), libvirt_version=backend.lib_version())
