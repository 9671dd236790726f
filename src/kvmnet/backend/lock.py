"""One apply at a time per libvirt URI: an flock on a file under /run/kvmnet."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kvmnet.errors import LockError

LOCK_DIR = os.environ.get("KVMNET_LOCK_DIR", "/run/kvmnet")


def _open_lock(uri: str) -> int:
    """The lock file, opened without following a symlink, in a folder only root (or
    we) can change: the file is truncated and written, so it must be ours."""
    from kvmnet.backend.files import check_dir, make_dirs
    from kvmnet.errors import UnsafePathError

    path = os.path.join(LOCK_DIR, "apply-" + hashlib.sha256(uri.encode()).hexdigest()[:16]
                        + ".lock")
    try:
        make_dirs(Path(LOCK_DIR))
        check_dir(Path(LOCK_DIR))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except PermissionError:
        raise LockError(f"cannot take the apply lock {path}: permission denied (run kvmnet "
                        "apply as root)") from None
    except UnsafePathError as e:
        raise LockError(f"cannot take the apply lock: {e}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LockError(f"cannot take the apply lock: {path} is a symlink; remove it") \
                from None
        raise LockError(f"cannot take the apply lock {path}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise LockError(f"cannot take the apply lock: {path} is not a plain file of ours "
                        "(a hard link, or another user's file); remove it")
    return fd


@contextmanager
def apply_lock(uri: str, wait: float = 60.0,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the apply lock for uri; wait up to `wait` seconds for another holder."""
    if math.isnan(wait):  # (a deadline of nan never comes)
        raise LockError("the lock wait must be a number of seconds, not nan")
    fd = _open_lock(uri)
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
