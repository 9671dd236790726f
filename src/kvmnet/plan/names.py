"""host.resolve_guests: guests' names on the host itself. libvirt's NSS module in
/etc/nsswitch.conf's `hosts:` (render.nsswitch), and, where systemd-resolved runs,
each libvirt network's dnsmasq and domain on its bridge (backend.resolved). Turned
off, kvmnet takes out only what its marker says it put in."""

from __future__ import annotations

from kvmnet.model.live import LinkDns
from kvmnet.plan.core import Action, Ctx
from kvmnet.render.nsswitch import has_libvirt, hosts_sources, owned, with_libvirt, without_libvirt

LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")
NSS_FIX = ("apt-get install libnss-libvirt (Debian, Ubuntu) or dnf install libvirt-nss "
           "(Fedora, RHEL)")


def plan_names(ctx: Ctx) -> None:
    want = ctx.spec.host.resolve_guests
    live = ctx.live.names
    if live is None:
        if want:
            ctx.actions.append(Action(
                "host.names", "host/names", "host", "add libvirt's NSS module to "
                "/etc/nsswitch.conf", skipped="test:/// or remote connection: the host's "
                "files are not changed"))
        return
    if not want:
        if owned(live.nsswitch) and live.nsswitch is not None:
            _nsswitch(ctx, without_libvirt(live.nsswitch), "take libvirt's NSS module out "
                      "of /etc/nsswitch.conf (kvmnet put it there; host.resolve_guests is off)")
        return
    if live.nss_module is None:
        ctx.error(("host", "resolve_guests"), "libvirt's NSS module (libnss_libvirt.so.2) "
                  f"is not installed, so the host cannot look guests up by name: {NSS_FIX}")
    elif not has_libvirt(live.nsswitch):
        _nsswitch(ctx, with_libvirt(live.nsswitch), "add libvirt's NSS module to "
                  "/etc/nsswitch.conf's hosts (getent hosts GUEST answers from libvirt)")
    if live.resolved:
        for bridge, link in sorted(wanted_links(ctx).items()):
            have = live.links.get(bridge, LinkDns())
            if have != link:
                ctx.actions.append(Action(
                    "host.resolved", f"host/resolved/{bridge}", "host",
                    f"systemd-resolved: ask {', '.join(link.servers)} for "
                    f"{', '.join(link.domains)} on {bridge}",
                    (f"- {bridge}: dns {list(have.servers)} domains {list(have.domains)}",
                     f"+ {bridge}: dns {list(link.servers)} domains {list(link.domains)}"),
                    link=link))


def _nsswitch(ctx: Ctx, text: str, summary: str) -> None:
    before = hosts_sources(ctx.live.names.nsswitch if ctx.live.names else None)
    after = hosts_sources(text)
    ctx.actions.append(Action(
        "host.names", "host/names", "host", summary,
        (f"- hosts: {' '.join(before)}" if before is not None else "- (no hosts: line)",
         f"+ hosts: {' '.join(after or [])}"), text=text))


def wanted_links(ctx: Ctx) -> dict[str, LinkDns]:
    """Each libvirt network with a domain and an address: its bridge -> its dnsmasq
    (the host's address on it) for the domain, routing only (`~domain`)."""
    out: dict[str, LinkDns] = {}
    for name, net in ctx.spec.networks.items():
        live = ctx.live.networks.get(name)
        bridge = net.bridge or (live.network.bridge if live else None)
        ips = net.all_ips()
        if net.mode in LIBVIRT_BRIDGED and net.domain and bridge and ips and (
                net.dns is None or net.dns.enable):
            out[bridge] = LinkDns(tuple(str(c.address.ip) for c in ips),
                                  (f"~{net.domain}",))
    return out
