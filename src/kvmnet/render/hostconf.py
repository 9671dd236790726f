"""Host bridge configuration, for the four systems that configure a Linux
host's network: ifupdown, netplan, NetworkManager (keyfiles) and
systemd-networkd.

Every renderer is pure, `render_X(spec) -> {path: text}`, with paths as
they sit on the host relative to / (e.g. 'etc/netplan/90-kvmnet.yaml'), so
the caller writes them under `--root` or an output directory. Some files
must not be world-readable: `file_mode(path)` says which mode to write.
Which renderer a live host uses is `kvmnet.backend.detect.detect_renderer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kvmnet.model.spec import Spec
from kvmnet.render.host_ifupdown import render_ifupdown
from kvmnet.render.host_netplan import render_netplan
from kvmnet.render.host_networkd import render_networkd
from kvmnet.render.host_nm import profile_uuid, render_networkmanager

__all__ = [
    "RENDERERS",
    "file_mode",
    "file_modes",
    "profile_uuid",
    "render_host",
    "render_ifupdown",
    "render_netplan",
    "render_networkd",
    "render_networkmanager",
]

Renderer = Callable[[Spec], dict[str, str]]

RENDERERS: dict[str, Renderer] = {
    "ifupdown": render_ifupdown,
    "netplan": render_netplan,
    "networkmanager": render_networkmanager,
    "networkd": render_networkd,
}

# netplan warns about, and NetworkManager ignores, files others can read.
_PRIVATE = ("etc/netplan/", "etc/NetworkManager/system-connections/")


def render_host(spec: Spec, renderer: str | None = None) -> dict[str, str]:
    """Host bridge files for one renderer: the one given, else spec.host.renderer.

    'auto' cannot be resolved here (it needs the live host): pass the result
    of detect_renderer() instead.
    """
    name = renderer or spec.host.renderer
    if name not in RENDERERS:
        raise ValueError(
            f"no host renderer {name!r}: pass one of {', '.join(RENDERERS)} "
            "(for 'auto', use kvmnet.backend.detect.detect_renderer on the host)")
    return RENDERERS[name](spec)


def file_mode(path: str) -> int:
    """Mode to write a rendered host file with: 0600 for netplan and NM keyfiles."""
    return 0o600 if path.startswith(_PRIVATE) else 0o644


def file_modes(files: Mapping[str, str]) -> dict[str, int]:
    return {path: file_mode(path) for path in files}
