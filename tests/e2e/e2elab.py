"""Helpers for the end-to-end suite: the topology's names and addresses, running
commands in namespaces, driving kvmnet and the guests, a pinger (see conftest.py for
the world they make)."""

from __future__ import annotations

import copy
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.guest import run_url
from lab.libvirtd import URI, Libvirtd

HERE = Path(__file__).parent
SPEC_FILE = HERE / "e2e-spec.yaml"
PEER_SERVER = HERE / "peer_server.py"
KVMNET = str(Path(sys.executable).parent / "kvmnet")
RUN = Path("/run/kvt-e2e")

PREFIX = "kvt-e2e-"
SCOPE = f"{PREFIX}*"  # kvmnet --scope: the lab libvirtd is shared with other tests' specs
NS_INET = "kvt-e2e-inet"
NS_LAN = "kvt-e2e-lan"
OUR_NAMESPACES = (NS_INET, NS_LAN)
UPLINK = "kvte-up0"  # in kvmnet-lab; its peer "up0" is in kvt-e2e-inet
HOST_BRIDGE = "kvtebr0"  # in kvmnet-lab: the host's LAN bridge
LAN_PORT = "kvte-lan0"  # in kvmnet-lab, a port of kvtebr0; its peer "lan0" is in kvt-e2e-lan
OUR_LAB_LINKS = (UPLINK, LAN_PORT, HOST_BRIDGE)

UPLINK_HOST = "198.51.100.1"  # the host's uplink address (masquerade source)
INET_ADDR = "198.51.100.254"
LAN_HOST = "10.231.0.1"  # the host's LAN address (kvtebr0): the routed network's next hop
LAN_ROUTER = "10.231.0.254"
LAN_DHCP = ("10.231.0.100", "10.231.0.149")
PEER_PORT = 8080

LEASE_RE = r"KVMNET-LEASE (\S+) (\S+) eth0"
BOOT_TIMEOUT = 150.0

# what the suite measured; printed at the end of the run (pytest_terminal_summary)
TIMINGS: dict[str, str] = {}


# ------------------------------------------------------------------ processes


def run(args: list[str], timeout: float = 60.0,
        check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check)


def ns_exec(ns: str, args: list[str], timeout: float = 60.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *args], timeout=timeout, check=check)


def http_get(ns: str, url: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
    """GNU wget in namespace NS, one try; stdout = body, stderr = wget's error if any."""
    return ns_exec(ns, ["wget", "--no-proxy", "-nv", "-t", "1", "-T", str(timeout), "-O", "-",
                        url], timeout=timeout + 15)


def kvmnet(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return run([KVMNET, *args], timeout=timeout)


def peer_addr(text: str) -> str:
    """busybox httpd's REMOTE_ADDR ("[::ffff:10.0.0.1]") as a plain IPv4 address."""
    return text.strip().strip("[]").removeprefix("::ffff:")


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"$ {shlex.join(proc.args)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"--- stderr\n{proc.stderr}")


class Pinger:
    """``busybox ping -i 0.2`` from a namespace, replies time-stamped as they arrive."""

    def __init__(self, ns: str, ip: str, interval: float = 0.2) -> None:
        self.interval = interval
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "busybox", "ping", "-i", str(interval), "-W", "1", ip],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.replies: list[tuple[float, int]] = []  # (monotonic time, seq)
        self.lines: list[str] = []
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            m = re.search(r"seq=(\d+)", line)
            if m:
                self.replies.append((time.monotonic(), int(m.group(1))))

    def wait_replies(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.replies) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


class TcpSession:
    """One TCP connection from namespace NS to a guest's ``nc -l`` (started by the
    caller in the guest, writing what it receives to a file): lines sent now and after a
    change arrive in that file only if the same connection survived."""

    def __init__(self, ns: str, ip: str, port: int) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "nc", ip, str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, text=True)

    def send(self, line: str) -> bool:
        """False when the connection is gone (nc exited, or the pipe broke)."""
        if self.proc.poll() is not None or self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return False
        return True

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# ------------------------------------------------------------------ the world


@dataclass
class World:
    libvirtd: Libvirtd
    conn: Any
    workdir: Path
    spec: dict[str, Any]  # e2e-spec.yaml as loaded
    spec_path: Path  # what was applied
    domains: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    leases: dict[str, tuple[str, str]] = field(default_factory=dict)  # guest -> (ip, mac)
    boot_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def lab(self) -> str:
        return self.libvirtd.netns

    def ip(self, guest: str) -> str:
        return self.leases[guest][0]

    def spec_copy(self) -> dict[str, Any]:
        return copy.deepcopy(self.spec)

    def write_spec(self, name: str, spec: dict[str, Any]) -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def plan(self, path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        proc = kvmnet("plan", str(path), "-c", URI, "--netns", self.lab, "--scope", SCOPE,
                      "--json", "--detailed-exitcode", *extra)
        assert proc.returncode in (0, 2), describe(proc)
        return proc.returncode, json.loads(proc.stdout)

    def apply(self, path: Path, *extra: str) -> dict[str, Any]:
        proc = kvmnet("apply", str(path), "-c", URI, "--netns", self.lab, "--scope", SCOPE,
                      "--yes", "--json", *extra)
        assert proc.returncode == 0, describe(proc)
        result = json.loads(proc.stdout)
        assert result["ok"], describe(proc)
        return result

    def ns(self, ns: str, args: list[str]) -> str:
        """Run ARGS in namespace NS (the lab's own name: self.lab); its stdout, or fail."""
        proc = ns_exec(ns, args)
        assert proc.returncode == 0, describe(proc)
        return proc.stdout

    def http(self, ns: str, url: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        return http_get(ns, url, timeout)

    def guest_run(self, guest: str, command: str, timeout: float = 15.0) -> tuple[int, str]:
        """Run COMMAND in GUEST (over its /cgi-bin/run, from the host); (exit code, output)."""
        got = http_get(self.lab, run_url(self.ip(guest), command), timeout)
        assert got.returncode == 0, f"cannot drive {guest}: {got.stderr}"
        out, _, rc = got.stdout.rstrip("\n").rpartition("KVMNET-RC ")
        assert rc.strip().isdigit(), f"{guest} answered {got.stdout!r}"
        return int(rc), out

    def guest_fetch(self, guest: str, url: str, timeout: int = 5) -> tuple[int, str]:
        """GUEST fetches URL with busybox wget; (exit code, body). busybox 1.35's own
        ``wget -T`` segfaults, so the time limit is busybox ``timeout`` (exit 143)."""
        return self.guest_run(guest, f"timeout {timeout} wget -q -O - {url}", timeout + 10)

    def console(self, guest: str) -> str:
        try:
            return self.logs[guest].read_text(errors="replace")
        except OSError:
            return ""

    def wait_console(self, guest: str, regex: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(regex, self.console(guest))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{regex!r} not on {guest}'s console within {timeout}s")
            time.sleep(0.2)

    def peers(self, ns: str) -> list[tuple[str, str]]:
        """(source address, path) of every request the peer server in NS logged."""
        log = RUN / f"{ns}-peers.log"
        if not log.exists():
            return []
        return [tuple(line.split()[1:3]) for line in log.read_text().splitlines()  # type: ignore[misc]
                if line.startswith("PEER ")]
