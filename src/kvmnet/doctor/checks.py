"""kvmnet doctor's checks: pure functions of facts read from the host (live/doctor.py).

Each check says ok / warn / fail / skip, what that means for the guests, and the
exact command that fixes it (prefixed with `ip netns exec NS` when the host is a
network namespace). Networks looked at: the spec's (if a FILE was given) and,
on a local libvirt connection, the live ones.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from kvmnet.model.live import HostState, LiveState, NamesLive
from kvmnet.model.spec import Network, Spec

Status = Literal["ok", "warn", "fail", "skip"]
FORWARDING = ("nat", "route", "open")
DNSMASQ_MODES = ("nat", "route", "open", "isolated")


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    title: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status, "title": self.title,
                "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class Facts:
    """Everything the checks look at; None = could not be read (the reason in *_error)."""

    uri: str
    netns: str | None = None
    libvirt_error: str | None = None
    libvirt_version: str | None = None
    live: LiveState | None = None        # None: libvirt unreachable
    live_on_host: bool = False           # the live networks are on this host (local URI)
    host: HostState | None = None        # None: host not examined (remote URI)
    host_error: str | None = None
    spec: Spec | None = None
    spec_file: str = "FILE"
    connect: str | None = None           # -c as the user gave it (None: the default URI)
    ip_forward: str | None = None
    ip6_forward: str | None = None       # net.ipv6.conf.all.forwarding
    bridge_nf: dict[str, str | None] = field(default_factory=dict)  # iptables/ip6tables/...
    ruleset: dict[str, Any] | None = None   # `nft -j list ruleset`
    ruleset_error: str | None = None
    dnsmasq: str | None = None              # its path when present
    wireless: frozenset[str] = frozenset()  # interfaces that are Wi-Fi
    names: NamesLive | None = None          # how the host resolves guests' names

    def apply_cmd(self) -> str:
        """The `kvmnet apply` a fix suggests, with the user's own -c (and --netns)."""
        extra = (f" -c {shlex.quote(self.connect)}" if self.connect else "") + (
            f" --netns {shlex.quote(self.netns)}" if self.netns else "")
        return f"kvmnet apply {shlex.quote(self.spec_file)}{extra}"

    def cmd(self, text: str) -> str:
        """A host command, run inside the namespace when there is one."""
        if not self.netns:
            return text
        return "\n".join(f"ip netns exec {self.netns} {line}" if line and not
                         line.startswith("#") else line for line in text.split("\n"))


def sh(word: str) -> str:
    """A name from the live system (libvirt, the kernel) as one shell word on one line,
    for the fix commands doctor prints to be pasted: shlex.quote, or bash's $'...' with
    escapes when the name holds a line break or another control character (quoted as
    is, it would be two lines: a second, forged command)."""
    import shlex

    if word.isprintable():
        return shlex.quote(word)
    body = "".join(c if c.isprintable() and c not in "\\'" else
                   f"\\{c}" if c in "\\'" else f"\\x{ord(c):02x}" if ord(c) < 0x80
                   else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
                   for c in word)
    return f"$'{body}'"


@dataclass(frozen=True)
class Net:
    name: str
    network: Network
    bridge: str | None
    origin: Literal["spec", "live"]
    active: bool = False


def networks(f: Facts) -> list[Net]:
    """The spec's networks, then live networks (local URI only) the spec does not name."""
    out: list[Net] = []
    live = f.live.networks if f.live is not None and f.live_on_host else {}
    for name, net in (f.spec.networks.items() if f.spec else ()):
        ln = live.get(name)
        out.append(Net(name, net, (ln.bridge if ln else None) or net.bridge, "spec",
                       bool(ln and ln.active)))
    named = {n.name for n in out}
    for name, ln in sorted(live.items()):
        if name not in named:
            out.append(Net(name, ln.network, ln.bridge, "live", ln.active))
    return out


def _names(nets: list[Net]) -> str:
    return ", ".join(n.name for n in nets)


# -- libvirt ------------------------------------------------------------------------

def check_libvirt(f: Facts) -> Check:
    title = "libvirtd reachable"
    if f.libvirt_error is None:
        assert f.live is not None
        return Check("libvirt", "ok", title,
                     f"libvirt {f.libvirt_version or '?'} answers at {f.uri}: "
                     f"{len(f.live.networks)} network(s), {len(f.live.domains)} domain(s).")
    low = f.libvirt_error.lower()
    if "permission denied" in low:
        fix = ('sudo usermod -aG libvirt "$USER"   # then log in again (or: newgrp libvirt)\n'
               "# or run kvmnet as root")
    elif "not running" in low or "no such file" in low or "connection refused" in low:
        fix = ("sudo systemctl enable --now libvirtd.service\n"
               "# modular daemons: sudo systemctl enable --now virtqemud.socket "
               "virtnetworkd.socket")
    else:
        fix = f"virsh -c {f.uri} list --all   # shows libvirt's own error"
    return Check("libvirt", "fail", title, f.libvirt_error, fix)


# -- sysctls ------------------------------------------------------------------------

def check_ip_forward(f: Facts) -> Check:
    title = "IPv4 forwarding"
    need = [n for n in networks(f) if n.network.mode in FORWARDING]
    if not need:
        return Check("ip_forward", "skip", title, "no NAT, routed or open network needs it.")
    if f.ip_forward is None:
        return Check("ip_forward", "skip", title,
                     "cannot read /proc/sys/net/ipv4/ip_forward.")
    if f.ip_forward.strip() == "1":
        return Check("ip_forward", "ok", title,
                     f"net.ipv4.ip_forward = 1, as {_names(need)} need.")
    return Check(
        "ip_forward", "fail", title,
        f"net.ipv4.ip_forward = {f.ip_forward.strip()}: the kernel forwards nothing, so guests "
        f"on {_names(need)} cannot reach past the host. libvirt turns it on when it starts "
        "such a network; something turned it off since (a sysctl.d file, a network "
        "manager, a container runtime).",
        f.cmd("sysctl -w net.ipv4.ip_forward=1") + "\n"
        "echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/60-kvmnet-forward.conf   # persist")


def _bridged(f: Facts) -> list[str]:
    """Host bridges guests share with the LAN (not the ones libvirt made for its networks)."""
    names = list(f.spec.host.bridges) if f.spec else []
    names += [n.bridge for n in networks(f) if n.network.mode == "bridge" and n.bridge]
    libvirt_own = {n.bridge for n in networks(f) if n.network.mode != "bridge"}
    if f.host is not None:
        names += [ln.name for ln in f.host.links.values()
                  if ln.kind == "bridge" and ln.name not in libvirt_own]
    return sorted(set(names))


def check_bridge_nf(f: Facts, forward_drop: bool) -> Check:
    title = "br_netfilter (bridged traffic through the firewall)"
    val = f.bridge_nf.get("iptables")
    if val is None:
        return Check("br_netfilter", "ok", title,
                     "br_netfilter is not loaded: bridged frames skip iptables/nftables.")
    if val.strip() != "1":
        return Check("br_netfilter", "ok", title, "net.bridge.bridge-nf-call-iptables = 0.")
    bridges = _bridged(f)
    if not bridges:
        return Check("br_netfilter", "ok", title,
                     "bridge-nf-call-iptables = 1, but no host bridge carries guests.")
    fix = (f.cmd("sysctl -w net.bridge.bridge-nf-call-iptables=0 "
                 "net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0")
           + "\nprintf 'net.bridge.bridge-nf-call-iptables = 0\\nnet.bridge.bridge-nf-call-"
           "ip6tables = 0\\nnet.bridge.bridge-nf-call-arptables = 0\\n' > "
           "/etc/sysctl.d/60-kvmnet-bridge.conf   # persist\n"
           "# if Docker/Kubernetes need br_netfilter, let bridged frames through instead:\n"
           + f.cmd("iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT"))
    why = (f"net.bridge.bridge-nf-call-iptables = 1 (br_netfilter): frames between guests "
           f"and the LAN on {', '.join(bridges)} go through the host firewall's FORWARD chain")
    if forward_drop:
        return Check("br_netfilter", "fail", title,
                     why + ", whose policy is DROP: bridged guests lose their traffic.", fix)
    return Check("br_netfilter", "warn", title,
                 why + "; a DROP policy there (Docker sets one) cuts the guests off.", fix)


# -- firewall -----------------------------------------------------------------------

def _items(ruleset: dict[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    for item in ruleset.get("nftables", ()):
        if kind in item:
            yield item[kind]


def _rules(ruleset: dict[str, Any], family: str, table: str, chain: str
           ) -> list[list[Any]]:
    return [list(r.get("expr", ())) for r in _items(ruleset, "rule")
            if (r.get("family"), r.get("table"), r.get("chain")) == (family, table, chain)]


def _target(e: Any) -> str | None:
    for verb in ("jump", "goto"):
        if isinstance(e, dict) and verb in e:
            return str(e[verb].get("target"))
    return None


def _ifname_matches(expr: list[Any]) -> set[tuple[str, str]]:
    """(iifname|oifname, value) pairs a rule matches with ==."""
    out = set()
    for e in expr:
        m = e.get("match") if isinstance(e, dict) else None
        if not isinstance(m, dict) or m.get("op") not in ("==", "in"):
            continue
        meta = m.get("left", {}).get("meta", {}) if isinstance(m.get("left"), dict) else {}
        if meta.get("key") in ("iifname", "oifname") and isinstance(m.get("right"), str):
            out.add((meta["key"], m["right"]))
    return out


def _covers(pattern: str, bridge: str) -> bool:
    return pattern == bridge or (pattern.endswith("*") and bridge.startswith(pattern[:-1]))


def chain_lets_through(ruleset: dict[str, Any], chain: dict[str, Any], bridge: str | None,
                       seen: frozenset[str] = frozenset()) -> bool:
    """The chain (or one it jumps to) has libvirt's rules, or accepts the bridge's traffic
    both ways (iifname BR ... accept and oifname BR ... accept)."""
    ways: set[str] = set()
    fam, table = chain["family"], chain["table"]
    for expr in _rules(ruleset, fam, table, chain["name"]):
        targets = [t for t in map(_target, expr) if t]
        if any(t.startswith("LIBVIRT_") for t in targets):
            return True
        for t in targets:
            if t not in seen and chain_lets_through(
                    ruleset, {"family": fam, "table": table, "name": t}, bridge,
                    seen | {chain["name"]}):
                return True
        if bridge and any(isinstance(e, dict) and "accept" in e for e in expr):
            ways |= {k for k, v in _ifname_matches(expr) if _covers(v, bridge)}
    return ways == {"iifname", "oifname"}


def forward_drop_chains(ruleset: dict[str, Any]) -> list[dict[str, Any]]:
    """Base chains on the forward hook whose policy is drop (IPv4-relevant families)."""
    return [c for c in _items(ruleset, "chain")
            if c.get("hook") == "forward" and c.get("policy") == "drop"
            and c.get("family") in ("ip", "inet")]


def check_forward_policy(f: Facts) -> Check:
    title = "FORWARD policy"
    if f.ruleset is None:
        return Check("forward_policy", "skip", title,
                     f"cannot read the firewall: {f.ruleset_error or 'unknown'}")
    drops = forward_drop_chains(f.ruleset)
    need = [n for n in networks(f) if n.network.mode in FORWARDING]
    if not drops:
        return Check("forward_policy", "ok", title, "no forward chain drops by default.")
    where = _chains(drops)
    if not need:
        return Check("forward_policy", "ok", title,
                     f"policy drop in {where}; no NAT or routed network needs forwarding.")
    bare = [c for c in drops
            if not all(chain_lets_through(f.ruleset, c, n.bridge) for n in need)]
    if bare:
        fix = _forward_fix(f, bare, need)
        return Check(
            "forward_policy", "fail", title,
            f"policy drop in {_chains(bare)} (Docker sets one) with no rule for libvirt's "
            f"networks: traffic of guests on {_names(need)} is dropped on its way out. An "
            "accept in another table or chain does not help: every forward base chain must "
            "accept a packet.", fix)
    return Check("forward_policy", "warn", title,
                 f"policy drop in {where}; rules there accept the traffic of {_names(need)}, "
                 "but anything else forwarded (bridged guests with br_netfilter, new "
                 "networks, port forwards) is dropped.")


def _chains(chains: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['family']} {c['table']} {c['name']}" for c in chains)


def _forward_fix(f: Facts, chains: list[dict[str, Any]], need: list[Net]) -> str:
    lines: list[str] = []
    docker = any(c.get("name") == "DOCKER-USER" for c in _items(f.ruleset or {}, "chain"))
    for n in need:
        br = n.bridge or "virbr*"
        back = "ct state related,established " if n.network.mode == "nat" else ""
        if docker:
            state = "-m conntrack --ctstate RELATED,ESTABLISHED " if back else ""
            lines += [f"iptables -I DOCKER-USER -i {br} -j ACCEPT",
                      f"iptables -I DOCKER-USER -o {br} {state}-j ACCEPT"]
            continue
        for c in chains:
            at = f"{c['family']} {c['table']} {c['name']}"
            lines += [f'nft insert rule {at} iifname "{br}" accept',
                      f'nft insert rule {at} oifname "{br}" {back}accept']
    return f.cmd("\n".join(dict.fromkeys(lines)))


def firewall_backend(ruleset: dict[str, Any]) -> list[str]:
    """'iptables' when libvirt's LIBVIRT_* chains are there, 'nftables' for its own
    `libvirt_network` table (libvirt 10+)."""
    from kvmnet.parse.firewall import libvirt_backends

    return list(libvirt_backends(ruleset))


def _kvmnet_rules(ruleset: dict[str, Any]) -> list[str]:
    """Where kvmnet's port forwards let DNATed traffic past libvirt's reject
    (kvmnet.render.firewall): 'iptables' for chain KVMNET_FWD in table filter,
    'nftables' for chain kvmnet_forwards in libvirt's table libvirt_network; [] when
    its DNAT table inet kvmnet is missing (no forwards installed)."""
    from kvmnet.parse.firewall import parse_ruleset

    facts = parse_ruleset(ruleset)
    if not facts.table:
        return []
    return [backend for backend in ("iptables", "nftables")
            if any(a.chain_exists for (b, _), a in facts.anchors.items() if b == backend)]


def check_backend(f: Facts) -> Check:
    title = "libvirt firewall backend"
    if f.ruleset is None:
        return Check("firewall_backend", "skip", title,
                     f"cannot read the firewall: {f.ruleset_error or 'unknown'}")
    backend = firewall_backend(f.ruleset)
    forwards = [n for n in networks(f) if n.network.forwards]
    ours = _kvmnet_rules(f.ruleset)
    if not backend:
        active = [n for n in networks(f) if n.active and n.network.mode in FORWARDING]
        if active:
            return Check("firewall_backend", "warn", title,
                         f"no libvirt rules found although {_names(active)} are active: "
                         "firewalld, or a firewall reload removed them.",
                         "\n".join(f"virsh net-destroy {sh(n.name)} && virsh net-start "
                                   f"{sh(n.name)}" for n in active))
        return Check("firewall_backend", "skip", title,
                     "no active NAT or routed network: libvirt has no rules to look at yet.")
    text = (f"libvirt writes its rules with {' and '.join(backend)} "
            f"({'LIBVIRT_* chains through iptables-nft' if 'iptables' in backend else ''}"
            f"{'; ' if len(backend) == 2 else ''}"
            f"{'table inet libvirt_network' if 'nftables' in backend else ''}).")
    if forwards and not any(str(t.get("name")) == "kvmnet" for t in _items(f.ruleset, "table")):
        return Check("firewall_backend", "warn", title,
                     text + f" Port forwards of {_names(forwards)} are not installed.",
                     f.apply_cmd())
    if forwards and set(ours) != set(backend):
        return Check("firewall_backend", "warn", title,
                     text + " kvmnet's accept for forwarded traffic is in "
                     f"{' and '.join(ours) or 'no backend'}: they do not match, so libvirt's "
                     "reject rules drop forwarded traffic.",
                     f.apply_cmd())
    return Check("firewall_backend", "ok", title,
                 text + (" kvmnet's forwards match it." if forwards else ""))


def check_dnsmasq(f: Facts) -> Check:
    title = "dnsmasq installed"
    need = [n for n in networks(f) if n.network.mode in DNSMASQ_MODES and n.network.all_ips()]
    if f.dnsmasq:
        return Check("dnsmasq", "ok", title, f"{f.dnsmasq} is there for DHCP and DNS.")
    fix = ("apt-get install dnsmasq-base   # Debian, Ubuntu\n"
           "dnf install dnsmasq            # Fedora, RHEL")
    if need:
        return Check("dnsmasq", "fail", title,
                     f"/usr/sbin/dnsmasq is missing: {_names(need)} will not start "
                     "(libvirt runs dnsmasq for their DHCP and DNS).", fix)
    return Check("dnsmasq", "warn", title, "/usr/sbin/dnsmasq is missing; no network here "
                 "needs it yet, but any NAT or routed one will.", fix)
