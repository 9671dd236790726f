"""Processes of the cluster lab (tests/lab/cluster.py): running commands, holding a
hypervisor's mount namespace open, and stopping only what the lab started.

A process is ended only when its pid file is ours, the pid is alive, runs one of the
programs the lab starts (DAEMONS, by the executable's name) *and* lives in one of the
lab's ``kvt-cl-*`` network namespaces: the machine's own libvirtd and sshds are never
candidates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lab.libvirtd import _libvirt_child, pid_netns, pids_in_netns, proc_alive, proc_exe

NETNS_DIR = Path("/run/netns")
PREFIX = "kvt-cl-"
DAEMONS = ("ovsdb-server", "ovs-vswitchd", "ovn-northd", "ovn-controller", "libvirtd",
           "virtlogd", "sshd", "busybox", "sleep")


class ProcError(RuntimeError):
    pass


def run(args: Sequence[str], check: bool = True, timeout: float = 60.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=full,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise ProcError(f"{' '.join(args)} failed ({res.returncode}): "
                        f"{res.stderr.strip() or res.stdout.strip()}")
    return res


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(what: str, ok: Callable[[], bool], timeout: float,
             logs: Sequence[Path] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise ProcError(f"timed out after {timeout:.0f}s waiting for {what}" + "".join(
        f"\n--- {p}:\n{tail(p)}" for p in logs))


def _ours(pid: int) -> bool:
    """PID lives in one of the lab's kvt-cl-* network namespaces."""
    ident = pid_netns(pid)
    if ident is None or not NETNS_DIR.is_dir():
        return False
    for ns in os.listdir(NETNS_DIR):
        if ns.startswith(PREFIX):
            try:
                st = os.stat(NETNS_DIR / ns)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident:
                return True
    return False


def _runs(pid: int, exe: str | None = None) -> bool:
    name = Path(proc_exe(pid) or "").name
    return proc_alive(pid) and (name == exe if exe else name in DAEMONS) and _ours(pid)


def stop_pid(pid: int, exe: str | None = None, kill_first: bool = False,
             timeout: float = 15.0) -> None:
    """End PID if it is one of ours (see the module's doc); SIGTERM then SIGKILL."""
    if not _runs(pid, exe):
        return
    steps = ((signal.SIGKILL, 5.0),) if kill_first else (
        (signal.SIGTERM, timeout), (signal.SIGKILL, 5.0))
    for sig, wait in steps:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not proc_alive(pid):
                return
            time.sleep(0.05)
    raise ProcError(f"process {pid} ({proc_exe(pid)}) does not exit")


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def stop_pidfile(pidfile: Path) -> None:
    pid = read_pid(pidfile)
    if pid is not None:
        stop_pid(pid)
    pidfile.unlink(missing_ok=True)


def holder_pid(pidfile: Path, netns: str, exe: str = "sleep") -> int | None:
    """The pid in PIDFILE if it is alive, runs EXE and lives in NETNS."""
    pid = read_pid(pidfile)
    if pid is None or not _runs(pid, exe):
        return None
    try:
        st = os.stat(NETNS_DIR / netns)
    except OSError:
        return None
    return pid if pid_netns(pid) == (st.st_dev, st.st_ino) else None


def hold(netns: str, pidfile: Path, binds: Sequence[tuple[str, str]]) -> int:
    """A mount namespace of its own inside network namespace NETNS, with BINDS (source,
    mount point) mounted, held open by a ``sleep`` whose pid goes to PIDFILE."""
    script = ["set -e"]
    for src, dst in binds:
        os.makedirs(dst, exist_ok=True)         # the mount point, on the machine
        script.append(f"mount --bind '{src}' '{dst}'")
    script.append(f"echo $$ > '{pidfile}'")
    script.append("exec sleep infinity")
    pidfile.unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
         "sh", "-c", "\n".join(script)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    wait_for(f"the mount namespace of {netns}",
             lambda: proc.poll() is not None or holder_pid(pidfile, netns) is not None, 10)
    pid = holder_pid(pidfile, netns)
    if pid is None:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise ProcError(f"cannot make the mount namespace of {netns}: {err.strip()}")
    return pid


def kill_ns_children(ns: str) -> None:
    """libvirt's dnsmasq and qemu processes (by command line) left in namespace NS."""
    for pid in pids_in_netns(ns):
        if _libvirt_child(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
