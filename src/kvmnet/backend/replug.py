"""Running guests' taps back into a network's new bridge the moment the kernel has it.

A network restart (stop, define, start) deletes the bridge; libvirt's start makes a new
one early, then sets up the firewall and starts dnsmasq, and never plugs running
guests' taps back in (kvmnet does: apply.networks._reconnect). Plugging them only
once start has returned adds the firewall's and dnsmasq's start to every guest's gap;
so while start runs, a thread asks netlink every few milliseconds for the bridge and
plugs each tap in as soon as it is there. The reconnect after start checks every tap
again and is the one that reports a failure.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from kvmnet.backend.host import iproute, plug

POLL_S = 0.002


class Replug:
    """`with Replug(bridge, taps, netns, mtu): start the network` (taps: their names)."""

    def __init__(self, bridge: str, taps: list[str], netns: str | None,
                 mtu: int | None) -> None:
        self.bridge, self.taps, self.netns, self.mtu = bridge, taps, netns, mtu
        self.plugged: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kvmnet-replug", daemon=True)

    def __enter__(self) -> Replug:
        if self.taps:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        try:
            with iproute(self.netns) as ipr:
                while not self._stop.is_set():
                    found = ipr.link_lookup(ifname=self.bridge)
                    if found:
                        for tap in self.taps:
                            plug(ipr, tap, found[0], self.mtu)
                            self.plugged.append(tap)
                        return
                    time.sleep(POLL_S)
        except Exception:  # noqa: BLE001 (the reconnect after start tries again and reports)
            return
