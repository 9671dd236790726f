"""Live change (runs last: it restarts the NAT network). While the host pings a guest on
the NAT network without pause (busybox ping every 0.2 s from kvmnet-lab):

1. a spec that adds a DHCP reservation for another guest and changes DNS hosts is
   planned as live-only and applied with zero lost pings; then both changes are seen
   working (the other guest renews into its new address, the guest resolves the new name);
2. an MTU change is planned as disruptive; after apply the pinged guest is back on the
   bridge and answers again, with the same address, and a TCP session the host held
   open into it across the change still carries data (the gap is measured and
   reported here; bench/restart_gap.py measures it per kind of change).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.libvirtd import read_pidfile

from .e2elab import TIMINGS, Pinger, TcpSession

NAT = "kvt-e2e-nat"
BRIDGE = "kvte-nat0"
PINGED = "kvt-e2e-nat1"
OTHER = "kvt-e2e-nat2"
OTHER_RESERVED = "10.231.10.20"
DNS_IP = "10.231.10.50"
GATEWAY = "10.231.10.1"
RECOVERY_LIMIT = 15.0
TCP_PORT = 7000


def live_spec(world) -> dict:
    spec = world.spec_copy()
    spec["guests"][OTHER]["interfaces"][0]["ipv4"] = OTHER_RESERVED
    spec["networks"][NAT]["dns"]["hosts"] = [{"ip": DNS_IP, "names": ["new.e2e.test"]}]
    return spec


def missing(pinger: Pinger) -> list[int]:
    seqs = {s for _, s in pinger.replies}
    return sorted(set(range(min(seqs), max(seqs) + 1)) - seqs) if seqs else [-1]


@pytest.mark.e2e
def test_live_changes_lose_no_ping(world, record_property):
    path = world.write_spec("live.yaml", live_spec(world))
    rc, plan = world.plan(path)
    assert rc == 2, plan
    assert [(a["kind"], a["target"], a["impact"]) for a in plan["actions"]] == [
        ("network.update", f"network/{NAT}", "live")], plan["actions"]
    dnsmasq_pid = read_pidfile(Path(f"/run/libvirt/network/{NAT}.pid"))

    pinger = Pinger(world.lab, world.ip(PINGED))
    try:
        assert pinger.wait_replies(5, 10), f"no pings before the change: {pinger.lines}"
        t0 = time.monotonic()
        result = world.apply(path)
        t_apply = time.monotonic() - t0
        n = len(pinger.replies)
        assert pinger.wait_replies(n + 10, 10), f"pings stopped after apply: {pinger.lines}"
    finally:
        pinger.stop()
    lost = missing(pinger)
    TIMINGS["live change (DHCP host + DNS host)"] = (
        f"apply {t_apply:.1f}s, {len(pinger.replies)} pings answered, lost {len(lost)}")
    record_property("live_change_lost_pings", len(lost))
    assert not lost, f"lost pings {lost} during a live-only change:\n" + "\n".join(pinger.lines)
    assert [r["status"] for r in result["results"]] == ["done"]
    assert read_pidfile(Path(f"/run/libvirt/network/{NAT}.pid")) == dnsmasq_pid, \
        "libvirt's dnsmasq was restarted"
    rc, plan = world.plan(path)
    assert rc == 0, plan

    # the changes work: DNS answers the new name only ...
    rc, out = world.guest_run(PINGED, f"timeout 5 nslookup -type=a new.e2e.test {GATEWAY}")
    assert rc == 0 and f"Address: {DNS_IP}" in out, out
    _, out = world.guest_run(PINGED, f"timeout 3 nslookup -type=a old.e2e.test {GATEWAY}")
    assert f"Address: {DNS_IP}" not in out, out
    # ... and the other guest, renewing its lease, is moved to its new reservation
    rc, out = world.guest_run(OTHER, "kill -USR1 $(pidof udhcpc)")
    assert rc == 0, out
    m = world.wait_console(OTHER, rf"KVMNET-LEASE {OTHER_RESERVED.replace('.', '[.]')} (\S+)")
    world.leases[OTHER] = (OTHER_RESERVED, m.group(1))
    assert world.http(world.lab, f"http://{OTHER_RESERVED}/").returncode == 0


@pytest.mark.e2e
def test_mtu_change_is_disruptive_and_the_guest_comes_back(world, record_property):
    spec = live_spec(world)
    spec["networks"][NAT]["mtu"] = 1400
    path = world.write_spec("mtu.yaml", spec)
    rc, plan = world.plan(path)
    assert rc == 2, plan
    acts = [(a["kind"], a["impact"]) for a in plan["actions"] if a["target"] == f"network/{NAT}"]
    assert acts == [("network.redefine", "disruptive")], plan["actions"]

    # (nc's stdin a pipe that stays open: at EOF on stdin busybox nc may close the session;
    # every output away from the CGI's, or httpd never answers)
    rc, out = world.guest_run(PINGED, "rm -f /tmp/tcp.out; ((sleep 600 | nc -l -p "
                              f"{TCP_PORT} > /tmp/tcp.out) >/dev/null 2>&1 &); sleep 0.5")
    assert rc == 0, out
    session = TcpSession(world.lab, world.ip(PINGED), TCP_PORT)
    pinger = Pinger(world.lab, world.ip(PINGED))
    try:
        assert pinger.wait_replies(5, 10), f"no pings before the change: {pinger.lines}"
        assert session.send("before the change")
        t0 = time.monotonic()
        result = world.apply(path)
        t1 = time.monotonic()
        deadline = t1 + RECOVERY_LIMIT
        while not any(t > t1 for t, _ in pinger.replies) and time.monotonic() < deadline:
            time.sleep(0.05)
        back = [t for t, _ in pinger.replies if t > t1]
        if back:
            pinger.wait_replies(len(pinger.replies) + 5, 5)  # a few more, to see it holds
        sent_after = session.send("after the change")
    finally:
        pinger.stop()
        session.close()
    before = [t for t, _ in pinger.replies if t < t0]
    gap = (back[0] - before[-1]) if back and before else None
    TIMINGS["MTU change (network restart)"] = (
        f"apply {t1 - t0:.1f}s; ping gap {gap:.1f}s (last reply before apply -> first after)"
        if gap is not None else f"apply {t1 - t0:.1f}s; pings did not come back")
    record_property("mtu_change_ping_gap_s", round(gap, 2) if gap is not None else None)
    messages = [r["message"] for r in result["results"]]
    assert back, (f"no ping answered within {RECOVERY_LIMIT:.0f}s after apply "
                  f"(apply said {messages}):\n" + "\n".join(pinger.lines[-20:]))

    # the same address, and the TCP session opened before the change carried data after it
    ip = world.ip(PINGED)
    rc, out = world.guest_run(PINGED, "sleep 1; cat /tmp/tcp.out; ip -4 -o addr show eth0")
    assert rc == 0 and f"inet {ip}/" in out, out
    assert sent_after and "before the change\nafter the change" in out, (
        f"the TCP session into {PINGED} did not survive the restart:\n{out}")
    links = world.libvirtd.ns_links()
    assert links[BRIDGE]["mtu"] == 1400
    mac1 = world.leases[PINGED][1]
    taps = [n for n, link in links.items() if link["master"] == BRIDGE]
    assert any(links[t]["mac"] == "fe" + mac1[2:] for t in taps), f"ports of {BRIDGE}: {taps}"
    # the other running guest was reconnected too
    assert world.http(world.lab, f"http://{world.ip(OTHER)}/").returncode == 0
    rc, plan = world.plan(path)
    assert rc == 0, plan
