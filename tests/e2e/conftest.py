"""End-to-end fixtures: real QEMU guests on networks that `kvmnet apply` made.

One session-wide world (the ``world`` fixture) is shared by every e2e test, so
guests boot once, in parallel:

- the lab's libvirtd in namespace ``kvmnet-lab`` (tests/lab, fixture ``libvirtd``);
- in ``kvmnet-lab`` (the "host"): the uplink veth ``kvte-up0`` 198.51.100.1/24 (its
  default route goes out there) and the LAN bridge ``kvtebr0`` 10.231.0.1/24 with the
  veth port ``kvte-lan0``;
- namespace ``kvt-e2e-inet`` ("the internet", 198.51.100.254) behind the uplink and
  namespace ``kvt-e2e-lan`` (the LAN: router 10.231.0.254 and its own DHCP server,
  dnsmasq) behind the bridge; both run peer_server.py on port 8080, which answers and
  logs the source address it sees;
- the networks and guest NICs of e2e-spec.yaml, made by ``kvmnet apply`` (the guests
  are defined without NICs first: kvmnet attaches them), then the six guests
  (tests/lab/guest.py) started at once; each prints ``KVMNET-LEASE <ip> <mac> eth0``.

Guests are driven over HTTP: ``/cgi-bin/run?CMD`` runs a command in the guest,
``/cgi-bin/peer`` answers the client address the guest saw.

Everything is named ``kvt-e2e-*`` (bridges and veths ``kvte*``) and removed by name
before the world is built and after it (also when a test or the setup fails); the
teardown fails if anything is left. A failed e2e test gets the guests' consoles, the
networks' XML and the namespaces' links in its report.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
import yaml
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from lab.guest import CACHE_DIR, domain_xml, guest_files, serial_log_path
from lab.libvirtd import (
    URI,
    Libvirtd,
    iproute,
    ns_links,
    pids_in_netns,
    proc_alive,
    quiet_libvirt,
    remove_objects,
    terminate,
)

from .e2elab import (
    BOOT_TIMEOUT,
    HOST_BRIDGE,
    INET_ADDR,
    LAN_DHCP,
    LAN_HOST,
    LAN_PORT,
    LAN_ROUTER,
    LEASE_RE,
    NS_INET,
    NS_LAN,
    OUR_LAB_LINKS,
    OUR_NAMESPACES,
    PEER_PORT,
    PEER_SERVER,
    PREFIX,
    RUN,
    SPEC_FILE,
    TIMINGS,
    UPLINK,
    UPLINK_HOST,
    World,
    http_get,
    run,
)

# ------------------------------------------------------------------ setup / cleanup


def cleanup(conn: Any, lab: str, procs: list[subprocess.Popen[str]] | None = None) -> list[str]:
    """Remove everything the suite makes, by name; what was found and removed."""
    found: list[str] = []
    for p in procs or []:
        if p.poll() is None:
            terminate(p.pid)
            p.wait(5)
    if conn is not None:
        with quiet_libvirt():
            found += remove_objects(conn, PREFIX)
    for ns in OUR_NAMESPACES:
        if ns in pr_netns.listnetns():
            for pid in pids_in_netns(ns):  # only ever ours: peer servers, the LAN's dnsmasq
                if proc_alive(pid):
                    terminate(pid)
                    found.append(f"process {pid} in {ns}")
            pr_netns.remove(ns)
            found.append(f"namespace {ns}")
    if RUN.is_dir():
        shutil.rmtree(RUN)
    if lab in pr_netns.listnetns():
        with iproute(lab) as ipr:
            for name in OUR_LAB_LINKS:
                idx = ipr.link_lookup(ifname=name)
                if idx:
                    try:
                        ipr.link("del", index=idx[0])
                    except NetlinkError as e:  # a veth goes with its peer's namespace,
                        if e.code != errno.ENODEV:  # a moment after it was removed
                            raise
                    found.append(f"link {name} in {lab}")
    return found


def leftovers(conn: Any, lab: str) -> list[str]:
    left = [f"namespace {ns}" for ns in OUR_NAMESPACES if ns in pr_netns.listnetns()]
    if lab in pr_netns.listnetns():
        left += [f"link {n} in {lab}" for n in ns_links(lab) if n.startswith("kvte")]
    if conn is not None:
        left += [f"network {n.name()}" for n in conn.listAllNetworks()
                 if n.name().startswith(PREFIX)]
        left += [f"domain {d.name()}" for d in conn.listAllDomains()
                 if d.name().startswith(PREFIX)]
    return left


def make_namespaces(lab: str) -> None:
    for ns in OUR_NAMESPACES:
        pr_netns.create(ns)
        with iproute(ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    with iproute(lab) as ipr:
        ipr.link("add", ifname=UPLINK, kind="veth", peer={"ifname": "up0", "net_ns_fd": NS_INET})
        ipr.link("add", ifname=HOST_BRIDGE, kind="bridge", br_stp_state=0, br_forward_delay=0)
        ipr.link("add", ifname=LAN_PORT, kind="veth", peer={"ifname": "lan0", "net_ns_fd": NS_LAN})
        up, br, port = (ipr.link_lookup(ifname=n)[0] for n in (UPLINK, HOST_BRIDGE, LAN_PORT))
        ipr.link("set", index=port, master=br)
        for idx in (up, br, port):
            ipr.link("set", index=idx, state="up")
        ipr.addr("add", index=up, address=UPLINK_HOST, prefixlen=24)
        ipr.addr("add", index=br, address=LAN_HOST, prefixlen=24)
        ipr.route("add", dst="0.0.0.0/0", gateway=INET_ADDR)
    for ns, ifname, addr in ((NS_INET, "up0", INET_ADDR), (NS_LAN, "lan0", LAN_ROUTER)):
        with iproute(ns) as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address=addr, prefixlen=24)


def start_servers() -> list[subprocess.Popen[str]]:
    RUN.mkdir(parents=True, exist_ok=True)
    procs = []
    for ns in OUR_NAMESPACES:
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PEER_SERVER), str(PEER_PORT),
             str(RUN / f"{ns}-peers.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    dnsmasq_log = RUN / "lan-dnsmasq.log"
    procs.append(subprocess.Popen(
        ["ip", "netns", "exec", NS_LAN, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
         "--port=0", "--interface=lan0", "--bind-interfaces", "--user=root",
         f"--dhcp-range={LAN_DHCP[0]},{LAN_DHCP[1]},255.255.255.0,1h",
         f"--dhcp-option=option:router,{LAN_ROUTER}", "--log-dhcp",
         f"--dhcp-leasefile={RUN / 'lan.leases'}", f"--pid-file={RUN / 'lan-dnsmasq.pid'}",
         f"--log-facility={dnsmasq_log}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 15
    for ns in OUR_NAMESPACES:
        while http_get(ns, f"http://127.0.0.1:{PEER_PORT}/ready", 2).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"peer server in {ns} does not answer")
            time.sleep(0.1)
    while "DHCP, IP range" not in (dnsmasq_log.read_text() if dnsmasq_log.exists() else ""):
        if time.monotonic() > deadline or procs[-1].poll() is not None:
            raise RuntimeError(f"the LAN's dnsmasq did not start: {dnsmasq_log}")
        time.sleep(0.1)
    return procs


def boot(world: World) -> None:
    """Start every guest at once; wait for each one's lease on eth0."""
    t0 = time.monotonic()
    for dom in world.domains.values():
        dom.create()
    pending = set(world.domains)
    while pending:
        for g in sorted(pending):
            m = re.search(LEASE_RE, world.console(g))
            if m:
                world.leases[g] = (m.group(1), m.group(2))
                world.boot_seconds[g] = time.monotonic() - t0
                pending.discard(g)
            elif "KVMNET-ERROR no ethN" in world.console(g):
                raise RuntimeError(f"guest {g} has no NIC:\n{world.console(g)[-3000:]}")
            elif not world.domains[g].isActive():
                raise RuntimeError(f"guest {g} stopped while booting:\n{world.console(g)[-3000:]}")
        if pending and time.monotonic() - t0 > BOOT_TIMEOUT:
            tails = "\n".join(f"== {g}\n{world.console(g)[-1500:]}" for g in sorted(pending))
            raise RuntimeError(f"no lease within {BOOT_TIMEOUT:.0f}s: {sorted(pending)}\n{tails}")
        time.sleep(0.2)
    TIMINGS["guests boot to lease (all 6 in parallel)"] = (
        f"{max(world.boot_seconds.values()):.1f}s (each: "
        + ", ".join(f"{g.removeprefix(PREFIX)} {s:.1f}s" for g, s in
                    sorted(world.boot_seconds.items())) + ")")


@pytest.fixture(scope="package")
def world(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    t_start = time.monotonic()
    lab = libvirtd.netns
    conn = libvirtd.open()
    procs: list[subprocess.Popen[str]] = []
    try:
        old = cleanup(conn, lab)
        if old:
            print(f"\ne2e: removed leftovers of an earlier run: {old}")
        spec = yaml.safe_load(SPEC_FILE.read_text())
        workdir = tmp_path_factory.mktemp("e2e")
        w = World(libvirtd, conn, workdir, spec, workdir / "spec.yaml")
        w.write_spec("spec.yaml", spec)
        make_namespaces(lab)
        procs = start_servers()

        # guests without NICs: kvmnet attaches the NICs of the spec
        kernel, initrd = guest_files()
        for g in spec["guests"]:
            w.logs[g] = serial_log_path(g)
            w.domains[g] = conn.defineXML(domain_xml(g, kernel, initrd, [], w.logs[g]))

        rc, plan = w.plan(w.spec_path)
        assert rc == 2 and plan["changes"], plan
        t = time.monotonic()
        applied = w.apply(w.spec_path)
        TIMINGS["first kvmnet apply (4 networks, 6 NICs)"] = f"{time.monotonic() - t:.1f}s"
        for g, dom in w.domains.items():
            nics = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).count("<interface ")
            assert nics == 1, f"after apply {g} has {nics} NICs, not 1:\n{json.dumps(applied)}"

        boot(w)
        TIMINGS["world ready (setup + apply + boot)"] = f"{time.monotonic() - t_start:.1f}s"
    except BaseException:
        print("\n".join(f"===== {title}\n{text}" for title, text in _diagnostics()))
        _teardown(conn, lab, procs)
        raise
    try:
        yield w
    finally:
        _teardown(w.conn, lab, procs)  # w.conn: a test may reconnect (libvirtd restart)


def _teardown(conn: Any, lab: str, procs: list[subprocess.Popen[str]]) -> None:
    try:  # another file's test may have restarted libvirtd under this connection
        alive = conn.isAlive() == 1 and conn.listAllDomains() is not None
    except libvirt.libvirtError:
        alive = False
    if not alive:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
        conn = libvirt.open(URI)
    try:
        cleanup(conn, lab, procs)
        left = leftovers(conn, lab)
    finally:
        conn.close()
    if left:
        raise AssertionError(f"e2e cleanup left {left}")


# ------------------------------------------------------------------ reporting


def _diagnostics() -> list[tuple[str, str]]:
    out = []
    for log in sorted((CACHE_DIR / "serial").glob(f"{PREFIX}*.log")):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        out.append((f"console {log.stem} (last 25 lines)", tail))
    dnsmasq_log = RUN / "lan-dnsmasq.log"
    if dnsmasq_log.exists():
        tail = "\n".join(dnsmasq_log.read_text(errors="replace").splitlines()[-20:])
        out.append(("the LAN's dnsmasq log (last 20 lines)", tail))
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as e:
        return [*out, ("network XML", f"cannot connect: {e}")]
    try:
        xmls = [n.XMLDesc(0) for n in conn.listAllNetworks() if n.name().startswith(PREFIX)]
    finally:
        conn.close()
    out.append(("network XML (live)", "\n".join(xmls) or "(no kvt-e2e networks)"))
    for ns in ("kvmnet-lab", *OUR_NAMESPACES):
        r = run(["sh", "-c", f"ip -n {ns} -br addr; ip -n {ns} route; ip -n {ns} neigh"])
        out.append((f"links/routes/neighbours in {ns}", r.stdout + r.stderr))
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.failed and item.get_closest_marker("e2e") is not None:
        try:
            rep.sections.extend(_diagnostics())
        except Exception as e:  # diagnostics must never hide the failure
            rep.sections.append(("diagnostics", f"could not collect: {e!r}"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("kvmnet e2e timings")
        for k, v in TIMINGS.items():
            terminalreporter.write_line(f"{k}: {v}")
