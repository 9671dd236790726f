"""One Wi-Fi check (kvmnet.backend.host.wireless_links, deciding with kvmnet.parse.sysfs)
and its three users: plan refuses a Wi-Fi port of a host bridge, apply's host-bridge
step refuses it again, doctor flags it. sysfs is a fake root under tmp; inside a
namespace the check runs `ip netns exec NS ls -d` (faked here; the real one in
tests/integration/test_netlink_ns.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from kvmnet.apply.bridge.migrate import Link, refusals
from kvmnet.backend import host
from kvmnet.backend.host import wireless_links
from kvmnet.errors import LiveError
from kvmnet.model.spec import HostBridge
from kvmnet.parse.sysfs import wifi_paths, wireless_names


def fake_sysfs(root: Path, **entries: str) -> Path:
    """root/class/net/NAME/, with ENTRY in it when given (a folder, or a symlink as the
    kernel makes phy80211)."""
    for name, entry in entries.items():
        d = root / "class/net" / name
        d.mkdir(parents=True)
        if entry == "phy80211":
            (d / entry).symlink_to(root / "does-not-matter")
        elif entry:
            (d / entry).mkdir()
    return root


def test_the_decision_names_links_by_their_marks() -> None:
    assert wifi_paths("/sys/class/net", ["wlan0"]) == ["/sys/class/net/wlan0/phy80211",
                                                       "/sys/class/net/wlan0/wireless"]
    assert wireless_names(["/sys/class/net/wlan0/phy80211\n", "/x/class/net/wlp3s0/wireless",
                           "/sys/class/net/eth0/device", "", "/phy80211"]) == {
        "wlan0", "wlp3s0"}


def test_a_fake_root(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, wlan0="phy80211", wlp3s0="wireless", eth0="device", br0="")
    got = wireless_links(["wlan0", "wlp3s0", "eth0", "br0", "gone0"], sysfs=root)
    assert got == {"wlan0", "wlp3s0"}
    assert wireless_links([], sysfs=root) == frozenset()
    # a given root wins over the namespace: doctor --sysfs-root --netns reads the root
    assert wireless_links(["wlan0"], netns="kvt-never", sysfs=root) == {"wlan0"}


def test_a_namespace_is_looked_at_through_ip_netns_exec(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 2, "/sys/class/net/wl0/phy80211\n",
                                           "ls: cannot access ...: No such file\n")

    monkeypatch.setattr(host.subprocess, "run", fake_run)
    assert wireless_links(["wl0", "eth0"], netns="lab") == {"wl0"}
    assert calls == [["ip", "netns", "exec", "lab", "ls", "-d", "--",
                      *wifi_paths("/sys/class/net", ["wl0", "eth0"])]]


def test_no_ip_for_a_namespace_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(argv: list[str], **_: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", "ip")

    monkeypatch.setattr(host.subprocess, "run", missing)
    with pytest.raises(LiveError, match="cannot look for Wi-Fi links in network namespace "
                                        "lab: .*No such file"):
        wireless_links(["wl0"], netns="lab")


def test_apply_refuses_a_wifi_port_it_is_told_of(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, wlp3s0="phy80211", enp2s0="")
    links = [Link("br0", False), Link("wlp3s0", True), Link("enp2s0", True)]
    hb = HostBridge(ports=["wlp3s0", "enp2s0"])
    [reason] = refusals("br0", hb, links, wireless_links(hb.ports, sysfs=root))
    assert reason.startswith("wlp3s0 is a wireless interface") and "NAT" in reason
    assert refusals("br0", hb, links) == []
