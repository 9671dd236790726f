"""The `kvmnet` command (console script, `python -m kvmnet`): runs the command in a
`kvmnet server` when one listens (cli.server: it has paid the imports already and forks
a child per command), else in this process (cli.main). Standard library only, so that
a command served costs the interpreter's start and this module (~10 ms), not kvmnet's
imports (~0.2 s): the way Mercurial's chg and mypy's dmypy do it.

The child gets this process's stdin, stdout and stderr (the very file descriptors:
colours, terminal size and prompts are the terminal's), its arguments, working
directory, environment and umask; this process forwards SIGINT, SIGTERM, SIGHUP and
SIGWINCH to it and exits with its exit code (or dies of the signal that killed it).

Anything wrong before the command starts (no server, a socket that is not ours, a
server of another kvmnet or with changed files, a refusal) runs the command here
instead, silently unless $KVMNET_SERVER_DEBUG is set. KVMNET_NO_SERVER=1 never asks a
server. `kvmnet server` and `kvmnet rollback` always run here: the boot rollback unit
(`python -m kvmnet rollback --boot`) must never wait for a server.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any, NoReturn

from kvmnet.cli import wire

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)
IN_PROCESS = {"server", "rollback"}  # commands never sent to a server
HANDSHAKE_TIMEOUT = 30.0  # a socket-activated server imports first (~1 s on a busy host)


def run() -> NoReturn:
    """The console script: served if possible, else cli.main.run() in this process."""
    rc = served(sys.argv[1:])
    if rc is None:
        from kvmnet.cli.main import run as in_process

        in_process()
    sys.exit(rc)


def _debug(message: str) -> None:
    if os.environ.get("KVMNET_SERVER_DEBUG"):
        print(f"kvmnet: server: {message}", file=sys.stderr, flush=True)


def served(argv: list[str]) -> int | None:
    """Run argv in the server: its exit code, or None when this process must run it."""
    if os.environ.get("KVMNET_NO_SERVER", "") not in ("", "0"):
        return None
    if next((a for a in argv if not a.startswith("-")), None) in IN_PROCESS:
        return None
    path = wire.default_socket()
    if not path:
        return None
    reason = wire.unsafe_socket(path)
    if reason:
        _debug(f"not used: {reason}")
        return None
    try:
        return Session(path).run(argv)
    except (OSError, wire.WireError) as e:
        _debug(f"{path}: {e}; running in-process")
        return None


class Session:
    """One command through the server at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.pending: list[int] = []  # signals caught before the child started
        self.old: dict[int, Any] = {}

    def run(self, argv: list[str]) -> int | None:
        for sig in FORWARDED:  # (an ignored one stays ignored: the child ignores it too)
            if signal.getsignal(sig) != signal.SIG_IGN:
                self.old[sig] = signal.signal(sig, self._forward)
        try:
            return self._talk(argv)
        finally:
            for number, handler in self.old.items():
                signal.signal(number, handler)
            if self.sock is not None:
                self.sock.close()
            if self.pending and self.sock is None:  # refused: act on them here, late
                for number in self.pending:
                    signal.raise_signal(number)

    def _forward(self, signum: int, frame: Any) -> None:
        if self.sock is None:
            self.pending.append(signum)
            return
        try:
            self.sock.sendall(wire.encode({"signal": signum}))
        except OSError:
            pass  # the server left: the next read says so

    def _talk(self, argv: list[str]) -> int | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            sock.connect(self.path)
            package = wire.package_dir()
            try:
                wire.send_request(sock, wire.request(argv, package,
                                                     wire.installed_version(package)),
                                  [0, 1, 2])
            except (BrokenPipeError, ConnectionResetError):
                pass  # (refused before it read the request: the answer says why)
            answer = wire.recv_frame(sock)
        except BaseException:
            sock.close()
            raise
        if "started" not in answer:
            _debug(f"refused: {answer.get('refused', answer)}; running in-process")
            sock.close()
            return None
        sock.settimeout(None)
        self.sock = sock
        for sig in self.pending:
            self._forward(sig, None)
        self.pending = []
        return self._wait(sock)

    def _wait(self, sock: socket.socket) -> int:
        """The child's exit code; its signal, raised here, if a signal killed it."""
        try:
            answer = wire.recv_frame(sock)
        except (OSError, wire.WireError) as e:
            print(f"kvmnet: error: the connection to kvmnet server ({self.path}) broke "
                  f"while the command ran ({e}); it may have done part of its work",
                  file=sys.stderr)
            return 1
        if "killed" in answer:
            sig = int(answer["killed"])
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
            return 128 + sig
        return int(answer.get("exit", 1))
