"""Port forwards with real guests (issue 6): tcp 8080 on the host -> kvt-e2e-nat1:80 (the
guest is named; its address comes from its DHCP reservation), on the NAT network
kvt-e2e-nat of the shared lab libvirtd (libvirt 9.0, iptables-nft backend; in the Debian 13
lab, tests/lab/trixie.py, libvirt 11.3 with its iptables and its nftables backend).

Reached through the host's uplink address 198.51.100.1:8080 by (a) the "internet"
namespace, (b) the host itself (kvmnet-lab), (c) the other guest on the same network
(kvt-e2e-nat2, hairpin: it is masqueraded to the bridge address); and still after a
network restart (net-destroy + net-start, the guests' taps put back as apply does),
after kvmnet's rules were lost (as after a reboot) and the hook put them back, and after
a libvirtd restart. After the spec drops the forward it no longer works, and the
namespace's whole ruleset is what it was before (libvirt's rules of other test
sessions' networks aside).

The hook: kvmnet writes it under this test's --root (ROOT/etc/libvirt/hooks/network.d),
not into the machine's /etc/libvirt, because the lab libvirtd is shared with other test
sessions; so the lab libvirtd does not run it by itself, and the test invokes it the
way libvirt does (NETWORK started begin -, the network XML on stdin, inside libvirtd's
namespace). tests/integration/test_forwards_ns.py runs it from a libvirtd of its own.
The libvirtd restart happens only when no other test session uses the lab libvirtd
(checked under the lab's lock); otherwise that step is skipped, saying why.

Runs after test_1 .. test_5 and before test_9 (which restarts this network itself); it
removes its forward even when it fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from lxml import etree

from kvmnet.backend.forward_files import HOOK_FILE, LOG_FILE, STATE_FILE
from kvmnet.backend.host import set_master
from lab.firewall import (
    diff,
    drop_kvmnet_rules,
    exact,
    kvmnet_items,
    normalized,
    ns_run,
    ruleset,
)
from lab.libvirtd import LIBVIRTD, Libvirtd, proc_alive, proc_runs, read_pidfile, terminate

from .e2elab import INET_ADDR, NS_INET, PREFIX, UPLINK_HOST, World, http_get, kvmnet, peer_addr

NAT = "kvt-e2e-nat"
BRIDGE = "kvte-nat0"
WEB = "kvt-e2e-nat1"          # reserved 10.231.10.10: the forward's target
OTHER = "kvt-e2e-nat2"        # the other guest on the network
GATEWAY = "10.231.10.1"
PORT = 8080
URL = f"http://{UPLINK_HOST}:{PORT}"


@pytest.fixture(scope="module")
def fw(world: World) -> Iterator[dict[str, Any]]:
    """The spec with the forward, its --root, the ruleset before; on the way out the
    forward is removed whatever happened (test_9 expects a host without it)."""
    spec = world.spec_copy()
    spec["networks"][NAT]["forwards"] = [
        {"proto": "tcp", "host_port": PORT, "guest": WEB, "guest_port": 80}]
    root = world.workdir / "fwroot"
    (root / "etc/libvirt").mkdir(parents=True, exist_ok=True)   # libvirt's config folder
    ctx = {"path": world.write_spec("forwards.yaml", spec), "root": root,
           "args": ("--root", str(root)), "before": ruleset(world.lab),
           "others": other_networks(world),
           "plain": world.write_spec("no-forwards.yaml", world.spec_copy())}
    try:
        yield ctx
    finally:
        if kvmnet_items(ruleset(world.lab)) or (root / STATE_FILE).exists():
            try:
                world.apply(ctx["plain"], *ctx["args"])
            finally:
                if kvmnet_items(ruleset(world.lab)):
                    drop_kvmnet_rules(world.lab)


def firewall_actions(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["kind"], a["target"], a["impact"]) for a in plan["actions"]
            if a["kind"].startswith("firewall.")]


def reaches(world: World, timeout: float = 20.0) -> None:
    """(a) the internet, (b) the host, (c) the other guest: all reach WEB's HTTP through
    the host's address; the guest sees the internet's own address, and the host's bridge
    address for the other guest (hairpin masquerade). Retried for a while: after a
    network restart the bridge's STP takes a moment to forward."""
    deadline = time.monotonic() + timeout
    while True:
        got = [http_get(NS_INET, f"{URL}/", 3).stdout.strip(),
               http_get(world.lab, f"{URL}/", 3).stdout.strip(),
               world.guest_fetch(OTHER, f"{URL}/", 3)[1].strip()]
        if got == [f"KVMNET-GUEST {WEB}"] * 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got == [f"KVMNET-GUEST {WEB}"] * 3, f"internet, host, {OTHER} got: {got}"
    peers = [http_get(NS_INET, f"{URL}/cgi-bin/peer", 3).stdout.strip(),
             world.guest_fetch(OTHER, f"{URL}/cgi-bin/peer", 3)[1].strip()]
    assert [peer_addr(p) for p in peers] == [INET_ADDR, GATEWAY]


def reaches_not(world: World) -> None:
    got = http_get(NS_INET, f"{URL}/", 3)
    assert got.returncode != 0, f"the internet still reaches {WEB}: {got.stdout}"
    assert http_get(world.lab, f"{URL}/", 3).returncode != 0
    rc, out = world.guest_fetch(OTHER, f"{URL}/", 3)
    assert rc != 0, f"{OTHER} still reaches {WEB}: {out}"


def restart_network(world: World) -> None:
    """virsh net-destroy + net-start through libvirt-python, then the running guests'
    taps back into the new bridge (libvirt 9.0 leaves them out; kvmnet's apply does the
    same with kvmnet.backend.host.set_master)."""
    net = world.conn.networkLookupByName(NAT)
    net.destroy()
    net.create()
    for dom in world.conn.listAllDomains():
        if not dom.name().startswith(PREFIX) or not dom.isActive():
            continue
        for nic in etree.fromstring(dom.XMLDesc(0)).iterfind("devices/interface"):
            src, tap = nic.find("source"), nic.find("target")
            if src is not None and src.get("network") == NAT and tap is not None:
                set_master(tap.get("dev"), BRIDGE, world.lab)


def run_hook_like_libvirt(world: World, root: Any) -> str:
    xml = world.conn.networkLookupByName(NAT).XMLDesc(0)
    r = ns_run(world.lab, [str(root / HOOK_FILE), NAT, "started", "begin", "-"],
               stdin=f"<hookData>{xml}</hookData>")
    assert r.returncode == 0, r.stderr
    return (root / LOG_FILE).read_text()


@pytest.mark.e2e
def test_forward_reaches_the_guest_from_outside_the_host_and_another_guest(world, fw):
    assert http_get(NS_INET, f"{URL}/", 3).returncode != 0     # nothing there yet
    rc, plan = world.plan(fw["path"], *fw["args"])
    assert rc == 2 and firewall_actions(plan) == [
        ("firewall.sync", "firewall/forwards", "live")], plan["actions"]
    sync = next(a for a in plan["actions"] if a["kind"] == "firewall.sync")
    assert f"+ {NAT} tcp {PORT} -> 10.231.10.10:80 (guest {WEB})" in sync["details"]
    result = world.apply(fw["path"], *fw["args"])
    done = [r for r in result["results"] if r["kind"] == "firewall.sync"]
    assert [r["status"] for r in done] == ["done"], result
    reaches(world)
    # once: a second plan and apply change nothing, the rules are not even rewritten
    before = kvmnet_items(exact(ruleset(world.lab)))     # with handles, counters zeroed
    rc, plan = world.plan(fw["path"], *fw["args"])
    assert not firewall_actions(plan), plan["actions"]
    result = world.apply(fw["path"], *fw["args"])
    assert not [r for r in result["results"] if r["kind"].startswith("firewall.")]
    after = kvmnet_items(exact(ruleset(world.lab)))
    assert after == before
    show = kvmnet("show", "-c", world.libvirtd.uri, "--netns", world.lab, *fw["args"],
                  "--json")
    assert show.returncode == 0, show.stderr
    assert [(f["network"], f["host_port"], f["guest"], f["state"])
            for f in json.loads(show.stdout)["forwards"]] == [(NAT, str(PORT), WEB,
                                                               "installed")]


@pytest.mark.e2e
def test_forward_survives_a_network_restart(world, fw):
    restart_network(world)
    reaches(world)
    assert not firewall_actions(world.plan(fw["path"], *fw["args"])[1])


@pytest.mark.e2e
def test_the_hook_puts_lost_rules_back_when_the_network_starts(world, fw):
    drop_kvmnet_rules(world.lab)                  # what a reboot does to them
    got = http_get(NS_INET, f"{URL}/", 3)
    assert got.returncode != 0, got.stdout
    rc, plan = world.plan(fw["path"], *fw["args"])
    sync = next(a for a in plan["actions"] if a["kind"] == "firewall.sync")
    assert any(d.startswith("~ put back") for d in sync["details"]), sync
    restart_network(world)
    log = run_hook_like_libvirt(world, fw["root"])
    assert f"{NAT} started: 1 forward(s): " in log, log
    reaches(world)
    assert not firewall_actions(world.plan(fw["path"], *fw["args"])[1])


def restart_lab_libvirtd(lv: Libvirtd) -> str | None:
    """Restart the shared lab libvirtd if no other test session uses it, under the lab's
    lock so that none can start meanwhile; why not, otherwise."""
    with lv._locked():
        others = lv._other_users()
        if others:
            return f"other test sessions (pids {others}) use the lab libvirtd"
        pid = read_pidfile(lv.pidfile)
        if pid is None or not proc_alive(pid) or not proc_runs(pid, LIBVIRTD):
            return "the lab libvirtd was not started by the lab (no pid file of its own)"
        terminate(pid, timeout=30)
        lv._spawn_libvirtd()
    return None


@pytest.mark.e2e
def test_forward_survives_a_libvirtd_restart(world, fw):
    why = restart_lab_libvirtd(world.libvirtd)
    if why:
        pytest.skip(f"not restarting the shared lab libvirtd: {why} (a libvirtd restart "
                    "is tested with a private libvirtd in tests/integration/"
                    "test_forwards_ns.py)")
    try:
        world.conn.close()
    except Exception:  # noqa: BLE001 - the old connection died with the daemon
        pass
    world.conn = world.libvirtd.open()
    world.domains = {g: world.conn.lookupByName(g) for g in world.domains}
    reaches(world)
    assert not firewall_actions(world.plan(fw["path"], *fw["args"])[1])


@pytest.mark.e2e
def test_removed_forward_stops_working_and_leaves_no_rule(world, fw):
    rc, plan = world.plan(fw["plain"], *fw["args"])
    sync = next(a for a in plan["actions"] if a["kind"] == "firewall.sync")
    assert f"- {NAT} tcp {PORT} -> 10.231.10.10:80 (guest {WEB})" in sync["details"]
    world.apply(fw["plain"], *fw["args"])
    reaches_not(world)
    assert not kvmnet_items(ruleset(world.lab))
    assert not (fw["root"] / STATE_FILE).exists() and not (fw["root"] / HOOK_FILE).exists()
    # the namespace's whole ruleset is as before (multiset: libvirt re-inserted the
    # restarted network's rules at the top of its chains), other sessions' networks aside
    drop = tuple(set(fw["others"]) | set(other_networks(world)))
    before, after = normalized(fw["before"], drop), normalized(ruleset(world.lab), drop)
    assert before == after, diff(before, after)
    assert not firewall_actions(world.plan(fw["plain"], *fw["args"])[1])


def other_networks(world: World) -> list[str]:
    """Bridge names and IPv4 subnet prefixes ("10.200.77.") of other test sessions'
    networks in the shared lab: their libvirt rules may come and go meanwhile. Inactive
    ones too: one being stopped while the ruleset was read still had its rules."""
    out: list[str] = []
    for n in world.conn.listAllNetworks():
        try:  # another session's network may vanish between listing and reading
            if n.name().startswith(PREFIX):
                continue
            root = etree.fromstring(n.XMLDesc(0).encode())
        except libvirt.libvirtError:
            continue
        out += [f'"{b.get("name")}"' for b in root.iterfind("bridge") if b.get("name")]
        out += [ip.get("address", "").rsplit(".", 1)[0] + "." for ip in root.iterfind("ip")
                if "." in ip.get("address", "")]
    return out
