"""Isolated: guests on the same isolated network reach each other; nothing outside
reaches them, and they reach nothing outside (even with routes that point the way)."""

from __future__ import annotations

import uuid

import pytest

from .e2elab import INET_ADDR, NS_INET, PEER_PORT, UPLINK_HOST, peer_addr

ISO1, ISO2 = "kvt-e2e-iso1", "kvt-e2e-iso2"
SUBNET = "10.231.20.0/24"
HOST_SIDE = "10.231.20.1"


@pytest.mark.e2e
def test_isolated_guests_reach_each_other(world):
    for a, b in ((ISO1, ISO2), (ISO2, ISO1)):
        rc, out = world.guest_fetch(a, f"http://{world.ip(b)}/")
        assert rc == 0, f"{a} -> {b}: {out}"
        assert out.strip() == f"KVMNET-GUEST {b}"
    rc, out = world.guest_fetch(ISO1, f"http://{world.ip(ISO2)}/cgi-bin/peer")
    assert rc == 0 and peer_addr(out) == world.ip(ISO1), out


@pytest.mark.e2e
def test_outside_cannot_reach_isolated_guests(world):
    world.ns(NS_INET, ["ip", "route", "add", SUBNET, "via", UPLINK_HOST])
    try:
        for g in (ISO1, ISO2):
            got = world.http(NS_INET, f"http://{world.ip(g)}/", timeout=3)
            assert got.returncode != 0, f"the internet reached isolated {g}: {got.stdout}"
            assert "connection refused" in got.stderr.lower(), got.stderr  # libvirt's REJECT
    finally:
        world.ns(NS_INET, ["ip", "route", "del", SUBNET])


@pytest.mark.e2e
def test_isolated_guest_cannot_get_out(world):
    net = "198.51.100.0/24"
    rc, out = world.guest_run(ISO1, f"ip route replace {net} via {HOST_SIDE}")
    assert rc == 0, out
    try:
        path = f"/iso-{uuid.uuid4().hex[:8]}"
        rc, out = world.guest_fetch(ISO1, f"http://{INET_ADDR}:{PEER_PORT}{path}", timeout=3)
        assert rc != 0, f"isolated guest reached the internet: {out}"
        assert not any(p == path for _, p in world.peers(NS_INET))
    finally:
        world.guest_run(ISO1, f"ip route del {net}")
