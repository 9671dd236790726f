"""The host's socket table, read in network namespaces with real listening sockets and
real established connections (issue 17, items 6 and 7).

    kvt-sc-lan 10.151.1.1 --veth-- kvtscnic0 10.151.1.2, 10.151.1.3  kvt-sc-host

- the SSH guard's sessions are the established connections to a listening sshd port
  (a process named sshd holds it, or port 22), read from the kernel in the namespace,
  with no $SSH_CONNECTION anywhere (as under sudo);
- `kvmnet plan` refuses a port forward on a port the namespace's host listens on
  (at its host_port), and a `listen:` address the host does not have (at its listen),
  and takes one narrowed to an address the host does not serve the port on.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmnet.model.live import Listener
from kvmnet.service.ops import read_host_and_sockets
from lab.hostnet import HostLan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

HOST_NS, LAN_NS = "kvt-sc-host", "kvt-sc-lan"
IP1, IP2, GW = "10.151.1.2", "10.151.1.3", "10.151.1.1"
NET = HostLan(HOST_NS, LAN_NS, "kvtscnic0", "kvtsclan0", (IP1, IP2), GW, "10.151.50.0/24")
KVMNET = str(Path(sys.executable).parent / "kvmnet")

# a server that calls itself NAME (its /proc/PID/comm), listens and keeps what it accepts
SERVER = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], int(sys.argv[3])))
s.listen()
print("listening", flush=True)
kept = []
while True:
    kept.append(s.accept()[0])
"""
CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
sys.stdin.read()
"""


class Procs:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[str]] = []

    def start(self, ns: str, code: str, *args: str, ready: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.running.append(p)
        assert p.stdout is not None
        assert select.select([p.stdout], [], [], 10)[0], f"{args}: not {ready}"
        assert p.stdout.readline().strip() == ready
        return p

    def serve(self, name: str, addr: str, port: int) -> subprocess.Popen[str]:
        return self.start(HOST_NS, SERVER, name, addr, str(port), ready="listening")

    def connect(self, addr: str, port: int) -> subprocess.Popen[str]:
        return self.start(LAN_NS, CLIENT, addr, str(port), ready="connected")

    def stop(self, p: subprocess.Popen[str]) -> None:
        p.kill()
        p.wait()

    def close(self) -> None:
        for p in self.running:
            if p.poll() is None:
                self.stop(p)


@pytest.fixture
def procs() -> Iterator[Procs]:
    NET.remove()  # a run that died left them
    NET.make()
    p = Procs()
    try:
        yield p
    finally:
        p.close()
        NET.remove()


def test_ssh_sessions_come_from_the_kernels_socket_table(procs: Procs,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv("SSH_CONNECTION", raising=False)  # as under sudo
    procs.serve("sshd", IP1, 2200)       # sshd on a port of its own
    procs.serve("python3", IP2, 2201)    # something else, with a client too
    procs.serve("python3", IP2, 22)      # port 22 is ssh's whoever holds it
    host = read_host_and_sockets(HOST_NS)
    assert host.listening is not None
    assert {Listener("tcp", IP1, 2200), Listener("tcp", IP2, 2201),
            Listener("tcp", IP2, 22)} <= set(host.listening)
    assert host.ssh_sessions == ()       # listening is not a session
    to_sshd = procs.connect(IP1, 2200)
    procs.connect(IP2, 2201)
    assert read_host_and_sockets(HOST_NS).ssh_sessions == (IP1,)
    procs.connect(IP2, 22)
    assert read_host_and_sockets(HOST_NS).ssh_sessions == (IP1, IP2)
    procs.stop(to_sshd)
    monkeypatch.setenv("SSH_CONNECTION", f"{GW} 5000 {IP1} 22")  # forged: not a session
    assert read_host_and_sockets(HOST_NS).ssh_sessions == (IP2,)


def _spec(tmp_path: Path, forwards: list[str]) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "networks:\n  kvt-sc-fwd:\n    mode: nat\n    bridge: kvtscnat0\n"
        "    ipv4: {address: 10.151.60.1/24}\n    forwards:\n"
        + "".join(f"      - {{proto: tcp, address: 10.151.60.10, {f}}}\n" for f in forwards))
    return spec


def test_a_forward_never_takes_a_port_the_host_listens_on(procs: Procs, libvirtd: object,
                                                         tmp_path: Path) -> None:
    uri = libvirtd.uri  # type: ignore[attr-defined]
    procs.serve("python3", IP1, 8080)
    procs.serve("python3", IP1, 9090)
    bad = _spec(tmp_path, ["host_port: 8080", "host_port: 22",
                           f"host_port: 9090, listen: {IP1}", "host_port: 2222, "
                           "listen: 10.151.9.9"])
    r = subprocess.run([KVMNET, "plan", str(bad), "-c", uri, "--netns", HOST_NS],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert [ln.split(": error: ")[1].split(":")[0] for ln in errors] == [
        "networks.kvt-sc-fwd.forwards.0.host_port", "networks.kvt-sc-fwd.forwards.1.host_port",
        "networks.kvt-sc-fwd.forwards.2.host_port", "networks.kvt-sc-fwd.forwards.3.listen"]
    assert errors[0].startswith(f"{bad}:7:56:"), errors[0]  # located: its host_port
    assert f"the host listens on {IP1} tcp/8080" in errors[0]
    assert "host_port 22 is ssh's port" in errors[1]
    assert f"the host serves tcp/9090 on {IP1}" in errors[2]
    assert "10.151.9.9 is not an address of this host" in errors[3]
    # narrowed to the address that does not serve them: planned
    ok = _spec(tmp_path, [f"host_port: 8080, listen: {IP2}", f"host_port: 22, listen: {IP2}"])
    r = subprocess.run([KVMNET, "plan", str(ok), "-c", uri, "--netns", HOST_NS],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"tcp 8080 -> 10.151.60.10:8080 on {IP2}" in r.stdout, r.stdout
