"""Raw live data of port forwards -> model values. Pure.

`parse_ruleset`: `nft -j list ruleset` (JSON; nft's text output is never parsed) boiled
down to a set of *parts*, strings that each name one thing a forward needs:

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

kvmnet.plan.forwards computes the same strings from the wanted forwards, so "is it
installed" is a subset test and "what changes" a set difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kvmnet.model.forward import (
    FAMILIES,
    IPT_CHAIN,
    LIBVIRT_TABLE,
    NFT_CHAIN,
    TABLE,
    TABLE_FAMILY,
    Anchor,
    RulesetFacts,
)

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
