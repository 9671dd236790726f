"""Port forwards -> the firewall rules kvmnet installs for them. Pure.

A forward (networks.NAME.forwards) is resolved to an `Fwd`: host ports, the guest's
address (from `address:` or the guest's reservation on that network) and ports.
Three things make it work, each for a reason found with real traffic:

  table inet kvmnet        kvmnet's own nftables table, always written whole in one
                           `nft -f` transaction (add + delete + define: atomic, so a
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
                           FORWARD, written with iptables-restore --noflush (declaring
                           the chain flushes it: one atomic replace). Through iptables
                           and not nft, so iptables-nft can still list the table for
                           libvirt. libvirt re-inserts its per-network rules at the top
                           of its LIBVIRT_FW* chains on network start and daemon restart,
                           but adds its jumps to FORWARD only when they are missing:
                           kvmnet's jump stays first.
    nftables backend       (libvirt 10+: tables ip / ip6 libvirt_network) chain
                           kvmnet_forwards in libvirt's table, jumped to from the top of
                           its `forward` chain, in the same nft transaction as the table.
                           libvirt deletes its own rules by handle, never kvmnet's.

Every nft rule carries a comment "kvmnet:HASH NETWORK PROTO/PORT" whose hash covers
the rule, so reading the ruleset back (`nft -j`) tells exactly which wanted rules are
there. iptables-nft keeps `-m comment` opaque to `nft -j`, so KVMNET_FWD's rules are
known by what they match (address, protocol, ports): see kvmnet.parse.firewall.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kvmnet.errors import RenderError
from kvmnet.model.derive import ip_config_for
from kvmnet.model.forward import (
    BASE_CHAINS,
    IPT_CHAIN,
    LIBVIRT_TABLE,
    NFT_CHAIN,
    TABLE,
    TABLE_FAMILY,
    Fwd,
    ports,
    state_json,
)
from kvmnet.model.spec import PortForward, Spec
from kvmnet.render.guard import require_one_line


def resolve(spec: Spec) -> tuple[Fwd, ...]:
    """Every forward of every NAT network, in spec order; forwards check() refuses
    (no known guest address, address outside the network) are left out."""
    out: list[Fwd] = []
    for name, net in spec.networks.items():
        if net.mode != "nat":
            continue
        for fw in net.forwards:
            target = fw.address if fw.address is not None else _guest_address(spec, name,
                                                                               fw.guest)
            ipc = ip_config_for(net, target) if target is not None else None
            if target is None or ipc is None:
                continue
            require_one_line("port forwards (nft, iptables-restore, the hook's state)",
                             name, fw, target, ipc.address)
            out.append(_fwd(name, fw, str(target), str(ipc.address.network)))
    return tuple(out)


def _fwd(network: str, fw: PortForward, target: str, subnet: str) -> Fwd:
    """The Fwd of a checked spec's forward; RenderError if a value got past the checks
    that Fwd refuses (its rules would be built from it)."""
    gp = fw.guest_port or fw.host_port
    try:
        return Fwd(network=network, proto=fw.proto,
                   host_ports=(fw.host_port.first, fw.host_port.last), target=target,
                   guest_ports=(gp.first, gp.last), subnet=subnet,
                   listen=str(fw.listen) if fw.listen else None,
                   sources=tuple(str(s) for s in fw.sources), guest=fw.guest)
    except ValueError as e:
        raise RenderError(f"port forward of network {network!r}: {e}") from None


def _guest_address(spec: Spec, network: str, guest: str | None) -> Any:
    g = spec.guests.get(guest or "")
    for nic in g.interfaces if g else ():
        if nic.network == network and nic.ipv4 is not None:
            return nic.ipv4
    return None


# -- nftables rules -------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One nft rule of `chain`; `desc` names the forward in its comment."""

    chain: str
    body: str
    desc: str

    @property
    def comment(self) -> str:
        h = hashlib.sha256(f"{self.chain}|{self.body}".encode()).hexdigest()[:10]
        return f"kvmnet:{h} {self.desc}"[:120]

    def text(self) -> str:
        return f'{self.body} comment "{self.comment}"'


def _l3(f: Fwd) -> str:
    return "ip" if f.family == 4 else "ip6"


def _nfproto(f: Fwd) -> str:
    return "meta nfproto ipv4" if f.family == 4 else "meta nfproto ipv6"


def _desc(f: Fwd) -> str:
    return f"{f.network} {f.proto}/{ports(f.host_ports)}"


def _to_desc(f: Fwd) -> str:
    """For rules about the guest end, which forwards to the same guest port share."""
    return f"{f.network} to {f.target} {f.proto}/{ports(f.guest_ports)}"


def _dnat(f: Fwd) -> str:
    addr = f.target if f.family == 4 else f"[{f.target}]"
    verb = f"dnat {_l3(f)} to"
    hp, gp = f.host_ports, f.guest_ports
    if gp[0] == gp[1]:
        return f"{verb} {addr}:{gp[0]}"
    if gp == hp:
        return f"{verb} {addr}"
    pairs = ", ".join(f"{h} : {g}" for h, g in zip(range(hp[0], hp[1] + 1),
                                                   range(gp[0], gp[1] + 1), strict=True))
    return f"{verb} {addr} : {f.proto} dport map {{ {pairs} }}"


def _dport(f: Fwd, which: tuple[int, int]) -> str:
    return f"{f.proto} dport {ports(which)}"


def prerouting_rule(f: Fwd) -> Rule:
    parts = [_nfproto(f)]
    if f.sources:
        parts.append(f"{_l3(f)} saddr {{ {', '.join(f.sources)} }}")
    parts.append(f"{_l3(f)} daddr {f.listen}" if f.listen else "fib daddr type local")
    parts += [_dport(f, f.host_ports), "counter", _dnat(f)]
    return Rule("prerouting", " ".join(parts), _desc(f))


def output_rule(f: Fwd) -> Rule:
    loopback = "127.0.0.0/8" if f.family == 4 else "::1"
    dst = (f"{_l3(f)} daddr {f.listen}" if f.listen
           else f"{_l3(f)} daddr != {loopback} fib daddr type local")
    return Rule("output", " ".join([_nfproto(f), dst, _dport(f, f.host_ports), "counter",
                                    _dnat(f)]), _desc(f))


def hairpin_rule(f: Fwd) -> Rule:
    return Rule("postrouting", " ".join([
        _nfproto(f), "ct status dnat", f"{_l3(f)} saddr {f.subnet}",
        f"{_l3(f)} daddr {f.target}", _dport(f, f.guest_ports), "masquerade"]), _to_desc(f))


def accept_rule(f: Fwd) -> Rule:
    """nftables backend: the accept in libvirt's table (family ip or ip6)."""
    return Rule(NFT_CHAIN, " ".join([
        f"{_l3(f)} daddr {f.target}", _dport(f, f.guest_ports), "ct status dnat", "counter",
        "accept"]), _to_desc(f))


def _unique(rules: Iterable[Rule]) -> list[Rule]:
    seen: dict[tuple[str, str], Rule] = {}
    for r in rules:
        seen.setdefault((r.chain, r.body), r)
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


def table_text(fwds: Sequence[Fwd]) -> str:
    """`table inet kvmnet { ... }` as nft -f reads it (empty string: no forwards)."""
    if not fwds:
        return ""
    rules = table_rules(fwds)
    lines = [f"table {TABLE_FAMILY} {TABLE} {{"]
    for name, ctype, hook, prio in BASE_CHAINS:
        lines += [f"\tchain {name} {{",
                  f"\t\ttype {ctype} hook {hook} priority {prio}; policy accept;"]
        lines += [f"\t\t{r.text()}" for r in rules[name]]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


HEADER = ("# kvmnet port forwards: `kvmnet apply` (and its libvirt network hook) writes\n"
          "# this table whole; do not edit, change the spec's forwards: instead.\n")


def table_script(fwds: Sequence[Fwd]) -> str:
    """Replace table inet kvmnet atomically (or remove it: no forwards)."""
    head = f"{HEADER}add table {TABLE_FAMILY} {TABLE}\ndelete table {TABLE_FAMILY} {TABLE}\n"
    return head + table_text(fwds)


def nft_accept_script(fwds: Sequence[Fwd], family: int, chain_exists: bool,
                      jump_handles: Sequence[int], jump_first: bool) -> str:
    """nftables backend: make chain kvmnet_forwards of table ip|ip6 libvirt_network hold
    exactly the accepts of `fwds`, jumped to first thing in `forward`; remove chain and
    jump when no forward of the family is left. '' when there is nothing to do."""
    at = f"{'ip' if family == 4 else 'ip6'} {LIBVIRT_TABLE}"
    rules = accept_rules(fwds, family)
    out: list[str] = []
    jump_ok = jump_first and len(jump_handles) == 1
    if rules:
        out += [f"add chain {at} {NFT_CHAIN}", f"flush chain {at} {NFT_CHAIN}"]
        out += [f"add rule {at} {NFT_CHAIN} {r.text()}" for r in rules]
        if not jump_ok:
            out += [f"delete rule {at} forward handle {h}" for h in jump_handles]
            out.append(f'insert rule {at} forward jump {NFT_CHAIN} comment "kvmnet forwards"')
    elif chain_exists or jump_handles:
        out += [f"delete rule {at} forward handle {h}" for h in jump_handles]
        if chain_exists:
            out += [f"flush chain {at} {NFT_CHAIN}", f"delete chain {at} {NFT_CHAIN}"]
    return "\n".join(out) + "\n" if out else ""


# -- iptables backend -----------------------------------------------------------------

@dataclass(frozen=True)
class IptAccept:
    """One accept of chain KVMNET_FWD (iptables backend)."""

    family: int
    target: str
    proto: str
    ports: tuple[int, int]
    desc: str

    @property
    def key(self) -> str:
        """What `nft -j` shows of the rule: address, protocol, ports."""
        return f"{self.target} {self.proto} {self.ports[0]}-{self.ports[1]}"

    def line(self) -> str:
        plen = 32 if self.family == 4 else 128
        return (f"-A {IPT_CHAIN} -d {self.target}/{plen} -p {self.proto} -m {self.proto} "
                f"--dport {ports(self.ports, ':')} -m conntrack --ctstate DNAT "
                f'-m comment --comment "kvmnet {self.desc}" -j ACCEPT')


def ipt_accepts(fwds: Sequence[Fwd], family: int) -> list[IptAccept]:
    seen: dict[str, IptAccept] = {}
    for f in fwds:
        if f.family == family:
            a = IptAccept(family, f.target, f.proto, f.guest_ports, _to_desc(f))
            seen.setdefault(a.key, a)
    return list(seen.values())


def iptables_restore(fwds: Sequence[Fwd], family: int, chain_exists: bool, jumps: int,
                     jump_first: bool) -> str:
    """Input for `iptables-restore --noflush` (ip6tables-restore for family 6) that makes
    KVMNET_FWD hold exactly the accepts of `fwds`, jumped to first thing in FORWARD, or
    removes both. '' when there is nothing to do."""
    accepts = ipt_accepts(fwds, family)
    if not accepts and not chain_exists and not jumps:
        return ""
    lines = ["*filter", f":{IPT_CHAIN} - [0:0]"]   # declaring a user chain flushes it
    lines += [a.line() for a in accepts]
    if accepts:
        if not (jump_first and jumps == 1):
            lines += [f"-D FORWARD -j {IPT_CHAIN}"] * jumps
            lines.append(f"-I FORWARD 1 -j {IPT_CHAIN}")
    else:
        lines += [f"-D FORWARD -j {IPT_CHAIN}"] * jumps
        lines.append(f"-X {IPT_CHAIN}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# -- kvmnet render --------------------------------------------------------------------

def render_firewall(spec: Spec) -> dict[str, str]:
    """firewall/forwards.nft (table inet kvmnet), firewall/accept-iptables.rules and
    firewall/accept-nftables.nft (the accept in front of libvirt's reject: which one
    apply installs depends on libvirt's backend, found on the host) and
    firewall/forwards.json (the state file the libvirt hook reads)."""
    fwds = resolve(spec)
    if not fwds:
        return {}
    ipt = ""
    nft = ""
    for fam in (4, 6):
        if any(f.family == fam for f in fwds):
            tool = "iptables-restore" if fam == 4 else "ip6tables-restore"
            ipt += (f"# {tool} -w --noflush < this (libvirt's iptables backend)\n"
                    + iptables_restore(fwds, fam, False, 0, False))
            nft += (f"# nft -f this (libvirt's nftables backend, table "
                    f"{'ip' if fam == 4 else 'ip6'} {LIBVIRT_TABLE})\n"
                    + nft_accept_script(fwds, fam, False, (), False))
    return {
        "firewall/forwards.nft": table_script(fwds),
        "firewall/accept-iptables.rules": ipt,
        "firewall/accept-nftables.nft": nft,
        "firewall/forwards.json": state_json(fwds),
    }
