"""Port forwards -> the firewall rules kvmnet installs for them. Pure.

A forward (networks.NAME.forwards) is resolved to an `Fwd`: host ports, the guest's
address (from `address:` or the guest's reservation on that network) and ports.
Three things make it work, each for a reason found with real traffic:

  table inet kvmnet        kvmnet's own nftables table, always written whole in one
                           nft transaction (add + delete + define: atomic, so a
                           re-apply never duplicates a rule and never leaves a gap):
    prerouting (nat -100)  DNAT host:PORT -> guest:PORT for packets to any address of
                           the host (`fib daddr type local`) or to `listen`, and only
                           from `sources` when given. Serves clients outside and other
                           guests, which reach the guest through the host's address.
    output (nat -100)      the same DNAT for connections the host itself opens (to
                           one of its own addresses except loopback: a packet from
                           127.0.0.1 may not leave the host). `sources` do not apply:
                           the host is not a remote client.
    postrouting (nat 100)  hairpin: a DNATed connection from the guest's own subnet is
                           masqueraded to the bridge address, or the guest would answer
                           the other guest directly and that one would drop the reply.
                           (A guest reaching its *own* forward does not work: Linux
                           drops a forwarded packet whose source is its destination.)

  an accept in front of libvirt's reject
                           libvirt rejects new connections into a NAT network (its
                           LIBVIRT_FWI / guest_input chain: related,established
                           accept, then `-o BRIDGE -j REJECT`). nftables runs every
                           base chain of a hook and a reject in any of them is final,
                           so an accept in kvmnet's table would not help: the accept
                           (ct status dnat + guest address + guest port: only what
                           kvmnet's DNAT sent there, never the subnet as a whole)
                           must sit in libvirt's own base chain, before its jumps:
    iptables backend       (libvirt <= 9; 10+ with firewall_backend = iptables)
                           chain KVMNET_FWD in table filter, jumped to from the top of
                           FORWARD, written with iptables-restore --noflush
                           (kvmnet.render.iptables; declaring the chain flushes it:
                           one atomic replace). Through iptables
                           and not nft, so iptables-nft can still list the table for
                           libvirt. libvirt re-inserts its per-network rules at the top
                           of its LIBVIRT_FW* chains on network start and daemon restart,
                           but adds its jumps to FORWARD only when they are missing:
                           kvmnet's jump stays first.
    nftables backend       (libvirt 10+: tables ip / ip6 libvirt_network) chain
                           kvmnet_forwards in libvirt's table, jumped to from the top of
                           its `forward` chain, in the same nft transaction as the table.
                           libvirt deletes its own rules by handle, never kvmnet's.

The nft side is data: each rule is its statements in nft's JSON, as `nft -j` lists
them, and the transaction a list of JSON commands ({"add": {"rule": ...}}, ...) that
kvmnet.backend.nft feeds to `nft -j -f -`; no nft text is formatted anywhere, and every
value comes from a checked Fwd. Every nft rule carries a comment "kvmnet:HASH NETWORK
PROTO/PORT" whose hash covers the rule's canonical JSON, so reading the ruleset back
(`nft -j`) tells exactly which wanted rules are there. iptables-nft keeps `-m comment`
opaque to `nft -j`, so KVMNET_FWD's rules are known by what they match (address,
protocol, ports): see kvmnet.parse.firewall.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kvmnet.errors import RenderError
from kvmnet.model.derive import ip_config_for
from kvmnet.model.forward import (
    BASE_CHAINS,
    FAMILIES,
    LIBVIRT_TABLE,
    NFT_CHAIN,
    TABLE,
    TABLE_FAMILY,
    Anchor,
    Fwd,
    RulesetFacts,
    guest_end,
    host_end,
    state_json,
)
from kvmnet.model.spec import PortForward, Spec
from kvmnet.render.guard import require_one_line
from kvmnet.render.iptables import IPT_TOOLS, iptables_restore


def resolve(spec: Spec) -> tuple[Fwd, ...]:
    """Every forward of every NAT network, in spec order; forwards check() refuses
    (no known guest address, address outside the network) are left out.

    A forward to `guest:` is one Fwd per family the guest has a reservation for on the
    network (its ipv4:, its ipv6:): the host's IPv4 port reaches the guest's IPv4
    address, the host's IPv6 port its IPv6 one. `listen` picks the family of its own;
    with `sources`, a family none of them is in gets no Fwd (nobody of it may connect).
    Never across families: netfilter's DNAT cannot turn IPv6 into IPv4 (that is NAT64,
    not a port forward)."""
    out: list[Fwd] = []
    for name, net in spec.networks.items():
        if net.mode != "nat":
            continue
        for fw in net.forwards:
            targets = [fw.address] if fw.address is not None else _guest_addresses(
                spec, name, fw)
            for target in targets:
                ipc = ip_config_for(net, target)
                if ipc is None:
                    continue
                require_one_line("port forwards (nft, iptables-restore, the hook's state)",
                                 name, fw, target, ipc.address)
                out.append(_fwd(name, fw, str(target), str(ipc.address.network)))
    return tuple(out)


def _fwd(network: str, fw: PortForward, target: str, subnet: str) -> Fwd:
    """The Fwd of a checked spec's forward; RenderError if a value got past the checks
    that Fwd refuses (its rules would be built from it)."""
    gp = fw.guest_port or fw.host_port
    family = ipaddress.ip_address(target).version
    try:
        return Fwd(network=network, proto=fw.proto,
                   host_ports=(fw.host_port.first, fw.host_port.last), target=target,
                   guest_ports=(gp.first, gp.last), subnet=subnet,
                   listen=str(fw.listen) if fw.listen else None,
                   sources=tuple(str(s) for s in fw.sources
                                 if fw.address is not None or s.version == family),
                   guest=fw.guest)
    except ValueError as e:
        raise RenderError(f"port forward of network {network!r}: {e}") from None


def _guest_addresses(spec: Spec, network: str, fw: PortForward) -> list[Any]:
    """The guest's reserved addresses on the network a `guest:` forward reaches: its
    first NIC there with an ipv4 gives the IPv4 one, with an ipv6 the IPv6 one; only
    listen's family when it has one, only the sources' families when there are any."""
    g = spec.guests.get(fw.guest or "")
    families = ({fw.listen.version} if fw.listen is not None else {4, 6}) & (
        {s.version for s in fw.sources} if fw.sources else {4, 6})
    out: list[Any] = []
    for key, family in (("ipv4", 4), ("ipv6", 6)):
        addr = next((getattr(nic, key) for nic in (g.interfaces if g else ())
                     if nic.network == network and getattr(nic, key) is not None), None)
        if addr is not None and family in families:
            out.append(addr)
    return out


# -- nftables rules, as nft's JSON ---------------------------------------------------

Json = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One nft rule of `chain`: its statements in nft's JSON (`expr`, as `nft -j` lists
    them); `desc` names the forward in its comment."""

    chain: str
    expr: tuple[Json, ...]
    desc: str

    @property
    def key(self) -> str:
        """The rule's canonical form: what its comment's hash covers, and what makes two
        forwards' rules one (hairpin and accept rules of the same guest port)."""
        return f"{self.chain}|" + json.dumps(self.expr, sort_keys=True, separators=(",", ":"))

    @property
    def comment(self) -> str:
        h = hashlib.sha256(self.key.encode()).hexdigest()[:10]
        return f"kvmnet:{h} {self.desc}"[:120]

    def command(self, verb: str, family: str, table: str) -> Json:
        return {verb: {"rule": {"family": family, "table": table, "chain": self.chain,
                                "expr": list(self.expr), "comment": self.comment}}}


def _l3(f: Fwd) -> str:
    return "ip" if f.family == 4 else "ip6"


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _field(protocol: str, name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": name}}


def _portset(p: tuple[int, int]) -> int | Json:
    return p[0] if p[0] == p[1] else {"range": [p[0], p[1]]}


def _prefix(block: str) -> Json:
    net = ipaddress.ip_network(block)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _nfproto(f: Fwd) -> Json:
    return _match({"meta": {"key": "nfproto"}}, "ipv4" if f.family == 4 else "ipv6")


FIB_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", op="in")   # a flag test, as listed
COUNTER: Json = {"counter": None}


def _dport(f: Fwd, which: tuple[int, int]) -> Json:
    return _match(_field(f.proto, "dport"), _portset(which))


def _dnat(f: Fwd) -> Json:
    """To the guest's port; a range onto the same range keeps the port; a range onto
    another range maps each port."""
    out: Json = {"family": _l3(f), "addr": f.target}
    hp, gp = f.host_ports, f.guest_ports
    if gp[0] == gp[1]:
        out["port"] = gp[0]
    elif gp != hp:
        pairs = [[h, g] for h, g in zip(range(hp[0], hp[1] + 1), range(gp[0], gp[1] + 1),
                                        strict=True)]
        out["port"] = {"map": {"key": _field(f.proto, "dport"), "data": {"set": pairs}}}
    return {"dnat": out}


def prerouting_rule(f: Fwd) -> Rule:
    expr = [_nfproto(f)]
    if f.sources:
        expr.append(_match(_field(_l3(f), "saddr"), {"set": [_prefix(s) for s in f.sources]}))
    expr.append(_match(_field(_l3(f), "daddr"), f.listen) if f.listen else FIB_LOCAL)
    expr += [_dport(f, f.host_ports), COUNTER, _dnat(f)]
    return Rule("prerouting", tuple(expr), host_end(f))


def output_rule(f: Fwd) -> Rule:
    if f.listen:
        dst = [_match(_field(_l3(f), "daddr"), f.listen)]
    else:   # a packet from loopback may not leave the host
        loopback = _prefix("127.0.0.0/8") if f.family == 4 else "::1"
        dst = [_match(_field(_l3(f), "daddr"), loopback, op="!="), FIB_LOCAL]
    return Rule("output", (_nfproto(f), *dst, _dport(f, f.host_ports), COUNTER, _dnat(f)),
                host_end(f))


def hairpin_rule(f: Fwd) -> Rule:
    return Rule("postrouting", (
        _nfproto(f), CT_DNAT, _match(_field(_l3(f), "saddr"), _prefix(f.subnet)),
        _match(_field(_l3(f), "daddr"), f.target), _dport(f, f.guest_ports),
        {"masquerade": None}), guest_end(f))


def accept_rule(f: Fwd) -> Rule:
    """nftables backend: the accept in libvirt's table (family ip or ip6)."""
    return Rule(NFT_CHAIN, (
        _match(_field(_l3(f), "daddr"), f.target), _dport(f, f.guest_ports), CT_DNAT,
        COUNTER, {"accept": None}), guest_end(f))


def _unique(rules: Iterable[Rule]) -> list[Rule]:
    seen: dict[str, Rule] = {}
    for r in rules:
        seen.setdefault(r.key, r)
    return list(seen.values())


def table_rules(fwds: Sequence[Fwd]) -> dict[str, list[Rule]]:
    """Rules of table inet kvmnet per base chain, in forward order (hairpin rules of
    forwards to the same guest port are one rule)."""
    return {
        "prerouting": _unique(prerouting_rule(f) for f in fwds),
        "output": _unique(output_rule(f) for f in fwds),
        "postrouting": _unique(hairpin_rule(f) for f in fwds),
    }


def accept_rules(fwds: Sequence[Fwd], family: int) -> list[Rule]:
    return _unique(accept_rule(f) for f in fwds if f.family == family)


# -- nft commands: one transaction ----------------------------------------------------

def table_commands(fwds: Sequence[Fwd]) -> list[Json]:
    """Replace table inet kvmnet whole (add + delete + define, in one transaction: a
    re-apply never duplicates a rule nor leaves a gap), or remove it: no forwards."""
    table = {"family": TABLE_FAMILY, "name": TABLE}
    out: list[Json] = [{"add": {"table": table}}, {"delete": {"table": table}}]
    if not fwds:
        return out
    out.append({"add": {"table": table}})
    rules = table_rules(fwds)
    for name, ctype, hook, prio in BASE_CHAINS:
        out.append({"add": {"chain": {"family": TABLE_FAMILY, "table": TABLE, "name": name,
                                      "type": ctype, "hook": hook, "prio": prio,
                                      "policy": "accept"}}})
        out += [r.command("add", TABLE_FAMILY, TABLE) for r in rules[name]]
    return out


def accept_commands(fwds: Sequence[Fwd], family: int, anchor: Anchor) -> list[Json]:
    """nftables backend: make chain kvmnet_forwards of table ip|ip6 libvirt_network hold
    exactly the accepts of `fwds`, jumped to first thing in `forward`; remove chain and
    jump when no forward of the family is left. [] when there is nothing to do."""
    l3 = FAMILIES[family][0]
    chain = {"family": l3, "table": LIBVIRT_TABLE, "name": NFT_CHAIN}
    unjump = [{"delete": {"rule": {"family": l3, "table": LIBVIRT_TABLE, "chain": "forward",
                                   "handle": h}}} for h in anchor.jumps]
    rules = accept_rules(fwds, family)
    if rules:
        out: list[Json] = [{"add": {"chain": chain}}, {"flush": {"chain": chain}}]
        out += [r.command("add", l3, LIBVIRT_TABLE) for r in rules]
        if not anchor.ok:
            out += [*unjump, {"insert": {"rule": {
                "family": l3, "table": LIBVIRT_TABLE, "chain": "forward",
                "expr": [{"jump": {"target": NFT_CHAIN}}], "comment": "kvmnet forwards"}}}]
        return out
    if anchor.chain_exists:
        return [*unjump, {"flush": {"chain": chain}}, {"delete": {"chain": chain}}]
    return unjump


def nft_batch(fwds: Sequence[Fwd], facts: RulesetFacts) -> Json | None:
    """The one nft transaction that makes the host's ruleset (`facts`) hold kvmnet's
    rules for `fwds`: table inet kvmnet, and on libvirt's nftables backend the accepts
    in its tables. None when nft has nothing to do."""
    out = table_commands(fwds) if fwds or facts.table else []
    for family in (4, 6):
        anchor = facts.anchors.get(("nftables", family))
        if anchor is not None and family in facts.nft_families:
            out += accept_commands(fwds, family, anchor)
    return {"nftables": out} if out else None


def batch_text(batch: Json) -> str:
    """`batch` as `nft -j -f` reads it: one command a line, so a file of it reads (and
    diffs) like a ruleset."""
    return '{"nftables": [\n' + ",\n".join(json.dumps(c) for c in batch["nftables"]) + "\n]}\n"


# -- kvmnet render --------------------------------------------------------------------

def render_firewall(spec: Spec) -> dict[str, str]:
    """firewall/forwards.nft.json (table inet kvmnet, for `nft -j -f`),
    firewall/accept-iptables.rules and firewall/accept-nftables.json (the accept in
    front of libvirt's reject: which one apply installs depends on libvirt's backend,
    found on the host) and firewall/forwards.json (the state file the libvirt hook
    reads)."""
    fwds = resolve(spec)
    if not fwds:
        return {}
    families = [fam for fam in (4, 6) if any(f.family == fam for f in fwds)]
    accepts = [c for fam in families for c in accept_commands(fwds, fam, Anchor())]
    return {
        "firewall/forwards.nft.json": batch_text({"nftables": table_commands(fwds)}),
        "firewall/accept-iptables.rules": "".join(
            f"# {IPT_TOOLS[fam]} -w --noflush < this (libvirt's iptables backend)\n"
            + iptables_restore(fwds, fam, Anchor()) for fam in families),
        "firewall/accept-nftables.json": batch_text({"nftables": accepts}),
        "firewall/forwards.json": state_json(fwds),
    }
