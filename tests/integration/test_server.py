"""kvmnet server (cli.server, cli.server_loop, cli.server_child) and the `kvmnet` client
(cli.client): a real server process on a socket of the test's, real clients, real
signals. A command through the server prints and exits exactly as in-process; anything
wrong with the server makes the client run the command itself."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KVMNET = Path(sys.executable).parent / "kvmnet"
DNS = ROOT / "examples" / "dns.yaml"
T = "test:///default"
BAD = """\
networks:
  lab:
    bridge: vbr-lab
    ipv4: {address: 10.0.0.1/24, dhcp: [10.0.0.10-10.0.0.99]}
    mtu: lots
    autostrat: true
"""


class Server:
    """A `kvmnet server --socket PATH` process of the test's."""

    def __init__(self, folder: Path, activated: socket.socket | None = None) -> None:
        self.path = folder / "cli.sock"
        self.log = folder / "server.log"
        cmd = [sys.executable, "-m", "kvmnet", "server", "--socket", str(self.path)]
        with self.log.open("w") as log:
            if activated is None:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, start_new_session=True)
            else:  # as systemd starts it: the socket as fd 3, LISTEN_PID, LISTEN_FDS
                fd = activated.fileno()
                boot = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                        "os.execv(sys.executable, [sys.executable, '-m', 'kvmnet', "
                        "'server'])")
                self.proc = subprocess.Popen([sys.executable, "-c", boot, str(fd)],
                                             pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 90
        while "serving" not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the server did not start in 90 s"
            time.sleep(0.1)

    def env(self, served: bool = True) -> dict[str, str]:
        """The client's environment: this server's socket; KVMNET_SERVER_DEBUG makes a
        fallback print a line, so a served run that fell back differs in its stderr."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        env.update(KVMNET_SERVER_SOCKET=str(self.path), KVMNET_SERVER_DEBUG="1")
        if not served:
            env["KVMNET_NO_SERVER"] = "1"
        return env

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    s = Server(folder)
    try:
        yield s
    finally:
        s.stop()


def run(server: Server, args: list[str], served: bool = True, input: str | None = None,
        cwd: Path = ROOT) -> tuple[int, str, str]:
    r = subprocess.run([str(KVMNET), *args], capture_output=True, text=True, cwd=cwd,
                       env=server.env(served), input=input, timeout=120, check=False)
    return r.returncode, r.stdout, r.stderr


def both(server: Server, args: list[str], input: str | None = None) -> tuple[int, str, str]:
    got = run(server, args, input=input)
    assert got == run(server, args, served=False, input=input)
    assert "kvmnet: server:" not in got[2]  # (served: no fallback said)
    assert "Traceback" not in got[2]
    return got


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def test_same_output_and_exit_codes(server: Server, bad_spec: Path) -> None:
    assert both(server, ["validate", str(DNS)])[0] == 0
    rc, out, err = both(server, ["validate", str(bad_spec)])
    assert rc == 1 and f"{bad_spec}:5:10: error" in err and f"{bad_spec}:6:5: error" in err
    rc, out, _ = both(server, ["plan", str(DNS), "-c", T, "--json"])
    assert rc == 0 and json.loads(out)["uri"] == T
    assert both(server, ["plan", str(DNS), "-c", T, "--detailed-exitcode"])[0] == 2
    rc, out, _ = both(server, ["--help"])
    assert rc == 0 and "kvmnet validate FILE" in out and "server" in out
    rc, _, err = both(server, ["validte"])
    assert rc == 1 and "Did you mean 'validate'?" in err
    rc, out, _ = both(server, ["--version"])
    assert rc == 0 and out.startswith("kvmnet ")
    rc, out, _ = both(server, ["server", "--help"])
    assert rc == 0 and "--socket PATH" in out


def test_stdin_and_working_directory(server: Server, tmp_path: Path) -> None:
    rc, out, _ = both(server, ["validate", "-"], input=DNS.read_text())
    assert rc == 0 and out.startswith("<stdin>: valid")
    rc, _, err = both(server, ["validate", "-"], input=BAD)
    assert rc == 1 and "<stdin>:5:10: error" in err
    (tmp_path / "here.yaml").write_text(DNS.read_text())
    rc, out, _ = run(server, ["validate", "here.yaml"], cwd=tmp_path)
    assert (rc, out) == (0, "here.yaml: valid (1 network(s), 2 guest(s), 0 host bridge(s))\n")


def test_a_terminal_is_the_clients(server: Server) -> None:
    """rich writes to the client's terminal: colours and its width, as in-process."""
    def on_a_tty(served: bool) -> bytes:
        main, sub = pty.openpty()
        os.set_blocking(main, False)
        env = {**server.env(served), "TERM": "xterm-256color", "COLUMNS": "120"}
        env.pop("NO_COLOR", None)
        p = subprocess.Popen([str(KVMNET), "plan", str(DNS), "-c", T], stdin=sub,
                             stdout=sub, stderr=sub, cwd=ROOT, env=env)
        os.close(sub)
        data = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except BlockingIOError:
                if p.poll() is not None:
                    time.sleep(0.1)
                    try:
                        data += os.read(main, 65536)
                    except OSError:
                        pass
                    break
                time.sleep(0.02)
                continue
            except OSError:  # (EIO: the last writer closed)
                break
            data += chunk
        p.wait(timeout=60)
        os.close(main)
        assert p.returncode == 0, data
        return data

    served = on_a_tty(True)
    assert b"\x1b[" in served and b"Plan for test:///default" in served
    assert served == on_a_tty(False)


def _reading_stdin(pid: int) -> bool:
    """Is pid blocked in read(0, ...)? (/proc/PID/syscall: number 0 is read on x86-64,
    the first argument the descriptor)."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().startswith("0 0x0 ")
    except OSError:
        return False


def _wait_for(what: object, timeout: float = 60, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not what():  # type: ignore[operator]
        assert time.monotonic() < deadline, (f"waited {timeout} s for {what}"
                                             + (f"; {log.read_text()}" if log else ""))
        time.sleep(0.05)


def _long_command(server: Server, served: bool) -> tuple[subprocess.Popen[str], int]:
    """`kvmnet validate -` waiting on a stdin that stays open; the pid that reads."""
    p = subprocess.Popen([str(KVMNET), "validate", "-"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, env=server.env(served))
    if served:
        _wait_for(lambda: server.children())
        reader = server.children()[0]
    else:
        reader = p.pid
    _wait_for(lambda: _reading_stdin(reader))
    return p, reader


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86-64 syscall numbers")
def test_ctrl_c_interrupts_the_command(server: Server) -> None:
    results = []
    for served in (True, False):
        p, _ = _long_command(server, served)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)  # (stdin stays open: an end of file would end it too)
        out, err = p.communicate(timeout=60)
        results.append((p.returncode, out, err))
    assert results[0] == results[1] == (130, "", "interrupted.\n")
    assert server.children() == []


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86-64 syscall numbers")
def test_a_client_killed_leaves_no_child(server: Server) -> None:
    p, child = _long_command(server, True)
    p.kill()
    p.wait(timeout=30)
    _wait_for(lambda: not Path(f"/proc/{child}").exists() and not server.children(), 30,
              server.log)
    assert both(server, ["validate", str(DNS)])[0] == 0  # (the server serves on)


@pytest.fixture
def server_in_tmp() -> Iterator[Server]:
    """A server whose folder is in /tmp (pytest's tmp_path is not reachable by others)."""
    folder = Path(tempfile.mkdtemp(prefix="kvt-sv-"))
    try:
        s = Server(folder)
        try:
            yield s
        finally:
            s.stop()
    finally:
        shutil.rmtree(folder)


def test_a_client_of_another_uid_is_refused(server_in_tmp: Server) -> None:
    """nobody connects (the socket opened to everyone for this test): the server says
    why and closes; it serves its own user on."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as nobody")
    server = server_in_tmp
    os.chmod(server.path.parent, 0o755)
    os.chmod(server.path, 0o666)
    probe = ("import socket, struct, json; s = socket.socket(socket.AF_UNIX); "
             f"s.connect({str(server.path)!r}); head = s.recv(4); "
             "n, = struct.unpack('>I', head); body = b''\n"
             "while len(body) < n: body += s.recv(n)\n"
             "print(json.loads(body)['refused']); print(repr(s.recv(1)))")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "/usr/bin/python3", "-c", probe], capture_output=True, text=True,
                       timeout=60, check=False, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("uid 65534 may not use the kvmnet server of uid 0")
    assert r.stdout.endswith("b''\n")  # (then closed)
    assert "refused a client: uid 65534" in server.log.read_text()
    os.chmod(server.path.parent, 0o700)
    assert both(server, ["validate", str(DNS)])[0] == 0


def test_a_client_with_other_groups_is_refused_and_runs_the_command_itself(
        server: Server, bad_spec: Path) -> None:
    """Same uid, other supplementary groups: the child would have the server's, so the
    server refuses, and the client runs the command in-process (same result)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to change a client's groups")
    groups = ",".join(str(g) for g in sorted({*os.getgroups(), 4, 65534}))
    cmd = ["setpriv", f"--groups={groups}", str(KVMNET), "validate", str(bad_spec)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=server.env(),
                       timeout=120, check=False)
    assert "groups" in r.stderr.splitlines()[0] and "running in-process" in r.stderr
    want = run(server, ["validate", str(bad_spec)], served=False)
    assert (r.returncode, r.stdout) == want[:2]
    assert r.stderr.split("\n", 1)[1] == want[2]


def test_a_changed_module_makes_the_server_stale(server: Server) -> None:
    """A kvmnet file the server loaded changes (an upgrade): the server refuses the next
    client with "stale" and exits; the command runs in-process all the same."""
    import kvmnet.errors

    path = Path(kvmnet.errors.__file__)
    st = path.stat()
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        rc, out, err = run(server, ["validate", str(DNS)])
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert rc == 0 and out.endswith("valid (1 network(s), 2 guest(s), 0 host bridge(s))\n")
    assert err.startswith("kvmnet: server: refused: stale: ") and "running in-process" in err
    assert server.proc.wait(timeout=30) == 0
    assert "stopping: stale: " in server.log.read_text()
    assert not server.path.exists()  # (it removed its socket)


def test_socket_activation(tmp_path: Path) -> None:
    """systemd's way: a listening socket as fd 3, LISTEN_PID and LISTEN_FDS; the server
    serves on it and leaves it be when it stops (systemd owns it)."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(folder / "cli.sock"))
    os.chmod(folder / "cli.sock", 0o600)
    listener.listen(8)
    s = Server(folder, activated=listener)
    listener.close()
    try:
        rc, out, err = both(s, ["validate", str(DNS)])
        assert rc == 0 and "valid" in out
        status = Path(f"/proc/{s.proc.pid}/status").read_text()
        assert "\nThreads:\t1\n" in status  # (no thread: fork() copies only one)
    finally:
        s.stop()
    assert s.proc.returncode == 0 and (folder / "cli.sock").exists()


def test_systemd_socket_activate_starts_it_on_first_use(tmp_path: Path) -> None:
    """systemd's own tool (systemd-socket-activate: the socket unit's protocol) listens
    and starts the server when the first client connects; that client is served. A
    socket others could write to makes the server refuse to start (the client then
    runs the command itself)."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (package systemd)")
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "cli.sock"
    for mode, served in ((0o644, True), (0o666, False)):
        p = subprocess.Popen([tool, "-l", str(path), sys.executable, "-m", "kvmnet", "server"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _wait_for(path.exists, 30)
            os.chmod(path, mode)  # (the tool makes it 0644: only its owner may connect)
            fake = Server.__new__(Server)
            fake.path = path
            r = subprocess.run([str(KVMNET), "validate", str(DNS)], capture_output=True,
                               text=True, cwd=ROOT, env=fake.env(), timeout=120, check=False)
            assert r.returncode == 0 and r.stdout.endswith("0 host bridge(s))\n")
            assert ("kvmnet: server:" not in r.stderr) is served, r.stderr
        finally:
            p.terminate()
            _, err = p.communicate(timeout=30)
        if not served:
            assert "is writable by others (mode 0666): set SocketMode=0600" in err
        path.unlink(missing_ok=True)


def test_the_client_imports_no_library(server: Server) -> None:
    """A served `python -m kvmnet --version` imports neither typer nor pydantic (nor
    rich, libvirt, cli.main) in the client's process: what makes it fast."""
    probe = ("import runpy, sys\nsys.argv = ['kvmnet', '--version']\n"
             "try:\n    runpy.run_module('kvmnet', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
             "('typer', 'pydantic', 'rich', 'libvirt', 'click', 'yaml') or "
             "m == 'kvmnet.cli.main')\n"
             "print(code, heavy, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], capture_output=True,
                       text=True, cwd=ROOT, env=server.env(), timeout=60, check=False)
    assert r.stderr.splitlines()[-1] == "0 []", r.stderr[-2000:]
    assert r.stdout == run(server, ["--version"], served=False)[1]


def test_rollback_and_server_never_go_to_a_server(server: Server) -> None:
    """The boot rollback unit runs `python -m kvmnet rollback --boot`: always in its own
    process, whatever listens."""
    from kvmnet.cli.client import served

    os.environ["KVMNET_SERVER_SOCKET"] = str(server.path)
    try:
        assert served(["rollback", "--boot", "--root", "/nonexistent"]) is None
        assert served(["server", "--help"]) is None
    finally:
        del os.environ["KVMNET_SERVER_SOCKET"]
    assert server.children() == []


def test_another_kvmnet_or_protocol_is_refused(server: Server) -> None:
    """A client of another kvmnet (path or version) or of another protocol is told why
    and closed; nothing runs, and the server serves on."""
    from kvmnet.cli import wire

    def ask(request: dict[str, object]) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(server.path))
            wire.send_request(s, request, [0, 1, 2])
            answer = wire.recv_frame(s)
            assert s.recv(1) == b""  # (closed)
            return answer

    ours = wire.request(["validate", str(DNS)], wire.package_dir(),
                        wire.installed_version(wire.package_dir()))
    other = ask({**ours, "kvmnet": {"path": "/opt/other/kvmnet", "version": "0.0.1"}})
    assert str(other["refused"]).startswith("the client is kvmnet {'path': '/opt/other")
    old = ask({**ours, "protocol": 0})
    assert old == {"refused": "a bad request: protocol 0, this server speaks 1"}
    assert server.children() == []
    assert both(server, ["validate", str(DNS)])[0] == 0
