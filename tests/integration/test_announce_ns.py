"""After a network restart kvmnet sends a gratuitous ARP from the new bridge
(kvmnet.backend.announce), so a guest whose neighbour entry for its gateway names an
old MAC takes the bridge's real one at once. Against a real kernel: a namespace with a
bridge (10.152.250.1/24) and a "guest" namespace behind a veth port of it, whose entry
for 10.152.250.1 holds a wrong MAC; after announce() it holds the bridge's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from kvmnet.backend.announce import announce, garp_frame

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and ip (network namespaces)")
HOST, GUEST = "kvt-pl-garp-h", "kvt-pl-garp-g"
GATEWAY, STALE = "10.152.250.1", "52:54:00:de:ad:01"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


@pytest.fixture
def pair() -> Iterator[None]:
    for ns in (HOST, GUEST):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        ip("netns", "add", ns)
    try:
        ip("-n", HOST, "link", "add", "kvtplgbr0", "type", "bridge", "stp_state", "0")
        ip("-n", HOST, "link", "add", "kvtplgv0", "type", "veth", "peer", "name", "eth0",
           "netns", GUEST)
        ip("-n", HOST, "link", "set", "kvtplgv0", "master", "kvtplgbr0", "up")
        ip("-n", HOST, "link", "set", "kvtplgbr0", "up")
        ip("-n", HOST, "addr", "add", f"{GATEWAY}/24", "dev", "kvtplgbr0")
        ip("-n", GUEST, "link", "set", "eth0", "up")
        ip("-n", GUEST, "addr", "add", "10.152.250.10/24", "dev", "eth0")
        ip("-n", GUEST, "neigh", "replace", GATEWAY, "lladdr", STALE, "dev", "eth0",
           "nud", "reachable")
        yield
    finally:
        for ns in (HOST, GUEST):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def neigh_mac() -> str | None:
    got = json.loads(ip("-j", "-n", GUEST, "neigh", "show", GATEWAY))
    return got[0].get("lladdr") if got else None


def test_guest_takes_the_bridges_mac(pair: None) -> None:
    bridge_mac = json.loads(ip("-j", "-n", HOST, "link", "show", "kvtplgbr0"))[0]["address"]
    assert neigh_mac() == STALE
    assert announce("kvtplgbr0", HOST) == 1
    deadline = time.monotonic() + 5
    while neigh_mac() != bridge_mac and time.monotonic() < deadline:
        time.sleep(0.05)
    assert neigh_mac() == bridge_mac


def test_no_bridge_no_frame(pair: None) -> None:
    assert announce("kvtplgnone", HOST) == 0


def test_frame_is_an_arp_request_for_its_own_address() -> None:
    f = garp_frame(bytes.fromhex("525400000001"), bytes([10, 152, 250, 1]))
    assert len(f) == 42 and f[:6] == b"\xff" * 6 and f[12:14] == b"\x08\x06"
    assert f[20:22] == b"\x00\x01"                     # request
    assert f[28:32] == f[38:42] == bytes([10, 152, 250, 1])
