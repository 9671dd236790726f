"""kvmnet server: the command server that makes every other command start fast.

A kvmnet command spends ~0.2 s importing its libraries (typer, pydantic and the
models, rich, libvirt, pyroute2) before it does anything. The server imports them once
and forks a child per command; `kvmnet` (cli.client) hands the child its arguments,
environment and terminal. The precedent: Mercurial's chg, mypy's dmypy.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from kvmnet.cli import common, wire
from kvmnet.errors import KvmnetError

app = common.commands()
LISTEN_FDS_START = 3  # sd_listen_fds(3): systemd passes sockets from fd 3 on


@app.command()
def server(
    socket_: Annotated[Path | None, typer.Option(
        "--socket", metavar="PATH",
        help="Listen here (default: /run/kvmnet/cli.sock for root, else "
             "$XDG_RUNTIME_DIR/kvmnet/cli.sock; $KVMNET_SERVER_SOCKET sets it for "
             "the server and the kvmnet command alike).")] = None,
) -> None:
    """Serve kvmnet commands from a process that has imported kvmnet already.

    Optional: every command works without it. With it, `kvmnet plan`, `apply`,
    `validate` ... skip ~0.2 s of imports: kvmnet finds the socket, and a child of
    this server runs the command with your arguments, environment, working directory
    and terminal (same output, same exit code). If no server listens, or it is of
    another kvmnet, or its files changed since it started (it then exits), kvmnet runs
    the command itself.

    Only your own user may use it: the socket is 0600 in a 0700 folder, and a client
    of another uid, or with other groups, capabilities or namespaces, is refused.

    With systemd, let the socket start it on first use (as root):

      cp contrib/systemd/kvmnet-server.* /etc/systemd/system/

      systemctl enable --now kvmnet-server.socket

    Turn it off: systemctl disable --now kvmnet-server.socket kvmnet-server.service;
    for one command: KVMNET_NO_SERVER=1 kvmnet ...; to see why a command did not use
    it: KVMNET_SERVER_DEBUG=1 kvmnet ...
    """
    from kvmnet.cli.server_loop import Server

    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")  # (as cli.main.run)
    preload()
    if threading.active_count() != 1:  # (fork() copies only the thread that calls it)
        raise KvmnetError(f"{threading.active_count()} threads run after the imports; "
                          "the server forks and must have one")
    listener, on_exit = activated() or bind(str(socket_ or wire.default_socket()))
    try:
        rc = Server(listener, on_exit).serve()
    finally:
        on_exit()
    raise typer.Exit(rc)


def preload() -> None:
    """Import what commands need, and build each command module's click group (typer's
    option adapters): the children find them done. Nothing connects, nothing starts."""
    import importlib
    import pkgutil

    import kvmnet.service
    from kvmnet.cli.main import COMMANDS, _module_group

    for module in dict.fromkeys(COMMANDS.values()):
        _module_group(module)
    for info in pkgutil.iter_modules(kvmnet.service.__path__, "kvmnet.service."):
        importlib.import_module(info.name)
    for name in ("kvmnet.backend.libvirt", "kvmnet.backend.host", "kvmnet.cli.output",
                 "kvmnet.spec.check", "kvmnet.plan", "kvmnet.apply", "pyroute2",
                 "rich.console", "rich.segment", "rich.style", "rich.table", "rich.text",
                 "rich.highlighter", "rich.measure", "kvmnet.cli.server_child"):
        importlib.import_module(name)


def activated() -> tuple[socket.socket, Callable[[], None]] | None:
    """The socket systemd passed (sd_listen_fds: LISTEN_PID is us, LISTEN_FDS is 1, the
    socket is fd 3), or None. The variables are removed, so no command sees them."""
    pid, count = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not pid or pid != str(os.getpid()):
        return None
    if count != "1":
        raise KvmnetError(f"systemd passed {count} sockets (LISTEN_FDS); kvmnet server "
                          "listens on one: its socket unit has one ListenStream=")
    sock = socket.socket(fileno=LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise KvmnetError("the socket systemd passed is not a unix stream socket")
    sock.set_inheritable(False)
    path = sock.getsockname()
    if isinstance(path, str) and path:  # (its folder as bind() wants it; a socket
        # others may write to is one they may connect to)
        mode = os.lstat(path).st_mode
        reason = wire.unsafe_socket(path) or (
            f"{path} is writable by others (mode {stat.S_IMODE(mode):04o}): set "
            "SocketMode=0600" if mode & 0o022 else None)
        if reason:
            raise KvmnetError(reason)
    return sock, lambda: None  # (systemd keeps the socket and unlinks it)


def _stale(path: str) -> None:
    """Remove `path` if it is a socket of ours that nobody listens on; fail on anything
    else there (another server running, or a file that is not ours)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise KvmnetError(f"{path} exists and is not a socket of uid {os.geteuid()}: "
                          "not touched; remove it or choose another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # (a server of ours that is gone left it)
        return
    finally:
        probe.close()
    raise KvmnetError(f"a server already listens on {path}")


def bind(path: str) -> tuple[socket.socket, Callable[[], None]]:
    """A listening socket at `path`, 0600, in a folder of ours that nobody else may
    write (made 0700 if missing); and what removes it again."""
    if not path:
        raise KvmnetError("no socket path: XDG_RUNTIME_DIR is not set; give --socket PATH")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    reason = wire.unsafe_folder(folder)
    if reason:
        raise KvmnetError(f"not listening in {folder}: {reason}")
    _stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)  # (created 0600: never open to others, not even a moment)
    try:
        sock.bind(path)
    finally:
        os.umask(mask)
    sock.listen(64)
    made = os.lstat(path)

    def unlink() -> None:
        sock.close()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if (st.st_ino, st.st_dev) == (made.st_ino, made.st_dev):  # only ours
            os.unlink(path)

    return sock, unlink
