"""kvmnet serve at scale (issue 24): first page load and refresh of 100 networks and
500 guest NICs, in a real browser (Playwright driving Debian's chromium).

The host is a libvirt test-driver file (test:///PATH.xml: every connection reads it
anew, nothing real exists): N NAT networks, each with a DHCP range, and N guests with
NICS NICs each, spread over the networks. What is timed:

- look: one read of the host as the page does it (kvmnet.service.look: libvirt, leases,
  doctor, the topology model), in this process;
- first load: a fresh `kvmnet serve`, the browser opens a view until its load event
  (the server's first read is in it);
- load: the same view again (the server's read is cached within --refresh);
- refresh: what the page's script does when the host changed: /api/version (its read
  is stale, so the server reads the host again), the view's fragment, and putting it
  in place; timed inside the page.

    .venv/bin/python -m bench.web [--networks 100] [--nics 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import loadavg, machine

VIEWS = ("topology", "networks", "guests", "leases")
REFRESH_JS = """async (view) => {
  const t0 = performance.now();
  const v = await (await fetch('/api/version', {cache: 'no-store'})).json();
  const t1 = performance.now();
  const f = await fetch('/fragment/' + view, {cache: 'no-store'});
  const html = await f.text();
  const t2 = performance.now();
  document.getElementById('main').innerHTML = html;
  await new Promise(r => requestAnimationFrame(() => r()));
  const t3 = performance.now();
  return {version_ms: t1 - t0, fragment_ms: t2 - t1, swap_ms: t3 - t2, total_ms: t3 - t0,
          bytes: html.length, v: v.version};
}"""


def host_xml(networks: int, nics: int) -> str:
    """A test-driver node: `networks` NAT networks, `networks` guests, `nics` NICs."""
    nets = []
    for i in range(networks):
        a, b = divmod(i, 200)
        nets.append(
            f"<network><name>kvb-web-{i:03d}</name><forward mode='nat'/>"
            f"<bridge name='kvbw{i:03d}'/>"
            f"<ip address='10.{100 + a}.{b}.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='10.{100 + a}.{b}.100' end='10.{100 + a}.{b}.200'/></dhcp></ip>"
            "</network>")
    doms = []
    per = max(1, nics // networks)
    for g in range(networks):
        ifs = "".join(
            f"<interface type='network'><mac address='52:54:00:{g // 256:02x}:{g % 256:02x}:"
            f"{k:02x}'/><source network='kvb-web-{(g + k) % networks:03d}'/>"
            "<model type='virtio'/></interface>" for k in range(per))
        doms.append(f"<domain type='test'><name>kvb-web-vm{g:03d}</name><memory>65536"
                    f"</memory><os><type>hvm</type></os><devices>{ifs}</devices></domain>")
    return f"<node>{''.join(nets)}{''.join(doms)}</node>\n"


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4),
            "max": round(max(xs), 4)}


def measure_look(uri: str, runs: int) -> dict[str, Any]:
    from kvmnet.service.look import Source, look

    times, hosts = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        got = look(Source(uri))
        times.append(time.perf_counter() - t0)
        hosts = got.hosts[0]
    assert hosts is not None and hosts.show is not None, hosts
    return {"s": _stats(times), "networks": len(hosts.show["networks"]),
            "nics": len(hosts.show["interfaces"])}


def measure_browser(uri: str, runs: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from playwright.sync_api import sync_playwright

    from lab.browser import Served, launch

    out: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser: Any = launch(pw)
        try:
            for view in VIEWS:
                first, again, refresh = [], [], []
                for _ in range(runs):
                    with Served(["-c", uri, "--listen", "127.0.0.1:0", "--refresh", "0.5"]) as s:
                        page = browser.new_page(viewport={"width": 1400, "height": 900})
                        t0 = time.perf_counter()
                        page.goto(s.url + view, wait_until="load")
                        first.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        page.reload(wait_until="load")
                        again.append(time.perf_counter() - t0)
                        time.sleep(0.6)    # the server's look is now stale: a refresh reads
                        refresh.append(page.evaluate(REFRESH_JS, view))
                        page.close()
                out[view] = {
                    "first_load_s": _stats(first), "load_s": _stats(again),
                    "refresh_ms": {k: _stats([r[k] for r in refresh])
                                   for k in ("total_ms", "version_ms", "fragment_ms",
                                             "swap_ms")},
                    "fragment_bytes": refresh[-1]["bytes"]}
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.splitlines()[0])
    ap.add_argument("--networks", type=int, default=100)
    ap.add_argument("--nics", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the samples' summary here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kvb-web-") as tmp:
        path = Path(tmp) / "host.xml"
        path.write_text(host_xml(args.networks, args.nics))
        uri = f"test://{path}"
        result = {"machine": machine(), "load_before": loadavg(),
                  "networks": args.networks, "nics": args.nics, "runs": args.runs,
                  "look": measure_look(uri, args.runs),
                  "browser": measure_browser(uri, args.runs), "load_after": loadavg()}
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
