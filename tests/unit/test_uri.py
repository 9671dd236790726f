"""kvmnet.model.uri: which libvirt URIs are this machine's daemon (plan's host read,
doctor, leases' neighbour table and a host's netns: all ask it), and which are the
test driver. One row a URI; the reason is libvirt's (see the module docstring)."""

from __future__ import annotations

import pytest

from kvmnet.model.uri import is_local, is_test, spec_uri_problem

LOCAL = [
    ("qemu:///system", "no transport, no host: the UNIX socket"),
    ("qemu:///session", "the user's own daemon, same socket rule"),
    ("qemu+unix:///system", "+unix is that socket, said explicitly"),
    ("qemu+unix:///system?socket=/run/libvirt/virtqemud-sock", "a socket path given"),
    ("qemu:///system?socket=/run/x.sock", "a socket path, no transport"),
    ("QEMU+UNIX:///system", "scheme case does not matter"),
    ("test:///default", "the test driver, in this process"),
    ("test:///tmp/lab.xml", "the test driver with a file"),
    ("lxc:///system", "another driver, same socket rule"),
    ("qemu://:16509/system", "a port but no host: still no host"),
]
REMOTE = [
    ("qemu+ssh://root@hv1.example.com/system", "ssh to a host"),
    ("qemu+ssh://hv1/system?keyfile=/root/.ssh/id", "ssh with parameters"),
    ("qemu+ssh:///system", "ssh without a host goes to localhost over the network"),
    ("qemu+ssh://root@/system?no_verify=1", "a user but no host: still ssh"),
    ("qemu+libssh2://hv1/system", "libssh2"),
    ("qemu+libssh:///system", "libssh, no host"),
    ("qemu+tcp://hv1/system", "plain TCP"),
    ("qemu+tcp:///system", "TCP to localhost"),
    ("qemu+tls://hv1.example.com/system", "TLS"),
    ("qemu+tls:///system", "TLS to localhost"),
    ("qemu://hv1/system", "no transport but a host: TLS"),
    ("qemu://localhost/system", "TLS to localhost is still TLS"),
    ("qemu://[fd00::5]:16514/system", "an IPv6 literal host"),
    ("qemu+unix://hv1/system", "libvirt refuses +unix with a host"),
    ("qemu+ext:///system?command=/opt/tunnel", "an external program"),
    ("test+tcp://hv1/default", "the test driver of another daemon"),
    ("", "not a URI"),
    ("qemu", "not a URI: an alias or a typo"),
    ("qemu:/system", "one slash: not a URI libvirt takes"),
]


@pytest.mark.parametrize(("uri", "why"), LOCAL, ids=[u for u, _ in LOCAL])
def test_local(uri: str, why: str) -> None:
    assert is_local(uri), why


@pytest.mark.parametrize(("uri", "why"), REMOTE, ids=[u or "empty" for u, _ in REMOTE])
def test_remote(uri: str, why: str) -> None:
    assert not is_local(uri), why


@pytest.mark.parametrize(("uri", "test"), [
    ("test:///default", True), ("test+tcp://hv1/default", True), ("TEST:///default", True),
    ("qemu:///system", False), ("testing:///x", False), ("qemu+ssh://test/system", False),
    ("test", False)])
def test_is_test(uri: str, test: bool) -> None:
    assert is_test(uri) is test


# -- what a spec's hosts may name (spec_uri_problem): an allow-list, SECURITY.md ---------

SPEC_OK = ["qemu:///system", "qemu:///session", "qemu+unix:///system",
           "qemu+unix:///system?socket=/run/libvirt/libvirt-sock-ro",
           "qemu:///system?socket=/var/run/libvirt/virtqemud-sock",
           "qemu+ssh://root@hv1.example.com/system", "qemu+ssh://hv1:2222/system?no_tty=1",
           "qemu+ssh://admin@[fd00::5]/system?mode=direct&proxy=native",
           "qemu+tls://hv1.example.com/system", "qemu+tcp://10.0.0.5:16509/system",
           "qemu://hv1/system", "test:///default"]
SPEC_REFUSED = [
    ("qemu+ext:///system?command=/tmp/x", "transport +ext (it runs a program)"),
    ("qemu+libssh2://hv1/system", "transport +libssh2"),
    ("qemu+ssh://hv1/system?command=/bin/sh", "'command' may not be given"),
    ("qemu+ssh://hv1/system?netcat=nc", "'netcat' may not be given"),
    ("qemu+ssh://hv1/system?keyfile=/root/.ssh/id", "names a local file"),
    ("qemu+ssh://hv1/system?known_hosts=/etc/passwd", "a local file to read and write"),
    ("qemu+tls://hv1/system?pkipath=/tmp", "names local files"),
    ("qemu+tls://hv1/system?no_verify=1", "turns off the check"),
    ("qemu+ssh://hv1/system?name=test:///etc/shadow", "'name' may not be given"),
    ("qemu+ssh://hv1/system?socket=/run/libvirt/libvirt-sock", "only libvirt's own sockets"),
    ("qemu+unix:///system?socket=/tmp/x.sock", "is not libvirt's own socket"),
    ("qemu+unix://hv1/system", "qemu+unix is this machine's socket"),
    ("qemu+ssh://hv1/system?mode=x", "mode='x': write one of auto, legacy, direct"),
    ("qemu+ssh://hv1/system?c%6fmmand=x", "no %-escapes"),
    ("qemu+ssh://hv1/system#x", "no %-escapes or '#'"),
    ("qemu+ssh://-oProxyCommand=x/system", "plain user and host"),
    ("qemu+ssh://-l@hv1/system", "plain user and host"),
    ("qemu:///etc", "the path is /system"),
    ("qemu+ssh://hv1:0/system", "port 0 is out of range"),
    ("test:///etc/shadow", "only test:///default"),
    ("test+tcp://hv1/default", "only test:///default"),
    ("lxc:///system", "driver 'lxc' is not QEMU/KVM"),
    ("hv1.example.com", "is not a libvirt URI: write DRIVER"),
]


@pytest.mark.parametrize("uri", SPEC_OK)
def test_a_spec_may_name(uri: str) -> None:
    assert spec_uri_problem(uri) is None


@pytest.mark.parametrize(("uri", "why"), SPEC_REFUSED, ids=[u for u, _ in SPEC_REFUSED])
def test_a_spec_may_not_name(uri: str, why: str) -> None:
    problem = spec_uri_problem(uri)
    assert problem is not None and why in problem, problem
    assert problem.startswith(repr(uri)) and "\n" not in problem
