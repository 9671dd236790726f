"""A real three-hypervisor cluster on one machine, for tests and bench/ (issue 26).

Layout (names ``kvt-cl-*``, links ``kvtc*``, addresses in 10.164.0.0/16)::

    admin side (this process's namespace): bridge kvtc-ul 10.164.0.1/24 = the underlay
      kvtc-ctr  -- kvt-cl-central 10.164.0.10: OVN NB (ptcp:6641) + SB (ptcp:6642) + northd
      kvtc-hv1  -- kvt-cl-hv1     10.164.0.11  \\  each: libvirtd + virtlogd, sshd,
      kvtc-hv2  -- kvt-cl-hv2     10.164.0.12   > ovsdb-server + ovs-vswitchd (userspace
      kvtc-hv3  -- kvt-cl-hv3     10.164.0.13  /  datapath) + ovn-controller
      kvtc-inet -- kvt-cl-inet    10.164.0.254 ("the internet": busybox httpd on :80
                                  answering /cgi-bin/peer = the client's address)
    kvt-cl-inet's second link ext0 10.164.3.254/24 is a port of br-ex on the gateway
    hypervisor (GATEWAY), mapped as physnet PHYSNET: the OVN router's outside.

A hypervisor is a network namespace ``kvt-cl-hvN`` plus a mount namespace of its own,
held open by a ``sleep`` ("holder") started as ``ip netns exec kvt-cl-hvN unshare
--mount --propagation private``: inside it /run/libvirt, /var/lib/libvirt, /etc/libvirt,
/var/log/libvirt, /var/cache/libvirt, /run/openvswitch and /run/ovn are bind mounts of
RUN/hvN/<dir>. Every daemon of the hypervisor is started with ``nsenter -t HOLDER -m -n``,
so its libvirtd, its sshd's sessions (virt-ssh-helper) and libvirt's ``ovs-vsctl`` calls
all see that hypervisor's sockets and nothing of the machine's own lab libvirtd.

Reaching the hypervisors: kvmnet uses ``qemu+ssh://root@10.164.0.1N/system`` and nothing
else. The OpenSSH client reads /etc/ssh/ssh_config.d/kvt-cl.conf (``Host 10.164.0.*``
only, written at start, removed at stop): the lab's key (RUN/admin/id_ed25519), a
known_hosts file with each sshd's host key *pinned* (written from the generated keys,
never scanned), StrictHostKeyChecking yes, BatchMode, ConnectTimeout CONNECT_TIMEOUT.
The sshds listen only on their hypervisor's underlay address, with the lab's own host
keys, pid and log files under RUN/hvN/ssh.

Life cycle: :meth:`Cluster.start` takes /run/kvt-cl.lock, removes leftovers by name (the
daemons named by pid files under RUN, when the pid still runs the expected program; the
kvt-cl-* namespaces and kvtc* links), then builds everything; :meth:`Cluster.stop`
removes ``kvt-cl-`` domains and networks, stops every daemon by its pid file, ends
dnsmasq/qemu left in the namespaces by pid, deletes namespaces and links, also after a
failed start. The machine's own lab libvirtd and any sshd not started here are never
touched. Guest files (kernel, initramfs of tests/lab/guest.py) are copied to GUEST_DIR.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from lab.cluster_proc import (
    NETNS_DIR,
    hold,
    holder_pid,
    kill_ns_children,
    run,
    stop_pid,
    stop_pidfile,
    wait_for,
)
from lab.guest import guest_files
from lab.libvirtd import quiet_libvirt, remove_objects, try_open

RUN = Path("/run/kvt-cl")
LOCK = Path("/run/kvt-cl.lock")
GUEST_DIR = Path("/var/tmp/kvt-cl")
SSH_CONF = Path("/etc/ssh/ssh_config.d/kvt-cl.conf")
PREFIX = "kvt-cl-"
UNDERLAY_BR = "kvtc-ul"
ADMIN_ADDR = "10.164.0.1"
CENTRAL_ADDR = "10.164.0.10"
INET_ADDR = "10.164.0.254"
EXT_NET = "10.164.3.0/24"
EXT_INET = "10.164.3.254"
PHYSNET = "kvt-cl-phys"
GATEWAY = 3                     # the hypervisor with br-ex (the router's chassis)
CONNECT_TIMEOUT = 4             # ssh ConnectTimeout: how long an unreachable host costs
PRIVATE = ("run/libvirt", "var/lib/libvirt", "etc/libvirt", "var/log/libvirt",
           "var/cache/libvirt", "run/openvswitch", "run/ovn")
VS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
CGI_PEER = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"$REMOTE_ADDR\"\n"


class ClusterError(RuntimeError):
    """The cluster lab could not be built; the message says why."""


@dataclass
class Hv:
    """One hypervisor of the lab."""

    index: int

    @property
    def name(self) -> str:           # the spec's host name
        return f"hv{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}hv{self.index}"

    @property
    def chassis(self) -> str:        # OVN system-id
        return self.netns

    @property
    def addr(self) -> str:
        return f"10.164.0.1{self.index}"

    @property
    def uri(self) -> str:
        return f"qemu+ssh://root@{self.addr}/system"

    @property
    def dir(self) -> Path:
        return RUN / self.name

    @property
    def link(self) -> str:           # its underlay veth on the admin side
        return f"kvtc-hv{self.index}"

    @property
    def socket_uri(self) -> str:
        """The lab's own way in (setup, checks): the libvirtd's socket file."""
        return f"qemu+unix:///system?socket={self.dir}/run/libvirt/libvirt-sock"

    def private(self, rel: str) -> Path:
        return self.dir / rel

    def holder(self) -> int:
        pid = holder_pid(self.dir / "holder.pid", self.netns)
        if pid is None:
            raise ClusterError(f"the mount namespace of {self.name} is gone")
        return pid

    def x(self, args: Sequence[str], check: bool = True, timeout: float = 60.0,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ARGS inside this hypervisor (its mount and network namespaces)."""
        return run(["nsenter", "-t", str(self.holder()), "-m", "-n", *args], check=check,
                   timeout=timeout, env=env)

    def vsctl(self, *args: str) -> str:
        return self.x(["ovs-vsctl", "--timeout=20", *args]).stdout

    def open(self) -> libvirt.virConnect:
        return libvirt.open(self.socket_uri)

    def libvirtd_pid(self) -> int | None:
        try:
            return int((self.dir / "run/libvirt/libvirtd.pid").read_text().strip())
        except (OSError, ValueError):
            return None


@dataclass
class Cluster:
    hvs: list[Hv] = field(default_factory=lambda: [Hv(1), Hv(2), Hv(3)])
    seconds: dict[str, float] = field(default_factory=dict)
    _lock: int | None = None

    @property
    def nb_remote(self) -> str:
        return f"tcp:{CENTRAL_ADDR}:6641"

    @property
    def sb_remote(self) -> str:
        return f"tcp:{CENTRAL_ADDR}:6642"

    def hv(self, name: str) -> Hv:
        return next(h for h in self.hvs if h.name == name)

    # -- start -------------------------------------------------------------------
    def start(self, lock_timeout: float = 900.0) -> Cluster:
        self._take_lock(lock_timeout)
        try:
            t0 = time.monotonic()
            remove_leftovers(self.hvs)
            self._start()
            self.seconds["start"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _take_lock(self, timeout: float) -> None:
        self._lock = os.open(LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClusterError("another session holds the cluster lab") from None
                time.sleep(0.5)

    def _start(self) -> None:
        from lab import cluster_net

        RUN.mkdir(parents=True, exist_ok=True)
        os.chmod(RUN, 0o755)
        cluster_net.underlay(self.hvs)
        cluster_net.central(self)
        cluster_net.inet()
        cluster_net.admin_keys(self.hvs)
        for hv in self.hvs:
            self.start_hv(hv)
        cluster_net.gateway(self.hv(f"hv{GATEWAY}"))
        wait_for("every chassis in the SB database", lambda: all(
            hv.chassis in self.sbctl("--bare", "--columns=name", "list", "Chassis")
            for hv in self.hvs), 60, [hv.dir / "run/ovn/ovn-controller.log" for hv in self.hvs])
        copy_guest_files()

    def start_hv(self, hv: Hv) -> None:
        from lab import cluster_net

        for rel in PRIVATE:
            hv.private(rel).mkdir(parents=True, exist_ok=True)
        seed_private(hv)
        hold(hv.netns, hv.dir / "holder.pid",
             [(str(hv.private(rel)), "/" + rel) for rel in PRIVATE])
        cluster_net.ovs(self, hv)
        self.start_libvirtd(hv)
        cluster_net.sshd(hv)

    def start_libvirtd(self, hv: Hv) -> None:
        """virtlogd (if not running) and libvirtd in HV; waits until it answers."""
        t0 = time.monotonic()
        vpid = hv.dir / "run/libvirt/virtlogd.pid"
        if holder_pid(vpid, hv.netns, exe="virtlogd") is None:
            hv.x(["/usr/sbin/virtlogd", "--daemon", "--pid-file", "/run/libvirt/virtlogd.pid"])
        hv.x(["/usr/sbin/libvirtd", "--daemon", "--pid-file", "/run/libvirt/libvirtd.pid"])
        log = hv.dir / "var/log/libvirt/libvirtd.log"

        def answers() -> bool:
            conn = try_open(hv.socket_uri)
            if conn is None:
                return False
            conn.close()
            return True

        wait_for(f"libvirtd of {hv.name}", answers, 60, [log])
        self.seconds[f"libvirtd {hv.name}"] = time.monotonic() - t0

    def kill_libvirtd(self, hv: Hv) -> None:
        """SIGKILL HV's libvirtd (a crash): its networks and guests keep running."""
        pid = hv.libvirtd_pid()
        if pid is None:
            raise ClusterError(f"no libvirtd pid for {hv.name}")
        stop_pid(pid, "libvirtd", kill_first=True)

    def nbctl(self, *args: str) -> str:
        return run(["ovn-nbctl", f"--db=unix:{RUN}/central/nb.sock", *args]).stdout

    def sbctl(self, *args: str) -> str:
        return run(["ovn-sbctl", f"--db=unix:{RUN}/central/sb.sock", *args]).stdout

    def inet(self, args: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", f"{PREFIX}inet", *args], check=False,
                   timeout=timeout)

    # -- stop --------------------------------------------------------------------
    def stop(self) -> None:
        try:
            for hv in self.hvs:
                remove_hv_objects(hv)
            remove_leftovers(self.hvs)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


def seed_private(hv: Hv) -> None:
    """A private /etc/libvirt with the machine's config files and nwfilters (never its
    networks or domains) and the QEMU capabilities cache (saves a probe per start)."""
    etc = hv.private("etc/libvirt")
    for f in Path("/etc/libvirt").glob("*.conf"):
        shutil.copy2(f, etc / f.name)
    if Path("/etc/libvirt/nwfilter").is_dir() and not (etc / "nwfilter").exists():
        shutil.copytree("/etc/libvirt/nwfilter", etc / "nwfilter")
    caps = Path("/var/cache/libvirt/qemu")
    if caps.is_dir() and not (hv.private("var/cache/libvirt") / "qemu").exists():
        shutil.copytree(caps, hv.private("var/cache/libvirt") / "qemu")


def copy_guest_files() -> tuple[Path, Path]:
    """The lab guest's kernel and initramfs, copied where every hypervisor's QEMU reads
    them (libvirt relabels them; the machine's lab libvirtd's copies stay untouched)."""
    kernel, initrd = guest_files()
    GUEST_DIR.mkdir(parents=True, exist_ok=True)
    (GUEST_DIR / "serial").mkdir(exist_ok=True)
    for d in (GUEST_DIR, GUEST_DIR / "serial"):
        os.chmod(d, 0o755)
    out = []
    for src in (kernel, initrd):
        dst = GUEST_DIR / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o644)
        out.append(dst)
    return out[0], out[1]


def remove_hv_objects(hv: Hv) -> None:
    """kvt-cl- domains and networks of a running hypervisor libvirtd."""
    if holder_pid(hv.dir / "holder.pid", hv.netns) is None:
        return
    conn = try_open(hv.socket_uri)
    if conn is None:
        return
    try:
        with quiet_libvirt():
            remove_objects(conn, PREFIX)
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


def remove_leftovers(hvs: Sequence[Hv]) -> None:
    """Everything of an earlier lab, by name: daemons by their pid files (only when the
    pid still runs the expected program), processes left in the kvt-cl-* namespaces
    (libvirt's dnsmasq and qemu only), the namespaces, the kvtc* links, the ssh config."""
    from lab import cluster_net

    if RUN.is_dir():
        for pidfile in sorted(RUN.rglob("*.pid")):
            if pidfile.name != "holder.pid":
                stop_pidfile(pidfile)
    for ns in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []:
        if ns.startswith(PREFIX):
            kill_ns_children(ns)
    for hv in hvs:
        pid = holder_pid(hv.dir / "holder.pid", hv.netns)
        if pid is not None:
            stop_pid(pid, "sleep")
    cluster_net.remove_links_and_namespaces()
    SSH_CONF.unlink(missing_ok=True)
    shutil.rmtree(RUN, ignore_errors=True)


def spec_hosts(cluster: Cluster) -> dict[str, Any]:
    """The `hosts:` section of a spec for the lab."""
    return {hv.name: {"uri": hv.uri} for hv in cluster.hvs}
