"""One apply at a time per libvirt URI: an flock on a file under /run/kvmnet."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kvmnet.errors import LockError

LOCK_DIR = os.environ.get("KVMNET_LOCK_DIR", "/run/kvmnet")


@contextmanager
def apply_lock(uri: str, wait: float = 60.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the apply lock for uri; wait up to `wait` seconds for another holder."""
    try:
        os.makedirs(LOCK_DIR, exist_ok=True)
    except PermissionError:
        raise LockError(f"cannot create {LOCK_DIR}: permission denied (run as root)") from None
    path = os.path.join(LOCK_DIR, "apply-" + hashlib.sha256(uri.encode()).hexdigest()[:16]
                        + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() >= deadline:
                    raise LockError(f"another kvmnet apply (pid {holder}) is running against "
                                    f"{uri}; gave up after {wait:.0f}s. Try again when it "
                                    "is done") from None
                if not told and on_wait:
                    on_wait(f"waiting for another kvmnet apply (pid {holder}) on {uri} ...")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
