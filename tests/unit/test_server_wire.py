"""What kvmnet and kvmnet server say to each other (cli.wire), and where the server may
put its socket (cli.server.bind): pure functions and a socketpair."""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

import pytest

from kvmnet.cli import wire
from kvmnet.cli.server import bind
from kvmnet.errors import KvmnetError


def good() -> dict[str, object]:
    return wire.request(["validate", "x.yaml"], "/opt/kvmnet", "1.2.3")


def test_a_frame_round_trips() -> None:
    frame = wire.encode({"exit": 3, "text": "é"})
    n = wire.body_length(frame[:4])
    assert n == len(frame) - 4 and wire.decode(frame[4:]) == {"exit": 3, "text": "é"}


@pytest.mark.parametrize(("body", "why"), [
    (b"[1, 2]", "not a JSON object: list"),
    (b"{nope", "not JSON"),
    (b"\xff\xfe", "not JSON"),
])
def test_a_body_that_is_no_message(body: bytes, why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.decode(body)


def test_a_frame_too_long_is_refused_before_it_is_read() -> None:
    with pytest.raises(wire.WireError, match="announced"):
        wire.body_length(struct.pack(">I", wire.MAX_FRAME + 1))
    with pytest.raises(wire.WireError, match="at most"):
        wire.encode({"x": "y" * wire.MAX_FRAME})


def test_the_request_says_what_the_child_needs() -> None:
    r = good()
    assert wire.check_request(dict(r)) == r
    assert r["argv"] == ["validate", "x.yaml"] and r["cwd"] == os.getcwd()
    assert r["env"] == dict(os.environ) and r["kvmnet"] == {"path": "/opt/kvmnet",
                                                             "version": "1.2.3"}
    mask = os.umask(0o022)
    os.umask(mask)
    assert r["umask"] == mask
    assert set(r["streams"]) == {"stdin", "stdout", "stderr"}  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "why"), [
    ({"protocol": 2}, "protocol 2, this server speaks 1"),
    ({"argv": "validate x"}, "argv"),
    ({"env": {"A": 1}}, "env"),
    ({"umask": 0o1000}, "umask"),
    ({"ignored": [9]}, "ignored"),
    ({"streams": {"stdin": {}}}, "streams"),
    ({"kvmnet": {"path": "/x"}}, "kvmnet"),
    ({"cwd": None, "argv": [1]}, "argv, cwd"),
])
def test_a_bad_request_says_what_is_wrong(change: dict[str, object], why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.check_request({**good(), **change})


def test_a_request_travels_with_its_descriptors() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        wire.send_request(a, good(), [r, w, w])
        request, fds = wire.recv_request(b)
        assert request == good() and len(fds) == 3
        os.write(fds[1], b"hi")
        assert os.read(r, 2) == b"hi"
        for fd in fds:
            os.close(fd)
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_descriptors_of_a_bad_request_are_closed() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    before = set(os.listdir("/proc/self/fd"))
    try:
        frame = wire.encode({**good(), "protocol": 0})
        socket.send_fds(a, [frame], [r, w, w])
        with pytest.raises(wire.WireError, match="protocol"):
            wire.recv_request(b)
        assert set(os.listdir("/proc/self/fd")) == before
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_the_default_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KVMNET_SERVER_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    want = "/run/kvmnet/cli.sock" if os.geteuid() == 0 else "/run/user/1000/kvmnet/cli.sock"
    assert wire.default_socket() == want
    monkeypatch.setenv("KVMNET_SERVER_SOCKET", "/x/s")
    assert wire.default_socket() == "/x/s"


def test_bind_makes_a_private_socket_and_removes_only_its_own(tmp_path: Path) -> None:
    path = tmp_path / "run" / "cli.sock"
    sock, unlink = bind(str(path))
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert wire.unsafe_socket(str(path)) is None
        with pytest.raises(KvmnetError, match="already listens"):
            bind(str(path))
    finally:
        unlink()
    assert not path.exists()


def test_bind_takes_over_a_stale_socket_of_ours(tmp_path: Path) -> None:
    path = tmp_path / "cli.sock"
    old = socket.socket(socket.AF_UNIX)
    old.bind(str(path))
    old.close()  # (a server that died: the file stays, nobody listens)
    sock, unlink = bind(str(path))
    unlink()
    assert not path.exists()


def test_bind_refuses_what_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(KvmnetError, match="not a socket of uid"):
        bind(str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "mine"
    open_to_all = tmp_path / "shared"
    open_to_all.mkdir()
    open_to_all.chmod(0o1777)
    with pytest.raises(KvmnetError, match="writable by others"):
        bind(str(open_to_all / "cli.sock"))
    assert wire.unsafe_socket(str(tmp_path / "file")) == f"{tmp_path / 'file'} is not a socket"
