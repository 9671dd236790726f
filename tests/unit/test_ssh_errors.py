"""What a qemu+ssh:// host's ssh refused, in kvmnet's words (backend.libvirt_errors).

The texts are libvirt's messages as the cluster lab (tests/lab/cluster.py) produced
them with libvirt 9.0 and OpenSSH 9.2."""

from __future__ import annotations

import pytest

from kvmnet.backend.libvirt_errors import explain_ssh_error

URI = "qemu+ssh://root@10.164.0.12/system"
CHANGED = (
    "Cannot recv data: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
    "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n"
    "The fingerprint for the ED25519 key sent by the remote host is\n"
    "SHA256:2FXHmA1hZW+doRrrHnONAbDIdrnC4AxyErPwVZrbb6Y.\r\n"
    "Host key for 10.164.0.12 has changed and you have requested strict checking.\r\n"
    "Host key verification failed.: Connection reset by peer")


@pytest.mark.parametrize(("text", "says"), [
    (CHANGED, ["ssh to 10.164.0.12 refused: its host key is not the one known_hosts holds",
               "SHA256:2FXHmA1hZW+doRrrHnONAbDIdrnC4AxyErPwVZrbb6Y", "never accepts",
               "ssh-keygen -R 10.164.0.12"]),
    ("Cannot recv data: No ED25519 host key is known for 10.164.0.12 and you have requested "
     "strict checking.\r\nHost key verification failed.: Connection reset by peer",
     ["no host key is known for it", "ssh root@10.164.0.12 true"]),
    ("Cannot recv data: root@10.164.0.12: Permission denied (publickey).: Connection reset "
     "by peer", ["login refused (Permission denied (publickey))", "ssh-copy-id root@10.164.0.12"]),
    ("Cannot recv data: ssh: connect to host 10.164.0.12 port 22: Connection refused: "
     "Connection reset by peer",
     ["failed: connect to host 10.164.0.12 port 22: Connection refused; is sshd running"]),
    ("Cannot recv data: ssh: connect to host 10.164.0.12 port 22: Connection timed out: "
     "Connection reset by peer", ["Connection timed out; it did not answer within ssh's "
                                  "ConnectTimeout"]),
    ("Cannot recv data: ssh: Could not resolve hostname nosuch.invalid: Name or service not "
     "known: Connection reset by peer", ["Could not resolve hostname", "check the name"]),
])
def test_ssh_refusals_are_one_line_with_what_to_do(text: str, says: list[str]) -> None:
    msg = explain_ssh_error(URI, text)
    assert msg is not None and msg.startswith(f"cannot connect to {URI}: ssh to 10.164.0.12")
    assert "\n" not in msg and "\r" not in msg and "@@@" not in msg
    for part in says:
        assert part in msg, msg
    assert "libvirtd is not running" not in msg and "'libvirt' group" not in msg


def test_once_ssh_got_through_the_far_sides_libvirt_speaks() -> None:
    text = ("End of file while reading data: virt-ssh-helper: cannot connect to "
            "'/var/run/libvirt/libvirt-sock': Failed to connect socket to "
            "'/var/run/libvirt/libvirt-sock': Connection refused: Input/output error")
    assert explain_ssh_error(URI, text) is None
