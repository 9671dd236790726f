"""apply's options for host changes, apart from kvmnet.apply.bridge.transaction so that an apply
that changes no host interface does not load the transaction code (and fsutil, uuid)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIRM_TIMEOUT = 120.0


def _txid() -> str:
    import uuid

    return uuid.uuid4().hex


@dataclass
class HostOptions:
    """How apply changes the host: where files go, how long to wait for confirm, how many
    new networks it creates at once (kvmnet.apply.together; 1: one action at a time)."""

    root: Path = Path("/")
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT   # 0: keep as soon as the self-check passes
    check_within: float | None = None                  # self-check time; None: from STP
    txid: str = field(default_factory=_txid)
    parallel: int = 1

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
