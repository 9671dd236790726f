"""The seam between kvmnet and libvirt: what reading a plan and applying it need.

Two implementations: `kvmnet.backend.libvirt.Connection` (the real one, on a
libvirt connection) and `kvmnet.backend.fake.FakeBackend` (in memory, for
tests), as httpx has its real transport and MockTransport. `read.read_state`
turns the raw records into a LiveState; `apply` makes the write calls.

Rules every implementation keeps:
- every write call appends one line to `writes` (idempotence tests and the
  benchmarks assert "zero writes"), also when the call then fails;
- a refused call raises LiveError with the object's name and the reason;
- reads skip objects that vanish between listing and reading.

The host (netlink), the firewall (nft) and OVN's northbound database have
doors of their own (backend/host.py, backend/firewall.py, backend/ovsdb.py);
`write` counts their calls on the same list when apply runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

T = TypeVar("T")

NicOp = Literal["attach", "update", "detach"]
UpdateCommand = Literal["add-last", "delete", "modify"]
UpdateSection = Literal["ip-dhcp-host", "dns-host", "ip-dhcp-range", "dns-txt", "dns-srv"]


@dataclass(frozen=True)
class NetworkRecord:
    """One network as the backend holds it, before parsing."""

    name: str
    uuid: str
    xml: str                  # the persistent definition (or the only one: split_config)
    active: bool
    autostart: bool
    persistent: bool
    bridge: str | None = None  # the bridge it runs on (active networks)
    # False when the driver shows no persistent XML apart from the running one
    # (libvirt's test driver); see LiveNetwork.split_config
    split_config: bool = True


@dataclass(frozen=True)
class DomainRecord:
    """One domain: its definition, its running config and kvmnet's metadata element."""

    name: str
    running: bool
    xml: str                  # persistent definition (the running one if transient)
    live_xml: str | None = None    # running config, when running
    metadata: str | None = None    # kvmnet's <nics> element (kvmnet.parse.domain)


@dataclass(frozen=True)
class FilterRecord:
    """One nwfilter (guest firewalls): its name, UUID and XML (read only of those
    named kvmnet-*: of libvirt's own, plan needs only the names)."""

    name: str
    uuid: str
    xml: str


class Backend(Protocol):
    """What plan reads and apply writes through; see the module docstring."""

    uri: str
    writes: list[str]

    @property
    def is_test(self) -> bool:
        """True when nothing on the real host may change (test:///, the fake)."""
        ...

    def close(self) -> None: ...

    # -- reads ----------------------------------------------------------------
    def fetch_networks(self) -> list[NetworkRecord]: ...

    def fetch_domains(self) -> list[DomainRecord]: ...

    def fetch_nwfilters(self) -> list[FilterRecord] | None:
        """Every nwfilter; None when the driver has none (test:///)."""
        ...

    def lib_version(self) -> int | None:
        """The connected libvirt's version (major * 1000000 + minor * 1000 + micro, as
        getLibVersion); None when unknown."""
        ...

    def network_active(self, name: str) -> bool | None:
        """Is it running? None: there is no such network (any more)."""
        ...

    def network_bridge(self, name: str) -> tuple[str, int | None]:
        """The bridge an active network runs on, and its MTU (None: default)."""
        ...

    # -- writes ---------------------------------------------------------------
    def write(self, what: str, fn: Callable[[], T]) -> T:
        """Count one call of another door (OVN northbound) as a write, and run it."""
        ...

    def define_network(self, name: str, xml: str, verb: str = "define") -> None:
        """Define (or redefine: same name and UUID) a network; `verb` names the
        write ("define", "redefine", "mark")."""
        ...

    def start_network(self, name: str) -> None: ...

    def stop_network(self, name: str) -> None: ...

    def undefine_network(self, name: str) -> None: ...

    def set_network_autostart(self, name: str, on: bool) -> None: ...

    def update_network(self, name: str, command: UpdateCommand, section: UpdateSection,
                       parent_index: int, xml: str, live: bool) -> None:
        """One virNetworkUpdate call on the persistent config (and the running one
        when `live`)."""
        ...

    def change_nic(self, domain: str, op: NicOp, mac: str, xml: str, live: bool) -> str:
        """Attach, update or detach one <interface> (matched by MAC) in the domain's
        definition (and its running config when `live`). Returns a note for the
        report ('' when none)."""
        ...

    def set_managed_macs(self, domain: str, xml: str) -> None:
        """Replace kvmnet's metadata element of the domain's definition."""
        ...

    def nic_tap(self, domain: str, mac: str) -> str | None:
        """The tap of the running guest's NIC with this MAC (its live `<target dev>`);
        None when it has none."""
        ...

    def define_nwfilter(self, name: str, xml: str, verb: str = "define") -> None:
        """Define or redefine (same name and UUID) an nwfilter: libvirt re-instantiates
        it on every running guest that uses it."""
        ...

    def undefine_nwfilter(self, name: str) -> None: ...
