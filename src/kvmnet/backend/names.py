"""How the host resolves guests' names (host.resolve_guests): /etc/nsswitch.conf and
libvirt's NSS module (files, under --root), and systemd-resolved's per-link DNS and
routing domains (its D-Bus API, backend.resolved)."""

from __future__ import annotations

from pathlib import Path

from kvmnet.backend.files import read_regular, write_atomic
from kvmnet.model.live import LinkDns, NamesLive

NSSWITCH = "etc/nsswitch.conf"
# where distributions put libvirt's NSS module (Debian: libnss-libvirt, multiarch)
NSS_GLOBS = ("usr/lib/*/libnss_libvirt.so.2", "lib/*/libnss_libvirt.so.2",
             "usr/lib64/libnss_libvirt.so.2", "lib64/libnss_libvirt.so.2")


def nss_module(root: Path) -> str | None:
    for pattern in NSS_GLOBS:
        for p in sorted(root.glob(pattern)):
            return "/" + str(p.relative_to(root))
    return None


def read_names(root: Path, bridges: tuple[str, ...] = (), resolved: bool = True
               ) -> NamesLive:
    """The host's side of names; systemd-resolved's view of `bridges` when it runs
    (`resolved`: ask it at all; --root is a tree of files, not a running host)."""
    got = read_regular(root / NSSWITCH)
    text = got[0].decode(errors="replace") if got is not None else None
    links: dict[str, LinkDns] = {}
    running = False
    if resolved:
        from kvmnet.backend import resolved as rd

        running = rd.running()
        if running:
            links = {b: rd.link_dns(b) for b in bridges}
    return NamesLive(text, nss_module(root), running, links)


def write_nsswitch(root: Path, text: str) -> Path | None:
    """Write ROOT/etc/nsswitch.conf through the safe path; the backup of what it held."""
    return write_atomic(root / NSSWITCH, text, 0o644, backup=True)
