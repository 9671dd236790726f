"""A link as it was before a host change: the records kvmnet.apply.bridge.migrate
takes (snapshot) and kvmnet.apply.bridge.undo puts back. Plain frozen data, apart
from the netlink code, so that the rollback journal (kvmnet.apply.bridge.journal)
can carry them to the watchdog and across a reboot without loading that code."""

from __future__ import annotations

from dataclasses import dataclass, field

FOREVER = 0xFFFFFFFF  # an address lifetime that never runs out


@dataclass(frozen=True)
class Addr:
    family: int
    address: str
    prefixlen: int
    local: str | None = None
    broadcast: str | None = None
    label: str | None = None
    scope: int = 0
    flags: int = 0
    valid: int = FOREVER
    preferred: int = FOREVER

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.family, self.local or self.address, self.prefixlen)

    def __str__(self) -> str:
        return f"{self.local or self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    family: int
    dst: str | None
    dst_len: int
    table: int = 254
    gateway: str | None = None
    priority: int | None = None
    proto: int = 3
    scope: int = 0
    type: int = 1
    tos: int = 0
    flags: int = 0
    prefsrc: str | None = None
    pref: int | None = None
    metrics: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[object, ...]:
        return (self.family, self.dst, self.dst_len, self.tos, self.table, self.priority,
                self.gateway)

    def __str__(self) -> str:
        dst = f"{self.dst}/{self.dst_len}" if self.dst else "default"
        via = f" via {self.gateway}" if self.gateway else ""
        metric = f" metric {self.priority}" if self.priority is not None else ""
        table = f" table {self.table}" if self.table != 254 else ""
        return f"{dst}{via}{metric}{table}"


@dataclass(frozen=True)
class Link:
    """One link as it was: what restore() puts back."""

    name: str
    exists: bool
    kind: str = ""
    mac: str | None = None
    mtu: int | None = None
    up: bool = False
    master: str | None = None
    addresses: tuple[Addr, ...] = ()
    routes: tuple[Route, ...] = ()
    stp: int | None = None              # bridges only
    forward_delay: int | None = None    # bridges only, centiseconds as netlink has it
    multipath: tuple[str, ...] = ()     # multipath routes through it (refused, not moved)
