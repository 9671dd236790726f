"""Many hosts from one spec (kvmnet.service.multihost): plan and apply per host, concurrently.

Hosts here are libvirt test-driver files (``test:///PATH.xml``: each connection to
one holds its own state, so two files are two independent hypervisors), the lab's
real libvirtd (``qemu:///system`` in the namespace kvmnet-lab) and a URI nobody
answers (``qemu+unix:///system?socket=/nonexistent``). A spec may not name the first
or the last (a spec's URIs are an allow-list: SECURITY.md), so the spec names them as
the ssh hosts they stand for (``qemu+ssh://hv1.kvt.invalid/system``) and the tests'
opener (``Pool``, or the CLI's Session given it) opens what each stands for. A
test-driver host forgets everything when its connection closes, so the tests open
each one once (``Pool``) and plan again on the same connection.

Lab names: networks ``kvt-mh-*`` (bridges ``kvtmh*``), subnets in 10.245.0.0/16,
and kvmnet runs with --scope 'kvt-mh-*' so it never plans to remove another suite's
networks; cleanup removes only ``kvt-mh-*`` objects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmnet.backend import lock as kvmnet_lock
from kvmnet.backend.libvirt import Connection
from kvmnet.cli.main import main
from kvmnet.service.multihost import Session
from kvmnet.spec.load import load_text

KVMNET = str(Path(sys.executable).parent / "kvmnet")
DOWN = "qemu+ssh://down.kvt.invalid/system"     # as the spec names it
DOWN_REAL = "qemu+unix:///system?socket=/nonexistent"
REAL: dict[str, str] = {DOWN: DOWN_REAL}           # spec URI -> what the tests open
SCOPE = "kvt-mh-*"
WEB = "kvt-mh-web"

NODE = """<node>
  <domain type='test'>
    <name>{name}</name>
    <memory>65536</memory>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


class Kept(Connection):
    """A test-driver connection the Session may 'close' without losing its state."""

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        super().close()


class Pool:
    """Opener for Session: one connection per test:/// URI for the whole test."""

    def __init__(self) -> None:
        self.conns: dict[str, Kept] = {}
        self.opened: list[str] = []

    def __call__(self, uri: str) -> Connection:
        self.opened.append(uri)
        real = REAL.get(uri, uri)
        if not real.startswith("test:"):
            return Connection.open(real)
        if uri not in self.conns:
            self.conns[uri] = Kept.open(real)  # type: ignore[assignment]
        return self.conns[uri]

    def close(self) -> None:
        for c in self.conns.values():
            c.really_close()


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = Pool()
    yield p
    p.close()


@pytest.fixture
def cli_pool(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> Pool:
    """The CLI (main, in this process) opens hosts through the pool."""
    import functools

    import kvmnet.cli.multihost as cli_multihost

    monkeypatch.setattr(cli_multihost, "Session", functools.partial(Session, opener=pool))
    return pool


def make_host(tmp_path: Path, name: str, domain: str | None = None) -> str:
    """A fresh test-driver hypervisor: an XML file, with one running domain or none;
    the URI a spec names it by (Pool opens the file)."""
    path = tmp_path / f"{name}.xml"
    path.write_text(NODE.format(name=domain) if domain else "<node/>\n")
    uri = f"qemu+ssh://{name}.kvt.invalid/system"
    REAL[uri] = f"test://{path}"
    return uri


def spec_text(hosts: dict[str, str], lab_netns: str | None = None) -> str:
    lines = ["hosts:"]
    for name, uri in hosts.items():
        netns = f", netns: {lab_netns}" if name == "lab" and lab_netns else ""
        lines.append(f"  {name}: {{uri: '{uri}'{netns}}}")
    return "\n".join(lines) + """
networks:
  kvt-mh-nat:                      # on every host
    mode: nat
    bridge: kvtmh0
    ipv4: {address: 10.245.1.1/24, dhcp: 10.245.1.100-10.245.1.200}
  kvt-mh-iso:                      # on hv1 and the lab only
    mode: isolated
    hosts: [hv1, lab]
    bridge: kvtmh1
    ipv4: {address: 10.245.2.1/24}
guests:
  kvt-mh-web:                      # floating: managed where its domain is (hv1)
    interfaces:
      - {network: kvt-mh-nat, ipv4: 10.245.1.10}
"""


OWNER = "kvt-mh"


def session(text: str, pool: Pool, **kw: object) -> Session:
    spec, pos = load_text(text, "mh.yaml")
    if spec.owner is None:  # the CLI's mh.yaml below says this owner
        spec = spec.model_copy(update={"owner": OWNER})
    return Session(spec, pos, "mh.yaml", opener=pool, scope=(SCOPE,), **kw)  # type: ignore[arg-type]


def by_name(s: Session) -> dict[str, object]:
    return {o.target.name: o for o in s.outcomes}


# ------------------------------------------------------------------ test driver only

@pytest.fixture
def three(tmp_path: Path) -> dict[str, str]:
    """hv1 (with the guest's domain), hv2, and one that does not answer."""
    return {"hv1": make_host(tmp_path, "hv1", WEB), "hv2": make_host(tmp_path, "hv2"),
            "lab": DOWN}


def test_unreachable_host_is_reported_and_the_others_are_applied(three, pool):
    text = spec_text(three)
    with session(text, pool, lock_wait=0.0) as s:
        s.plan()
        got = by_name(s)
        assert got["lab"].failed and "cannot connect to " + DOWN_REAL in got["lab"].error
        assert got["lab"].planned is None
        kinds = {n: sorted(a.kind for a in got[n].planned.plan.actions) for n in ("hv1", "hv2")}
        assert kinds == {"hv1": ["network.create", "network.create", "nic.attach"],
                         "hv2": ["network.create"]}
        # the floating guest is simply elsewhere on hv2: no 'not defined' warning there
        assert got["hv2"].planned.warnings == []
        s.apply()
        assert got["hv1"].report.ok and got["hv2"].report.ok
        # each network 3 writes; the NIC 2: kvmnet's record and the attach (test:///
        # drivers cannot hotplug it: a redefine; the calls they refused are no writes)
        assert got["hv1"].writes == 8 and got["hv2"].writes == 3
        summary = s.summary(0.0)
    assert summary.failed == ("lab",) and summary.applied == ("hv1", "hv2")
    assert summary.writes == 11
    # afterwards: nothing left to do on the hosts that were reached
    with session(text, pool) as again:
        again.plan()
        done = by_name(again)
    assert [a.summary for n in ("hv1", "hv2") for a in done[n].planned.plan.actions] == []
    # hv2 holds the guest's reservation too (it may migrate there) but not its NIC
    hv2 = pool.conns[three["hv2"]].raw.networkLookupByName("kvt-mh-nat").XMLDesc(0)
    assert "10.245.1.10" in hv2 and "kvt-mh-iso" not in [
        n.name() for n in pool.conns[three["hv2"]].raw.listAllNetworks()]


def test_host_option_limits_the_run(three, pool):
    with session(spec_text(three), pool, only=("hv2",)) as s:
        s.plan()
        assert [o.target.name for o in s.outcomes] == ["hv2"]
    assert pool.opened == [three["hv2"]]


def test_workers_bound_the_concurrency(tmp_path):
    hosts = {f"hv{i}": make_host(tmp_path, f"hv{i}") for i in range(12)}
    text = "hosts:\n" + "".join(f"  {n}: {{uri: '{u}'}}\n" for n, u in hosts.items()) + \
        "networks:\n  kvt-mh-a: {mode: isolated, bridge: kvtmh9}\n"
    lock = threading.Lock()
    now, peak = 0, 0

    def slow(uri: str) -> Connection:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.05)
        with lock:
            now -= 1
        if uri.startswith("qemu+ssh://hv3."):
            raise RuntimeError("boom")      # a surprise on one host stays on that host
        return Connection.open(REAL[uri])

    spec, pos = load_text(text)
    t0 = time.monotonic()
    with Session(spec, pos, "x", opener=slow, workers=4) as s:
        s.plan()
    took = time.monotonic() - t0
    assert peak == 4
    assert took < 12 * 0.05                  # concurrent, not one after the other
    failed = [(o.target.name, o.error) for o in s.outcomes if o.failed]
    assert failed == [("hv3", "unexpected RuntimeError: boom")]
    assert all(o.changes for o in s.outcomes if not o.failed)


def test_a_floating_guest_defined_nowhere_is_reported(tmp_path, pool):
    hosts = {"hv1": make_host(tmp_path, "hv1"), "hv2": make_host(tmp_path, "hv2")}
    text = spec_text(hosts).replace("hosts: [hv1, lab]", "hosts: [hv1]")
    with session(text, pool) as s:
        s.plan()
        assert s.summary(0).unplaced == (WEB,)
        assert all(o.planned.warnings == [] for o in s.outcomes)


def test_cli_plan_json_and_exit_codes(three, cli_pool, capsys, tmp_path):
    path = tmp_path / "mh.yaml"
    path.write_text(spec_text(three))
    assert main(["plan", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert sorted(data["hosts"]) == ["hv1", "hv2", "lab"] and data["ovn"] is None
    assert data["hosts"]["lab"]["status"] == "failed"
    assert "cannot connect" in data["hosts"]["lab"]["error"]
    assert data["hosts"]["hv2"]["changes"] is True and data["hosts"]["hv2"]["error"] is None
    assert data["summary"]["failed"] == ["lab"] and data["summary"]["changed"] == ["hv1", "hv2"]
    # --host limits; --detailed-exitcode says 2 (changes, no failure)
    assert main(["plan", str(path), "--host", "hv2", "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert "== hv2 (" in out and "hv1" not in out
    assert "1 host(s): 1 with changes (hv2), 0 without changes, 0 failed" in out
    # text mode: each host has its section, the failure is in its own and in the summary
    assert main(["plan", str(path)]) == 1
    cap = capsys.readouterr()
    assert "== lab (" + DOWN + ") ==\nFAILED: cannot connect" in cap.out
    assert "kvmnet: error: plan failed on lab" in cap.err


@pytest.mark.parametrize(("args", "message"), [
    (["-c", "test:///default"], "-c/--connect and a spec with hosts: do not mix"),
    (["--netns", "x"], "--netns and a spec with hosts: do not mix: set netns: under"),
    (["--host", "hv11"], "--host hv11: no such host in the spec; did you mean hv1?"),
])
def test_cli_refuses_mixed_options(three, cli_pool, capsys, tmp_path, args, message):
    path = tmp_path / "mh.yaml"
    path.write_text(spec_text(three))
    for cmd in ("plan", "apply"):
        assert main([cmd, str(path), *args]) == 1
        assert message in capsys.readouterr().err


def test_cli_host_needs_a_hosts_section(capsys, tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("networks: {kvt-mh-a: {mode: isolated}}\n")
    assert main(["plan", str(path), "--host", "hv1"]) == 1
    assert "--host NAME picks hosts of the spec's hosts: section" in capsys.readouterr().err


def test_cli_apply_applies_the_reachable_hosts(three, cli_pool, capsys, tmp_path):
    path = tmp_path / "mh.yaml"
    path.write_text(spec_text(three))
    assert main(["apply", str(path), "--yes", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    hv1, lab = data["hosts"]["hv1"], data["hosts"]["lab"]
    assert hv1["ok"] and hv1["writes"] == 8 and [x["status"] for x in hv1["results"]] == [
        "done", "done", "done"]
    assert not lab["ok"] and lab["results"] == [] and "cannot connect" in lab["error"]
    assert data["summary"]["applied"] == ["hv1", "hv2"]


def test_single_host_apis_refuse_a_spec_with_hosts(three, tmp_path):
    from kvmnet.backend.libvirt import connect
    from kvmnet.errors import PlanError
    from kvmnet.service.ops import plan_file

    path = tmp_path / "mh.yaml"
    path.write_text(spec_text(three))
    with connect("test:///default") as conn, pytest.raises(PlanError, match="names several"):
        plan_file(path, conn)


# ------------------------------------------------------------------ with the lab libvirtd

@pytest.fixture
def lab_hosts(libvirtd, tmp_path) -> Iterator[dict[str, str]]:
    raw = libvirtd.open()
    from lab.libvirtd import remove_objects

    remove_objects(raw, "kvt-mh-")
    try:
        yield {"hv1": make_host(tmp_path, "hv1", WEB), "hv2": make_host(tmp_path, "hv2"),
               "lab": libvirtd.uri, "down": DOWN}
    finally:
        try:
            remove_objects(raw, "kvt-mh-")
        finally:
            raw.close()


@pytest.mark.libvirtd
def test_three_hosts_with_the_real_libvirtd(libvirtd, lab_hosts, pool, tmp_path):
    """hv1 and hv2 (test driver) and the lab's libvirtd are applied; 'down' is reported;
    afterwards plan is empty on all three, also through the CLI for the lab."""
    text = spec_text(lab_hosts, libvirtd.netns)
    with session(text, pool, lock_wait=5.0) as s:
        s.plan()
        got = by_name(s)
        assert got["down"].failed and got["down"].planned is None
        lab_kinds = sorted(a.kind for a in got["lab"].planned.plan.actions if not a.skipped)
        assert lab_kinds == ["network.create", "network.create"]
        s.apply()
        summary = s.summary(0.0)
    assert summary.applied == ("hv1", "hv2", "lab") and summary.failed == ("down",)
    assert got["lab"].report.ok
    raw = libvirtd.open()
    try:
        nets = {n.name(): n for n in raw.listAllNetworks() if n.name().startswith("kvt-mh-")}
        assert sorted(nets) == ["kvt-mh-iso", "kvt-mh-nat"] and all(
            n.isActive() for n in nets.values())
        assert "10.245.1.10" in nets["kvt-mh-nat"].XMLDesc(0)   # the floating guest's
    finally:
        raw.close()
    links = libvirtd.ns_links()
    assert "kvtmh0" in links and "kvtmh1" in links            # in the lab's namespace
    with session(text, pool) as again:
        again.plan()
        after = by_name(again)
    for name in ("hv1", "hv2", "lab"):
        assert [a.summary for a in after[name].planned.plan.actions if not a.skipped] == [], name
    # the CLI, a process of its own: only the lab (test-driver hosts forget between runs)
    path = tmp_path / "mh.yaml"
    path.write_text(f"owner: {OWNER}\n{text}")
    r = subprocess.run([KVMNET, "plan", str(path), "--host", "lab", "--scope", SCOPE,
                        "--detailed-exitcode"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes: qemu:///system matches the spec" in r.stdout


@pytest.mark.libvirtd
def test_each_host_takes_its_own_lock(libvirtd, lab_hosts, pool):
    """Another apply holding the lab's lock fails the lab only; the rest is applied."""
    text = spec_text({k: v for k, v in lab_hosts.items() if k != "down"}, libvirtd.netns)
    with kvmnet_lock.apply_lock(libvirtd.uri, 30):
        with session(text, pool, lock_wait=0.0) as s:
            s.plan()
            s.apply()
            got = by_name(s)
    assert got["lab"].failed and "another kvmnet apply" in got["lab"].error
    assert got["hv1"].report.ok and got["hv2"].report.ok


# ------------------------------------------------------------------ with OVN northbound

@pytest.fixture
def nb(tmp_path_factory) -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ovsdb-server") is None:
        pytest.skip("needs root and ovsdb-server (openvswitch-switch, ovn-central)")
    from lab.ovn import Central

    central = Central(dir=Path("/run/kvmnet-mh-nb"), northd=False)
    central.start()
    try:
        yield central.nb_remote
    finally:
        central.stop()
        shutil.rmtree(central.dir, ignore_errors=True)


OVERLAY = """\
  kvt-mh-ov:
    mode: overlay
    ipv4: {address: 10.245.9.1/24, dhcp: 10.245.9.100-10.245.9.199}
guests:
"""
DB = "  kvt-mh-db: {interfaces: [{network: kvt-mh-ov, ipv4: 10.245.9.20}]}\n"


def test_ovn_is_planned_and_applied_once(tmp_path, pool, nb):
    hosts = {"hv1": make_host(tmp_path, "hv1", WEB), "hv2": make_host(tmp_path, "hv2")}
    text = spec_text(hosts).replace("hosts: [hv1, lab]", "hosts: [hv1]").replace(
        "guests:\n", OVERLAY) + DB + f"ovn: {{northbound: '{nb}'}}\n"
    with session(text, pool) as s:
        s.plan()
        ovn = s.ovn
        assert ovn is not None and not ovn.failed, ovn.error
        kinds = sorted(a.kind for a in ovn.planned.plan.actions)
        assert kinds == ["ovn.create", "ovn.create", "ovn.create"]   # switch, DHCP, port
        for o in s.hosts:                                # hosts plan no OVN rows at all
            assert not [a for a in o.planned.plan.actions if a.kind.startswith("ovn.")]
        s.apply()
        assert ovn.report.ok and ovn.writes == 3
    with session(text, pool) as again:
        again.plan()
        assert not any(o.changes for o in again.outcomes)
        assert again.summary(0).ovn == "unchanged"


def test_unreachable_northbound_fails_alone(tmp_path, pool):
    hosts = {"hv1": make_host(tmp_path, "hv1", WEB)}
    text = spec_text(hosts).replace("hosts: [hv1, lab]", "hosts: [hv1]") + \
        "ovn: {northbound: 'unix:/nonexistent/nb.sock'}\n"
    with session(text, pool) as s:
        s.plan()
        assert s.ovn is not None and s.ovn.failed
        assert not s.hosts[0].failed and s.hosts[0].changes
        assert s.summary(0).ovn == "failed" and s.summary(0).failures == 1


def test_bench_runs_and_converges():
    """bench.multihost_scale (docs/CLUSTER.md's host numbers), tiny: it asserts that
    apply converges (no-op plan) on every host itself."""
    from bench.multihost_scale import measure

    row = measure(hosts=3, guests=2, nets=1, rtt_ms=0.5, workers=2)
    assert row["writes"] == 3 * (3 + 2 * 2) and row["nics"] == 6
