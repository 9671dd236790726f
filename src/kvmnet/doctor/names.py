"""Doctor's look at guests' names on the host (host.resolve_guests): which way is in
use (libvirt's NSS module in /etc/nsswitch.conf, systemd-resolved's per-link DNS on
the networks' bridges) and what is missing, with the commands that fix it."""

from __future__ import annotations

from kvmnet.doctor.checks import Check, Facts, Status, networks
from kvmnet.model.live import LinkDns
from kvmnet.render.nsswitch import has_libvirt, hosts_sources

TITLE = "guests' names on the host"
NSS_INSTALL = ("apt-get install libnss-libvirt   # Debian, Ubuntu\n"
               "dnf install libvirt-nss          # Fedora, RHEL")


def wanted_links(f: Facts) -> dict[str, LinkDns]:
    """Bridge -> what resolved should hold, for networks with a domain and an address."""
    out: dict[str, LinkDns] = {}
    for n in networks(f):
        ips = n.network.all_ips()
        if n.bridge and n.network.domain and ips and n.network.mode in (
                "nat", "route", "open", "isolated"):
            out[n.bridge] = LinkDns(tuple(str(c.address.ip) for c in ips),
                                    (f"~{n.network.domain}",))
    return out


def check_names(f: Facts) -> Check:
    names = f.names
    if names is None:
        return Check("names", "skip", TITLE, "not looked at (libvirt is not on this host)")
    want = bool(f.spec and f.spec.host.resolve_guests)
    sources = hosts_sources(names.nsswitch)
    parts = [f"libvirt's NSS module: {names.nss_module or 'not installed'}",
             "/etc/nsswitch.conf hosts: " + (" ".join(sources) if sources is not None
                                             else "(no such line)")]
    missing: list[str] = []
    fixes: list[str] = []
    if names.nss_module is None:
        missing.append("libvirt's NSS module")
        fixes.append(NSS_INSTALL)
    if not has_libvirt(names.nsswitch):
        missing.append("'libvirt libvirt_guest' in nsswitch.conf's hosts line")
        fixes.append(f"# host: {{resolve_guests: true}} in {f.spec_file}, then\n"
                     f"kvmnet apply {f.spec_file}")
    if names.resolved:
        links = wanted_links(f)
        unset = sorted(b for b, link in links.items() if names.links.get(b) != link)
        parts.append("systemd-resolved: running" + (
            f", per-link DNS missing on {', '.join(unset)}" if unset else
            f", per-link DNS set on {', '.join(sorted(links))}" if links else ""))
        for b in unset:
            missing.append(f"resolved's DNS on {b}")
            fixes.append(f"resolvectl dns {b} {' '.join(links[b].servers)}\n"
                         f"resolvectl domain {b} {' '.join(links[b].domains)}")
    else:
        parts.append("systemd-resolved: not running (the NSS module alone serves names)")
    in_use = "NSS module" if names.nss_module and has_libvirt(names.nsswitch) else None
    message = "; ".join(parts) + ". " + (
        f"In use: {in_use}." if in_use else "Guests' names do not resolve on the host.")
    if missing:
        message += f" Missing: {'; '.join(missing)}."
    status: Status = "ok" if not missing or not want else (
        "fail" if names.nss_module is None else "warn")
    return Check("names", status, TITLE, message, "\n".join(fixes) if want or not in_use
                 else "")
