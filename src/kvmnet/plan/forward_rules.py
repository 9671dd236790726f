"""Port forwards: what is installed vs what should be. Pure (live/firewall.py reads).

The host's firewall is read as JSON (`nft -j list ruleset`) and boiled down to a set
of *parts*, strings that each name one thing a forward needs:

    chain prerouting nat prerouting -100    a base chain of table inet kvmnet
    rule prerouting kvmnet:HASH NET tcp/80  a rule of table inet kvmnet (by its comment)
    ipt4 10.0.0.5 tcp 80-80                 an accept of KVMNET_FWD (iptables backend),
                                            known by what it matches: iptables-nft keeps
                                            -m comment opaque to nft -j
    ipt4 chain / ipt4 jump                  KVMNET_FWD exists; FORWARD jumps to it before
                                            libvirt's chains
    nft4 kvmnet:HASH NET tcp/80             an accept of kvmnet_forwards (nftables backend)
    nft4 chain / nft4 jump                  kvmnet_forwards exists; libvirt_network's forward
                                            chain jumps there first
    table                                   table inet kvmnet exists
    state SHA256 / hook                     the state file (its content) and the hook

The same strings are computed from the wanted forwards (`wanted_parts`), so "is it
installed" is a subset test and "what changes" a set difference. What the plan
ignores: counters and handles; the order of kvmnet's rules (they never overlap: check
refuses clashing host ports); rules outside kvmnet's own table and chains.

Which forwards are wanted: the spec's, plus, when --scope is given, those of the state
file (what kvmnet installed before) whose network is outside the scope, so specs that
share a host do not remove each other's forwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvmnet.model.spec import Spec
from kvmnet.render.firewall import (
    BASE_CHAINS,
    IPT_CHAIN,
    LIBVIRT_TABLE,
    NFT_CHAIN,
    TABLE,
    TABLE_FAMILY,
    Fwd,
    accept_rule,
    describe,
    ipt_accepts,
    parse_state,
    ports,
    resolve,
    state_json,
    table_rules,
)

FAMILIES = {4: ("ip", "ipt4", "nft4"), 6: ("ip6", "ipt6", "nft6")}


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
    """kvmnet's part of one `nft -j list ruleset`."""

    backends: tuple[str, ...] = ()     # libvirt's: "iptables" (LIBVIRT_* chains), "nftables"
    nft_families: frozenset[int] = frozenset()   # 4 / 6: table ip / ip6 libvirt_network is there
    table: bool = False                # table inet kvmnet exists
    parts: frozenset[str] = frozenset()
    # ("iptables"|"nftables", 4|6) -> kvmnet's chain there
    anchors: Mapping[tuple[str, int], Anchor] = field(default_factory=dict)


@dataclass(frozen=True)
class FirewallLive:
    """What live/firewall.py read: the ruleset's facts and kvmnet's two files."""

    facts: RulesetFacts = field(default_factory=RulesetFacts)
    state_text: str | None = None      # the state file; None: there is none
    hook: str | None = None            # "ok", "stale" (not kvmnet's current hook), None
    error: str | None = None           # the firewall could not be read: why
    legacy: bool = False               # iptables is iptables-legacy (unsupported)

    def previous(self) -> tuple[Fwd, ...]:
        """The forwards kvmnet installed last (its state file); () if none or unreadable."""
        if not self.state_text:
            return ()
        try:
            return parse_state(self.state_text)
        except ValueError:
            return ()

    @property
    def parts(self) -> frozenset[str]:
        extra = set()
        if self.state_text is not None:
            extra.add(f"state {_sha(self.state_text)}")
        if self.hook is not None:
            extra.add("hook" if self.hook == "ok" else "hook-stale")
        return self.facts.parts | extra


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- reading the ruleset --------------------------------------------------------------

def _items(ruleset: Mapping[str, Any], kind: str) -> Iterable[dict[str, Any]]:
    for item in ruleset.get("nftables", ()):
        if isinstance(item, dict) and isinstance(item.get(kind), dict):
            yield item[kind]


def libvirt_backends(ruleset: Mapping[str, Any]) -> tuple[str, ...]:
    """'iptables' when libvirt's LIBVIRT_* chains are there (through iptables-nft),
    'nftables' for its own table libvirt_network (libvirt 10+); both may show."""
    out = []
    if any(str(c.get("name", "")).startswith("LIBVIRT_") for c in _items(ruleset, "chain")):
        out.append("iptables")
    if any(t.get("name") == LIBVIRT_TABLE for t in _items(ruleset, "table")):
        out.append("nftables")
    return tuple(out)


def _jump(expr: Sequence[Any]) -> str | None:
    for e in expr:
        if isinstance(e, dict):
            for verb in ("jump", "goto"):
                if isinstance(e.get(verb), dict):
                    return str(e[verb].get("target"))
    return None


def _anchor(rules: list[dict[str, Any]], ours: str, theirs: Callable[[str], bool],
            chain_exists: bool) -> Anchor:
    mine: list[tuple[int, int]] = []
    other: list[int] = []
    for i, r in enumerate(rules):
        t = _jump(r.get("expr", ()))
        if t == ours:
            mine.append((i, int(r.get("handle", 0))))
        elif t is not None and theirs(t):
            other.append(i)
    first = bool(mine) and (not other or mine[0][0] < min(other))
    return Anchor(chain_exists, tuple(h for _, h in mine), first)


def _match(e: Any) -> tuple[str, str, Any] | None:
    """(protocol, field, right) of a `payload == value` match."""
    m = e.get("match") if isinstance(e, dict) else None
    if not isinstance(m, dict) or m.get("op") != "==" or not isinstance(m.get("left"), dict):
        return None
    p = m["left"].get("payload")
    if not isinstance(p, dict):
        return None
    return str(p.get("protocol")), str(p.get("field")), m.get("right")


def ipt_key(expr: Sequence[Any]) -> str | None:
    """'ADDR PROTO LO-HI' of an accept rule of KVMNET_FWD as nft -j shows it (the
    IptAccept.key it was written from), or None for any other rule."""
    addr = proto = None
    lo = hi = None
    accept = False
    for e in expr:
        if isinstance(e, dict) and "accept" in e:
            accept = True
        got = _match(e)
        if got is None:
            continue
        proto_, fld, right = got
        if fld == "daddr" and proto_ in ("ip", "ip6"):
            if isinstance(right, dict) and isinstance(right.get("prefix"), dict):
                right = right["prefix"].get("addr")
            addr = str(right)
        elif fld == "dport" and proto_ in ("tcp", "udp"):
            proto = proto_
            if isinstance(right, dict) and isinstance(right.get("range"), list):
                lo, hi = right["range"]
            elif isinstance(right, int):
                lo = hi = right
    if accept and addr and proto and lo is not None:
        return f"{addr} {proto} {lo}-{hi}"
    return None


def parse_ruleset(ruleset: Mapping[str, Any]) -> RulesetFacts:
    """kvmnet's parts, anchors and libvirt's backends from `nft -j list ruleset`."""
    chains = {(c.get("family"), c.get("table"), c.get("name")): c
              for c in _items(ruleset, "chain")}
    rules: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for r in _items(ruleset, "rule"):
        rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)
    parts: set[str] = set()
    for (fam, table, name), c in chains.items():
        if (fam, table) == (TABLE_FAMILY, TABLE):
            parts.add(f"chain {name} {c.get('type')} {c.get('hook')} {c.get('prio')}")
    for (fam, table, chain), rs in rules.items():
        if (fam, table) == (TABLE_FAMILY, TABLE):
            parts |= {f"rule {chain} {r.get('comment') or 'handle ' + str(r.get('handle'))}"
                      for r in rs}
    anchors: dict[tuple[str, int], Anchor] = {}
    for version, (l3, ipt, nft) in FAMILIES.items():
        for r in rules.get((l3, "filter", IPT_CHAIN), []):
            parts.add(f"{ipt} {ipt_key(r.get('expr', ())) or 'handle ' + str(r.get('handle'))}")
        a = _anchor(rules.get((l3, "filter", "FORWARD"), []), IPT_CHAIN,
                    lambda t: t.startswith("LIBVIRT_"), (l3, "filter", IPT_CHAIN) in chains)
        anchors[("iptables", version)] = a
        if a.chain_exists:
            parts.add(f"{ipt} chain")
        if a.jumps:
            parts.add(f"{ipt} jump" if a.ok else f"{ipt} jump-misplaced")
        for r in rules.get((l3, LIBVIRT_TABLE, NFT_CHAIN), []):
            parts.add(f"{nft} {r.get('comment') or 'handle ' + str(r.get('handle'))}")
        a = _anchor(rules.get((l3, LIBVIRT_TABLE, "forward"), []), NFT_CHAIN,
                    lambda t: True, (l3, LIBVIRT_TABLE, NFT_CHAIN) in chains)
        anchors[("nftables", version)] = a
        if a.chain_exists:
            parts.add(f"{nft} chain")
        if a.jumps:
            parts.add(f"{nft} jump" if a.ok else f"{nft} jump-misplaced")
    tables = {(t.get("family"), t.get("name")) for t in _items(ruleset, "table")}
    nft_families = frozenset(v for v, (l3, _, _) in FAMILIES.items()
                             if (l3, LIBVIRT_TABLE) in tables)
    if (TABLE_FAMILY, TABLE) in tables:
        parts.add("table")
    return RulesetFacts(libvirt_backends(ruleset), nft_families,
                        (TABLE_FAMILY, TABLE) in tables, frozenset(parts), anchors)


# -- what should be there -------------------------------------------------------------

def rule_parts(f: Fwd, facts: RulesetFacts) -> set[str]:
    """The parts one forward needs in the firewall (files not included); the accept
    goes to every backend of libvirt's found (none found: nothing rejects yet)."""
    out = {"table"} | {f"chain {n} {t} {h} {p}" for n, t, h, p in BASE_CHAINS}
    out |= {f"rule {chain} {r.comment}" for chain, rs in table_rules([f]).items() for r in rs}
    _l3, ipt, nft = FAMILIES[f.family]
    if "iptables" in facts.backends:
        out |= {f"{ipt} {a.key}" for a in ipt_accepts([f], f.family)}
        out |= {f"{ipt} chain", f"{ipt} jump"}
    if f.family in facts.nft_families:
        out |= {f"{nft} {accept_rule(f).comment}", f"{nft} chain", f"{nft} jump"}
    return out


def wanted_rule_parts(fwds: Sequence[Fwd], facts: RulesetFacts) -> set[str]:
    out: set[str] = set()
    for f in fwds:
        out |= rule_parts(f, facts)
    return out


def rules_in_place(fwds: Sequence[Fwd], facts: RulesetFacts) -> bool:
    """kvmnet's table and chains hold exactly the rules of `fwds`, jumps first."""
    return wanted_rule_parts(fwds, facts) == set(facts.parts)


def wanted_parts(fwds: Sequence[Fwd], facts: RulesetFacts) -> set[str]:
    if not fwds:
        return set()
    return wanted_rule_parts(fwds, facts) | {f"state {_sha(state_json(fwds))}", "hook"}


def status(f: Fwd, live: FirewallLive) -> str:
    """installed | not installed | partly installed (e.g. the DNAT but not the accept)."""
    need = rule_parts(f, live.facts)
    have = need & live.facts.parts
    if have == need:
        return "installed"
    rules = {p for p in have if p.startswith(("rule ", "ipt", "nft"))
             and not p.endswith((" chain", " jump"))}
    return "partly installed" if rules else "not installed"


# -- plan -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ForwardsPlan:
    """One firewall.sync action (or only errors, or a skip reason)."""

    forwards: tuple[Fwd, ...] = ()      # what the host should hold after apply
    summary: str = ""
    details: tuple[str, ...] = ()
    skipped: str | None = None
    errors: tuple[tuple[tuple[str | int, ...], str], ...] = ()


def plan_forwards(spec: Spec, live: FirewallLive | None, keep: Callable[[str], bool],
                  is_test: bool = False) -> ForwardsPlan | None:
    """None when the host already has exactly the wanted forwards (rules and files).

    `keep(network)`: forwards of this network that kvmnet installed before stay (the
    network is outside --scope)."""
    mine = resolve(spec)
    if live is None:
        if not mine:
            return None
        why = ("test:/// connection: the real host is not changed" if is_test else
               "remote libvirt URI: kvmnet installs port forwards on the local host only")
        return ForwardsPlan(mine, f"install {len(mine)} port forward(s)",
                            tuple(f"+ {describe(f)}" for f in mine), skipped=why)
    previous = live.previous()
    wanted = tuple(f for f in previous if keep(f.network)) + mine
    errors = _errors(spec, live, wanted)
    if errors:
        return ForwardsPlan(errors=errors)
    want = wanted_parts(wanted, live.facts)
    have = live.parts
    if want == have:
        return None
    details = [f"+ {describe(f)}" for f in wanted if f not in previous]
    details += [f"- {describe(f)}" for f in previous if f not in wanted]
    details += [f"~ put back ({status(f, live)}): {describe(f)}" for f in wanted
                if f in previous and _own_missing(f, live)]
    known = want | wanted_rule_parts(previous, live.facts)
    details += _other_details(live, known, have, bool(wanted), changed=bool(details))
    added = sum(1 for f in wanted if f not in previous)
    removed = sum(1 for f in previous if f not in wanted)
    summary = (f"port forwards: {added} to add, {removed} to remove, {len(wanted)} in all "
               "(one nft transaction; libvirt network hook for restarts)" if wanted else
               "remove kvmnet's port forward rules, hook and state file")
    return ForwardsPlan(wanted, summary, tuple(details) or ("~ sync",))


def _own_missing(f: Fwd, live: FirewallLive) -> bool:
    """A rule of this forward itself is missing (not only a jump, shared by all)."""
    need = {p for p in rule_parts(f, live.facts) if not p.endswith(" jump")}
    return not need <= live.facts.parts


def _errors(spec: Spec, live: FirewallLive, wanted: Sequence[Fwd]
            ) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    if not wanted:
        return ()
    nets = [n for n, x in spec.networks.items() if x.forwards]
    path: tuple[str | int, ...] = ("networks", nets[0], "forwards") if nets else ("networks",)
    if live.error:
        return ((path, f"cannot install port forwards: {live.error}"),)
    if live.legacy:
        return ((path, "this host's iptables is iptables-legacy, whose rules nftables "
                 "cannot see or order: switch to iptables-nft (update-alternatives --set "
                 "iptables /usr/sbin/iptables-nft; the same for ip6tables), restart "
                 "libvirtd, then apply again"),)
    return ()


def _other_details(live: FirewallLive, known: set[str], have: frozenset[str],
                   any_wanted: bool, changed: bool) -> list[str]:
    """What changes besides whole forwards: `known` = the parts of wanted and previous
    forwards; anything else in kvmnet's table and chains is stale."""
    out = []
    stale = [p for p in have - known if p.startswith(("rule ", "ipt", "nft"))
             and not p.endswith(("jump-misplaced", " chain", " jump"))]
    if stale and any_wanted:
        out.append(f"~ remove {len(stale)} stale rule(s) from kvmnet's table and chains")
    if any(p.endswith("jump-misplaced") for p in have):
        out.append("~ move kvmnet's jump in front of libvirt's (libvirt's reject came first)")
    if any_wanted and "hook" not in have:
        out.append("+ libvirt network hook (puts the rules back when a network starts)")
    if any_wanted and not changed and not any(p.startswith("state ") for p in have & known):
        out.append("~ write the state file the hook reads")
    if not any_wanted and (live.hook is not None or live.state_text is not None):
        out.append("- libvirt network hook and state file")
    return out


# -- import ---------------------------------------------------------------------------

def with_forwards(spec: Spec, fwds: Sequence[Fwd]) -> Spec:
    """`spec` (imported) with the forwards kvmnet installed on its NAT networks, each by
    guest name when the guest's reservation there is the target, else by address."""
    from kvmnet.model.spec import PortForward

    nets = dict(spec.networks)
    for f in fwds:
        net = nets.get(f.network)
        if net is None or net.mode != "nat":
            continue
        g = spec.guests.get(f.guest or "")
        by_guest = g is not None and any(
            n.network == f.network and str(n.ipv4) == f.target for n in g.interfaces)
        pf = PortForward.model_validate({
            "proto": f.proto, "host_port": ports(f.host_ports),
            **({"guest": f.guest} if by_guest else {"address": f.target}),
            **({"guest_port": ports(f.guest_ports)} if f.guest_ports != f.host_ports else {}),
            **({"listen": f.listen} if f.listen else {}),
            **({"sources": list(f.sources)} if f.sources else {})})
        nets[f.network] = net.model_copy(update={"forwards": [*net.forwards, pf]})
    return spec.model_copy(update={"networks": nets})


# -- show -----------------------------------------------------------------------------

def show_rows(live: FirewallLive | None) -> list[dict[str, Any]]:
    """The forwards kvmnet installed (its state file) with each one's state."""
    if live is None:
        return []
    return [{"network": f.network, "proto": f.proto, "host_port": ports(f.host_ports),
             "address": f.target, "guest_port": ports(f.guest_ports), "guest": f.guest,
             "listen": f.listen, "sources": list(f.sources), "state": status(f, live)}
            for f in live.previous()]
