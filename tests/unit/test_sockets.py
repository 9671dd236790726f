"""The socket table (kvmnet.backend.sockets) and what plan does with it (issue 17, items
6 and 7): port forwards never take a port the host serves, and the SSH guard finds
sessions from the kernel, not from $SSH_CONNECTION.

The reading is checked against real sockets this test opens on loopback (the kernel's
own table, through NETLINK_SOCK_DIAG); the rules against generated tables and
forwards, with an oracle that tries every port and address one by one.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmnet.backend import sockets
from kvmnet.model.live import HostLink, HostState, Listener
from kvmnet.model.spec import PortForward
from kvmnet.plan.forward_ports import HOST_PORTS, port_problem

BUDGET = float(os.environ.get("KVMNET_FUZZ_SECONDS", "20"))
EXAMPLES = max(50, int(500 * BUDGET / 20))


@pytest.fixture
def served() -> Iterator[dict[str, socket.socket]]:
    """A TCP listener, a bound UDP socket, a dual-stack TCP listener on :: and an
    established connection to the first, all real."""
    made: dict[str, socket.socket] = {}
    try:
        made["tcp"] = socket.socket()
        made["tcp"].bind(("127.0.0.1", 0))
        made["tcp"].listen()
        made["udp"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        made["udp"].bind(("127.0.0.1", 0))
        made["dual"] = socket.socket(socket.AF_INET6)
        made["dual"].setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        made["dual"].bind(("::", 0))
        made["dual"].listen()
        made["client"] = socket.create_connection(made["tcp"].getsockname())
        made["server"] = made["tcp"].accept()[0]
        yield made
    finally:
        for s in made.values():
            s.close()


def test_the_socket_table_is_the_kernels(served: dict[str, socket.socket]) -> None:
    listening, sessions = sockets.read_sockets()
    tcp_port = served["tcp"].getsockname()[1]
    assert Listener("tcp", "127.0.0.1", tcp_port) in listening
    assert Listener("udp", "127.0.0.1", served["udp"].getsockname()[1]) in listening
    dual = [s for s in listening if s.port == served["dual"].getsockname()[1]]
    assert dual == [Listener("tcp", "::", dual[0].port, None, True)]
    assert dual[0].serves("192.0.2.1") and dual[0].serves("2001:db8::1")
    # the client's end is established, not listening; no session: not an ssh port
    assert not [s for s in listening if s.port == served["client"].getsockname()[1]]
    assert "127.0.0.1" not in sessions or tcp_port == 22


def test_an_ssh_session_is_found_by_its_port_not_the_environment(
        served: dict[str, socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener counts as sshd's when a process named sshd holds it (here: its
    inode is given as one): the established connection to it is a session."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    inode = os.fstat(served["tcp"].fileno()).st_ino
    rows = sockets._dump(None)
    _, sessions = sockets.sockets_from(rows, {inode}, {})
    assert sessions == ("127.0.0.1",)
    _, none = sockets.sockets_from(rows, set(), {})
    assert "127.0.0.1" not in none or served["tcp"].getsockname()[1] == 22
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.9 5000 192.0.2.1 22")  # forged: ignored
    assert sockets.read_sockets()[1] == none


def test_sshd_inodes_come_from_proc(tmp_path: object) -> None:
    from pathlib import Path

    proc = Path(str(tmp_path))
    for pid, comm, fds in (("10", "sshd\n", {"3": "socket:[777]", "4": "/dev/null"}),
                           ("11", "nginx\n", {"3": "socket:[888]"}), ("x", "", {})):
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "comm").write_text(comm)
        for fd, target in fds.items():
            (proc / pid / "fd" / fd).symlink_to(target)
    assert sockets.sshd_inodes(str(proc)) == {777}


# ---------------------------------------------------------------- the rules, generated

ADDRS = ["192.168.1.10", "192.168.1.11", "10.0.0.1", "2001:db8::10", "127.0.0.1"]
WILD = ["0.0.0.0", "::"]
PORTS = [*HOST_PORTS, 80, 443, 2222, 8080, 8443, 5353, 65535, 1]
HOST = HostState(links={
    "eth0": HostLink("eth0", 2, "", None, True,
                     addresses=("192.168.1.10/24", "192.168.1.11/24", "2001:db8::10/64")),
    "virbr1": HostLink("virbr1", 3, "bridge", None, True, addresses=("10.0.0.1/24",)),
    "lo": HostLink("lo", 1, "", None, True, addresses=("127.0.0.1/8",))})
OWN = {str(ipaddress.ip_interface(a).ip): ln.name for ln in HOST.links.values()
       for a in ln.addresses}

listeners = st.builds(Listener, proto=st.sampled_from(["tcp", "udp"]),
                      addr=st.sampled_from(ADDRS + WILD), port=st.sampled_from(PORTS),
                      dev=st.sampled_from([None, None, "eth0", "virbr1"]),
                      dual=st.booleans())


def _oracle(proto: str, first: int, last: int, listen: str | None,
            table: list[Listener]) -> bool:
    """Is the forward refused? Port by port, address by address."""
    addrs = [listen] if listen else list(OWN)
    for port in range(first, last + 1):
        if listen is None and port in HOST_PORTS:
            return True
        for s in table:
            if s.proto != proto or s.port != port:
                continue
            if listen is None:
                return True
            for a in addrs:
                exact = s.addr == a
                wild = s.addr in WILD and (
                    ipaddress.ip_address(s.addr).version == ipaddress.ip_address(a).version
                    or (s.dual and ipaddress.ip_address(a).version == 4))
                if exact or (wild and (s.dev is None or OWN[a] == s.dev)):
                    return True
    return False


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(table=st.lists(listeners, max_size=6), proto=st.sampled_from(["tcp", "udp"]),
       first=st.sampled_from(PORTS), width=st.sampled_from([0, 0, 1, 10, 100, 20000]),
       listen=st.sampled_from([None, None, *[a for a in ADDRS if a in OWN]]))
def test_a_forward_never_takes_a_port_the_host_serves(table: list[Listener], proto: str,
                                                      first: int, width: int,
                                                      listen: str | None) -> None:
    last = min(first + width, 65535)
    f = PortForward(proto=proto, host_port=f"{first}-{last}" if last > first else first,
                    address="10.10.1.10", listen=listen)
    host = HostState(links=HOST.links, listening=tuple(table))
    problem = port_problem(f, listen, host, OWN)
    assert bool(problem) == _oracle(proto, first, last, listen, table), (problem, table)
    if problem:
        assert "\n" not in problem and ("host_port" in problem or "listen" in problem)
