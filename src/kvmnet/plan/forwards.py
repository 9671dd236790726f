"""Port forwards: what is installed vs what should be -> one firewall.sync action. Pure.

kvmnet.parse.firewall boils the live ruleset down to *parts* (strings that each name
one thing a forward needs); the same strings are computed here from the wanted
forwards (`wanted_parts`), so "is it installed" is a subset test and "what changes" a
set difference. Two more parts cover kvmnet's files: `state SHA256` (the state file,
by its content) and `hook`. What the plan ignores: counters and handles; the order of
kvmnet's rules (they never overlap: check refuses clashing host ports); rules outside
kvmnet's own table and chains.

Which forwards are wanted: the spec's, plus those of the state file (what kvmnet
installed before) that are not this spec's to remove: a forward belongs to its network's
owner, so one on another owner's network (or, with --scope, on a network outside the
scope) stays, and specs that share a host do not remove each other's forwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kvmnet.model.forward import (
    BASE_CHAINS,
    FAMILIES,
    FirewallLive,
    Fwd,
    RulesetFacts,
    StateError,
    describe,
    parse_state,
    ports,
    state_json,
)
from kvmnet.model.spec import Spec
from kvmnet.plan.core import Action, Ctx, in_scope
from kvmnet.render.firewall import accept_rule, resolve, table_rules
from kvmnet.render.iptables import ipt_accepts


def plan_firewall(ctx: Ctx) -> None:
    """One firewall.sync action after the networks (or the errors that stop it)."""
    from kvmnet.plan.forward_ports import check_forward_ports

    check_forward_ports(ctx)

    def keep(network: str) -> bool:
        if network in ctx.spec.networks:
            return False
        ln = ctx.live.networks.get(network)
        return not in_scope(network, ctx.scope) or (
            ln is not None and ln.managed and not ctx.removable(network, ln))

    p = plan_forwards(ctx.spec, ctx.live.firewall, keep, ctx.live.is_test)
    if p is None:
        return
    for path, msg in p.errors:
        ctx.error(path, msg)
    if not p.errors:
        ctx.actions.append(Action("firewall.sync", "firewall/forwards", "live", p.summary,
                                  p.details, skipped=p.skipped, forwards=p.forwards))


def installed_forwards(live: FirewallLive) -> tuple[Fwd, ...]:
    """The forwards kvmnet installed last (its state file); () if none or unreadable
    (plan_forwards then stops: state_problem)."""
    try:
        return parse_state(live.state_text) if live.state_text is not None else ()
    except StateError:
        return ()


def state_problem(live: FirewallLive) -> str | None:
    """Why the state file cannot be read, as plan reports it; None when it can (or there
    is none). Without it kvmnet cannot tell which forwards it installed, nor keep those
    of other specs (--scope), so plan stops rather than guess."""
    if live.state_text is None:
        return None
    try:
        parse_state(live.state_text)
    except StateError as e:
        where = live.state_path or "kvmnet's state file"
        return (f"cannot read {where}: {e}. It lists the forwards kvmnet installed; move "
                "it away to start afresh (apply then installs exactly the spec's forwards, "
                "forgetting any other spec's)")
    return None


def live_parts(live: FirewallLive) -> frozenset[str]:
    """The ruleset's parts and those of kvmnet's two files."""
    extra = set()
    if live.state_text is not None:
        extra.add(f"state {_sha(live.state_text)}")
    if live.hook is not None:
        extra.add("hook" if live.hook == "ok" else "hook-stale")
    return live.facts.parts | extra


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def _unhashed(part: str) -> str | None:
    """'rule prerouting kvmnet:HASH default tcp/2222' -> 'rule prerouting default
    tcp/2222' (also for 'nft4 kvmnet:HASH ...'); None for a part without a hash."""
    head, sep, rest = part.partition(" kvmnet:")
    return f"{head} {rest.partition(' ')[2]}" if sep else None


def earlier_forms(need: set[str], have: frozenset[str]) -> dict[str, str]:
    """Missing rule -> the rule of kvmnet's that is there for it in an earlier form: the
    same chain and forward (the comment's description) but another hash, because an
    earlier kvmnet wrote that rule otherwise (until issue 16 as nft text, and the hash
    covered the text). The kernel's rule is the same; apply rewrites it once."""
    there = {k: p for p in have - need if (k := _unhashed(p)) is not None}
    return {p: there[k] for p in need - have if (k := _unhashed(p)) in there}


def status(f: Fwd, live: FirewallLive) -> str:
    """installed | not installed | partly installed (e.g. the DNAT but not the accept)."""
    need = rule_parts(f, live.facts)
    have = need & live.facts.parts
    if have == need or set(earlier_forms(need - have, live.facts.parts)) == need - have:
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
    previous = installed_forwards(live)
    wanted = tuple(f for f in previous if keep(f.network)) + mine
    errors = _errors(spec, live, wanted)
    if errors:
        return ForwardsPlan(errors=errors)
    want = wanted_parts(wanted, live.facts)
    have = live_parts(live)
    if want == have:
        return None
    details = [f"+ {describe(f)}" for f in wanted if f not in previous]
    details += [f"- {describe(f)}" for f in previous if f not in wanted]
    for f in wanted:
        missing = _own_missing(f, live) if f in previous else set()
        if missing and set(earlier_forms(missing, live.facts.parts)) == missing:
            details.append(f"~ rewrite in this kvmnet's form (same rules): {describe(f)}")
        elif missing:
            details.append(f"~ put back ({status(f, live)}): {describe(f)}")
    known = want | wanted_rule_parts(previous, live.facts)
    known |= set(earlier_forms(want, live.facts.parts).values())
    details += _other_details(live, known, have, bool(wanted), changed=bool(details))
    added = sum(1 for f in wanted if f not in previous)
    removed = sum(1 for f in previous if f not in wanted)
    summary = (f"port forwards: {added} to add, {removed} to remove, {len(wanted)} in all "
               "(one nft transaction; libvirt network hook for restarts)" if wanted else
               "remove kvmnet's port forward rules, hook and state file")
    return ForwardsPlan(wanted, summary, tuple(details) or ("~ sync",))


def _own_missing(f: Fwd, live: FirewallLive) -> set[str]:
    """The rules of this forward itself that are missing (not a jump, shared by all)."""
    need = {p for p in rule_parts(f, live.facts) if not p.endswith(" jump")}
    return need - live.facts.parts


def _errors(spec: Spec, live: FirewallLive, wanted: Sequence[Fwd]
            ) -> tuple[tuple[tuple[str | int, ...], str], ...]:
    nets = [n for n, x in spec.networks.items() if x.forwards]
    path: tuple[str | int, ...] = ("networks", nets[0], "forwards") if nets else ("networks",)
    problem = state_problem(live)
    if problem:
        return ((path, problem),)
    if not wanted:
        return ()
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
            for f in installed_forwards(live)]
