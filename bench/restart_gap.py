"""Restart-needing changes under a running guest: the traffic gap, per kind of change
(issue 25, item 1).

One real QEMU guest (tests/lab/guest.py) on a network kvmnet made in the lab's libvirtd
(namespace kvmnet-lab), an "outside" namespace kvt-pl-out behind a veth of the host
(kvtpl-o0 10.152.200.1 <-> o0 10.152.200.2, which routes 10.152.0.0/16 back to the
host). For each kind of change kvmnet plans as a network restart, applied in turn by
`kvmnet apply` as a user runs it:

- guest -> outside: busybox ping every 50 ms from the guest to 10.152.200.2;
- outside -> guest: ping every 50 ms from kvt-pl-out where the mode lets it in (route,
  open), else from the host (kvmnet-lab: nat);
- one TCP session, guest -> outside (busybox nc sending a line every 100 ms to a server
  in kvt-pl-out), open across the change: alive when the same connection carries data
  after it and no new one was opened.

The gap of a ping stream is its longest run of unanswered pings times 50 ms (0 = no
ping lost). Run as root, alone with the lab (under the suite's lock):

    flock /run/lock/kvmnet-suite.lock .venv/bin/python -m bench.restart_gap [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bench.common import KVMNET, ROOT

PREFIX = "kvt-pl-"
NET, GUEST, BRIDGE = "kvt-pl-gap", "kvt-pl-gap1", "kvtplgap0"
OUT_NS, HOST_END, OUT_END = "kvt-pl-out", "kvtpl-o0", "o0"
HOST_ADDR, OUT_ADDR = "10.152.200.1", "10.152.200.2"
MAC, IP = "52:54:00:98:01:0a", "10.152.1.10"
INTERVAL = 0.05
TCP_PORT = 5099
TCP_SERVER = r"""
import socket, sys, threading, time
log = open(sys.argv[1], "a", buffering=1)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(8)
n = 0
def serve(c, i):
    while True:
        d = c.recv(4096)
        if not d:
            log.write(f"{i} {time.monotonic():.3f} closed\n"); return
        log.write(f"{i} {time.monotonic():.3f} {len(d)}\n")
while True:
    c, _ = s.accept(); n += 1
    log.write(f"{n} {time.monotonic():.3f} open\n")
    threading.Thread(target=serve, args=(c, n), daemon=True).start()
"""

BASE: dict[str, Any] = {
    "mode": "nat", "bridge": BRIDGE,
    "ipv4": {"address": "10.152.1.1/24", "dhcp": "10.152.1.100-10.152.1.199",
             "hosts": [{"mac": MAC, "ip": IP, "name": GUEST}]},
}


def _set(**kw: Any) -> Callable[[dict[str, Any]], None]:
    def change(net: dict[str, Any]) -> None:
        for k, v in kw.items():
            if v is None:
                net.pop(k, None)
            else:
                net[k] = v
    return change


def _ipv4(**kw: Any) -> Callable[[dict[str, Any]], None]:
    def change(net: dict[str, Any]) -> None:
        net["ipv4"] = {**net["ipv4"], **kw}
    return change


# (label, change to the spec's network); applied in this order, each from the last
CHANGES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("MTU 1500 -> 1400", _set(mtu=1400)),
    ("mode nat -> route", _set(mode="route")),
    ("mode route -> open", _set(mode="open")),
    ("mode open -> nat", _set(mode="nat")),
    ("subnet /24 -> /22 (address kept)", _ipv4(address="10.152.1.1/22")),
    ("DHCP range moved (address kept)", _ipv4(dhcp="10.152.1.50-10.152.1.150")),
    ("DNS domain added", _set(domain="gap.test")),
    ("bridge MAC changed", _set(mac="52:54:00:98:ff:01")),
]


def sh(args: list[str], timeout: float = 60, check: bool = True) -> str:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


def ns(name: str, args: list[str], **kw: Any) -> str:
    return sh(["ip", "netns", "exec", name, *args], **kw)


def guest_run(command: str, timeout: float = 10) -> str:
    from lab.guest import run_url

    return ns("kvmnet-lab", ["wget", "--no-proxy", "-q", "-t", "1", "-T", str(timeout),
                             "-O", "-", run_url(IP, command)], timeout=timeout + 10)


def _cleanup(conn: Any) -> None:
    from lab.libvirtd import quiet_libvirt, remove_objects

    with quiet_libvirt():
        remove_objects(conn, PREFIX)
    sh(["ip", "netns", "del", OUT_NS], check=False)
    sh(["ip", "-n", "kvmnet-lab", "link", "del", HOST_END], check=False)


def _outside() -> None:
    sh(["ip", "netns", "add", OUT_NS])
    ns(OUT_NS, ["ip", "link", "set", "lo", "up"])
    sh(["ip", "-n", "kvmnet-lab", "link", "add", HOST_END, "type", "veth", "peer", "name",
        OUT_END, "netns", OUT_NS])
    sh(["ip", "-n", "kvmnet-lab", "addr", "add", f"{HOST_ADDR}/24", "dev", HOST_END])
    sh(["ip", "-n", "kvmnet-lab", "link", "set", HOST_END, "up"])
    ns(OUT_NS, ["ip", "addr", "add", f"{OUT_ADDR}/24", "dev", OUT_END])
    ns(OUT_NS, ["ip", "link", "set", OUT_END, "up"])
    ns(OUT_NS, ["ip", "route", "add", "10.152.0.0/16", "via", HOST_ADDR])


@contextmanager
def world(work: Path) -> Iterator[Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from lab.guest import start_guest, wait_for_serial
    from lab.libvirtd import Libvirtd

    lab = Libvirtd().start()
    conn = lab.open()
    server = None
    try:
        _cleanup(conn)
        _outside()
        server = subprocess.Popen(["ip", "netns", "exec", OUT_NS, sys.executable, "-c",
                                   TCP_SERVER, str(work / "tcp.log"), str(TCP_PORT)])
        apply(work, dict(BASE))
        dom, log = start_guest(conn, GUEST, [{"network": NET, "mac": MAC}])
        wait_for_serial(log, re.compile(rf"KVMNET-LEASE {re.escape(IP)} "), 180,
                        alive=dom.isActive)
        yield conn
    finally:
        if server is not None:
            server.terminate()
            server.wait(5)
        _cleanup(conn)
        conn.close()
        lab.stop()


def apply(work: Path, net: dict[str, Any], plan: bool = False) -> dict[str, Any]:
    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump({"networks": {NET: net}}, sort_keys=False))
    verb = "plan" if plan else "apply"
    args = [KVMNET, verb, str(path), "-c", "qemu:///system", "--netns", "kvmnet-lab",
            "--scope", f"{PREFIX}*", "--json", *([] if plan else ["--yes"])]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    if p.returncode not in (0, 2):
        raise RuntimeError(f"kvmnet {verb}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return dict(json.loads(p.stdout))


# An ICMP echo every INTERVAL that, unlike busybox ping, goes on when a send fails (the
# host's route to a network goes with its bridge for a moment): prints busybox ping's
# "seq=N" per reply and "N packets transmitted" at SIGINT.
PINGER = r"""
import os, signal, socket, struct, sys, threading, time
dst, every = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, sent, stop = os.getpid() & 0xFFFF, 0, threading.Event()
signal.signal(signal.SIGINT, lambda *a: stop.set())
def csum(b):
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    n = (n >> 16) + (n & 0xFFFF); n += n >> 16
    return ~n & 0xFFFF
def recv():
    while True:
        d = s.recv(1500)
        icmp = d[(d[0] & 15) * 4:]
        t, _c, _k, i, q = struct.unpack("!BBHHH", icmp[:8])
        if t == 0 and i == ident:
            print(f"seq={q}", flush=True)
threading.Thread(target=recv, daemon=True).start()
while not stop.is_set():
    h = struct.pack("!BBHHH", 8, 0, 0, ident, sent & 0xFFFF) + b"kvmnet-gap-bench"
    h = h[:2] + struct.pack("!H", csum(h)) + h[4:]
    try:
        s.sendto(h, (dst, 0))
    except OSError:
        pass
    sent += 1
    stop.wait(every)
time.sleep(0.5)
print(f"{sent} packets transmitted", flush=True)
"""


class Ping:
    """PINGER from a namespace: the output gap() reads."""

    def __init__(self, netns: str, dst: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", PINGER, dst, str(INTERVAL)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> str:
        self.proc.send_signal(2)
        out, _ = self.proc.communicate(timeout=10)
        return out


def gap(out: str) -> float | None:
    """Longest run of unanswered pings in busybox ping's output, in seconds; None when
    the last one went unanswered (not back before the pinging stopped)."""
    seqs = sorted({int(m) for m in re.findall(r"seq=(\d+)", out)})
    sent = re.search(r"(\d+) packets transmitted", out)
    if not seqs or (sent and seqs[-1] < int(sent.group(1)) - 3):
        return None
    worst = max((b - a - 1 for a, b in zip(seqs, seqs[1:], strict=False)), default=0)
    return round(worst * INTERVAL, 2)


def _tcp(work: Path, conn_id: int, since: float, until: float) -> dict[str, Any]:
    """The session of this change: alive when it carried data after `since` and was
    neither closed nor replaced by another before `until` (when the bench ends it)."""
    lines = [x.split() for x in (work / "tcp.log").read_text().splitlines()]
    lines = [x for x in lines if float(x[1]) < until]
    mine = [float(t) for i, t, what in lines if int(i) == conn_id and what.isdigit()]
    newer = [int(i) for i, _t, what in lines if what == "open" and int(i) > conn_id]
    closed = any(int(i) == conn_id and what == "closed" for i, _t, what in lines)
    after = [t for t in mine if t > since]
    worst = max((b - a for a, b in zip(mine, mine[1:], strict=False)), default=0.0)
    return {"tcp_alive": bool(after) and not closed and not newer,
            "tcp_gap_s": round(worst, 2)}


def measure_one(work: Path, net: dict[str, Any], label: str, conn_id: int,
                before_mode: str) -> dict[str, Any]:
    planned = apply(work, net, plan=True)
    acts = [a for a in planned["actions"] if a["target"] == f"network/{NET}"]
    routed = ("route", "open")
    inbound_ns = OUT_NS if net["mode"] in routed and before_mode in routed else "kvmnet-lab"
    # (every output away from the CGI's: httpd answers once nothing holds it open)
    guest_run(f"(ping -i {INTERVAL} {OUT_ADDR} > /tmp/ping.out 2>&1 &) ; "
              "((while :; do echo tick; sleep 0.1; done | "
              f"nc {OUT_ADDR} {TCP_PORT}) >/dev/null 2>&1 &)")
    inbound = Ping(inbound_ns, IP)
    time.sleep(1.5)
    t0 = time.monotonic()
    result = apply(work, net)
    t1 = time.monotonic()
    time.sleep(8)
    in_out = inbound.stop()
    until = time.monotonic()
    try:
        out = guest_run("kill -INT $(pidof ping); kill $(pidof nc); sleep 0.3; "
                        "cat /tmp/ping.out; ip -4 -o addr show eth0", timeout=15)
    except RuntimeError as e:
        out = f"guest unreachable: {e}"
    return {"change": label, "plan": [(a["kind"], a["impact"]) for a in acts],
            "summary": [a["summary"] for a in acts],
            "apply_s": round(t1 - t0, 2), "inbound_from": inbound_ns,
            "guest_to_outside_gap_s": gap(out), "inbound_gap_s": gap(in_out),
            "address_kept": f"inet {IP}/" in out, "raw_guest": out[-3000:],
            "raw_inbound": in_out[-3000:],
            "messages": [r["message"] for r in result["results"] if r["message"]],
            **_tcp(work, conn_id, t1 + 0.5, until)}


def measure(log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kvt-pl-gap-") as tmp, world(Path(tmp)):
        net = dict(BASE)
        for i, (label, change) in enumerate(CHANGES, start=1):
            before = net["mode"]
            change(net)
            log(f"restart gap: {label}")
            rows.append(measure_one(Path(tmp), net, label, i, before))
            log(f"  {rows[-1]}")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| change | plan | guest -> outside gap | inbound gap (from) | TCP session "
           "| address kept | apply |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        def s(v: float | None) -> str:
            return "not back" if v is None else f"{v:.2f} s"
        plan = ", ".join(f"{k} ({i})" for k, i in r["plan"]) or "no change"
        frm = "outside" if r["inbound_from"] == OUT_NS else "host"
        tcp = f"alive ({r['tcp_gap_s']:.1f} s)" if r["tcp_alive"] else "lost"
        out.append(f"| {r['change']} | {plan} | {s(r['guest_to_outside_gap_s'])} | "
                   f"{s(r['inbound_gap_s'])} ({frm}) | {tcp} | "
                   f"{'yes' if r['address_kept'] else 'no'} | {r['apply_s']:.2f} s |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.restart_gap",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    rows = measure(lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
