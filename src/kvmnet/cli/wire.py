"""What `kvmnet` and `kvmnet server` say to each other over the server's unix socket
(cli.client, cli.server). Standard library only: the client imports it before anything
else of kvmnet.

Every message is a frame: 4 bytes of length (big-endian), then that many bytes of one
JSON object. The client's first frame is the request (`request()`), sent together with
its stdin, stdout and stderr as SCM_RIGHTS file descriptors; the server answers
`{"started": PID}` once a child runs the command, or `{"refused": REASON}` (the
client then runs the command itself). While it runs, the client sends `{"signal": N}`
for each signal it forwards; the server ends with `{"exit": CODE}` or, when the child
was killed by a signal, `{"killed": N}`.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from typing import Any

PROTOCOL = 1
MAX_FRAME = 4 << 20  # a request carries the environment: generous, but bounded
_LENGTH = struct.Struct(">I")
STREAMS = ("stdin", "stdout", "stderr")
# Signals the client may have inherited as ignored (nohup, a shell's background job):
# the child ignores them too, as the command in the client's process would.
IGNORABLE = (1, 2, 3, 10, 12, 14, 15, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM WINCH


class WireError(Exception):
    """A frame that is not one: too long, not JSON, not an object, or the peer left."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise WireError(f"a frame of {len(body)} bytes (at most {MAX_FRAME})")
    return _LENGTH.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """A frame's JSON body (without its length) as a dict."""
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(message, dict):
        raise WireError(f"not a JSON object: {type(message).__name__}")
    return message


def body_length(head: bytes) -> int:
    """The length a frame's first 4 bytes announce (checked against MAX_FRAME)."""
    n: int = _LENGTH.unpack(head)[0]
    if n > MAX_FRAME:
        raise WireError(f"a frame of {n} bytes announced (at most {MAX_FRAME})")
    return n


def recv_exactly(sock: socket.socket, n: int, start: bytes = b"") -> bytes:
    """n bytes from sock (start: what was read already); WireError if the peer leaves."""
    data = bytearray(start)
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise WireError("the connection closed in the middle of a frame"
                            if data else "the connection closed")
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    """The next frame from sock."""
    head = recv_exactly(sock, _LENGTH.size)
    return decode(recv_exactly(sock, body_length(head)))


def recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The client's first frame and the file descriptors sent with it. Every descriptor
    received is closed again if the frame is not a good request."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 3)
    try:
        if len(data) < _LENGTH.size:
            data = recv_exactly(sock, _LENGTH.size, data)
        n = body_length(data[:_LENGTH.size])
        body = recv_exactly(sock, n, data[_LENGTH.size:])
        if len(body) != n:
            raise WireError("bytes after the request")
        request = check_request(decode(body))
        if len(fds) != len(STREAMS):
            raise WireError(f"{len(fds)} file descriptors with the request (want 3)")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def send_request(sock: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """The request frame with fds (stdin, stdout, stderr) in its first bytes."""
    frame = encode(request)
    sent = socket.send_fds(sock, [frame], fds)
    sock.sendall(frame[sent:])


def _stream(name: str) -> dict[str, Any]:
    """How this process's sys.<name> reads or writes, for the child to do the same."""
    s = getattr(sys, name)
    return {"encoding": getattr(s, "encoding", None) or "utf-8",
            "errors": getattr(s, "errors", None) or "strict",
            "line_buffering": bool(getattr(s, "line_buffering", False))}


def request(argv: list[str], package: str, version: str) -> dict[str, Any]:
    """What the child needs to run argv as this process would: the working directory,
    the environment, the umask, how the standard streams encode, and which kvmnet the
    client is (the server serves only its own)."""
    import signal

    mask = os.umask(0o077)
    os.umask(mask)
    ignored = [int(s) for s in IGNORABLE if signal.getsignal(s) == signal.SIG_IGN]
    return {"protocol": PROTOCOL, "argv": list(argv), "cwd": os.getcwd(),
            "env": dict(os.environ), "umask": mask, "ignored": ignored,
            "streams": {name: _stream(name) for name in STREAMS},
            "kvmnet": {"path": package, "version": version}}


def _is_str_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def check_request(message: dict[str, Any]) -> dict[str, Any]:
    """message if it is a request of this protocol with every field of its type, else
    WireError saying what is wrong (a client of another kvmnet, or no client at all)."""
    if message.get("protocol") != PROTOCOL:
        raise WireError(f"protocol {message.get('protocol')!r}, this server speaks "
                        f"{PROTOCOL}")
    argv, streams, who = message.get("argv"), message.get("streams"), message.get("kvmnet")
    checks = {
        "argv": isinstance(argv, list) and all(isinstance(a, str) for a in argv),
        "cwd": isinstance(message.get("cwd"), str),
        "env": _is_str_dict(message.get("env")),
        "umask": isinstance(message.get("umask"), int) and 0 <= message["umask"] <= 0o777,
        "ignored": isinstance(message.get("ignored"), list) and all(
            isinstance(s, int) and s in IGNORABLE for s in message["ignored"]),
        "streams": isinstance(streams, dict) and set(streams) == set(STREAMS) and all(
            isinstance(s, dict) and isinstance(s.get("encoding"), str)
            and isinstance(s.get("errors"), str)
            and isinstance(s.get("line_buffering"), bool) for s in streams.values()),
        "kvmnet": _is_str_dict(who) and {"path", "version"} <= set(who or ()),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise WireError(f"a request with bad field(s): {', '.join(bad)}")
    return message


def installed_version(package: str) -> str:
    """kvmnet's version as importlib.metadata.version("kvmnet") finds it (the first
    kvmnet-VERSION.dist-info on sys.path), from directory names only: the metadata
    machinery costs the client ~30 ms. `package`: kvmnet's folder, for a source tree
    that was never installed (then "0.0.0+unknown", as kvmnet.__version__ says)."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("kvmnet-") and name.endswith((".dist-info", ".egg-info")):
                return name[len("kvmnet-"):].rsplit(".", 1)[0]
    return "0.0.0+unknown"


def default_socket() -> str:
    """Where the server listens unless told otherwise: $KVMNET_SERVER_SOCKET, else
    /run/kvmnet/cli.sock for root, else $XDG_RUNTIME_DIR/kvmnet/cli.sock (empty when a
    user has no XDG_RUNTIME_DIR: no server)."""
    given = os.environ.get("KVMNET_SERVER_SOCKET")
    if given:
        return given
    if os.geteuid() == 0:
        return "/run/kvmnet/cli.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "kvmnet", "cli.sock") if runtime else ""


def _not_ours(path: str, kind: str) -> tuple[str | None, int]:
    """Why `path` is not a `kind` ("folder" or "socket", not behind a symlink) of this
    process's uid (None: it is), and its mode."""
    import stat

    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path}: {e.strerror}", 0
    is_kind = stat.S_ISDIR if kind == "folder" else stat.S_ISSOCK
    if not is_kind(st.st_mode):
        return f"{path} is not a {kind}", st.st_mode
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to uid {os.geteuid()}", st.st_mode
    return None, st.st_mode


def unsafe_folder(folder: str) -> str | None:
    """Why a socket in `folder` is not safe to use (None: it is): the folder must be
    ours, a real folder (no symlink) and writable by nobody else, or another user could
    put their own socket there."""
    reason, mode = _not_ours(folder, "folder")
    if reason is None and mode & 0o022:
        return f"{folder} is writable by others (mode {mode & 0o7777:04o})"
    return reason


def unsafe_socket(path: str) -> str | None:
    """Why `path` is not a server socket of ours to talk to (None: it is)."""
    return (unsafe_folder(os.path.dirname(os.path.abspath(path)))
            or _not_ours(path, "socket")[0])


def package_dir() -> str:
    """kvmnet's folder (the real path: the one the server compares with its own)."""
    return os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
