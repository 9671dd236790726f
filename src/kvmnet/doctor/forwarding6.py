"""kvmnet doctor: IPv6 forwarding, which a network with an IPv6 block needs to route or
masquerade its guests' IPv6 past the host (net.ipv6.conf.all.forwarding).

libvirt turns it on when it starts such a network (nat, route, open); like IPv4's
ip_forward, something may turn it off since. Turning it on makes every interface of the
host a router: one that takes its own address from router advertisements then ignores
them unless its accept_ra is 2 (a host bridge's check, elsewhere).
"""

from __future__ import annotations

from kvmnet.doctor.checks import FORWARDING, Check, Facts, networks

TITLE = "IPv6 forwarding"
CONF = "/etc/sysctl.d/60-kvmnet-forward6.conf"


def check_ip6_forward(f: Facts) -> Check:
    need = [n for n in networks(f) if n.network.mode in FORWARDING
            and any(c.address.version == 6 for c in n.network.all_ips())]
    if not need:
        return Check("ip6_forward", "skip", TITLE, "no NAT, routed or open network has "
                     "IPv6.")
    names = ", ".join(n.name for n in need)
    if f.ip6_forward is None:
        return Check("ip6_forward", "skip", TITLE,
                     "cannot read /proc/sys/net/ipv6/conf/all/forwarding.")
    if f.ip6_forward.strip() == "1":
        return Check("ip6_forward", "ok", TITLE,
                     f"net.ipv6.conf.all.forwarding = 1, as {names} need.")
    return Check(
        "ip6_forward", "fail", TITLE,
        f"net.ipv6.conf.all.forwarding = {f.ip6_forward.strip()}: the kernel forwards no "
        f"IPv6, so guests on {names} reach the host over IPv6 but nothing past it. "
        "libvirt turns it on when it starts such a network; something turned it off "
        "since (a sysctl.d file, a network manager, a container runtime).",
        f.cmd("sysctl -w net.ipv6.conf.all.forwarding=1") + "\n"
        f"echo 'net.ipv6.conf.all.forwarding = 1' > {CONF}   # persist\n"
        "# a host that takes its own IPv6 address by router advertisements then needs\n"
        "# accept_ra = 2 on that interface (sysctl net.ipv6.conf.IFACE.accept_ra=2)")
