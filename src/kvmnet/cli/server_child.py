"""A kvmnet server's child: becomes the client's command and exits.

It takes the client's stdin, stdout and stderr as its own 0, 1 and 2 (standard
streams encoded as the client's were), its working directory, environment (and so its
time zone and locale), umask and arguments; signal handlers as a new Python process
has them; a session of its own (it is no part of the server's). Then it runs
kvmnet.cli.main.main() as `kvmnet` would, lets the command's threads and exit handlers
finish as an interpreter's exit would, flushes and leaves with os._exit(): never
through the server's stack.
"""

from __future__ import annotations

import atexit
import fcntl
import io
import locale
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, NoReturn, TextIO

DEFAULTS = (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGWINCH, signal.SIGQUIT,
            signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)


def run_child(request: dict[str, Any], fds: list[int], close: list[int]) -> NoReturn:
    rc = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in close:
            os.close(fd)
        _signals(request["ignored"])
        os.setsid()
        _stdio(fds, request["streams"])
        _context(request)
        rc = _command(request["argv"])
    except BaseException:  # (a child must never return into the server's loop)
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        os._exit(rc)


def _signals(ignored: list[int]) -> None:
    """As the client's interpreter has them: Ctrl-C is KeyboardInterrupt, SIGPIPE
    ignored (a closed pipe is BrokenPipeError), the rest as the system's default; those
    the client inherited as ignored stay ignored; none blocked."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for sig in DEFAULTS:
        signal.signal(sig, signal.SIG_DFL)
    for number in ignored:
        signal.signal(number, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _stream(fd: int, how: dict[str, Any]) -> TextIO:
    raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
    buffered: io.BufferedReader | io.BufferedWriter = (
        io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw))
    return io.TextIOWrapper(buffered, encoding=how["encoding"], errors=how["errors"],
                            line_buffering=how["line_buffering"])


def _stdio(fds: list[int], streams: dict[str, dict[str, Any]]) -> None:
    """The client's descriptors as 0, 1, 2 (moved out of the way first: the received
    ones may be 0-2 themselves), and sys.stdin/stdout/stderr over them as the client's
    interpreter made its own."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(high):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = _stream(0, streams["stdin"])
    sys.stdout = _stream(1, streams["stdout"])
    sys.stderr = _stream(2, streams["stderr"])


def _context(request: dict[str, Any]) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    try:
        locale.setlocale(locale.LC_CTYPE, "")
    except locale.Error:
        pass
    os.umask(request["umask"])
    sys.argv = ["kvmnet", *request["argv"]]
    # (as cli.main.run() does: kvmnet's models use no pydantic plugin)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _exit_code(e: SystemExit) -> int:
    """What the interpreter makes of sys.exit(code)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def _command(argv: list[str]) -> int:
    from kvmnet.cli.main import main

    try:
        rc = main(argv)
    except SystemExit as e:
        rc = _exit_code(e)
    except KeyboardInterrupt:  # (the interpreter's traceback, then death by SIGINT)
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        rc = 130
    except BaseException:
        traceback.print_exc()
        rc = 1
    return _finish(rc)


def _finish(rc: int = 0) -> int:
    """What the interpreter's exit does: wait for the threads that are not daemons, run
    the exit handlers, flush stdout and stderr (120 if stdout cannot be flushed)."""
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        rc = 120
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return rc
