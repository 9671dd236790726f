"""Enter a named network namespace for a moment, in this thread, and come back.

What is made inside (a netlink socket, a child process such as nft) stays in the
namespace; this thread goes back at once. That costs two setns(2) calls where
`ip netns exec` costs two more program starts and a mount namespace, and pyroute2's
NetNS a forked helper process (which, besides, creates a namespace that does not
exist; this never does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"


def netns_path(netns: str) -> str:
    """As `ip netns` and pyroute2 name them: a bare name is under /var/run/netns."""
    return netns if os.path.dirname(netns) else f"{NETNS_RUN_DIR}/{netns}"


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextmanager
def entered(netns: str) -> Iterator[None]:
    """This thread inside `netns` for the with block (OSError when it cannot go there).
    Coming back cannot fail short of the kernel refusing our own namespace, and then the
    OSError propagates: nothing may go on in the wrong namespace."""
    target = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)
    finally:
        os.close(target)
