"""The accept in front of libvirt's reject on libvirt's iptables backend, as input for
`iptables-restore -w --noflush` (ip6tables-restore). Pure. Why it is there and why
through iptables: kvmnet.render.firewall.

Text, because iptables-restore reads nothing else. Every value in it comes from a
checked Fwd (kvmnet.model.forward: names, canonical addresses, port numbers), never
from text kvmnet did not make.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kvmnet.model.forward import IPT_CHAIN, Anchor, Fwd, RulesetFacts, guest_end, ports

IPT_TOOLS = {4: "iptables-restore", 6: "ip6tables-restore"}


@dataclass(frozen=True)
class IptAccept:
    """One accept of chain KVMNET_FWD."""

    family: int
    target: str
    proto: str
    ports: tuple[int, int]
    desc: str

    @property
    def key(self) -> str:
        """What `nft -j` shows of the rule: address, protocol, ports (kvmnet.parse.firewall
        reads it back so: iptables-nft keeps -m comment opaque to nft -j)."""
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
            a = IptAccept(family, f.target, f.proto, f.guest_ports, guest_end(f))
            seen.setdefault(a.key, a)
    return list(seen.values())


def iptables_restore(fwds: Sequence[Fwd], family: int, anchor: Anchor) -> str:
    """Input that makes KVMNET_FWD hold exactly the accepts of `fwds`, jumped to first
    thing in FORWARD, or removes both (`anchor`: what is there now). '' when there is
    nothing to do."""
    accepts = ipt_accepts(fwds, family)
    jumps = len(anchor.jumps)
    if not accepts and not anchor.chain_exists and not jumps:
        return ""
    lines = ["*filter", f":{IPT_CHAIN} - [0:0]"]   # declaring a user chain flushes it
    lines += [a.line() for a in accepts]
    if accepts:
        if not anchor.ok:
            lines += [f"-D FORWARD -j {IPT_CHAIN}"] * jumps
            lines.append(f"-I FORWARD 1 -j {IPT_CHAIN}")
    else:
        lines += [f"-D FORWARD -j {IPT_CHAIN}"] * jumps
        lines.append(f"-X {IPT_CHAIN}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def iptables_inputs(fwds: Sequence[Fwd], facts: RulesetFacts
                    ) -> list[tuple[str, str, str]]:
    """(tool, input, what it does) per family whose KVMNET_FWD must change on this host
    (`facts`): the accepts go in when libvirt uses iptables, else kvmnet's chain goes."""
    out = []
    for family, tool in IPT_TOOLS.items():
        anchor = facts.anchors.get(("iptables", family))
        if anchor is None:
            continue
        wanted = fwds if "iptables" in facts.backends else ()
        text = iptables_restore(wanted, family, anchor)
        if text:
            kept = bool(ipt_accepts(wanted, family))
            out.append((tool, text, IPT_CHAIN if kept else f"removed {IPT_CHAIN}"))
    return out
