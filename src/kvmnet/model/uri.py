"""Where the libvirt daemon of a URI runs: here or elsewhere. One answer for every
caller: plan's host read, doctor's host checks, the neighbour table behind `leases`,
the spec's `netns:` of a host.

A libvirt URI is DRIVER[+TRANSPORT]://[USER@][HOST][:PORT][/PATH][?PARAMS]. Without a
transport libvirt takes its UNIX socket when there is no host and TLS when there is
one; +unix is that socket (libvirt refuses it with a host). Every other transport
(+ssh, +libssh, +libssh2, +tcp, +tls, +ext) is a connection through the network or
another program, even without a host (libvirt then goes to localhost): maybe this
machine, but not surely as this process's user, in its network namespace: kvmnet cannot
tell, so those are remote and kvmnet never reads this machine's links for them.
"""

from __future__ import annotations

import re

_URI = re.compile(r"^(?P<driver>[A-Za-z][A-Za-z0-9]*)(?:\+(?P<transport>[A-Za-z0-9]+))?://"
                  r"(?P<authority>[^/?#]*)")
LOCAL_TRANSPORTS = ("", "unix")


def _host(authority: str) -> str:
    """The host of USER@HOST:PORT ('' when none); an IPv6 literal keeps its brackets."""
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport.partition("]")[0] + "]"
    return hostport.partition(":")[0]


def is_local(uri: str) -> bool:
    """libvirt at `uri` runs on this machine, reached over its UNIX socket (or in this
    process: test:///default, which has no host links; see is_test): no transport or
    +unix, and no host. Anything else, or not a URI at all, is remote."""
    m = _URI.match(uri)
    if m is None:
        return False
    transport = (m["transport"] or "").lower()
    return transport in LOCAL_TRANSPORTS and not _host(m["authority"])


def is_test(uri: str) -> bool:
    """libvirt's test driver: a made-up host in memory, nothing real changes."""
    m = _URI.match(uri)
    return m is not None and m["driver"].lower() == "test"
