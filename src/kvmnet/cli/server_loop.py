"""kvmnet server's loop: accept a client, check it, fork a child that runs its command.

One thread, one selector: the listening socket, a wake-up socket for signals (SIGCHLD:
reap; SIGTERM, SIGINT, SIGHUP: stop), and each running command's connection (a
forwarded signal; end of file: the client is gone, so its child is killed, as the
command would have been with it). The parent never runs a command: everything a
command changes (os.environ, the working directory, caches, the garbage collector,
libvirt connections) changes in a child that exits afterwards.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from kvmnet.cli import wire
from kvmnet.cli.server_child import run_child

FORWARDABLE = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH}
READ_TIMEOUT = 10.0  # for a connected client's request (one thread serves everyone)
# What a child inherits of the server besides its uid: a client that differs in one of
# these would gain it through the server (a sandboxed or unprivileged process of the
# same uid), so it is served only if it has them all the same.
_STATUS_FIELDS = ("Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                  "Seccomp")
_WHAT = {"Groups": "supplementary groups", "NoNewPrivs": "no_new_privs flag",
         "Seccomp": "seccomp filter", **{f"Cap{k}": "capabilities"
                                         for k in ("Inh", "Prm", "Eff", "Bnd", "Amb")}}
_NAMESPACES = ("mnt", "net", "pid", "user", "ipc", "uts", "cgroup")


def log(message: str) -> None:
    print(f"kvmnet server: {message}", file=sys.stderr, flush=True)


def module_stamps(package: str) -> dict[str, tuple[int, int, int]]:
    """(mtime, size, inode) of every loaded module file of kvmnet."""
    stamps = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and os.path.realpath(path).startswith(package + os.sep):
            st = os.stat(path)
            stamps[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stamps


def changed(stamps: dict[str, tuple[int, int, int]]) -> str | None:
    """The first module file that is not as it was (None: all are)."""
    for path, stamp in stamps.items():
        try:
            st = os.stat(path)
        except OSError:
            return path
        if (st.st_mtime_ns, st.st_size, st.st_ino) != stamp:
            return path
    return None


def _process(pid: int) -> dict[str, str]:
    """What of a process a child would inherit from the server instead (_STATUS_FIELDS,
    the namespaces)."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    seen = {k: fields.get(k, "").strip() for k in _STATUS_FIELDS}
    for ns in _NAMESPACES:
        try:
            seen[f"ns/{ns}"] = os.readlink(f"/proc/{pid}/ns/{ns}")
        except OSError:
            seen[f"ns/{ns}"] = "?"
    return seen


def peer_refusal(conn: socket.socket) -> str | None:
    """Why this peer may not use the server (None: it may): another uid, or the same
    uid with other groups, capabilities, namespaces or restrictions than the server."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    if uid != os.geteuid():
        return (f"uid {uid} may not use the kvmnet server of uid {os.geteuid()}: "
                "run kvmnet as that user, or start a server of your own (kvmnet server)")
    if gid != os.getegid():
        return f"the client's group {gid} is not the server's {os.getegid()}"
    try:
        theirs, ours = _process(pid), _process(os.getpid())
    except OSError as e:
        return f"cannot read the client's process: {e.strerror}"
    differ = dict.fromkeys(_WHAT.get(k, k.replace("ns/", "") + " namespace")
                           for k in ours if theirs[k] != ours[k])
    return (f"the client's {', '.join(differ)} differ from the server's" if differ
            else None)


class Server:
    """Serves on `listener` until stopped (a signal, or its own files changed)."""

    def __init__(self, listener: socket.socket, on_exit: Callable[[], None]) -> None:
        self.listener = listener
        self.on_exit = on_exit
        self.package = wire.package_dir()
        self.identity = {"path": self.package, "version": wire.installed_version(self.package)}
        self.stamps = module_stamps(self.package)
        self.sel = selectors.EpollSelector()
        self.children: dict[int, socket.socket] = {}  # pid -> its client's connection
        self.stopping: str | None = None
        self.wake_r, self.wake_w = socket.socketpair()

    def serve(self) -> int:
        """The loop; 0 when it stops."""
        for s in (self.wake_r, self.wake_w):
            s.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, self._noted)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        log(f"pid {os.getpid()}: serving kvmnet {self.identity['version']} "
            f"({len(self.stamps)} modules loaded)")
        try:
            while self.stopping is None:
                for key, _ in self.sel.select():
                    self._event(key)
            log(f"stopping: {self.stopping}"
                + (f"; waiting for {len(self.children)} command(s)" if self.children else ""))
            self.sel.unregister(self.listener)
            self.on_exit()  # (no new clients: they run their commands themselves)
            while self.children:  # the commands running finish as they would have
                for key, _ in self.sel.select():
                    self._event(key)
            return 0
        finally:
            signal.set_wakeup_fd(-1)

    def _noted(self, signum: int, frame: Any) -> None:
        pass  # (the wake-up socket tells the loop)

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = signal.Signals(signum).name

    def _event(self, key: selectors.SelectorKey) -> None:
        if key.data == "accept":
            self._accept()
        elif key.data == "wake":
            try:
                while self.wake_r.recv(512):
                    pass
            except BlockingIOError:
                pass
            self._reap()
        else:
            self._from_client(key.data, key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            self._start(conn)
        except (OSError, wire.WireError) as e:
            log(f"a client: {e}")
            conn.close()

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        try:
            conn.sendall(wire.encode({"refused": reason}))
        except OSError:
            pass
        conn.close()

    def _start(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(READ_TIMEOUT)
        refusal = peer_refusal(conn)
        if refusal:
            log(f"refused a client: {refusal}")
            self._refuse(conn, refusal)
            return
        try:
            request, fds = wire.recv_request(conn)
        except wire.WireError as e:
            self._refuse(conn, f"a bad request: {e}")
            return
        try:
            self._fork(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _fork(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        if request["kvmnet"] != self.identity:
            self._refuse(conn, f"the client is kvmnet {request['kvmnet']}, this server "
                               f"{self.identity}")
            return
        stale = changed(self.stamps)
        if stale:
            self._refuse(conn, f"stale: {stale} changed since the server started")
            self.stopping = f"stale: {stale} changed since the server started"
            return
        pid = os.fork()
        if pid == 0:  # the child: never returns
            close = [self.listener, self.wake_r, self.wake_w, conn, *self.children.values()]
            run_child(request, fds, [self.sel.fileno(), *(s.fileno() for s in close)])
        self.children[pid] = conn
        conn.settimeout(None)
        self.sel.register(conn, selectors.EVENT_READ, pid)
        try:
            conn.sendall(wire.encode({"started": pid}))
        except OSError:  # the client left already: so goes its command
            self._kill(pid)

    def _from_client(self, pid: int, conn: socket.socket) -> None:
        try:
            message = wire.recv_frame(conn)
        except (OSError, wire.WireError):  # the client is gone: so goes its command
            self._kill(pid)
            return
        sig = message.get("signal")
        if sig in FORWARDABLE:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _kill(self, pid: int) -> None:
        conn = self.children.pop(pid, None)
        if conn is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.sel.unregister(conn)
        conn.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            answer = ({"killed": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
                      else {"exit": os.waitstatus_to_exitcode(status)})
            self.sel.unregister(conn)
            try:
                conn.sendall(wire.encode(answer))
            except OSError:
                pass
            conn.close()
