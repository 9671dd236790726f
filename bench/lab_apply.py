"""Apply against the lab's real libvirtd: kvmnet vs the floor vs the peers (issue 8, item 1).

For each N and each run, every tool starts from no kvb-* networks, creates N NAT
networks (DHCP range + 5 reservations each), runs again (the no-op) and moves one
reservation (the change); the bench removes the networks between tools, untimed.
kvmnet runs as users run it, a process:

    kvmnet apply FILE -c qemu:///system --netns kvmnet-lab --yes --scope 'kvb-*' --json

and its write calls are checked from --json: 3N on create, 0 on the no-op, 1 on the
change (one networkUpdate). The same commands run through a `kvmnet server` too (the
row "kvmnet apply (server)"): one server, started before the runs on a socket of the
bench's own, serves every one of them (each is checked to have been served).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import KVMNET, ROOT, BenchError, Proc, bench_env, run
from bench.peers import CHECKS, PeerJobs, ensure_venv, peer_list
from bench.specgen import PREFIX, SCOPE, apply_spec, host_xml, net_name, reservation

URI = "qemu:///system"
NETNS = "kvmnet-lab"
FLOOR = str(ROOT / "bench" / "floor.py")
# what every kvmnet apply process loads before it does anything: the libraries issue 16
# has kvmnet on (typer, pydantic with kvmnet's spec models, PyYAML, lxml) and libvirt
IMPORTS = "import typer, yaml, lxml.etree, libvirt, kvmnet.model.spec"


LOCK = Path("/run/lock/kvmnet-bench.lock")


@contextmanager
def lab() -> Iterator[None]:
    """The lab libvirtd (started or reused; this process is registered as a user until
    the end), with no kvb-* networks at the start and at the end. One bench run at a
    time uses the kvb-* names: a second one (the test suite's `--quick` run, say) waits
    for the first, instead of removing its networks under it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from lab.libvirtd import Libvirtd

    with _one_at_a_time():
        the_lab = Libvirtd().start()
        try:
            cleanup()
            yield
        finally:
            try:
                cleanup()
            finally:
                the_lab.stop()


@contextmanager
def _one_at_a_time() -> Iterator[None]:
    import fcntl

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"bench: another bench run holds {LOCK}; waiting for it", file=sys.stderr,
                  flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # (closing the file releases the lock)


def cleanup(uri: str = URI) -> None:
    """Destroy and undefine every kvb-* network (the bench's own)."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(uri)
    try:
        for net in conn.listAllNetworks():
            if not net.name().startswith(PREFIX):
                continue
            try:
                if net.isActive():
                    net.destroy()
                if net.isPersistent():
                    net.undefine()
            except libvirt.libvirtError as e:  # gone or stopped meanwhile: fine
                if e.get_error_code() not in (libvirt.VIR_ERR_NO_NETWORK,
                                              libvirt.VIR_ERR_OPERATION_INVALID):
                    raise
    finally:
        conn.close()


class Job:
    """The files of one apply job of n networks, made once, untimed."""

    def __init__(self, work: Path, n: int) -> None:
        from kvmnet.model.derive import dhcp_hosts
        from kvmnet.render.network import build_network
        from kvmnet.render.xmlutil import pretty
        from kvmnet.spec.load import load_text

        self.work, self.n = work, n
        self.spec = work / "spec.yaml"
        self.spec.write_text(apply_spec(n))
        self.changed = work / "spec-change.yaml"
        self.changed.write_text(apply_spec(n, change=True))
        spec, _ = load_text(self.spec.read_text(), str(self.spec))
        # kvmnet's XML without its ownership mark: the floor and the peers are not
        # kvmnet, and another suite's apply on the shared lab must not take them for its own
        self.xmls = {name: pretty(build_network(name, net, hosts=dhcp_hosts(spec, name),
                                                managed=False))
                     for name, net in spec.networks.items()}
        self.floor_create = work / "floor-create.json"
        self.floor_create.write_text(json.dumps({"uri": URI, "xmls": list(self.xmls.values())}))
        self.floor_update = work / "floor-update.json"
        self.floor_update.write_text(json.dumps({
            "uri": URI, "name": net_name(0), "parent_index": 0,
            "xml": host_xml(reservation(0, 0, moved=True))}))

    def kvmnet(self, spec: Path, *extra: str, server: Path | None = None
               ) -> tuple[Proc, int]:
        """kvmnet apply in its own process, or through the kvmnet server at `server`."""
        env = bench_env()
        if server is not None:  # (KVMNET_SERVER_DEBUG: a run not served says why)
            del env["KVMNET_NO_SERVER"]
            env.update(KVMNET_SERVER_SOCKET=str(server), KVMNET_SERVER_DEBUG="1")
        p = run([KVMNET, "apply", str(spec), "-c", URI, "--netns", NETNS, "--yes",
                 "--scope", SCOPE, "--json", *extra], env=env).check()
        if server is not None and "kvmnet: server:" in p.err:
            raise BenchError(f"kvmnet apply was not served: {p.err[-2000:]}")
        doc = json.loads(p.out)
        if not doc.get("ok"):
            raise BenchError(f"kvmnet apply {spec.name} not ok: {p.out[-2000:]}")
        return p, int(doc["writes"])


@contextmanager
def kvmnet_server(work: Path) -> Iterator[Path]:
    """A `kvmnet server` on a socket in `work` (a folder of ours, 0700) until the end;
    its socket's path."""
    folder = work / "server"
    folder.mkdir(mode=0o700)
    sock, log = folder / "cli.sock", folder / "server.log"
    with log.open("w") as out:
        p = subprocess.Popen([sys.executable, "-m", "kvmnet", "server", "--socket", str(sock)],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             env=bench_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "serving" not in log.read_text():
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"kvmnet server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield sock
    finally:
        p.terminate()
        p.wait(timeout=120)


def _expect(what: str, got: int, want: int) -> None:
    if got != want:
        raise BenchError(f"{what}: {got} libvirt write calls, expected {want}")


def measure(sizes: list[int], runs: int, peers: list[str], install: bool,
            log: Callable[[str], None], pairs: int | None = None) -> dict[str, Any]:
    """{"sizes": {N: {...samples...}}, "peers_skipped": {peer: why}}. `pairs`: how many
    times the floor and kvmnet run, one after the other (default: `runs`); the peers run
    `runs` times, in the first runs."""
    out: dict[str, Any] = {"sizes": {}, "peers_skipped": {}, "checks": CHECKS}
    wanted = list(peers)
    if any(p != "virsh" for p in wanted):
        why = ensure_venv(install)
        if why is not None:
            for p in [p for p in wanted if p != "virsh"]:
                out["peers_skipped"][p] = why
            wanted = [p for p in wanted if p == "virsh"]
    with lab(), tempfile.TemporaryDirectory(prefix="kvb-server-") as tmp_server, \
            kvmnet_server(Path(tmp_server)) as server:
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix=f"kvb-apply-{n}-") as tmp:
                out["sizes"][str(n)] = _one_size(Path(tmp), n, runs, max(pairs or runs, runs),
                                                 wanted, out, log, server)
    return out


def _one_size(work: Path, n: int, runs: int, pairs: int, peers: list[str],
              out: dict[str, Any], log: Callable[[str], None], server: Path
              ) -> dict[str, Any]:
    from kvmnet.cli.live import PARALLEL

    job = Job(work, n)
    jobs = PeerJobs(work / "peers", URI, job.xmls, n)
    res: dict[str, Any] = {"floor": [], "floor_update": [], "floor_update_call": [],
                           "kvmnet": [], "noop": [], "change": [], "writes": [],
                           "kvmnet_serial": [], "parallel": PARALLEL, "imports": [],
                           "floor_first": [], "peers": {},
                           "served": {"create": [], "noop": [], "change": []}}

    def floor() -> None:
        cleanup()
        res["floor"].append(run([sys.executable, FLOOR, "create", str(job.floor_create)],
                                env=bench_env()).check().seconds)
        p = run([sys.executable, FLOOR, "update", str(job.floor_update)],
                env=bench_env()).check()
        res["floor_update"].append(p.seconds)
        res["floor_update_call"].append(json.loads(p.out)["call_s"])

    def kvmnet() -> None:
        cleanup()
        p, w = job.kvmnet(job.spec)
        _expect("kvmnet create", w, 3 * n)
        res["kvmnet"].append(p.seconds)
        p, w = job.kvmnet(job.spec)
        _expect("kvmnet no-op", w, 0)
        res["noop"].append(p.seconds)
        p, w = job.kvmnet(job.changed)
        # the networkUpdate call, and kvmnet's record of what it applied (plan.drift)
        _expect("kvmnet one-reservation change", w, 2)
        res["change"].append(p.seconds)
        res["writes"].append({"create": 3 * n, "noop": 0, "change": 2})

    def served() -> None:  # kvmnet through its server: the same three commands
        cleanup()
        row = res["served"]
        for key, spec, want in (("create", job.spec, 3 * n), ("noop", job.spec, 0),
                                ("change", job.changed, 2)):
            p, w = job.kvmnet(spec, server=server)
            _expect(f"kvmnet (server) {key}", w, want)
            row[key].append(p.seconds)

    def serial() -> None:  # kvmnet one action at a time, as before --parallel
        cleanup()
        p, w = job.kvmnet(job.spec, "--parallel", "1")
        _expect("kvmnet --parallel 1 create", w, 3 * n)
        res["kvmnet_serial"].append(p.seconds)
        res["imports"].append(run([sys.executable, "-c", IMPORTS], env=bench_env(
            PYDANTIC_DISABLE_PLUGINS="__all__")).check().seconds)

    for r in range(pairs):
        # the floor and kvmnet take turns going first: whatever the one before leaves
        # behind (the daemon's and the kernel's clean-up of the last networks) falls on
        # each alike; kvmnet through its server next to kvmnet, --parallel 1 first or last
        floor_first = r % 2 == 0
        res["floor_first"].append(floor_first)
        order = ((floor, kvmnet, served, serial) if floor_first
                 else (serial, served, kvmnet, floor))
        log(f"apply N={n} run {r + 1}/{pairs}: "
            + ", ".join(f.__name__ for f in order))
        for one in order:
            one()
        if r >= runs:
            continue
        for peer in list(peer_list(jobs, peers)):
            if peer.name in out["peers_skipped"]:
                continue
            log(f"apply N={n} run {r + 1}/{runs}: {peer.name}")
            cleanup()
            row = res["peers"].setdefault(peer.name, {"create": [], "noop": [], "change": [],
                                                      "note": peer.note, "failed": []})
            try:  # a run that fails is counted and shown; the peer's other runs still count
                c = peer.create().check().seconds
                o = peer.noop().check().seconds
                ch = peer.change().check().seconds if peer.change is not None else None
            except BenchError as e:
                row["failed"].append(str(e))
                continue
            row["create"].append(c)
            row["noop"].append(o)
            if ch is not None:
                row["change"].append(ch)
        cleanup()
    return res
