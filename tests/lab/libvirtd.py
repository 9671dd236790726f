"""A real libvirtd inside the network namespace ``kvmnet-lab``, for tests.

Everything that libvirtd makes for a network (bridge, dnsmasq, iptables rules,
ip_forward) stays in the namespace; clients in the normal namespace still reach
it as ``qemu:///system`` through the unix socket in /run/libvirt.

Life cycle (:meth:`Libvirtd.start` / :meth:`Libvirtd.stop`)
-----------------------------------------------------------
- A libvirtd that already answers at ``qemu:///system`` is reused, whoever started
  it, and is never stopped by a lab that did not start it. Its pid comes from the
  socket (SO_PEERCRED); the lab reports the named namespace it runs in. A libvirtd
  in the host's own namespace is refused (it would put test bridges on the host).
- Otherwise the lab removes its own leftovers by name (stale pid files; the
  namespace ``kvmnet-lab`` and the libvirt dnsmasq/qemu processes left in it when
  no libvirtd of ours is alive), makes the namespace with ``lo`` up, makes sure of
  /run/libvirt, /var/log/libvirt, the user ``libvirt-qemu`` (groups kvm,
  libvirt-qemu), starts ``virtlogd --daemon`` if its socket does not answer, and
  runs ``ip netns exec kvmnet-lab /usr/sbin/libvirtd --daemon --pid-file
  /run/kvmnet-lab/libvirtd.pid``. Readiness = ``libvirt.open('qemu:///system')``
  works (polled, bounded); otherwise a :class:`LabError` with the tail of
  /var/log/libvirt/libvirtd.log, after stopping what was started.
- Several test sessions may share the lab at once: each registers itself under
  /run/kvmnet-lab/users/ (pid + start time; dead ones are ignored), start/stop hold
  a flock on /run/kvmnet-lab/lock, and the *last* session out stops the daemons the
  lab started (by their pid files under /run/kvmnet-lab/) and removes the namespace.

Quirks found with Debian 12's libvirt 9.0.0 (run as root, no systemd, no D-Bus)
-----------------------------------------------------------------------------
- libvirtd runs fine in a netns without D-Bus or systemd. The log gets harmless
  errors: "Unable to get system bus connection" (firewalld support disabled),
  "Failed to get udev device for syspath '/sys/devices/virtual/dmi/id'" and a failed
  ``dmidecode`` (/dev/mem missing).
- No ``--listen`` is needed and none must be given: without it libvirtd only opens
  its unix sockets (/run/libvirt/libvirt-sock, -sock-ro, libvirt-admin-sock); no
  TCP/TLS. There is no /etc/libvirt/libvirtd.conf or qemu.conf here; built-in
  defaults apply (qemu runs as libvirt-qemu, log file /var/log/libvirt/libvirtd.log).
- ``libvirtd --daemon`` returns only after the daemon is up (or failed); the
  drivers then initialise in a thread, and the socket accepts clients after that,
  so a successful ``libvirt.open`` means the network driver is ready.
- ``ip netns exec`` also gives libvirtd its own mount namespace with the netns's
  /sys remounted (libvirt checks bridges under /sys/class/net, so this matters);
  /etc, /run and /var are the host's.
- No ``default`` network appears: nothing creates /etc/libvirt/qemu/networks/ here
  (that is libvirt-daemon-config-network's job, not installed; libvirtd itself only
  makes /etc/libvirt/nwfilter and /etc/libvirt/secrets; the first networkDefineXML
  makes /etc/libvirt/qemu/networks/ and .../autostart/, which stay, empty, after
  undefine). If a network XML with an autostart link were there (e.g. Debian's
  ``default``: virbr0, 192.168.122.1/24), the lab libvirtd would start it *inside
  the namespace*, but only if /run/libvirt/network/autostarted is missing: libvirt
  autostarts once per boot and drops that marker (also /run/libvirt/qemu/autostarted
  for domains). Checked with an autostart ``kvt-`` network: not started on a restart
  with the marker, started (bridge in the netns) without it. Tests must never rely
  on autostart; :func:`host_network_configs` lists what is on disk.
- State is the host's, not the namespace's: persistent network XML goes to
  /etc/libvirt/qemu/networks/<name>.xml, active-network status to
  /run/libvirt/network/<name>.xml (+ <name>.pid, <name>/ports/, both left behind by
  ``destroy``; the lab removes ``kvt-`` ones after stopping its libvirtd), dnsmasq
  files to /var/lib/libvirt/dnsmasq/<name>.conf/.hostsfile/.addnhosts and
  <bridge>.status, domain state to /run/libvirt/qemu and /var/lib/libvirt/qemu, qemu
  logs to /var/log/libvirt/qemu/<name>.log (kept). So a test that *defines* a
  network writes a file on the host until it undefines it. On a real hypervisor the
  lab libvirtd would also see the host's own networks and domains: run the lab only
  where the host's libvirtd is not in use.
- Per network: two dnsmasq processes (``--conf-file=/var/lib/libvirt/dnsmasq/
  <name>.conf --leasefile-ro --dhcp-script=/usr/lib/libvirt/libvirt_leaseshelper``),
  running as ``nobody`` (the conf has no user=), in the netns. Firewall: iptables
  (nf_tables backend) chains LIBVIRT_INP/OUT/FWI/FWO/FWX and LIBVIRT_PRT (nat,
  mangle) in the netns; net.ipv4.ip_forward=1 is set in the netns only. A bridge
  without ports is admin-up but operstate DOWN; it goes UP when a guest tap joins.
- ``virNetwork.update(command, section, ...)`` in that order (libvirt-python
  12.8 on libvirt 9.0) works live+config for ip-dhcp-host.
- Killing libvirtd does not stop its networks: dnsmasq and the bridges stay (seen
  after kill -9). The lab therefore destroys what is still active in its own daemon
  before stopping it, and ends libvirt dnsmasq/qemu processes left in its namespace
  by pid before removing the namespace.
- Guests need virtlogd: without it domain start fails with "Failed to connect socket
  to '/run/libvirt/virtlogd-sock'"; libvirtd (system mode) does not spawn it.
- Daemons (libvirtd, virtlogd, dnsmasq) re-parent to PID 1, which reaps them
  lazily on this machine: ``pgrep`` may list them as <defunct> for a while after
  they exit. :func:`proc_alive` counts zombies as gone.

Cleaning up in tests
--------------------
Tests name every network and domain they make with the prefix ``kvt-`` (bridges
too, e.g. ``kvt-lab0``; bridge names <= 15 bytes) and remove them themselves. The
``lv_conn`` fixture destroys+undefines, at teardown, every ``kvt-`` network and
domain that did not exist when the test began (see :func:`remove_objects`); the
lab removes all ``kvt-`` objects when it starts alone or stops last. Use only
10.200.77.0/24-style test subnets, and only inside this namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

NETNS = "kvmnet-lab"
URI = "qemu:///system"
TEST_PREFIX = "kvt-"
RUN_DIR = Path("/run/kvmnet-lab")
LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
LIBVIRT_SOCK = "/run/libvirt/libvirt-sock"
VIRTLOGD_SOCK = "/run/libvirt/virtlogd-sock"
LIBVIRTD_LOG = Path("/var/log/libvirt/libvirtd.log")
NETNS_RUN_DIR = Path("/run/netns")
NETWORK_CONFIG_DIR = Path("/etc/libvirt/qemu/networks")
DNSMASQ_DIR = Path("/var/lib/libvirt/dnsmasq")  # <net>.conf, <net>.hostsfile, ...


class LabError(RuntimeError):
    """The lab could not be set up or torn down; the message says why."""


# ---------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def proc_alive(pid: int) -> bool:
    """True if PID exists and is not a zombie."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def proc_starttime(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields else None  # field 22 of stat


def proc_exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return None


def proc_runs(pid: int, exe: str) -> bool:
    """Does PID run the file EXE? By the path /proc shows (also for a binary replaced by
    an upgrade since it started) or by identity (device, inode): a daemon in another
    mount namespace under a chroot (the Debian 13 lab, tests/lab/trixie.py) shows its
    path from outside the chroot."""
    if proc_exe(pid) == exe:
        return True
    try:
        a, b = os.stat(f"/proc/{pid}/exe"), os.stat(exe)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def dnsmasq_pids(network: str) -> list[int]:
    """Live pids of the dnsmasq processes libvirt runs for NETWORK (found by the
    --conf-file=/var/lib/libvirt/dnsmasq/NETWORK.conf on their command line)."""
    conf = f"--conf-file={DNSMASQ_DIR / network}.conf"
    return sorted(
        pid
        for pid in all_pids()
        if conf in (cmd := proc_cmdline(pid))
        and Path(cmd[0]).name == "dnsmasq"
        and proc_alive(pid)
    )


def netns_ident(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a netns file (/proc/PID/ns/net or /run/netns/NAME)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pid_netns(pid: int) -> tuple[int, int] | None:
    return netns_ident(f"/proc/{pid}/ns/net")


def netns_name_of(ident: tuple[int, int] | None) -> str | None:
    """The name under /run/netns of the namespace IDENT, if it has one."""
    if ident is None:
        return None
    for name in pr_netns.listnetns():
        if netns_ident(NETNS_RUN_DIR / name) == ident:
            return name
    return None


def pids_in_netns(netns: str = NETNS) -> list[int]:
    ident = netns_ident(NETNS_RUN_DIR / netns)
    if ident is None:
        return []
    return [pid for pid in all_pids() if pid_netns(pid) == ident and proc_alive(pid)]


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def terminate(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM PID, wait for it to go, SIGKILL if it does not."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not proc_alive(pid):
                return
            time.sleep(0.05)
    raise LabError(f"process {pid} ({proc_exe(pid)}) does not exit even after SIGKILL")


def socket_peer_pid(path: str) -> int | None:
    """Pid of the process listening on the unix socket PATH (SO_PEERCRED), or None."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(path)
        creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    finally:
        s.close()
    pid, _uid, _gid = struct.unpack("3i", creds)
    return pid or None


# ---------------------------------------------------------------- namespace


def netns_exec(
    args: Sequence[str],
    *,
    netns: str = NETNS,
    check: bool = True,
    timeout: float = 60.0,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ARGS inside the namespace (``ip netns exec NETNS ARGS...``), text output captured."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(
        ["ip", "netns", "exec", netns, *args], check=check, timeout=timeout, **kwargs
    )


def iproute(netns: str = NETNS) -> IPRoute:
    """pyroute2 IPRoute bound to an *existing* namespace (never creates it)."""
    return IPRoute(netns=netns, flags=0)


def ns_links(netns: str = NETNS) -> dict[str, dict[str, Any]]:
    """Links in the namespace by name: index, kind, state, mac, mtu, master, addresses.

    ``addresses`` holds IPv4/IPv6 addresses as "ADDR/PREFIXLEN" strings.
    """
    with iproute(netns) as ipr:
        links = list(ipr.get_links())
        addrs = list(ipr.get_addr())
    names = {msg["index"]: msg.get("IFLA_IFNAME") for msg in links}
    out: dict[str, dict[str, Any]] = {}
    for msg in links:
        name = msg.get("IFLA_IFNAME")
        linkinfo = msg.get("IFLA_LINKINFO")
        out[name] = {
            "index": msg["index"],
            "kind": linkinfo.get("IFLA_INFO_KIND") if linkinfo else None,
            "state": msg.get("IFLA_OPERSTATE"),
            "up": bool(msg["flags"] & 1),
            "mac": msg.get("IFLA_ADDRESS"),
            "mtu": msg.get("IFLA_MTU"),
            "master": names.get(msg.get("IFLA_MASTER")),
            "addresses": [],
        }
    for msg in addrs:
        name = names.get(msg["index"])
        if name in out:
            out[name]["addresses"].append(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
    return out


def host_network_configs() -> list[str]:
    """Names of persistent libvirt networks on the host (/etc/libvirt/qemu/networks)."""
    if not NETWORK_CONFIG_DIR.is_dir():
        return []
    return sorted(p.stem for p in NETWORK_CONFIG_DIR.glob("*.xml"))


# ---------------------------------------------------------------- libvirt objects


@contextlib.contextmanager
def quiet_libvirt() -> Iterator[None]:
    """Silence libvirt's default error printing (to stderr) for expected failures."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        yield
    finally:
        libvirt.registerErrorHandler(None, None)


def try_open(uri: str = URI) -> libvirt.virConnect | None:
    with quiet_libvirt():
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            return None


def object_names(conn: libvirt.virConnect, prefix: str = TEST_PREFIX) -> dict[str, set[str]]:
    """Names of networks and domains (active or defined) that start with PREFIX."""
    return {
        "networks": {n.name() for n in conn.listAllNetworks() if n.name().startswith(prefix)},
        "domains": {d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)},
    }


def remove_objects(
    conn: libvirt.virConnect,
    prefix: str = TEST_PREFIX,
    keep: dict[str, set[str]] | None = None,
) -> list[str]:
    """Destroy and undefine PREFIX* domains, then networks, except the names in KEEP.

    Returns what was removed ("domain NAME" / "network NAME"). Objects that vanish
    meanwhile are fine; other libvirt errors propagate.
    """
    keep = keep or {"networks": set(), "domains": set()}
    removed: list[str] = []
    with quiet_libvirt():
        for dom in conn.listAllDomains():
            name = dom.name()
            if not name.startswith(prefix) or name in keep["domains"]:
                continue
            _remove(dom, lambda d=dom: d.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM))
            removed.append(f"domain {name}")
        for net in conn.listAllNetworks():
            name = net.name()
            if not name.startswith(prefix) or name in keep["networks"]:
                continue
            _remove(net, net.undefine)
            removed.append(f"network {name}")
    return removed


def _remove(obj: Any, undefine: Any) -> None:
    """Destroy OBJ if active, then undefine it if it was persistent (a transient one is
    gone once destroyed)."""
    try:
        persistent = obj.isPersistent()
        if obj.isActive():
            obj.destroy()
        if persistent:
            undefine()
    except libvirt.libvirtError as e:
        if e.get_error_code() not in _GONE:
            raise


_GONE = (
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_OPERATION_INVALID,  # e.g. already inactive
)


def _ignore_gone(call: Any) -> None:
    try:
        call()
    except libvirt.libvirtError as e:
        if e.get_error_code() not in _GONE:
            raise


# ---------------------------------------------------------------- the daemon


def _log_tail(offset: int = 0, lines: int = 40) -> str:
    try:
        with LIBVIRTD_LOG.open("rb") as f:
            f.seek(offset if offset <= LIBVIRTD_LOG.stat().st_size else 0)
            text = f.read().decode(errors="replace")
    except OSError as e:
        return f"(cannot read {LIBVIRTD_LOG}: {e})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({LIBVIRTD_LOG} has nothing new)"


def _run(args: Sequence[str]) -> None:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")


def ensure_host_prereqs() -> None:
    """Folders and the libvirt-qemu user that libvirt-daemon-system would make."""
    for d in ("/run/libvirt", "/var/log/libvirt", "/var/lib/libvirt"):
        os.makedirs(d, exist_ok=True)
    for group in ("kvm", "libvirt-qemu"):
        try:
            grp.getgrnam(group)
        except KeyError:
            _run(["groupadd", "--system", group])
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        _run([
            "useradd", "--system", "--gid", "libvirt-qemu", "--groups", "kvm",
            "--home-dir", "/var/lib/libvirt", "--no-create-home",
            "--shell", "/usr/sbin/nologin", "libvirt-qemu",
        ])  # fmt: skip
    else:
        if "libvirt-qemu" not in grp.getgrnam("kvm").gr_mem:
            _run(["usermod", "--append", "--groups", "kvm", "libvirt-qemu"])


@dataclass
class Libvirtd:
    """The lab's libvirtd. ``start()`` it (or use the ``libvirtd`` fixture)."""

    netns: str = NETNS
    uri: str = URI
    run_dir: Path = RUN_DIR
    start_timeout: float = 30.0
    prefix: str = TEST_PREFIX
    pid: int | None = None  # the libvirtd serving self.uri
    started: bool = False  # this session started libvirtd
    virtlogd_started: bool = False  # this session started virtlogd
    startup_seconds: float | None = None
    _user_file: Path | None = field(default=None, repr=False)

    # -- paths
    @property
    def pidfile(self) -> Path:
        return self.run_dir / "libvirtd.pid"

    @property
    def virtlogd_pidfile(self) -> Path:
        return self.run_dir / "virtlogd.pid"

    @property
    def users_dir(self) -> Path:
        return self.run_dir / "users"

    # -- helpers for tests
    def netns_exec(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return netns_exec(args, netns=self.netns, **kwargs)

    def ns_links(self) -> dict[str, dict[str, Any]]:
        return ns_links(self.netns)

    def iproute(self) -> IPRoute:
        return iproute(self.netns)

    def open(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)

    @contextlib.contextmanager
    def scoped_conn(self, prefix: str) -> Iterator[libvirt.virConnect]:
        """A connection for a suite that shares the lab: its own PREFIX networks and
        domains are removed before and after, other suites' are left alone (``lv_conn``
        removes every new ``kvt-`` object, theirs too)."""
        conn = self.open()
        try:
            remove_objects(conn, prefix)
            yield conn
        finally:
            try:
                remove_objects(conn, prefix)
            finally:
                conn.close()

    def pids_in_netns(self) -> list[int]:
        return pids_in_netns(self.netns)

    # -- ownership
    def _lab_pid(self, pidfile: Path, exe: str) -> int | None:
        """Pid from our pid file if that process is alive and runs EXE."""
        pid = read_pidfile(pidfile)
        if pid is not None and proc_alive(pid) and proc_runs(pid, exe):
            return pid
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _other_users(self) -> list[int]:
        """Pids of other live lab sessions; removes the files of dead ones."""
        others = []
        self.users_dir.mkdir(parents=True, exist_ok=True)
        for f in self.users_dir.iterdir():
            if f == self._user_file:
                continue
            pid_s, _, start = f.name.partition(".")
            if pid_s.isdigit() and proc_alive(int(pid_s)) and proc_starttime(int(pid_s)) == start:
                others.append(int(pid_s))
            else:
                f.unlink(missing_ok=True)
        return others

    def _register(self) -> None:
        self.users_dir.mkdir(parents=True, exist_ok=True)
        me = os.getpid()
        self._user_file = self.users_dir / f"{me}.{proc_starttime(me)}"
        self._user_file.touch()

    # -- start
    def start(self) -> Libvirtd:
        with self._locked():
            alone = not self._other_users()
            try:
                self._start_locked(alone)
            except BaseException:
                if not self._other_users():
                    self._stop_ours(destroy_objects=False)
                raise
            self._register()
        return self

    def _start_locked(self, alone: bool) -> None:
        ensure_host_prereqs()
        self._ensure_virtlogd()
        t0 = time.monotonic()
        peer = socket_peer_pid(LIBVIRT_SOCK)
        conn = try_open(self.uri) if peer else None
        if conn is not None:
            conn.close()
            self._adopt(peer)
        else:
            if self._lab_pid(self.pidfile, LIBVIRTD) is not None:
                pid = read_pidfile(self.pidfile)
                raise LabError(
                    f"libvirtd pid {pid} from {self.pidfile} is alive but does not answer "
                    f"at {self.uri}; log tail:\n{_log_tail()}"
                )
            self._remove_leftovers()
            self._make_netns()
            self._spawn_libvirtd()
        self.startup_seconds = time.monotonic() - t0
        if alone:
            conn = libvirt.open(self.uri)
            try:
                removed = remove_objects(conn, self.prefix)
            finally:
                conn.close()
            if removed:
                warnings.warn(f"lab: removed leftovers of an earlier run: {removed}", stacklevel=2)

    def _adopt(self, pid: int | None) -> None:
        """Reuse the libvirtd at self.uri; find out which namespace it is in."""
        if pid is None:
            raise LabError(f"cannot tell which process serves {LIBVIRT_SOCK}")
        ident = pid_netns(pid)
        if ident == pid_netns(1) or ident == pid_netns(os.getpid()):
            raise LabError(
                f"a libvirtd (pid {pid}, {proc_exe(pid)}) answers at {self.uri} but runs in "
                "the host's own network namespace; the lab refuses to put test bridges "
                f"there. Stop it, or run it with `ip netns exec {self.netns} ...`."
            )
        name = netns_name_of(ident)
        if name is None:
            raise LabError(
                f"the libvirtd (pid {pid}) answering at {self.uri} runs in a network "
                "namespace without a name under /run/netns; the lab cannot inspect it."
            )
        self.netns = name
        self.pid = pid
        self.started = False

    def _ensure_virtlogd(self) -> None:
        if socket_peer_pid(VIRTLOGD_SOCK) is not None:
            return
        self.virtlogd_pidfile.unlink(missing_ok=True)
        _run([VIRTLOGD, "--daemon", "--pid-file", str(self.virtlogd_pidfile)])
        deadline = time.monotonic() + 10
        while socket_peer_pid(VIRTLOGD_SOCK) is None:
            if time.monotonic() > deadline:
                raise LabError(f"virtlogd started but {VIRTLOGD_SOCK} does not answer")
            time.sleep(0.05)
        self.virtlogd_started = True

    def _remove_leftovers(self) -> None:
        """No libvirtd answers: clear our stale pid file and old namespace by name."""
        self.pidfile.unlink(missing_ok=True)
        stuck = [p for p in pids_in_netns(self.netns) if proc_runs(p, LIBVIRTD)]
        if stuck:
            raise LabError(
                f"a libvirtd (pid {stuck[0]}) runs in namespace {self.netns} but does "
                f"not answer at {self.uri}; not ours to kill. Log tail:\n{_log_tail()}"
            )
        self._remove_netns()

    def _remove_netns(self) -> None:
        """Remove namespace kvmnet-lab unless a libvirtd lives in it.

        The libvirt dnsmasq/qemu processes left in it are ended first (by pid); they
        belong to a lab libvirtd that is gone.
        """
        if self.netns != NETNS or NETNS not in pr_netns.listnetns():
            return
        pids = pids_in_netns(NETNS)
        if any(proc_runs(pid, LIBVIRTD) for pid in pids):
            return
        for pid in pids:
            if _libvirt_child(pid):
                terminate(pid)
        pr_netns.remove(NETNS)

    def _make_netns(self) -> None:
        pr_netns.create(self.netns)
        with iproute(self.netns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def _spawn_libvirtd(self) -> None:
        log_offset = LIBVIRTD_LOG.stat().st_size if LIBVIRTD_LOG.exists() else 0
        out = self.run_dir / "libvirtd.out"
        with open(out, "w") as f:
            proc = subprocess.run(
                ["ip", "netns", "exec", self.netns, LIBVIRTD, "--daemon",
                 "--pid-file", str(self.pidfile)],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=60,
            )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(
                f"libvirtd --daemon in {self.netns} exited {proc.returncode}: "
                f"{out.read_text().strip()}\nlog tail:\n{_log_tail(log_offset)}"
            )
        self.started = True
        deadline = time.monotonic() + self.start_timeout
        while True:
            self.pid = read_pidfile(self.pidfile)
            conn = try_open(self.uri)
            if conn is not None:
                conn.listAllNetworks()
                conn.close()
                return
            if self.pid is not None and not proc_alive(self.pid):
                raise LabError(
                    f"libvirtd (pid {self.pid}) died while starting in {self.netns}; "
                    f"{LIBVIRTD_LOG} tail:\n{_log_tail(log_offset)}"
                )
            if time.monotonic() > deadline:
                raise LabError(
                    f"libvirtd in {self.netns} did not answer at {self.uri} within "
                    f"{self.start_timeout:.0f}s; {LIBVIRTD_LOG} tail:\n{_log_tail(log_offset)}"
                )
            time.sleep(0.1)

    # -- stop
    def stop(self) -> None:
        """Leave the lab; the last session out stops the lab's daemons and namespace."""
        with self._locked():
            if self._user_file is not None:
                self._user_file.unlink(missing_ok=True)
                self._user_file = None
            if self._other_users():
                return
            self._stop_ours(destroy_objects=True)

    def _stop_ours(self, destroy_objects: bool) -> None:
        """Stop the daemons the lab started (by their pid files), remove the namespace."""
        lab_libvirtd = self._lab_pid(self.pidfile, LIBVIRTD)
        if lab_libvirtd is not None:
            if destroy_objects:
                self._destroy_active()
            terminate(lab_libvirtd, timeout=30)
            _remove_runtime_leftovers(self.prefix)
        if self._lab_pid(self.pidfile, LIBVIRTD) is None:
            self.pidfile.unlink(missing_ok=True)
        # libvirtd leaves dnsmasq (and qemu) running: they go with the namespace
        self._remove_netns()
        lab_virtlogd = self._lab_pid(self.virtlogd_pidfile, VIRTLOGD)
        if lab_virtlogd is not None:
            terminate(lab_virtlogd)
        self.virtlogd_pidfile.unlink(missing_ok=True)
        self.started = self.virtlogd_started = False

    def _destroy_active(self) -> None:
        """Before our libvirtd goes: remove PREFIX objects, destroy all still active."""
        conn = try_open(self.uri)
        if conn is None:
            return
        try:
            removed = remove_objects(conn, self.prefix)
            left = []
            with quiet_libvirt():
                active = [
                    *conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE),
                    *conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE),
                ]
                for obj in active:
                    left.append(obj.name())
                    _ignore_gone(obj.destroy)
        finally:
            conn.close()
        if removed or left:
            warnings.warn(
                f"lab: tests left {removed}; destroyed other active objects {left}",
                stacklevel=2,
            )


def _remove_runtime_leftovers(prefix: str) -> None:
    """libvirt's PREFIX* files that outlive a destroyed network (dnsmasq pid file, ports
    dir in /run/libvirt/network); only called once the lab's libvirtd is gone."""
    for d in (Path("/run/libvirt/network"), Path("/var/lib/libvirt/dnsmasq")):
        for p in d.glob(f"{prefix}*") if d.is_dir() else ():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _libvirt_child(pid: int) -> bool:
    """A dnsmasq or qemu that a libvirtd started (judged by its command line)."""
    cmd = proc_cmdline(pid)
    exe = os.path.basename(proc_exe(pid) or "")
    if exe == "dnsmasq":
        return any("/var/lib/libvirt/dnsmasq/" in a for a in cmd)
    if exe.startswith("qemu-system-"):
        return any(a.startswith("guest=") for a in cmd)
    return False
