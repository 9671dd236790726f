"""How plan and apply of a many-host spec scale with the number of hosts (issue 10).

Each host is a libvirt test-driver file (test:///DIR/hvNN.xml) holding GUESTS
running domains, named in the spec as the ssh host it models
(qemu+ssh://hvNN.bench.invalid/system: a spec may not name a file) and opened by the
bench's Opener; the spec puts NETS NAT networks on every host and pins each guest
to its host with one NIC and a DHCP reservation (so 50 hosts x 40 guests = 2,000
NICs). kvmnet.service.multihost plans and applies every host in its thread pool.

The test driver answers in microseconds; a real `qemu+ssh://` host answers each
libvirt call after a network round trip. `--rtt MS` models that: every call on a
connection, and on the networks and domains it returns, first sleeps MS
milliseconds (sleeping releases the GIL, as libvirt-python does while it waits on
its socket). Reading one host costs about 7 calls per network and 7 per running
domain.

    .venv/bin/python -m bench.multihost_scale --hosts 1 10 50 --rtt 0 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import libvirt

from kvmnet.backend.libvirt import Connection
from kvmnet.service.multihost import Session
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load_text

DOMAIN = ("<domain type='test'><name>{name}</name><memory>65536</memory>"
          "<os><type>hvm</type></os></domain>")


class Slow:
    """A libvirt object whose every method call first waits one round trip."""

    def __init__(self, obj: Any, delay: float) -> None:
        self._obj, self._delay = obj, delay

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            time.sleep(self._delay)
            res = attr(*a, **kw)
            if isinstance(res, list):
                return [self._wrap(x) for x in res]
            return self._wrap(res)
        return call

    def _wrap(self, x: Any) -> Any:
        if isinstance(x, libvirt.virNetwork | libvirt.virDomain):
            return Slow(x, self._delay)
        return x


def make_hosts(root: Path, hosts: int, guests: int) -> dict[str, str]:
    """host name -> the test-driver URI of its file."""
    uris = {}
    for h in range(hosts):
        doms = "".join(DOMAIN.format(name=f"hv{h:02d}-vm{g:02d}") for g in range(guests))
        path = root / f"hv{h:02d}.xml"
        path.write_text(f"<node>{doms}</node>\n")
        uris[f"hv{h:02d}"] = f"test://{path}"
    return uris


def spec_uri(name: str) -> str:
    """How the spec names a host: the qemu+ssh host a test-driver file models."""
    return f"qemu+ssh://{name}.bench.invalid/system"


def make_spec(uris: dict[str, str], guests: int, nets: int) -> str:
    lines = ["hosts:"] + [f"  {n}: {{uri: '{spec_uri(n)}'}}" for n in uris] + ["networks:"]
    for n in range(nets):
        lines.append(f"  bn{n}: {{mode: nat, bridge: virbr{n + 1}, ipv4: {{address: "
                     f"10.{100 + n}.0.1/16, dhcp: 10.{100 + n}.200.1-10.{100 + n}.250.250}}}}")
    lines.append("guests:")
    for i, h in enumerate(uris):
        for g in range(guests):
            n = g % nets
            lines.append(f"  {h}-vm{g:02d}: {{hosts: [{h}], interfaces: [{{network: bn{n}, "
                         f"ipv4: 10.{100 + n}.{i + 1}.{g + 10}}}]}}")
    return "\n".join(lines) + "\n"


class Opener:
    """One connection per host for the whole run (a test-driver host's state lives as
    long as its connection), each behind the modelled round trip."""

    def __init__(self) -> None:
        self.conns: dict[str, Connection] = {}
        self.real: dict[str, str] = {}   # the spec's URI -> the test-driver file's
        self.rtt = 0.0

    def __call__(self, uri: str) -> Connection:
        if uri not in self.conns:
            c = Connection.open(self.real[uri])
            c.close = lambda: None  # type: ignore[method-assign]  # kept for the next session
            self.conns[uri] = c
        c = self.conns[uri]
        raw = c.raw._obj if isinstance(c.raw, Slow) else c.raw
        c.raw = Slow(raw, self.rtt) if self.rtt else raw
        return c

    def close(self) -> None:
        for c in self.conns.values():
            Connection.close(c)


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def measure(hosts: int, guests: int, nets: int, rtt_ms: float, workers: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kvmnet-mh-bench-"))
    opener = Opener()
    try:
        files = make_hosts(root, hosts, guests)
        opener.real = {spec_uri(n): u for n, u in files.items()}
        text = make_spec(files, guests, nets)
        (spec, pos), load_s = timed(lambda: load_text(text, "bench.yaml"))
        problems, check_s = timed(lambda: check(spec, pos, "bench.yaml"))
        assert not errors(problems), problems[:3]
        row: dict[str, Any] = {"hosts": hosts, "nics": hosts * guests, "rtt_ms": rtt_ms,
                               "workers": workers, "load_check_s": load_s + check_s}
        opener.rtt = rtt_ms / 1000

        def session() -> Session:
            return Session(spec, pos, "bench.yaml", opener=opener, workers=workers)

        s, row["split_s"] = timed(session)        # split per host + the targets
        with s:
            _, row["plan_s"] = timed(s.plan)
            assert not [o.error for o in s.outcomes if o.failed][:1]
            _, row["apply_s"] = timed(s.apply)
            assert not [o.error for o in s.outcomes if o.failed][:1]
            row["writes"] = sum(o.writes for o in s.outcomes)
        with session() as s:
            _, row["noop_plan_s"] = timed(s.plan)
            assert not any(o.changes for o in s.outcomes)
        return row
    finally:
        opener.close()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--guests", type=int, default=40, help="guests (NICs) per host")
    ap.add_argument("--networks", type=int, default=4)
    ap.add_argument("--rtt", type=float, nargs="+", default=[0.0, 1.0],
                    help="modelled round trip per libvirt call, ms")
    ap.add_argument("--workers", type=int, nargs="+", default=[8])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args(argv)
    cols = ("hosts", "nics", "rtt_ms", "workers", "writes", "load_check_s", "split_s", "plan_s",
            "apply_s", "noop_plan_s")
    if not args.json:
        print(" ".join(f"{c:>12}" for c in cols))
    for rtt in args.rtt:
        for w in args.workers:
            for n in args.hosts:
                row = measure(n, args.guests, args.networks, rtt, w)
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(" ".join(f"{row[c]:>12.3f}" if isinstance(row[c], float)
                                   else f"{row[c]:>12}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
