"""kvmnet.model.uri: which libvirt URIs are this machine's daemon (plan's host read,
doctor, leases' neighbour table and a host's netns: all ask it), and which are the
test driver. One row a URI; the reason is libvirt's (see the module docstring)."""

from __future__ import annotations

import pytest

from kvmnet.model.uri import is_local, is_test

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
