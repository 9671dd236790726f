"""A host and its LAN in two network namespaces, for the host-bridge tests.

The host's NIC is one end of a veth pair, the LAN namespace holds the other end with
the gateway. The host gets its addresses, a default route via the gateway with a
metric and one more static route: what a host-bridge migration must carry over and
a rollback must put back exactly (netstate compares all of it).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from kvmnet.apply.bridge.watchdog import start_time


@dataclass(frozen=True)
class HostLan:
    host_ns: str
    lan_ns: str
    nic: str                    # the host's NIC (veth end in host_ns)
    lan_if: str                 # its peer in lan_ns
    addresses: tuple[str, ...]  # the NIC's /24 addresses; the second one is labelled NIC:1
    gateway: str
    route: str                  # one more static route via the gateway (metric 20)
    metric: int = 100           # of the default route

    def remove(self) -> None:
        for ns in (self.host_ns, self.lan_ns):
            if ns in pr_netns.listnetns():
                pr_netns.remove(ns)

    def make(self) -> None:
        for ns in (self.host_ns, self.lan_ns):
            pr_netns.create(ns)
            with IPRoute(netns=ns, flags=0) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        with IPRoute(netns=self.host_ns, flags=0) as ipr:
            ipr.link("add", ifname=self.nic, kind="veth", peer=self.lan_if)
            ipr.link("set", index=ipr.link_lookup(ifname=self.lan_if)[0],
                     net_ns_fd=self.lan_ns)
            nic = ipr.link_lookup(ifname=self.nic)[0]
            ipr.link("set", index=nic, state="up")
            for i, addr in enumerate(self.addresses):
                label = {"label": f"{self.nic}:{i}"} if i else {}
                ipr.addr("add", index=nic, address=addr, prefixlen=24, **label)
            ipr.route("add", dst="0.0.0.0/0", gateway=self.gateway, oif=nic,
                      priority=self.metric)
            ipr.route("add", dst=self.route, gateway=self.gateway, oif=nic, priority=20)
        with IPRoute(netns=self.lan_ns, flags=0) as lan:
            idx = lan.link_lookup(ifname=self.lan_if)[0]
            lan.addr("add", index=idx, address=self.gateway, prefixlen=24)
            lan.link("set", index=idx, state="up")


def netstate(ns: str) -> dict[str, Any]:
    """Every link, address and route of a namespace (all tables), by name: what must be
    identical after a rollback. Tentative (DAD) flags are left out: they pass."""
    with IPRoute(netns=ns, flags=0) as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        links = {}
        for m in ipr.get_links():
            info = m.get_attr("IFLA_LINKINFO")
            links[m.get_attr("IFLA_IFNAME")] = {
                "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None,
                "mac": m.get_attr("IFLA_ADDRESS"), "mtu": m.get_attr("IFLA_MTU"),
                "up": bool(m["flags"] & 1), "master": names.get(m.get_attr("IFLA_MASTER"))}
        addrs = sorted(
            (names[a["index"]], a["family"], a.get_attr("IFA_ADDRESS"), a["prefixlen"],
             a.get_attr("IFA_LABEL") or "", a["scope"], (a.get_attr("IFA_FLAGS") or 0) & ~0x40)
            for a in ipr.get_addr())
        routes = sorted(
            (r["family"], r.get_attr("RTA_TABLE"), str(r.get_attr("RTA_DST")), r["dst_len"],
             str(r.get_attr("RTA_GATEWAY")), r.get_attr("RTA_PRIORITY") or 0, r["proto"],
             r["scope"], r["type"], names.get(r.get_attr("RTA_OIF"), ""),
             str(r.get_attr("RTA_PREFSRC")))
            for fam in (2, 10) for r in ipr.get_routes(family=fam))
    return {"links": links, "addresses": addrs, "routes": routes}


def wait_settled(ns: str, within: float = 5.0) -> None:
    """Until IPv6 DAD of the link-local addresses is done, so snapshots are stable."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        with IPRoute(netns=ns, flags=0) as ipr:
            if not any((a.get_attr("IFA_FLAGS") or 0) & 0x40 for a in ipr.get_addr()):
                return
        time.sleep(0.05)


def watchdog_pid(root: Path) -> int | None:
    """The pid of the host-bridge watchdog kvmnet left running under root, if alive."""
    try:
        w = json.loads((root / "run/kvmnet/watchdog.json").read_text())
    except (OSError, ValueError):
        return None
    return int(w["pid"]) if start_time(int(w["pid"])) == w["start"] else None


def make_root(root: Path, renderer: str) -> None:
    """The host's network config under --root: netplan (with an older kvmnet file) or
    ifupdown."""
    if renderer == "netplan":
        (root / "etc/netplan").mkdir(parents=True)
        (root / "etc/netplan/01-netcfg.yaml").write_text("network:\n  version: 2\n")
        os.chmod(root / "etc/netplan/01-netcfg.yaml", 0o600)
        old = root / "etc/netplan/90-kvmnet.yaml"
        old.write_text("# an older kvmnet config\nnetwork: {version: 2}\n")
        os.chmod(old, 0o640)
    else:
        (root / "etc/network").mkdir(parents=True)
        (root / "etc/network/interfaces").write_text(
            "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n")


# -- a TCP session kept busy through a host-bridge change ---------------------------------

# An echo server on every address of its namespace (argv: port, "4" or "6").
ECHO_SERVER = """
import socket, sys, threading
v6 = sys.argv[2] == "6"
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if v6 else "0.0.0.0", int(sys.argv[1])))
s.listen(8)
print("listening", flush=True)
def echo(c):
    while data := c.recv(4096):
        c.sendall(data)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""

# One connection to argv[1] (IPv4, or IPv6 with '%link' for a link-local address) port
# argv[2], connect timeout argv[3]; echoes "before", then a 1-byte probe every 2 ms
# until a line comes on stdin, then "after". gap = the longest time between two answered
# probes, at = when that gap ended, same = the connection kept its local address.
ECHO_CLIENT = """
import json, select, socket, sys, time
host, _, scope = sys.argv[1].partition("%")
c = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
c.settimeout(float(sys.argv[3]))
c.connect((host, int(sys.argv[2]), 0, socket.if_nametoindex(scope) if scope else 0)
          if ":" in host else (host, int(sys.argv[2])))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def echo(msg):
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = c.recv(len(msg) - len(got))
        if not chunk:
            return False
        got += chunk
    return got == msg
name = c.getsockname()
before = echo(b"before\\n")
print(json.dumps({"ready": before}), flush=True)
last, gap, probes, at = time.monotonic(), 0.0, 0, 0.0
while not select.select([sys.stdin], [], [], 0)[0]:
    if not echo(b"p"):
        break
    now = time.monotonic()
    if now - last > gap:
        gap, at = now - last, now
    last, probes = now, probes + 1
    time.sleep(0.002)
after = echo(b"after\\n")
print(json.dumps({"before": before, "after": after, "gap": gap, "at": at, "probes": probes,
                  "same": c.getsockname() == name}), flush=True)
"""


def readline(proc: subprocess.Popen[str], within: float) -> str:
    """A line of proc's output, or an AssertionError after `within` seconds."""
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], within)[0]:
        raise AssertionError(f"no output from {proc.args[:4]} within {within} s")
    return proc.stdout.readline()


class TcpSession:
    """A TCP connection from `lan_ns` to an echo server in `host_ns` at `to` (IPv4 or
    IPv6, '%link' for a link-local one), kept busy until finish()."""

    def __init__(self, host_ns: str, lan_ns: str, to: str, port: int,
                 connect_within: float = 30, ready_within: float = 10,
                 finish_within: float = 60) -> None:
        self.finish_within = finish_within
        family = "6" if ":" in to else "4"
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", host_ns, sys.executable, "-c", ECHO_SERVER, str(port),
             family], stdout=subprocess.PIPE, text=True)
        assert readline(self.server, 10).strip() == "listening"
        self.client = subprocess.Popen(
            ["ip", "netns", "exec", lan_ns, sys.executable, "-c", ECHO_CLIENT, to, str(port),
             str(connect_within)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(readline(self.client, ready_within)) == {"ready": True}

    def finish(self) -> dict[str, Any]:
        """Stop probing: before, after, gap, at, probes, same."""
        assert self.client.stdin is not None
        self.client.stdin.write("stop\n")
        self.client.stdin.flush()
        return dict(json.loads(readline(self.client, self.finish_within)))

    def close(self) -> None:
        for p in (self.client, self.server):
            if p.poll() is None:
                p.kill()
            p.wait()
