"""A real OVN for tests: central (NB, SB, northd) and two simulated hypervisors.

Layout (everything under RUN_DIR = /run/kvmnet-ovn, names start with ``kvt-ovn``):

- Central runs in the normal namespace: one ovsdb-server per database (NB and SB, each
  with its own db file, unix socket, pidfile, control socket and log under
  RUN_DIR/central) and ovn-northd. Unix sockets are files, so every namespace reaches
  them.
- Hypervisor ``hvN`` is the network namespace ``kvt-ovn-hvN`` with its own ovsdb-server
  (RUN_DIR/hvN/conf.db, db.sock) and ovs-vswitchd (userspace datapath:
  ``datapath_type=netdev``; the kernel has no openvswitch module) and ovn-controller.
  ``br-phy`` holds the underlay veth and the tunnel address (10.240.0.N/24); the
  userspace datapath keeps its own routing table, so ``ovs/route/add 10.240.0.0/24
  br-phy``. ``br-int`` (fail-mode secure) is made by us with datapath_type netdev.
  ovs-vswitchd makes ``<bridge>.mgmt`` sockets in OVS_RUNDIR and ovn-controller has no
  --unixctl option: both get OVS_RUNDIR/OVN_RUNDIR = RUN_DIR/hvN so two hypervisors
  never share a socket.
- The underlay is one veth pair, kvt-ovn-ul1 (in hv1) <-> kvt-ovn-ul2 (in hv2).
- A "guest" is a namespace ``kvt-ovn-g-NAME`` whose eth0 is one end of a veth; the other
  end is an OVS port on br-int with ``external_ids:iface-id=<logical port>`` and
  attached-mac, exactly what libvirt writes for `<virtualport type='openvswitch'>`.

Life cycle: :meth:`OvnLab.start` first removes leftovers by name (daemons by the pidfiles
under RUN_DIR, when the pid still runs the expected program; the namespaces kvt-ovn-*;
the RUN_DIR files), then starts everything and waits until both chassis are in the SB
database. :meth:`OvnLab.stop` stops the daemons by their own pidfiles and deletes the
namespaces, also after a failed start. A flock on /run/kvmnet-ovn.lock keeps two test
sessions from tearing down each other's lab.

Quirks seen here (Debian 12: OVS 3.1, OVN 23.03):
- ovs-vswitchd with the netdev datapath logs "failed to create datapath system" style
  errors for the kernel datapath; harmless.
- Geneve over the userspace datapath learns the peer's MAC by ARP through br-phy; the
  first packets after start may be lost, so pings are retried.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RUN_DIR = Path("/run/kvmnet-ovn")
LOCK_FILE = Path("/run/kvmnet-ovn.lock")
NETNS_DIR = Path("/run/netns")
PREFIX = "kvt-ovn"
UNDERLAY = "10.240.0.0/24"
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
VS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
# the programs a pidfile of ours may name (ovs-vswitchd is a Debian alternative)
DAEMONS = ("ovsdb-server", "ovs-vswitchd", "ovn-northd", "ovn-controller")
DHCP_SCRIPT = """#!/bin/sh
# udhcpc hook: apply the lease (busybox sets $interface $ip $mask $router)
case "$1" in
  bound|renew)
    busybox ip addr flush dev "$interface"
    busybox ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && busybox ip route replace default via "${router%% *}" dev "$interface"
    echo "lease $ip/$mask router $router" ;;
esac
exit 0
"""


class OvnLabError(RuntimeError):
    """The OVN lab could not be set up; the message says why (with log tails)."""


# ---------------------------------------------------------------- processes

def run(args: Sequence[str], netns: str | None = None, env: dict[str, str] | None = None,
        check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(args)
    full_env = {**os.environ, **(env or {})}
    res = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and res.returncode != 0:
        raise OvnLabError(f"{' '.join(cmd)} failed ({res.returncode}): "
                          f"{res.stderr.strip() or res.stdout.strip()}")
    return res


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return ""


def stop_pidfile(pidfile: Path, timeout: float = 10.0) -> None:
    """Stop the daemon a pidfile names, if it still runs one of the OVS/OVN programs."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if not _alive(pid) or Path(_exe(pid)).name not in DAEMONS:
        pidfile.unlink(missing_ok=True)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if not _alive(pid):
            break
    pidfile.unlink(missing_ok=True)


def _wait(what: str, ok: Callable[[], bool], timeout: float, logs: Sequence[Path] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise OvnLabError(f"timed out waiting for {what}" + "".join(
        f"\n--- {p}:\n{tail(p)}" for p in logs))


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def del_netns(name: str) -> None:
    if netns_exists(name):
        run(["ip", "netns", "del", name], check=False)


def add_netns(name: str) -> None:
    del_netns(name)
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


# ---------------------------------------------------------------- ovsdb-server

def start_ovsdb(db: Path, schema: str, sock: Path, netns: str | None = None) -> None:
    """One ovsdb-server for one database file (made fresh), all files beside it."""
    stem = sock.with_suffix("")
    db.unlink(missing_ok=True)
    run(["ovsdb-tool", "create", str(db), schema])
    run(["ovsdb-server", str(db), f"--remote=punix:{sock}", f"--pidfile={stem}.pid",
         f"--unixctl={stem}.ctl", f"--log-file={stem}.log", "--detach", "--no-chdir"],
        netns=netns)
    _wait(f"{sock}", sock.exists, 10, [Path(f"{stem}.log")])


@dataclass
class Central:
    """NB + SB ovsdb-servers and ovn-northd in the normal namespace."""

    dir: Path = RUN_DIR / "central"
    northd: bool = True

    @property
    def nb_sock(self) -> Path:
        return self.dir / "nb.sock"

    @property
    def sb_sock(self) -> Path:
        return self.dir / "sb.sock"

    @property
    def nb_remote(self) -> str:
        return f"unix:{self.nb_sock}"

    @property
    def sb_remote(self) -> str:
        return f"unix:{self.sb_sock}"

    def pidfiles(self) -> list[Path]:
        return [self.dir / "northd.pid", self.dir / "nb.pid", self.dir / "sb.pid"]

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        start_ovsdb(self.dir / "nb.db", NB_SCHEMA, self.nb_sock)
        run(["ovn-nbctl", f"--db={self.nb_remote}", "init"])
        if not self.northd:
            return
        start_ovsdb(self.dir / "sb.db", SB_SCHEMA, self.sb_sock)
        run(["ovn-sbctl", f"--db={self.sb_remote}", "init"])
        run(["ovn-northd", f"--ovnnb-db={self.nb_remote}", f"--ovnsb-db={self.sb_remote}",
             f"--pidfile={self.dir}/northd.pid", f"--unixctl={self.dir}/northd.ctl",
             f"--log-file={self.dir}/northd.log", "--detach", "--no-chdir"])

    def stop(self) -> None:
        for p in self.pidfiles():
            stop_pidfile(p)

    def nbctl(self, *args: str) -> str:
        return run(["ovn-nbctl", f"--db={self.nb_remote}", *args]).stdout

    def sbctl(self, *args: str) -> str:
        return run(["ovn-sbctl", f"--db={self.sb_remote}", *args]).stdout


# ---------------------------------------------------------------- hypervisors

@dataclass
class Hypervisor:
    """A simulated hypervisor: namespace + ovsdb-server + ovs-vswitchd + ovn-controller."""

    index: int
    guests: dict[str, str] = field(default_factory=dict)   # guest ns -> veth on br-int

    @property
    def name(self) -> str:
        return f"{PREFIX}-hv{self.index}"          # namespace and OVN chassis name

    @property
    def dir(self) -> Path:
        return RUN_DIR / f"hv{self.index}"

    @property
    def tunnel_ip(self) -> str:
        return f"10.240.0.{self.index}"

    @property
    def db(self) -> str:
        return f"unix:{self.dir}/db.sock"

    @property
    def env(self) -> dict[str, str]:
        return {"OVS_RUNDIR": str(self.dir), "OVN_RUNDIR": str(self.dir)}

    def pidfiles(self) -> list[Path]:
        return [self.dir / f"{d}.pid" for d in ("ovn-controller", "ovs-vswitchd", "db")]

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args]).stdout

    def appctl(self, daemon: str, *args: str) -> str:
        return run(["ovs-appctl", "-t", f"{self.dir}/{daemon}.ctl", *args]).stdout

    def start_ovs(self) -> None:
        """Namespace, ovsdb-server, ovs-vswitchd (the underlay veth must exist first)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        start_ovsdb(self.dir / "conf.db", VS_SCHEMA, self.dir / "db.sock", self.name)
        self.vsctl("--no-wait", "init")
        run(["ovs-vswitchd", self.db, f"--pidfile={self.dir}/ovs-vswitchd.pid",
             f"--unixctl={self.dir}/ovs-vswitchd.ctl", f"--log-file={self.dir}/ovs-vswitchd.log",
             "--detach", "--no-chdir"], netns=self.name, env=self.env)

    def start_underlay(self, veth: str) -> None:
        self.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
                   "--", "add-port", "br-phy", veth)
        run(["ip", "-n", self.name, "link", "set", veth, "up"])
        run(["ip", "-n", self.name, "addr", "add", f"{self.tunnel_ip}/24", "dev", "br-phy"])
        run(["ip", "-n", self.name, "link", "set", "br-phy", "up"])
        self.appctl("ovs-vswitchd", "ovs/route/add", UNDERLAY, "br-phy")

    def start_ovn(self, sb_remote: str) -> None:
        self.vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev",
                   "fail-mode=secure", "other-config:disable-in-band=true")
        self.vsctl("set", "open", ".", f"external_ids:system-id={self.name}",
                   f"external_ids:ovn-remote={sb_remote}", "external_ids:ovn-encap-type=geneve",
                   f"external_ids:ovn-encap-ip={self.tunnel_ip}",
                   "external_ids:ovn-bridge-datapath-type=netdev")
        run(["ovn-controller", self.db, f"--pidfile={self.dir}/ovn-controller.pid",
             f"--log-file={self.dir}/ovn-controller.log", "--detach", "--no-chdir"],
            netns=self.name, env=self.env)

    def stop(self) -> None:
        for g in list(self.guests):
            del_netns(g)
        self.guests.clear()
        for p in self.pidfiles():
            stop_pidfile(p)
        del_netns(self.name)

    # -- guests --------------------------------------------------------------
    def plug_guest(self, guest: str, iface_id: str, mac: str) -> str:
        """A namespace kvt-ovn-g-GUEST whose eth0 (MAC) is a br-int port bound to
        logical port IFACE_ID, plugged as libvirt plugs a tap; returns the namespace."""
        ns = f"{PREFIX}-g-{guest}"
        host_end = f"kvt-og-{guest}"[:15]
        add_netns(ns)
        run(["ip", "link", "add", host_end, "netns", self.name, "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.name, "link", "set", host_end, "up"])
        self.vsctl("add-port", "br-int", host_end, "--", "set", "Interface", host_end,
                   f"external_ids:iface-id={iface_id}", f"external_ids:attached-mac={mac}",
                   "external_ids:iface-status=active")
        self.guests[ns] = host_end
        return ns

    def add_external(self, physnet: str, address: str) -> str:
        """An "outside" namespace kvt-ovn-ext (eth0 = ADDRESS, no routes beyond its
        subnet) on bridge br-ex of this hypervisor, mapped as PHYSNET for localnet
        ports (ovn-bridge-mappings); returns the namespace."""
        ns, host_end = f"{PREFIX}-ext", f"{PREFIX}-ex"
        add_netns(ns)
        run(["ip", "link", "add", host_end, "netns", self.name, "type", "veth", "peer", "name",
             "eth0", "netns", ns])
        run(["ip", "-n", ns, "addr", "add", address, "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.name, "link", "set", host_end, "up"])
        self.vsctl("add-br", "br-ex", "--", "set", "bridge", "br-ex", "datapath_type=netdev",
                   "--", "add-port", "br-ex", host_end)
        self.vsctl("set", "open", ".", f"external_ids:ovn-bridge-mappings={physnet}:br-ex")
        self.guests[ns] = host_end
        return ns

    def unplug_guest(self, ns: str) -> None:
        host_end = self.guests.pop(ns, None)
        if host_end:
            run(["ovs-vsctl", f"--db={self.db}", "--if-exists", "del-port", "br-int", host_end],
                check=False)
        del_netns(ns)


def dhcp(ns: str, timeout: float = 30.0) -> str:
    """Run busybox udhcpc in a guest namespace until it has a lease; return ADDR/PREFIX."""
    script = RUN_DIR / "udhcpc.sh"
    if not script.exists():
        script.write_text(DHCP_SCRIPT)
        script.chmod(0o755)
    res = run(["busybox", "udhcpc", "-i", "eth0", "-q", "-n", "-f", "-t", "10", "-T", "2",
               "-s", str(script)], netns=ns, check=False, timeout=timeout)
    for line in res.stdout.splitlines():
        if line.startswith("lease "):
            return line.split()[1]
    raise OvnLabError(f"no DHCP lease in {ns}: {res.stdout.strip()} {res.stderr.strip()}")


def ping(ns: str, addr: str, tries: int = 10) -> bool:
    for _ in range(tries):
        if run(["busybox", "ping", "-c", "1", "-W", "2", addr], netns=ns, check=False,
               timeout=10).returncode == 0:
            return True
    return False


# ---------------------------------------------------------------- the whole lab

@dataclass
class OvnLab:
    central: Central = field(default_factory=Central)
    hvs: list[Hypervisor] = field(default_factory=lambda: [Hypervisor(1), Hypervisor(2)])
    _lock: int | None = None

    @property
    def nb_remote(self) -> str:
        return self.central.nb_remote

    def start(self, lock_timeout: float = 600.0) -> None:
        RUN_DIR.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OvnLabError("another test session holds the OVN lab") from None
                time.sleep(0.5)
        try:
            remove_leftovers()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.central.start()
        for hv in self.hvs:
            add_netns(hv.name)
        h1, h2 = self.hvs
        run(["ip", "link", "add", f"{PREFIX}-ul1", "netns", h1.name, "type", "veth", "peer",
             "name", f"{PREFIX}-ul2", "netns", h2.name])
        for hv in self.hvs:
            hv.start_ovs()
            hv.start_underlay(f"{PREFIX}-ul{hv.index}")
            hv.start_ovn(self.central.sb_remote)
        logs = [hv.dir / "ovn-controller.log" for hv in self.hvs]
        _wait("both chassis in the SB database", lambda: all(
            hv.name in self.central.sbctl("--bare", "--columns=name", "list", "Chassis")
            for hv in self.hvs), 30, logs)

    def stop(self) -> None:
        try:
            for hv in self.hvs:
                hv.stop()
            self.central.stop()
            shutil.rmtree(RUN_DIR, ignore_errors=True)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


def remove_leftovers() -> None:
    """Daemons named by pidfiles under RUN_DIR, the kvt-ovn-* namespaces, RUN_DIR."""
    if RUN_DIR.is_dir():
        for p in sorted(RUN_DIR.rglob("*.pid")):
            stop_pidfile(p)
    if NETNS_DIR.is_dir():
        for ns in sorted(os.listdir(NETNS_DIR)):
            if ns.startswith(f"{PREFIX}-"):
                del_netns(ns)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
