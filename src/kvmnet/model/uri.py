"""Where the libvirt daemon of a URI runs: here or elsewhere. One answer for every
caller: plan's host read, doctor's host checks, the neighbour table behind `leases`,
the spec's `netns:` of a host. And which URIs a spec may name at all
(spec_uri_problem: an allow-list, below).

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


def mac_host_of(uri: str | None) -> str:
    """mac_host of -c URI, or of the URI libvirt would use without one
    ($LIBVIRT_DEFAULT_URI, then qemu:///system): for the commands that do not connect
    (render, mac) to give the MACs plan and apply will."""
    import os

    return mac_host(uri or os.environ.get("LIBVIRT_DEFAULT_URI") or "qemu:///system")


def mac_host(uri: str) -> str:
    """The host a connection reaches, as kvmnet salts the MACs it generates with it
    (model.derive.stable_mac): 'test' for libvirt's test driver (a made-up host: the
    same MACs on every machine), the URI's host for a remote one (lower case), else
    this machine's hostname."""
    m = _URI.match(uri)
    if m is not None and m["driver"].lower() == "test":
        return "test"
    if m is not None and not is_local(uri) and _host(m["authority"]):
        return _host(m["authority"]).lower()
    import socket  # (here: only plan and `kvmnet mac` ask)

    return socket.gethostname()


# -- what a spec may name -----------------------------------------------------------------
# A spec may come from someone less trusted than root, and `kvmnet plan` connects to
# its hosts' URIs. libvirt's URIs can do more than connect: qemu+ext runs ?command=,
# +ssh runs ?command= instead of ssh and ?netcat= on the far side, ?keyfile=,
# ?pkipath=, ?known_hosts= and ?authfile= name local files, ?socket= any local socket,
# ?name= the driver the far daemon opens, and test:///PATH parses any file (its first
# line echoed in the error). So a spec's URI is held to an allow-list, parameters
# included; `-c` on the command line is the user's own and is not judged.
SPEC_URI_EXAMPLES = ("qemu:///system, qemu+ssh://root@hv1.example.com/system, "
                     "qemu+tls://hv1.example.com/system or test:///default")
# the transports a spec may name: none (the local socket, or TLS with a host), the
# local socket, ssh, TLS, TCP
_SPEC_TRANSPORTS = ("", "unix", "ssh", "tls", "tcp")
_SPEC_PARAMS = {"mode": ("auto", "legacy", "direct"), "proxy": ("auto", "netcat", "native"),
                "no_tty": ("0", "1")}
STANDARD_SOCKETS = tuple(f"{run}/libvirt/{d}-sock{ro}" for run in ("/run", "/var/run")
                         for d in ("libvirt", "virtqemud") for ro in ("", "-ro"))
_WHY_NOT = {
    "command": "it names a program to run", "netcat": "it names a program to run",
    "keyfile": "it names a local file to read", "pkipath": "it names local files to read",
    "known_hosts": "it names a local file to read and write",
    "authfile": "it names a local file to read",
    "name": "it picks what the far daemon opens (test:///PATH reads a file there)",
    "no_verify": "it turns off the check of whom kvmnet talks to",
    "known_hosts_verify": "it turns off the check of whom kvmnet talks to",
}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SPEC_URI = re.compile(
    r"(?P<driver>[A-Za-z][A-Za-z0-9]*)(?:\+(?P<transport>[A-Za-z0-9]+))?://"
    r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])?"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/[a-z]*)(?:\?(?P<query>[^#]*))?\Z")


def spec_uri_problem(uri: str) -> str | None:
    """Why a spec's hosts may not name `uri` (what to write instead); None when it may:
    qemu over its local socket (the standard ones), ssh (no parameter that names a
    program or a file), TLS or TCP, and test:///default (in memory)."""
    others = (f"a spec may name {SPEC_URI_EXAMPLES}; another connection is yours to give "
              "with -c on the command line")
    loose = _URI.match(uri)
    if loose is None:
        return (f"{uri!r} is not a libvirt URI: write DRIVER[+TRANSPORT]://[USER@]HOST"
                f"[:PORT]/PATH, e.g. {SPEC_URI_EXAMPLES}")
    driver, transport = loose["driver"].lower(), (loose["transport"] or "").lower()
    if driver == "test":
        return None if uri == "test:///default" else (
            f"{uri!r}: only test:///default, in memory: the test driver with a path (or "
            f"a host) makes kvmnet read that file; {others}")
    if driver != "qemu":
        return f"{uri!r}: driver {driver!r} is not QEMU/KVM: {others}"
    if transport not in _SPEC_TRANSPORTS:
        what = "it runs a program" if transport == "ext" else "not on kvmnet's list"
        return (f"{uri!r}: transport +{transport} ({what}): a spec's hosts are reached "
                f"over ssh, TLS, TCP or the local socket; {others}")
    if "%" in uri or "#" in uri:
        return (f"{uri!r}: a spec's URI takes no %-escapes or '#' (libvirt decodes "
                "escapes in parameter names): write it out")
    m = _SPEC_URI.fullmatch(uri)
    if m is None:
        return (f"{uri!r}: write [USER@]HOST[:PORT]/system with a plain user and host "
                "(letters, digits, '-', '.', '_', not starting with '-'), an IPv4 address "
                "or an [IPv6] one")
    return _spec_uri_parts(uri, m, transport) or _spec_uri_query(uri, m["query"] or "",
                                                                  transport, m["host"])


def _spec_uri_parts(uri: str, m: re.Match[str], transport: str) -> str | None:
    if m["path"] not in ("/system", "/session"):
        return f"{uri!r}: the path is /system (or /session), not {m['path']!r}"
    if m["port"] is not None and not 1 <= int(m["port"]) <= 65535:
        return f"{uri!r}: port {m['port']} is out of range (1-65535)"
    host = m["host"] or ""
    if host.startswith("["):
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{uri!r}: {host} is not an IPv6 address"
    if transport == "unix" and (host or m["user"] or m["port"]):
        return f"{uri!r}: qemu+unix is this machine's socket: write qemu+unix:///system"
    return None


def _spec_uri_query(uri: str, query: str, transport: str, host: str | None) -> str | None:
    allowed = ", ".join(f"{k}=" for k in _SPEC_PARAMS) + " and socket= (libvirt's own)"
    for part in filter(None, query.split("&")):
        name, sep, value = part.partition("=")
        if name == "socket" and transport in ("", "unix") and not host:
            if value in STANDARD_SOCKETS:
                continue
            return (f"{uri!r}: socket={value!r} is not libvirt's own socket (one of "
                    f"{', '.join(STANDARD_SOCKETS)}): remove it, or give -c on the "
                    "command line")
        if name in _SPEC_PARAMS:
            if value in _SPEC_PARAMS[name]:
                continue
            return (f"{uri!r}: {name}={value!r}: write one of "
                    f"{', '.join(_SPEC_PARAMS[name])}")
        why = _WHY_NOT.get(name, "not one kvmnet knows to be harmless")
        if name == "socket":
            why = "only libvirt's own sockets, and only for qemu:///system or qemu+unix"
        return (f"{uri!r}: parameter {name!r} may not be given in a spec ({why}): remove "
                f"it; a spec's URI may carry {allowed}; anything else is yours to give "
                "with -c on the command line")
    return None
