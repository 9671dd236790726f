"""The host transaction's state files (kvmnet.apply.bridge.journal and store): typed,
versioned, one codec each.

tests/data/journal/v1-*.json were written by kvmnet's untyped journal code (commit
438b190: transaction._write, boot.save, transaction._finish) for a two-step change
whose old netplan file is binary; v0-watchdog.json is its unversioned watchdog.json.
Each must still be read, upgraded, with every value as it was. Anything else a file
may hold is refused with one LiveError naming the file and the field: never another
exception (hypothesis throws arbitrary JSON and damaged journals at the codecs).
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmnet.apply.bridge import store
from kvmnet.apply.bridge.journal import (
    JOURNAL,
    OUTCOME,
    REGISTRATION,
    Journal,
    Outcome,
    Persisted,
    Registration,
    Step,
    describe,
    report,
)
from kvmnet.apply.bridge.links import Addr, Link, Route
from kvmnet.apply.bridge.persist import FileChange
from kvmnet.cli.main import main
from kvmnet.errors import LiveError

DATA = Path(__file__).resolve().parents[1] / "data" / "journal"
OLD_NETPLAN = b"# old\n" + bytes(range(256))
TXID = "4f1c0d7e9a2b4c6d8e0f1a2b3c4d5e6f"

LINK = Link("enp2s0", True, "", "52:54:00:aa:bb:cc", 1500, True, None,
            (Addr(2, "192.168.1.1", 24, "192.168.1.1", "192.168.1.255", "enp2s0"),),
            (Route(2, None, 0, gateway="192.168.1.254", priority=100,
                   metrics={"RTAX_MTU": 1400}),))
CHANGE = FileChange("etc/netplan/90-kvmnet.yaml", "network: {}\n", OLD_NETPLAN, 0o600,
                    0, 0, "var/backups/kvmnet/x", ("var/backups/kvmnet",))
J = Journal(txid="tx", state="waiting", netns="ns1", apply_pid=7, apply_start="99",
            root="/", created=1.5, timeout=120.0, deadline=300.25,
            steps=(Step(bridge="br0", links=(Link("br0", False), LINK), files=(CHANGE,)),),
            persisted=Persisted(boot_id="b1", new_dirs=("var/lib/kvmnet",), unit="x"),
            rollback_now=None, errors=())


def _v1(name: str) -> bytes:
    return (DATA / name).read_bytes()


# ------------------------------------------------------------------ round trips

def test_every_record_round_trips() -> None:
    assert JOURNAL.loads(JOURNAL.dumps(J), "j") == J
    out = Outcome(outcome="rolled back", reason="why", txid="tx", at=2.0, bridges=("br0",),
                  seconds=0.5, done=("a", "b"), boot=True)
    assert OUTCOME.loads(OUTCOME.dumps(out), "o") == out
    me = Registration(pid=1, start=None, txid="tx")
    assert REGISTRATION.loads(REGISTRATION.dumps(me), "w") == me


def test_files_say_their_format_and_keep_the_earlier_shape() -> None:
    """Format 2 is format 1 with every field present and typed: the old content in
    standard base64, the links as dataclasses.asdict had them."""
    data = json.loads(JOURNAL.dumps(J))
    assert data["kvmnet"] == 2
    assert base64.b64decode(data["steps"][0]["files"][0]["before"]) == OLD_NETPLAN
    assert data["steps"][0]["links"][1]["routes"][0]["metrics"] == {"RTAX_MTU": 1400}
    assert set(data) == set(json.loads(_v1("v1-changing.json"))) | {"rollback_now", "errors"}
    assert json.loads(OUTCOME.dumps(Outcome(outcome="confirmed", reason="r", txid="t",
                                            at=1.0, bridges=()))) == {
        "kvmnet": 1, "outcome": "confirmed", "reason": "r", "txid": "t", "at": 1.0,
        "bridges": []}  # (no seconds, done, boot: as before)


# ------------------------------------------------------------------ earlier formats

def test_a_format_1_journal_is_read_with_every_value() -> None:
    j = JOURNAL.loads(_v1("v1-changing.json"), "v1")
    assert (j.txid, j.state, j.netns, j.apply_pid, j.apply_start) == (
        TXID, "changing", None, 4242, "123456")
    assert (j.created, j.timeout, j.deadline) == (1796000000.25, 120.0, 8123.5)
    assert j.persisted is not None and j.persisted.boot_id.startswith("6b8c2a2e")
    assert j.persisted.unit.endswith("sysinit.target.wants/kvmnet-boot-rollback.service")
    [step] = j.steps
    br0, nic = step.links
    assert br0 == Link("br0", False)
    assert nic.addresses[1] == Addr(10, "2001:db8::1", 64, None, None, None, 0, 0x80,
                                    3600, 1800)
    assert nic.routes[0].metrics == {"RTAX_MTU": 1400} and nic.routes[1].pref == 0
    assert nic.multipath == ("10.9.0.0/16 via 192.168.1.2",)
    netplan, ifupdown = sorted(step.files, key=lambda c: "interfaces" in c.path)
    assert netplan.before == OLD_NETPLAN and netplan.backup and netplan.uid == 0
    assert ifupdown.before is None and "etc/network/interfaces.d" in ifupdown.new_dirs
    assert JOURNAL.loads(_v1("v1-disk-copy.json"), "v1") == j  # the copy: same record


def test_a_format_1_journal_drops_the_readers_marker() -> None:
    j = JOURNAL.loads(_v1("v1-rollback-failed.json"), "v1")
    assert j.state == "rollback-failed" and j.errors == ("br0: gone", "files: denied")
    assert j.rollback_now and j.rollback_now.startswith("self-check failed")
    assert [s.bridge for s in j.steps] == ["br0", "br1"] and j.steps[1].files == ()
    assert "from_disk" not in json.loads(JOURNAL.dumps(j))  # upgraded: written as format 2
    assert JOURNAL.loads(JOURNAL.dumps(j), "v2") == j


def test_hand_made_format_1_journals_get_the_defaults_its_readers_used() -> None:
    """What tests (and people) wrote: no "kvmnet", only some fields. A missing deadline
    was 0, which has passed: the watchdog rolls such a journal back at once."""
    j = JOURNAL.loads(json.dumps({"txid": "other", "state": "waiting", "steps": []}), "h")
    assert (j.deadline, j.timeout, j.apply_pid, j.persisted, j.errors) == (0, 0, None,
                                                                          None, ())
    j = JOURNAL.loads(json.dumps({"kvmnet": 1, "txid": "t", "state": "changing",
                                  "steps": [{"bridge": "b", "links": [
                                      {"name": "b", "exists": False}], "files": []}]}), "h")
    assert j.steps[0].links == (Link("b", False),)


def test_the_earlier_outcome_and_watchdog_files_are_read() -> None:
    last = OUTCOME.loads(_v1("v1-last-tx.json"), "v1")
    assert (last.outcome, last.reason, last.txid, last.bridges, last.done, last.seconds,
            last.boot) == ("rolled back", "kvmnet rollback", TXID, ("br0", "br1"),
                           ("deleted br0",), 0.123, None)
    assert REGISTRATION.loads(_v1("v0-watchdog.json"), "v0") == Registration(
        pid=4243, start="123460", txid=TXID)


# ------------------------------------------------------------------ refusals

def _journal_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(JOURNAL.dumps(J))
    return data


REFUSED = {
    "not json": (b"{", "not JSON"),
    "not an object": (b"[1]", "not a JSON object"),
    "a newer format": ({"kvmnet": 3}, "format 3 is not one this kvmnet reads (1, 2)"),
    "format as text": ({"kvmnet": "2"}, "format '2' is not one"),
    "format true": ({"kvmnet": True}, "format True is not one"),
    "a missing field": ({"deadline": None}, "deadline: field required"),
    "a number as text": ({"timeout": "120"}, "timeout: input should be a valid number"),
    "an unknown key": ({"confirm_by": 5}, "confirm_by: unexpected"),
    "an unknown state": ({"state": "done"}, "state: input should be 'changing'"),
    "bad base64": ({"steps.0.files.0.before": "#!?"}, "before: value error, not base64"),
    "an mtu as text": ({"steps.0.links.1.mtu": "1500"}, "mtu: input should be a valid int"),
    "a link key": ({"steps.0.links.0.ifindex": 3}, "links.0.ifindex: unexpected"),
}


def _damaged(change: bytes | dict[str, Any]) -> bytes:
    if isinstance(change, bytes):
        return change
    data = _journal_data()
    for path, value in change.items():
        *parents, last = path.split(".")
        node: Any = data
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_damaged_journal_is_refused_with_what_and_where(case: str) -> None:
    change, says = REFUSED[case]
    with pytest.raises(LiveError) as e:
        JOURNAL.loads(_damaged(change), "/x/run/kvmnet/host-tx.json")
    msg = str(e.value)
    assert msg.startswith("cannot read the host transaction journal /x/run/kvmnet/host-tx.json")
    assert says.lower() in msg.lower(), msg


def test_an_outcome_file_must_say_its_format() -> None:
    with pytest.raises(LiveError, match="format is not named"):
        OUTCOME.loads(json.dumps({"outcome": "confirmed", "reason": "r"}), "o")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(value=JSON)
def test_any_json_is_a_record_or_one_live_error(value: Any) -> None:
    for codec in (JOURNAL, OUTCOME, REGISTRATION):
        try:
            codec.loads(json.dumps(value), "f")
        except LiveError:
            pass


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(_journal_data())), value=JSON)
def test_any_field_replaced_is_a_record_or_one_live_error(key: str, value: Any) -> None:
    data = {**_journal_data(), key: value}
    try:
        j = JOURNAL.loads(json.dumps(data), "f")
    except LiveError:
        return
    assert isinstance(j, Journal)


# ------------------------------------------------------------------ through the store

def test_the_store_names_the_file_and_refuses_a_symlink(tmp_path: Path) -> None:
    path = store.journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"kvmnet": 9}')
    with pytest.raises(LiveError, match=f"journal {path}: its format 9"):
        store.read_journal(tmp_path)
    path.unlink()
    other = tmp_path / "elsewhere.json"
    other.write_bytes(JOURNAL.dumps(J))
    path.symlink_to(other)
    with pytest.raises(LiveError, match="symlink"):
        store.read_journal(tmp_path)


def test_files_are_private_and_the_run_journal_and_copy_are_one_record(tmp_path: Path
                                                                       ) -> None:
    store.write_journal(tmp_path, J)
    store.write_copy(tmp_path, J)
    assert store.journal_path(tmp_path).read_bytes() == store.persisted_path(
        tmp_path).read_bytes()
    assert store.journal_path(tmp_path).stat().st_mode & 0o777 == 0o600
    found = store.pending(tmp_path)
    assert found == (J, False)
    store.journal_path(tmp_path).unlink()
    assert store.pending(tmp_path) == (J, True)


def test_the_cli_says_what_is_wrong_with_a_journal(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = store.journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(_damaged({"deadline": "soon"}))
    for cmd in (["confirm"], ["rollback"]):
        assert main([*cmd, "--root", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "deadline: input should be a valid number" in err
    assert path.read_bytes() == _damaged({"deadline": "soon"})  # left for the admin


def test_describe_and_report() -> None:
    assert describe(None) == "no host change is waiting for confirm"
    o = Outcome(outcome="rolled back", reason="r", txid="t")
    assert describe(o) == "the last host change was rolled back (r)"
    assert report(o) == {"outcome": "rolled back", "reason": "r", "txid": "t"}
    assert report(replace(o, done=())) == {**report(o), "done": []}
