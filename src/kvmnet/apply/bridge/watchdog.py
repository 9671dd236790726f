"""The watchdog: a process of its own that rolls a host change back unless confirmed.

It must outlive the apply process and the SSH session that started it (the
change may be what cut that session off), so it is detached. With systemd it
runs as a transient unit (`systemd-run`), outside the session's cgroup. Without
systemd, by a double fork: apply starts `python -m kvmnet.apply.bridge.watchdog` in a
new session (setsid); that child forks the watchdog and exits, so the watchdog
is re-parented to init, has no controlling terminal, and ignores SIGHUP and
SIGINT. Everything it needs is in the journal (kvmnet.apply.bridge.journal); it
rolls back with kvmnet.apply.bridge.revert, below it (the transaction, above, starts
and stops it).

Every 0.1 s it reads the journal: gone, or another transaction -> exit (it was
confirmed or rolled back by someone else). It rolls back when `rollback_now`
is set (the self-check failed), when the deadline has passed, or when the apply
process died before its self-check finished. `kvmnet confirm` also sends it
SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from kvmnet.apply.bridge.journal import Journal, Registration
from kvmnet.apply.bridge.revert import revert
from kvmnet.apply.bridge.store import read_journal, register, registered, registration_path
from kvmnet.errors import LiveError

POLL = 0.1


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in ticks): tells a reused pid apart."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(root: Path, txid: str) -> bool:
    """Does the watchdog of txid run (its registration, checked by pid and start time)?
    A registration that cannot be read counts as none: the caller then does the
    watchdog's work itself (rollback_now rolls back in place)."""
    try:
        w = registered(root)
    except LiveError:
        return False
    return bool(w and w.txid == txid and start_time(w.pid) == w.start)


def stop(root: Path, txid: str) -> None:
    """SIGTERM the watchdog of txid, if it still runs (checked by pid and start time).
    A registration that cannot be read is left alone: the watchdog leaves by itself
    when the journal is gone, which is when this is called."""
    try:
        w = registered(root)
    except LiveError:
        return
    if not (w and alive(root, txid)) or w.pid == os.getpid():
        return
    try:
        os.kill(w.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def spawn(root: Path, txid: str, wait: float = 30.0) -> int:
    """Start the watchdog for txid, detached; its pid once it has registered (within
    `wait` s: ample on a loaded or slow machine, where Python alone may take seconds)."""
    import kvmnet

    root = Path(root).resolve()
    cmd = [sys.executable, "-m", "kvmnet.apply.bridge.watchdog", str(root), txid]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(kvmnet.__file__).resolve().parents[1])]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if os.path.isdir("/run/systemd/system") and shutil.which("systemd-run"):
        cmd = ["systemd-run", "--quiet", "--collect", f"--unit=kvmnet-watchdog-{txid[:12]}",
               f"--setenv=PYTHONPATH={env['PYTHONPATH']}", *cmd, "--foreground"]
    try:
        first = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True,
                                 close_fds=True, cwd="/", env=env)
        first.wait(timeout=wait)  # it leaves as soon as the watchdog is forked
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LiveError(f"cannot start the rollback watchdog: {e}") from None
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if alive(root, txid) and (w := registered(root)) is not None:
            return w.pid
        time.sleep(0.02)
    raise LiveError(f"the rollback watchdog did not start (see {registration_path(root).parent}"
                    "/watchdog.log); nothing was changed")


def _log(msg: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S ") + f"[{os.getpid()}] {msg}", flush=True)


def _detach(root: Path) -> None:
    """Double fork: new session, fork, first child leaves; stdio to the log."""
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (start_new_session)
    if os.fork() > 0:
        os._exit(0)
    from kvmnet.backend.files import open_file

    log = open_file(registration_path(root).parent / "watchdog.log",
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.umask(0o077)


def _stopped(_sig: int, _frame: object) -> None:
    raise SystemExit(0)


def _reason(j: Journal) -> str | None:
    """Why to roll back now, None to keep waiting."""
    if j.rollback_now:
        return j.rollback_now
    if time.monotonic() >= j.deadline:
        return f"no `kvmnet confirm` within {j.timeout:.0f} s"
    if j.state in ("changing", "checking") and j.apply_pid and start_time(
            j.apply_pid) != j.apply_start:
        return f"the apply process (pid {j.apply_pid}) ended before its self-check finished"
    return None


def watch(root: Path, txid: str) -> int:
    """The loop; 0 when the transaction ended (confirmed or rolled back), 1 when the
    rollback failed three times (the journal stays for `kvmnet rollback`)."""
    _log(f"watching transaction {txid} (journal under {root})")
    failures = 0
    unreadable = ""
    while True:
        try:
            j = read_journal(root)
        except LiveError as e:
            if str(e) != unreadable:  # (once per problem, not every POLL)
                _log(f"{e}; trying again")
                unreadable = str(e)
            time.sleep(POLL)
            continue
        if j is None or j.txid != txid:
            _log("transaction ended (confirmed, or rolled back elsewhere): exiting")
            return 0
        reason = _reason(j)
        if reason is None:
            time.sleep(POLL)
            continue
        _log(f"rolling back: {reason}")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # never stop half way
        try:
            last = revert(root, reason, txid)
        except LiveError as e:
            failures += 1
            _log(f"rollback failed ({failures}/3): {e}")
            if failures >= 3:
                return 1
            time.sleep(2)
            continue
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if last:
            _log(f"rolled back in {last.seconds or 0:.3f} s: " + "; ".join(last.done or ()))
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m kvmnet.apply.bridge.watchdog ROOT TXID [--foreground]",
              file=sys.stderr)
        return 2
    root, txid = Path(args[0]), args[1]
    if "--foreground" not in args:
        _detach(root)
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stopped)
    register(root, Registration(pid=os.getpid(), start=start_time(os.getpid()), txid=txid))
    try:
        return watch(root, txid)
    except SystemExit:
        _log("stopped by SIGTERM: the transaction was confirmed or ended elsewhere")
        return 0


if __name__ == "__main__":
    sys.exit(main())
