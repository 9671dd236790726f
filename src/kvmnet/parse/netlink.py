"""The host's links, addresses and routes from rtnetlink dump messages: the pure half of
kvmnet.backend.host.read_host (which fetches them with pyroute2).

Every value is taken with `msg.get(key)`, which a pyroute2 message answers for a header
field ("index", "flags", "prefixlen", "dst_len", "family") and for an attribute by its
short name ("ifname" is IFLA_IFNAME, "kind" inside "linkinfo" is IFLA_INFO_KIND), the
attribute first: so "table" is RTA_TABLE (ids above 255) before the header's 8-bit
byte. A plain dict with the same keys answers the same way; the unit tests give dicts,
tests/integration/test_netlink_ns.py gives the kernel's own messages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from kvmnet.model.live import HostLink, HostRoute, HostState

NLM_F_DUMP_INTR = 0x10   # the kernel's mark on a dump whose table changed meanwhile
IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
MAIN_TABLE = 254
AF_INET, AF_INET6 = 2, 10
_DEFAULT = {AF_INET: "0.0.0.0/0", AF_INET6: "::/0"}
BOND_MODES = {0: "balance-rr", 1: "active-backup", 2: "balance-xor", 3: "broadcast",
              4: "802.3ad", 5: "balance-tlb", 6: "balance-alb"}


class Msg(Protocol):
    """What parse needs of a message: pyroute2's nlmsg, its nested attribute, a dict."""

    def get(self, key: str, /) -> Any: ...


def dump_interrupted(msgs: Iterable[Msg]) -> bool:
    """Did the kernel mark this dump inconsistent (a link or route came or went while it
    was read)? Then it must be asked again: half of a change is not the host's state."""
    return any(int((m.get("header") or {}).get("flags") or 0) & NLM_F_DUMP_INTR
               for m in msgs)


def parse_addresses(addrs: Iterable[Msg]) -> dict[int, tuple[str, ...]]:
    """Each link's addresses as CIDRs (IFA_ADDRESS: the address itself, or the peer of a
    point-to-point one), by link index, in the kernel's order."""
    out: dict[int, list[str]] = {}
    for a in addrs:
        address = a.get("address")
        if address is not None:
            out.setdefault(int(a.get("index")), []).append(f"{address}/{a.get('prefixlen')}")
    return {index: tuple(cidrs) for index, cidrs in out.items()}


def dynamic_addresses(addrs: Iterable[Msg]) -> dict[int, tuple[str, ...]]:
    """Each link's addresses that have a lifetime (no IFA_F_PERMANENT): learned by SLAAC
    from router advertisements, or set by a DHCP client."""
    return parse_addresses(a for a in addrs if not int(a.get("flags") or 0) & IFA_F_PERMANENT)


def parse_link(msg: Msg, names: dict[int, str], addresses: Sequence[str] = (),
               wireless: bool = False, dynamic: Sequence[str] = ()) -> HostLink | None:
    """One RTM_NEWLINK; `names` maps every index to its name (for the master). None for
    a message without a name (the kernel names every link)."""
    name = msg.get("ifname")
    if name is None:
        return None
    info = msg.get("linkinfo")
    kind = info.get("kind") if info is not None else None
    data = info.get("data") if info is not None else None
    master = msg.get("master")
    af = msg.get("af_spec")
    v6 = af.get("AF_INET6") if af is not None else None
    conf = v6.get("inet6_conf") if v6 is not None else None
    mode = v6.get("IFLA_INET6_ADDR_GEN_MODE") if v6 is not None else None
    return HostLink(name=str(name), index=int(msg.get("index")), kind=kind or "",
                    master=names.get(master) if master is not None else None,
                    up=bool(int(msg.get("flags") or 0) & IFF_UP), mac=msg.get("address"),
                    mtu=msg.get("mtu"), wireless=wireless, addresses=tuple(addresses),
                    perm_mac=_perm_mac(msg.get("perm_address")), dynamic=tuple(dynamic),
                    accept_ra=_int(conf, "accept_ra"),
                    forwarding6=None if _int(conf, "forwarding") is None
                    else bool(_int(conf, "forwarding")),
                    addr_gen_mode=None if mode is None else int(mode),
                    **_kind_data(kind or "", data, msg.get("link"), names))


def _kind_data(kind: str, data: Msg | None, link: Any, names: dict[int, str]
               ) -> dict[str, Any]:
    """What a bond, a VLAN and a bridge say of themselves (IFLA_INFO_DATA; its
    attributes answer by their full names only)."""
    if data is None or not hasattr(data, "get"):
        return {}
    mode, vid = data.get("IFLA_BOND_MODE"), data.get("IFLA_VLAN_ID")
    filtering = data.get("IFLA_BR_VLAN_FILTERING")
    if kind == "bond" and mode is not None:
        return {"bond_mode": BOND_MODES.get(int(mode), str(mode))}
    if kind == "vlan" and vid is not None and link is not None:
        return {"vlan": (names.get(int(link), str(link)), int(vid))}
    if kind == "bridge" and filtering is not None:
        return {"vlan_filtering": bool(filtering)}
    return {}


def _int(conf: Msg | None, key: str) -> int | None:
    value = conf.get(key) if conf is not None else None
    return None if value is None else int(value)


def _perm_mac(value: Any) -> str | None:
    """IFLA_PERM_ADDRESS (kernel 5.6+) as aa:bb:..; None when absent or all zeros (a
    virtual link has no burnt-in address)."""
    if not isinstance(value, str) or not value.strip("0:"):
        return None
    return value.lower()


def main_routes(routes: Iterable[Msg]) -> list[Msg]:
    """The IPv4 and IPv6 routes of the main table (a dump has every family and table:
    the kernel filters by table only when strict checking is on)."""
    return [r for r in routes
            if r.get("family") in _DEFAULT and r.get("table") == MAIN_TABLE]


def parse_route(msg: Msg, names: dict[int, str]) -> HostRoute:
    """One RTM_NEWROUTE; a route without RTA_DST is the family's default route."""
    dst = msg.get("dst")
    oif = msg.get("oif")
    return HostRoute(
        dst=f"{dst}/{msg.get('dst_len')}" if dst else _DEFAULT[int(msg.get("family"))],
        dev=names.get(oif) if oif is not None else None, gateway=msg.get("gateway"),
        metric=msg.get("priority"), proto=msg.get("proto"))


def parse_host(links: Iterable[Msg], addrs: Iterable[Msg], routes: Iterable[Msg],
               wireless: Collection[str] = frozenset(),
               default_accept_ra: int | None = None) -> HostState:
    """The three dumps as one HostState; `wireless` names the Wi-Fi links."""
    links, addrs = list(links), list(addrs)
    names = {int(m.get("index")): str(m.get("ifname")) for m in links
             if m.get("ifname") is not None}
    by_index, dynamic = parse_addresses(addrs), dynamic_addresses(addrs)
    out: dict[str, HostLink] = {}
    for m in links:
        i = int(m.get("index"))
        link = parse_link(m, names, by_index.get(i, ()), str(m.get("ifname")) in wireless,
                          dynamic.get(i, ()))
        if link is not None:
            out[link.name] = link
    return HostState(links=out, routes=tuple(parse_route(r, names) for r in main_routes(routes)),
                     readable=True, default_accept_ra=default_accept_ra)
