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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

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
# family -> (nft's name of its tables, parts prefix of the iptables / nftables accept)
FAMILIES = {4: ("ip", "ipt4", "nft4"), 6: ("ip6", "ipt6", "nft6")}
STATE_VERSION = 1


@dataclass(frozen=True)
class Fwd:
    """One resolved port forward: host_ports on the host -> target:guest_ports."""

    network: str
    proto: str                         # tcp | udp
    host_ports: tuple[int, int]
    target: str                        # the guest's address
    guest_ports: tuple[int, int]
    subnet: str                        # the network's block holding target (hairpin)
    listen: str | None = None
    sources: tuple[str, ...] = ()
    guest: str | None = None

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.target).version


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


# -- the state file the libvirt hook reads ----------------------------------------------

def state_json(fwds: Sequence[Fwd]) -> str:
    """/var/lib/kvmnet/forwards.json: what kvmnet installed; the hook's only input."""
    return json.dumps({"kvmnet": STATE_VERSION, "forwards": [_fwd_json(f) for f in fwds]},
                      indent=2) + "\n"


def parse_state(text: str) -> tuple[Fwd, ...]:
    """The forwards of a state file; ValueError when it is not one kvmnet wrote."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("kvmnet") != STATE_VERSION:
            raise ValueError(f"not a kvmnet forwards file (version {STATE_VERSION})")
        return tuple(_checked(_fwd_from_json(d)) for d in data["forwards"])
    except (KeyError, TypeError, IndexError, json.JSONDecodeError) as e:
        raise ValueError(f"not a kvmnet forwards file: {e}") from None


def _checked(f: Fwd) -> Fwd:
    """The hook builds nft and iptables text from this file: every value must be what
    the spec allows (a name, an address, a port), never text that could end a rule."""
    from kvmnet.model.types import parse_ip, parse_name, parse_net

    parse_name(f.network)
    if f.guest is not None:
        parse_name(f.guest)
    if f.proto not in ("tcp", "udp"):
        raise ValueError(f"not a kvmnet forwards file: protocol {f.proto!r}")
    for p in (*f.host_ports, *f.guest_ports):
        if not 1 <= p <= 65535:
            raise ValueError(f"not a kvmnet forwards file: port {p}")
    for a in (f.target, *([f.listen] if f.listen else [])):
        if str(parse_ip(a)) != a:   # (parse_ip refuses a scope id: fe80::1%...)
            raise ValueError(f"not a kvmnet forwards file: address {a!r}")
    for n in (f.subnet, *f.sources):
        if str(parse_net(n)) != n:
            raise ValueError(f"not a kvmnet forwards file: subnet {n!r}")
    return f


def _fwd_json(f: Fwd) -> dict[str, Any]:
    d = asdict(f)
    d["host_ports"], d["guest_ports"] = list(f.host_ports), list(f.guest_ports)
    d["sources"] = list(f.sources)
    return d


def _fwd_from_json(d: dict[str, Any]) -> Fwd:
    hp, gp = d["host_ports"], d["guest_ports"]
    return Fwd(network=str(d["network"]), proto=str(d["proto"]),
               host_ports=(int(hp[0]), int(hp[1])), target=str(d["target"]),
               guest_ports=(int(gp[0]), int(gp[1])), subnet=str(d["subnet"]),
               listen=d.get("listen"), sources=tuple(d.get("sources") or ()),
               guest=d.get("guest"))
