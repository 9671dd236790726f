"""Port forwards' values, shared by every layer: the resolved forward (`Fwd`), the
names of kvmnet's nftables/iptables objects, and what was read of the live firewall
(`RulesetFacts`, `Anchor`, `FirewallLive`). Frozen, no I/O.

Where they come from: kvmnet.render.firewall resolves the spec's forwards to `Fwd`s and
builds their rules; kvmnet.parse.firewall turns `nft -j list ruleset` into
`RulesetFacts` and reads the state file; kvmnet.backend.firewall fills `FirewallLive`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvmnet.model.types import parse_ip, parse_name, parse_net

TABLE = "kvmnet"                    # table inet kvmnet
TABLE_FAMILY = "inet"
IPT_CHAIN = "KVMNET_FWD"            # iptables backend: table filter
NFT_CHAIN = "kvmnet_forwards"       # nftables backend: in table ip|ip6 libvirt_network
LIBVIRT_TABLE = "libvirt_network"
# (name, type, hook, priority) of the table's base chains
BASE_CHAINS: tuple[tuple[str, str, str, int], ...] = (
    ("prerouting", "nat", "prerouting", -100),
    ("output", "nat", "output", -100),
    ("postrouting", "nat", "postrouting", 100),
)
IPValue = (ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network
           | ipaddress.IPv6Network)
# family -> (nft's name of its tables, parts prefix of the iptables / nftables accept)
FAMILIES = {4: ("ip", "ipt4", "nft4"), 6: ("ip6", "ipt6", "nft6")}
STATE_VERSION = 1                   # the state file's format kvmnet writes
READABLE_VERSIONS = (1,)            # and those it reads


@dataclass(frozen=True)
class Fwd:
    """One resolved port forward: host_ports on the host -> target:guest_ports.

    Checked when made (ValueError): every rule kvmnet writes, nft JSON and
    iptables-restore text alike, is built from these fields, and the libvirt hook makes
    them from a file on disk. So a name is a name, an address or a block is in its
    canonical form and of the target's family, a port is a port, and the guest's ports
    are one port or as many as the host's (the DNAT map pairs them)."""

    network: str
    proto: str                         # tcp | udp
    host_ports: tuple[int, int]
    target: str                        # the guest's address
    guest_ports: tuple[int, int]
    subnet: str                        # the network's block holding target (hairpin)
    listen: str | None = None
    sources: tuple[str, ...] = ()
    guest: str | None = None

    def __post_init__(self) -> None:
        parse_name(self.network)
        if self.guest is not None:
            parse_name(self.guest)
        if self.proto not in ("tcp", "udp"):
            raise ValueError(f"protocol {self.proto!r} is not tcp or udp")
        host, guest = _port_range(self.host_ports), _port_range(self.guest_ports)
        if guest > 1 and guest != host:
            raise ValueError(f"guest ports {ports(self.guest_ports)} are neither one port nor "
                             f"as many as host ports {ports(self.host_ports)}")
        family = _address(self.target).version
        for a in (self.listen,) if self.listen is not None else ():
            _same_family(_address(a), family, self.target)
        net = _block(self.subnet)
        _same_family(net, family, self.target)
        if ipaddress.ip_address(self.target) not in net:
            raise ValueError(f"address {self.target} is outside subnet {self.subnet}")
        if not isinstance(self.sources, tuple):
            raise ValueError(f"sources {self.sources!r} are not a tuple")
        for s in self.sources:
            _same_family(_block(s), family, self.target)

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.target).version


def _port_range(p: object) -> int:
    """How many ports `p` (first, last) spans; ValueError unless 1 <= first <= last <= 65535."""
    if (not isinstance(p, tuple) or len(p) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in p)
            or not 1 <= p[0] <= p[1] <= 65535):
        raise ValueError(f"ports {p!r} are not (first, last) with 1 <= first <= last <= 65535")
    return int(p[1]) - int(p[0]) + 1


def _address(a: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(a, str):
        raise ValueError(f"address {a!r} is not a string")
    ip = parse_ip(a)   # (refuses a scope id: fe80::1%...)
    if str(ip) != a:
        raise ValueError(f"address {a!r} is not written as {str(ip)!r}")
    return ip


def _block(n: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(n, str):
        raise ValueError(f"address block {n!r} is not a string")
    net = parse_net(n)   # (refuses a scope id and host bits)
    if str(net) != n:
        raise ValueError(f"address block {n!r} is not written as {str(net)!r}")
    return net


def _same_family(x: IPValue, family: int, target: str) -> None:
    if x.version != family:
        raise ValueError(f"{x} is IPv{x.version} but the guest address {target} is "
                         f"IPv{family}")


def ports(p: tuple[int, int], sep: str = "-") -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}{sep}{p[1]}"


def describe(f: Fwd) -> str:
    """'default tcp 2222 -> 192.168.122.10:22 (guest web1)', as plan and show print it."""
    where = f"[{f.target}]" if f.family == 6 else f.target
    text = f"{f.network} {f.proto} {ports(f.host_ports)} -> {where}:{ports(f.guest_ports)}"
    if f.guest:
        text += f" (guest {f.guest})"
    if f.listen:
        text += f" on {f.listen}"
    if f.sources:
        text += f" from {', '.join(f.sources)}"
    return text


def host_end(f: Fwd) -> str:
    """'NET PROTO/PORTS': rules' comments about the host end of a forward."""
    return f"{f.network} {f.proto}/{ports(f.host_ports)}"


def guest_end(f: Fwd) -> str:
    """'NET to ADDR PROTO/PORTS': rules' comments about the guest end, which forwards to
    the same guest port share."""
    return f"{f.network} to {f.target} {f.proto}/{ports(f.guest_ports)}"


@dataclass(frozen=True)
class Anchor:
    """kvmnet's chain in a table libvirt owns, and the jumps to it from libvirt's base
    chain (`first`: a jump of kvmnet's comes before every jump of libvirt's)."""

    chain_exists: bool = False
    jumps: tuple[int, ...] = ()
    first: bool = False

    @property
    def ok(self) -> bool:
        return self.first and len(self.jumps) == 1


@dataclass(frozen=True)
class RulesetFacts:
    """kvmnet's part of one `nft -j list ruleset` (kvmnet.parse.firewall)."""

    backends: tuple[str, ...] = ()     # libvirt's: "iptables" (LIBVIRT_* chains), "nftables"
    nft_families: frozenset[int] = frozenset()   # 4 / 6: table ip / ip6 libvirt_network is there
    table: bool = False                # table inet kvmnet exists
    parts: frozenset[str] = frozenset()
    # ("iptables"|"nftables", 4|6) -> kvmnet's chain there
    anchors: Mapping[tuple[str, int], Anchor] = field(default_factory=dict)


@dataclass(frozen=True)
class FirewallLive:
    """What kvmnet.backend.firewall read: the ruleset's facts and kvmnet's two files."""

    facts: RulesetFacts = field(default_factory=RulesetFacts)
    state_text: str | None = None      # the state file; None: there is none
    hook: str | None = None            # "ok", "stale" (not kvmnet's current hook), None
    error: str | None = None           # the firewall could not be read: why
    legacy: bool = False               # iptables is iptables-legacy (unsupported)
    state_path: str | None = None      # where the state file is (for messages)


# -- the state file the libvirt hook reads ----------------------------------------------

class StateError(ValueError):
    """The state file is not one this kvmnet can read: says why."""


@dataclass(frozen=True)
class ForwardsState:
    """ROOT/var/lib/kvmnet/forwards.json: the forwards kvmnet installed, the libvirt
    hook's only input and, with --scope, what plan keeps of other specs' forwards.

    Its one codec is `dumps` / `loads`. The file says its format, {"kvmnet": N, ...};
    this kvmnet writes STATE_VERSION and reads READABLE_VERSIONS. Format 1 (every
    kvmnet so far):

        {"kvmnet": 1, "forwards": [{"network": NAME, "proto": "tcp"|"udp",
          "host_ports": [FIRST, LAST], "target": IP, "guest_ports": [FIRST, LAST],
          "subnet": BLOCK, "listen": IP|null, "sources": [BLOCK...], "guest": NAME|null}]}

    listen, sources and guest may be left out. Anything else (another format, an
    unknown field, a value of the wrong type or one Fwd refuses) is a StateError:
    the hook logs it and installs nothing, plan stops and says why.
    """

    forwards: tuple[Fwd, ...] = ()

    def dumps(self) -> str:
        data = {"kvmnet": STATE_VERSION, "forwards": [_fwd_json(f) for f in self.forwards]}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def loads(cls, text: str) -> ForwardsState:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise StateError(f"not a kvmnet forwards file: no JSON ({e})") from None
        if not isinstance(data, dict) or "kvmnet" not in data:
            raise StateError("not a kvmnet forwards file: no {\"kvmnet\": FORMAT, ...} object")
        version = data["kvmnet"]
        if type(version) is not int or version not in READABLE_VERSIONS:
            newer = (isinstance(version, int) and not isinstance(version, bool)
                     and version > STATE_VERSION)
            raise StateError(
                f"kvmnet forwards file format {version!r} "
                + ("is newer than this kvmnet (upgrade kvmnet)" if newer else "is unknown")
                + f"; this kvmnet reads format {', '.join(map(str, READABLE_VERSIONS))}")
        if set(data) != {"kvmnet", "forwards"} or not isinstance(data["forwards"], list):
            raise StateError('not a kvmnet forwards file: want exactly {"kvmnet": '
                             f'{version}, "forwards": [...]}}, found keys {sorted(data)}')
        return cls(tuple(_fwd_from_json(d, i) for i, d in enumerate(data["forwards"], 1)))


def state_json(fwds: Sequence[Fwd]) -> str:
    """The state file's text for `fwds` (ForwardsState.dumps)."""
    return ForwardsState(tuple(fwds)).dumps()


def parse_state(text: str) -> tuple[Fwd, ...]:
    """The forwards of a state file's text (ForwardsState.loads); StateError says why not."""
    return ForwardsState.loads(text).forwards


def _fwd_json(f: Fwd) -> dict[str, Any]:
    return {"network": f.network, "proto": f.proto, "host_ports": list(f.host_ports),
            "target": f.target, "guest_ports": list(f.guest_ports), "subnet": f.subnet,
            "listen": f.listen, "sources": list(f.sources), "guest": f.guest}


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return v


def _text_or_none(v: Any) -> str | None:
    return None if v is None else _text(v)


def _pair(v: Any) -> tuple[int, int]:
    if not isinstance(v, list) or len(v) != 2:
        raise ValueError(f"{v!r} is not [first, last]")
    return v[0], v[1]   # Fwd checks they are port numbers


def _texts(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ValueError(f"{v!r} is not a list")
    return tuple(_text(x) for x in v)


# format 1's fields: JSON -> Fwd's type (Fwd checks the values), required or not
_FIELDS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "network": (_text, True), "proto": (_text, True), "host_ports": (_pair, True),
    "target": (_text, True), "guest_ports": (_pair, True), "subnet": (_text, True),
    "listen": (_text_or_none, False), "sources": (_texts, False),
    "guest": (_text_or_none, False),
}


def _fwd_from_json(d: Any, i: int) -> Fwd:
    where = f"not a kvmnet forwards file: forward {i}"
    if not isinstance(d, dict):
        raise StateError(f"{where}: {d!r} is not an object")
    unknown = sorted(set(d) - set(_FIELDS))
    missing = [k for k, (_, required) in _FIELDS.items() if required and k not in d]
    if unknown or missing:
        raise StateError(f"{where}: " + "; ".join(
            ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing field(s) {', '.join(missing)}"] if missing else [])))
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        try:
            kwargs[key] = _FIELDS[key][0](value)
        except ValueError as e:
            raise StateError(f"{where}: {key}: {e}") from None
    try:
        return Fwd(**kwargs)
    except ValueError as e:
        raise StateError(f"{where} ({kwargs.get('network')}): {e}") from None
