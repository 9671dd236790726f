"""kvmnet's file locks: one way to open a lock file safely, and the locks built on it.

Three things run one at a time: applies against one libvirt URI (`apply_lock`, an
flock on a file under /run/kvmnet), the steps of a host-bridge transaction
(kvmnet.apply.bridge.journal.tx_lock) and apply's firewall sync against the libvirt
hook (kvmnet.backend.firewall.state_lock). Each locks a file that root opens, and the
apply lock also truncates and writes its own: a symlink or hard link planted in its
place would have root create or truncate any file on the host. So `open_lock`:

- opens with O_NOFOLLOW (a symlink in the lock's place: refused, nothing followed);
- only in a folder that no user but root (or whoever runs kvmnet) can change, reached
  through such folders only (kvmnet.backend.files.open_file);
- keeps the file only if it is a plain file with one link, owned by root or us.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kvmnet.backend.files import open_file
from kvmnet.errors import LiveError, LockError, UnsafePathError

LOCK_DIR = os.environ.get("KVMNET_LOCK_DIR", "/run/kvmnet")


def open_lock(path: Path, what: str, mode: int = 0o600, hint: str = "run kvmnet as root"
              ) -> int:
    """The lock file at path (made if missing), open for reading and writing, after
    the checks above. `what` names the lock in errors ("the apply lock"), `hint` says
    what to do when it is not ours to open. LiveError (UnsafePathError when someone
    else could have planted it) when it cannot be taken safely."""
    path = Path(path)
    try:
        # (the folders on the way checked; O_NONBLOCK: a fifo in its place cannot hang us)
        fd = open_file(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, mode)
    except PermissionError:
        raise LiveError(f"cannot take {what} {path}: permission denied ({hint})") from None
    except UnsafePathError as e:
        raise UnsafePathError(f"cannot take {what}: {e}") from None
    except OSError as e:
        raise LiveError(f"cannot take {what} {path}: {e.strerror or e}") from None
    return fd


@contextmanager
def locked(path: Path, what: str, mode: int = 0o600, hint: str = "run kvmnet as root"
           ) -> Iterator[int]:
    """Hold an exclusive flock on the lock file at path (open_lock), waiting as long as
    another holder keeps it; yields the open file."""
    fd = open_lock(path, what, mode, hint)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # (closing the last descriptor releases the flock)


def apply_lock_path(uri: str) -> Path:
    return Path(LOCK_DIR) / ("apply-" + hashlib.sha256(uri.encode()).hexdigest()[:16]
                             + ".lock")


@contextmanager
def apply_lock(uri: str, wait: float = 60.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the apply lock for uri; wait up to `wait` seconds for another holder, whose
    pid the lock file holds (so that a waiting apply can say who it waits for)."""
    if math.isnan(wait):  # (a deadline of nan never comes)
        raise LockError("the lock wait must be a number of seconds, not nan")
    try:
        fd = open_lock(apply_lock_path(uri), "the apply lock", 0o644,
                       "run kvmnet apply as root")
    except LiveError as e:
        raise LockError(str(e)) from None
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
