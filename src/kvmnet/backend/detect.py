"""Which system configures this host's network: the answer to
`host.renderer: auto`. Looks only at files under a root directory (the
host's / , or an image being built), so tests run it on a temporary tree.

Order, first match wins:
  1. netplan         etc/netplan/*.yaml (netplan then drives networkd or NM itself)
  2. networkmanager  NetworkManager enabled in systemd, or profiles in
                     system-connections, or NetworkManager.conf with
                     [ifupdown] managed=true or no ifupdown interface but lo
  3. networkd        systemd-networkd enabled, or etc/systemd/network/*.network,
                     unless etc/network/interfaces configures a real interface
  4. ifupdown        etc/network/interfaces
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from kvmnet.errors import LiveError

WANTS = "etc/systemd/system/multi-user.target.wants"
_IFACE = re.compile(r"^\s*iface\s+(\S+)", re.MULTILINE)


def detect_renderer(root: Path | str = "/") -> str:
    """'netplan', 'networkmanager', 'networkd' or 'ifupdown'; LiveError if none is found."""
    root = Path(root)
    ifupdown_ifaces = _ifupdown_interfaces(root)
    if _any(root / "etc/netplan", "*.yaml") or _any(root / "etc/netplan", "*.yml"):
        return "netplan"
    if _networkmanager(root, ifupdown_ifaces):
        return "networkmanager"
    networkd = ((root / WANTS / "systemd-networkd.service").exists()
                or _any(root / "etc/systemd/network", "*.network"))
    if networkd and not ifupdown_ifaces:
        return "networkd"
    if (root / "etc/network/interfaces").is_file():
        return "ifupdown"
    if networkd:
        return "networkd"
    raise LiveError(
        f"cannot tell how {root} configures its network (no netplan, NetworkManager, "
        "systemd-networkd or ifupdown configuration found): set host.renderer in the "
        "spec to ifupdown, netplan, networkmanager or networkd")


def _networkmanager(root: Path, ifupdown_ifaces: set[str]) -> bool:
    nm = root / "etc/NetworkManager"
    if (root / WANTS / "NetworkManager.service").exists():
        return True
    if _any(nm / "system-connections", "*"):
        return True
    conf = nm / "NetworkManager.conf"
    if not conf.is_file():
        return False
    return _nm_manages_ifupdown(conf) or not ifupdown_ifaces


def _nm_manages_ifupdown(conf: Path) -> bool:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(conf.read_text(errors="replace"))
    except configparser.Error:
        return False
    return parser.get("ifupdown", "managed", fallback="false").strip().lower() in (
        "true", "yes", "1")


def _ifupdown_interfaces(root: Path) -> set[str]:
    """Interfaces other than lo that ifupdown configures (interfaces + interfaces.d)."""
    files = [root / "etc/network/interfaces"]
    d = root / "etc/network/interfaces.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.is_file())
    names: set[str] = set()
    for f in files:
        try:
            names.update(_IFACE.findall(f.read_text(errors="replace")))
        except OSError:
            continue
    names.discard("lo")
    return names


def _any(directory: Path, pattern: str) -> bool:
    try:
        return any(p.is_file() for p in directory.glob(pattern))
    except OSError:
        return False
