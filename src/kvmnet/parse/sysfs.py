"""Which links are Wi-Fi, from what their sysfs folders hold: the pure half of
kvmnet.backend.host.wireless_links.

A Wi-Fi link has `phy80211` in /sys/class/net/NAME/ (cfg80211's link to its radio, every
driver of the last fifteen years) or `wireless` (the older wireless-extensions folder).
Bridging one does not work: the access point passes only frames from the MAC that
associated, so plan, apply's host-bridge step and doctor all refuse it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

WIFI_ENTRIES = ("phy80211", "wireless")


def wifi_paths(net_dir: str, names: Iterable[str]) -> list[str]:
    """Every path whose presence makes one of `names` Wi-Fi, under `net_dir`
    (/sys/class/net or a fake root's)."""
    return [f"{net_dir}/{name}/{entry}" for name in names for entry in WIFI_ENTRIES]


def wireless_names(present: Iterable[str]) -> frozenset[str]:
    """The links among the paths of `wifi_paths` that exist (one a line, as `ls -d`
    prints them): NAME of each .../NAME/phy80211 or .../NAME/wireless."""
    out = set()
    for line in present:
        p = PurePosixPath(line.strip())
        if p.name in WIFI_ENTRIES and p.parent.name:
            out.add(p.parent.name)
    return frozenset(out)
