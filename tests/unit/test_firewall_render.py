"""Port forwards, pure parts (issue 6): resolving the spec, the rules and scripts
(golden files in tests/data/firewall/CASE.out/, KVMNET_REGEN_GOLDEN=1 rewrites), reading
real rulesets back (tests/data/firewall/live/*.json, `nft -j list ruleset` of libvirt
9.0's and 11.3's rules with and without kvmnet's, see capture.py), the plan's diff,
`show`'s states, the libvirt hook's file and its behaviour, and the checks."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kvmnet.backend import forward_files as files
from kvmnet.backend import hook
from kvmnet.backend.forward_files import STATE_FILE
from kvmnet.model.forward import (
    Anchor,
    FirewallLive,
    Fwd,
    RulesetFacts,
    StateError,
    describe,
    parse_state,
    state_json,
)
from kvmnet.model.live import LiveState
from kvmnet.model.spec import Spec
from kvmnet.parse.firewall import ipt_key, parse_ruleset
from kvmnet.plan import make_plan
from kvmnet.plan.forwards import (
    plan_forwards,
    rules_in_place,
    show_rows,
    status,
    with_forwards,
)
from kvmnet.render import render_all
from kvmnet.render.firewall import (
    accept_commands,
    batch_text,
    hairpin_rule,
    nft_batch,
    output_rule,
    prerouting_rule,
    render_firewall,
    resolve,
    table_commands,
)
from kvmnet.render.iptables import iptables_inputs, iptables_restore
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load, load_text
from lab.golden import assert_golden

DATA = Path(__file__).parent.parent / "data" / "firewall"
LIVE = DATA / "live"
CASES = sorted(p.name[: -len(".in.yaml")] for p in DATA.glob("*.in.yaml"))


def spec_of(text: str) -> Spec:
    spec, pos = load_text(text, "t.yaml")
    assert errors(check(spec, pos)) == []
    return spec


def live_json(name: str) -> dict[str, Any]:
    return json.loads((LIVE / name).read_text())


CAPTURE = load(DATA / "capture.yaml")[0]
FWDS = resolve(CAPTURE)


# -- resolve and render ----------------------------------------------------------------

def test_cases_present() -> None:
    assert {"seed", "variety"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == []
    assert_golden(DATA / f"{case}.out", render_firewall(spec))


def test_render_all_has_the_firewall_files_only_with_forwards() -> None:
    spec, _ = load(DATA / "seed.in.yaml")
    fw = {p for p in render_all(spec) if p.startswith("firewall/")}
    assert fw == {"firewall/forwards.nft.json", "firewall/accept-iptables.rules",
                  "firewall/accept-nftables.json", "firewall/forwards.json"}
    no = spec.model_copy(update={"networks": {
        n: x.model_copy(update={"forwards": []}) for n, x in spec.networks.items()}})
    assert not any(p.startswith("firewall/") for p in render_all(no))


def test_resolve_guest_address_ports_and_subnet() -> None:
    spec, _ = load(DATA / "variety.in.yaml")
    fw = resolve(spec)
    assert [(f.network, f.proto, f.host_ports, f.target, f.guest_ports) for f in fw] == [
        ("web", "tcp", (80, 80), "10.10.0.10", (80, 80)),          # guest_port defaults
        ("web", "tcp", (8080, 8080), "10.10.0.10", (80, 80)),
        ("web", "tcp", (2222, 2222), "10.10.0.20", (22, 22)),
        ("web", "udp", (60000, 60010), "10.10.0.20", (60000, 60010)),
        ("web", "tcp", (7000, 7002), "10.10.0.21", (9000, 9002)),
        ("web", "udp", (5353, 5354), "10.10.0.21", (53, 54)),
        ("web", "tcp", (8443, 8443), "10.10.0.10", (443, 443)),
        ("web", "tcp", (8006, 8006), "fd00:10::20", (80, 80)),
        ("db", "tcp", (5432, 5432), "10.11.0.5", (5432, 5432))]
    assert fw[0].guest == "www" and fw[2].guest is None
    assert fw[0].subnet == "10.10.0.0/24" and fw[7].subnet == "fd00:10::/64"
    assert fw[2].sources == ("198.51.100.0/24", "203.0.113.7/32")
    assert fw[6].listen == "192.0.2.1" and fw[7].family == 6


def test_describe() -> None:
    f = FWDS[0]
    assert describe(f) == "default tcp 2222 -> 192.168.122.10:22 (guest web1)"
    v6 = Fwd("n", "tcp", (80, 81), "fd00::5", (80, 81), "fd00::/64", "2001:db8::1",
             ("2001:db8::/32",))
    assert describe(v6) == "n tcp 80-81 -> [fd00::5]:80-81 on 2001:db8::1 from 2001:db8::/32"


DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}


@pytest.mark.parametrize(("hp", "gp", "dnat"), [
    ((80, 80), (8080, 8080), {"family": "ip", "addr": "10.0.0.5", "port": 8080}),
    ((80, 90), (22, 22), {"family": "ip", "addr": "10.0.0.5", "port": 22}),  # range onto one
    ((80, 81), (80, 81), {"family": "ip", "addr": "10.0.0.5"}),              # the same ports
    ((80, 81), (90, 91), {"family": "ip", "addr": "10.0.0.5", "port": {"map": {
        "key": DPORT, "data": {"set": [[80, 90], [81, 91]]}}}}),
])
def test_dnat_forms(hp: tuple[int, int], gp: tuple[int, int], dnat: dict[str, Any]) -> None:
    f = Fwd("n", "tcp", hp, "10.0.0.5", gp, "10.0.0.0/24")
    assert prerouting_rule(f).expr[-1] == {"dnat": dnat}


def test_rules_are_nft_json() -> None:
    """Each rule as `nft -j` lists it (the kernel's listing is compared in the tests
    below); sources are a set of prefixes, listen replaces the local-address test."""
    f = Fwd("n", "udp", (5000, 5001), "10.0.0.5", (5000, 5001), "10.0.0.0/24", "192.0.2.1",
            ("198.51.100.0/24", "203.0.113.7/32"))
    assert prerouting_rule(f).expr == (
        {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"set": [{"prefix": {"addr": "198.51.100.0", "len": 24}},
                                     {"prefix": {"addr": "203.0.113.7", "len": 32}}]}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                   "right": "192.0.2.1"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                   "right": {"range": [5000, 5001]}}},
        {"counter": None},
        {"dnat": {"family": "ip", "addr": "10.0.0.5"}})
    assert hairpin_rule(f).expr[1] == {"match": {"op": "in", "left": {"ct": {"key": "status"}},
                                                 "right": "dnat"}}
    v6 = Fwd("n", "tcp", (80, 80), "fd00::5", (80, 80), "fd00::/64")
    assert output_rule(v6).expr[1] == {"match": {
        "op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "::1"}}


def test_comments_change_with_the_rule() -> None:
    a = prerouting_rule(FWDS[0])
    b = prerouting_rule(Fwd(**{**FWDS[0].__dict__, "guest_ports": (23, 23)}))
    assert a.comment != b.comment and a.comment.startswith("kvmnet:")
    assert len(a.comment) <= 120 and '"' not in a.comment


def test_state_file_round_trip() -> None:
    spec, _ = load(DATA / "variety.in.yaml")
    fw = resolve(spec)
    assert parse_state(state_json(fw)) == fw
    assert parse_state(state_json(())) == ()


def test_state_files_of_earlier_kvmnet_stay_readable() -> None:
    """state-v1.json is the file kvmnet wrote before the state file became a typed
    record (variety.in.yaml's forwards): it reads, and writing it again gives the same
    bytes (so plan sees no change to make after an upgrade)."""
    old = (DATA / "state-v1.json").read_text()
    fw = parse_state(old)
    assert fw == resolve(load(DATA / "variety.in.yaml")[0])
    assert state_json(fw) == old
    # format 1 let listen, sources and guest out
    short = {"network": "n", "proto": "tcp", "host_ports": [80, 80], "target": "10.0.0.5",
             "guest_ports": [8080, 8080], "subnet": "10.0.0.0/24"}
    assert parse_state(json.dumps({"kvmnet": 1, "forwards": [short]})) == (
        Fwd("n", "tcp", (80, 80), "10.0.0.5", (8080, 8080), "10.0.0.0/24"),)


GOOD = {"network": "n", "proto": "tcp", "host_ports": [80, 80], "target": "10.0.0.5",
        "guest_ports": [80, 80], "subnet": "10.0.0.0/24", "listen": None, "sources": [],
        "guest": None}


@pytest.mark.parametrize(("data", "message"), [
    ("", "not a kvmnet forwards file: no JSON"),
    ("[]", 'no {"kvmnet": FORMAT, ...} object'),
    ('{"forwards": []}', 'no {"kvmnet": FORMAT, ...} object'),
    ('{"kvmnet": 2, "forwards": []}', "format 2 is newer than this kvmnet (upgrade kvmnet); "
                                      "this kvmnet reads format 1"),
    ('{"kvmnet": "1", "forwards": []}', "format '1' is unknown"),
    ('{"kvmnet": true, "forwards": []}', "format True is unknown"),
    ('{"kvmnet": 0, "forwards": []}', "format 0 is unknown"),
    ('{"kvmnet": 1}', "found keys ['kvmnet']"),
    ('{"kvmnet": 1, "forwards": {}}', 'want exactly {"kvmnet": 1, "forwards": [...]}'),
    ('{"kvmnet": 1, "forwards": [], "x": 1}', "found keys ['forwards', 'kvmnet', 'x']"),
    ('{"kvmnet": 1, "forwards": [7]}', "forward 1: 7 is not an object"),
    ('{"kvmnet": 1, "forwards": [{"network": "x"}]}',
     "forward 1: missing field(s) proto, host_ports, target, guest_ports, subnet"),
    (json.dumps({"kvmnet": 1, "forwards": [GOOD, {**GOOD, "color": "red"}]}),
     "forward 2: unknown field(s) color"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "host_ports": ["80", "80"]}]}),
     "forward 1 (n): ports ('80', '80') are not (first, last)"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "host_ports": [80]}]}),
     "forward 1: host_ports: [80] is not [first, last]"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "host_ports": [True, 80]}]}),
     "are not (first, last)"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "target": 5}]}),
     "forward 1: target: 5 is not a string"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "target": "10.1.0.5"}]}),
     "address 10.1.0.5 is outside subnet 10.0.0.0/24"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "sources": "10.0.0.0/8"}]}),
     "forward 1: sources: '10.0.0.0/8' is not a list"),
    (json.dumps({"kvmnet": 1, "forwards": [{**GOOD, "guest_ports": [80, 81],
                                            "host_ports": [80, 82]}]}),
     "guest ports 80-81 are neither one port nor as many as host ports 80-82"),
])
def test_state_file_refused_with_the_reason(data: str, message: str) -> None:
    with pytest.raises(StateError) as e:
        parse_state(data)
    assert message in str(e.value)


def test_iptables_restore_scripts() -> None:
    fresh = iptables_restore(FWDS, 4, Anchor())
    assert fresh.splitlines()[:2] == ["*filter", ":KVMNET_FWD - [0:0]"]
    assert fresh.splitlines()[-2:] == ["-I FORWARD 1 -j KVMNET_FWD", "COMMIT"]
    assert ("-A KVMNET_FWD -d 192.168.122.11/32 -p udp -m udp --dport 5000:5001 -m conntrack "
            "--ctstate DNAT") in fresh
    in_place = iptables_restore(FWDS, 4, Anchor(True, (3,), True))
    assert "FORWARD" not in in_place                       # the jump is left alone
    late = iptables_restore(FWDS, 4, Anchor(True, (3, 4), False))
    assert late.count("-D FORWARD -j KVMNET_FWD") == 2 and "-I FORWARD 1" in late
    gone = iptables_restore((), 4, Anchor(True, (3,), True))
    assert gone.splitlines()[1:] == [":KVMNET_FWD - [0:0]", "-D FORWARD -j KVMNET_FWD",
                                     "-X KVMNET_FWD", "COMMIT"]
    assert iptables_restore((), 4, Anchor()) == ""
    assert iptables_restore(FWDS, 6, Anchor()) == ""     # no IPv6 forward


AT = {"family": "ip", "table": "libvirt_network"}
CHAIN = {**AT, "name": "kvmnet_forwards"}


def test_nft_accept_commands() -> None:
    fresh = accept_commands(FWDS, 4, Anchor())
    assert fresh[:2] == [{"add": {"chain": CHAIN}}, {"flush": {"chain": CHAIN}}]
    assert [next(iter(c)) for c in fresh] == ["add", "flush", "add", "add", "insert"]
    assert fresh[-1] == {"insert": {"rule": {**AT, "chain": "forward", "expr": [
        {"jump": {"target": "kvmnet_forwards"}}], "comment": "kvmnet forwards"}}}
    assert "insert" not in json.dumps(accept_commands(FWDS, 4, Anchor(True, (7,), True)))
    late = accept_commands(FWDS, 4, Anchor(True, (7,), False))
    assert {"delete": {"rule": {**AT, "chain": "forward", "handle": 7}}} in late
    assert accept_commands((), 4, Anchor(True, (7,), True)) == [
        {"delete": {"rule": {**AT, "chain": "forward", "handle": 7}}},
        {"flush": {"chain": CHAIN}}, {"delete": {"chain": CHAIN}}]
    assert accept_commands((), 4, Anchor()) == []


def test_nft_table_commands() -> None:
    table = {"family": "inet", "name": "kvmnet"}
    cmds = table_commands(FWDS)
    assert cmds[:4] == [{"add": {"table": table}}, {"delete": {"table": table}},
                        {"add": {"table": table}}, {"add": {"chain": {
                            "family": "inet", "table": "kvmnet", "name": "prerouting",
                            "type": "nat", "hook": "prerouting", "prio": -100,
                            "policy": "accept"}}}]
    assert table_commands(()) == [{"add": {"table": table}}, {"delete": {"table": table}}]


@pytest.mark.parametrize("name", sorted(p.name for p in LIVE.glob("*.json")))
def test_the_hook_writes_what_apply_writes(name: str) -> None:
    """The hook installs the state file's forwards with the same code as apply: through
    the file they must come out as the same forwards, hence the same batch and input."""
    facts = parse_ruleset(live_json(name))
    for fwds in (FWDS, resolve(load(DATA / "variety.in.yaml")[0]), ()):
        again = parse_state(state_json(fwds))
        assert nft_batch(again, facts) == nft_batch(fwds, facts)
        assert iptables_inputs(again, facts) == iptables_inputs(fwds, facts)


def test_nft_batch_follows_the_host() -> None:
    ipt = parse_ruleset(live_json("iptables-libvirt-only.json"))
    batch = nft_batch(FWDS, ipt)
    assert batch is not None and batch["nftables"] == table_commands(FWDS)
    assert [t for t, _, _ in iptables_inputs(FWDS, ipt)] == ["iptables-restore"]
    nft = parse_ruleset(live_json("nftables-libvirt-only.json"))
    batch = nft_batch(FWDS, nft)
    assert batch is not None
    assert batch["nftables"] == table_commands(FWDS) + accept_commands(FWDS, 4, Anchor())
    assert iptables_inputs(FWDS, nft) == []
    assert nft_batch((), nft) is None                  # nothing of kvmnet's there
    gone = nft_batch((), parse_ruleset(live_json("nftables-installed.json")))
    assert gone is not None and gone["nftables"][:2] == table_commands(())
    assert json.loads(batch_text(batch)) == batch


NFT_OK = os.geteuid() == 0 and shutil.which("nft") and shutil.which("unshare")
LIBVIRT_TABLES = "; ".join(
    f"nft add table {f} libvirt_network; nft add chain {f} libvirt_network forward "
    "'{ type filter hook forward priority 0; }'" for f in ("ip", "ip6"))


@pytest.mark.skipif(not NFT_OK, reason="needs root, nft and unshare")
@pytest.mark.parametrize("case", CASES)
def test_the_kernel_takes_the_batch_and_lists_it_back(case: str) -> None:
    """In a throwaway network namespace with libvirt's nftables tables: the rendered
    JSON goes in with `nft -j -f`, and reading the ruleset back finds every rule."""
    spec, _ = load(DATA / f"{case}.in.yaml")
    files = render_firewall(spec)
    with tempfile.TemporaryDirectory() as d:
        for name in ("forwards.nft.json", "accept-nftables.json"):
            Path(d, name).write_text(files[f"firewall/{name}"])
        r = subprocess.run(["unshare", "--net", "sh", "-c",
                            f"{LIBVIRT_TABLES}; nft -j -f {d}/forwards.nft.json && "
                            f"nft -j -f {d}/accept-nftables.json && nft -j list ruleset"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    facts = parse_ruleset(json.loads(r.stdout))
    assert facts.backends == ("nftables",) and rules_in_place(resolve(spec), facts)


# -- reading real rulesets back -------------------------------------------------------

def test_parse_libvirt_only_rulesets() -> None:
    ipt = parse_ruleset(live_json("iptables-libvirt-only.json"))
    assert ipt.backends == ("iptables",) and not ipt.table and not ipt.parts
    nft = parse_ruleset(live_json("nftables-libvirt-only.json"))
    assert nft.backends == ("nftables",) and nft.nft_families == {4, 6}
    assert not nft.parts and not rules_in_place(FWDS, nft) and rules_in_place((), nft)


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_parse_installed(backend: str) -> None:
    facts = parse_ruleset(live_json(f"{backend}-installed.json"))
    assert facts.table and rules_in_place(FWDS, facts)
    assert not rules_in_place(FWDS[:1], facts)         # a stale rule is a difference
    a = facts.anchors[(backend, 4)]
    assert a.chain_exists and a.ok
    assert {x.startswith(("ipt", "nft")) for x in facts.parts} == {True, False}


def test_parse_misplaced_jump() -> None:
    facts = parse_ruleset(live_json("iptables-misplaced.json"))
    a = facts.anchors[("iptables", 4)]
    assert a.chain_exists and a.jumps and not a.first
    assert "ipt4 jump-misplaced" in facts.parts and not rules_in_place(FWDS, facts)


def test_ipt_key() -> None:
    rules = [i["rule"] for i in live_json("iptables-installed.json")["nftables"]
             if "rule" in i and i["rule"]["chain"] == "KVMNET_FWD"]
    assert sorted(ipt_key(r["expr"]) or "" for r in rules) == [
        "192.168.122.10 tcp 22-22", "192.168.122.11 udp 5000-5001"]
    assert ipt_key([{"jump": {"target": "X"}}]) is None


# -- plan and show ----------------------------------------------------------------------

def live(name: str | None, state: tuple[Fwd, ...] | None = None, hook_: str | None = "ok",
         **kw: Any) -> FirewallLive:
    facts = parse_ruleset(live_json(name)) if name else RulesetFacts()
    return FirewallLive(facts, state_json(state) if state is not None else None, hook=hook_,
                        **kw)


def keep_none(_: str) -> bool:
    return False


def test_plan_nothing_to_do() -> None:
    assert plan_forwards(CAPTURE, live("iptables-installed.json", FWDS), keep_none) is None
    assert plan_forwards(Spec(), live("iptables-libvirt-only.json", None, None),
                         keep_none) is None


def test_plan_install_from_scratch() -> None:
    p = plan_forwards(CAPTURE, live("iptables-libvirt-only.json", None, None), keep_none)
    assert p is not None and p.forwards == FWDS and p.skipped is None
    assert p.details == (
        "+ default tcp 2222 -> 192.168.122.10:22 (guest web1)",
        "+ default udp 5000-5001 -> 192.168.122.11:5000-5001",
        "+ libvirt network hook (puts the rules back when a network starts)")
    assert p.summary.startswith("port forwards: 2 to add, 0 to remove")


def test_plan_repairs_and_removes() -> None:
    lost = plan_forwards(CAPTURE, live("iptables-libvirt-only.json", FWDS), keep_none)
    assert lost is not None and all(d.startswith("~ put back") for d in lost.details)
    late = plan_forwards(CAPTURE, live("iptables-misplaced.json", FWDS), keep_none)
    assert late is not None and late.details == (
        "~ move kvmnet's jump in front of libvirt's (libvirt's reject came first)",)
    one = CAPTURE.model_copy(update={"networks": {"default": CAPTURE.networks[
        "default"].model_copy(update={"forwards": CAPTURE.networks["default"].forwards[:1]})}})
    fewer = plan_forwards(one, live("iptables-installed.json", FWDS), keep_none)
    assert fewer is not None and fewer.details == (
        "- default udp 5000-5001 -> 192.168.122.11:5000-5001",)
    none = plan_forwards(Spec(), live("nftables-installed.json", FWDS), keep_none)
    assert none is not None and none.forwards == ()
    assert none.details[-1] == "- libvirt network hook and state file"


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_rules_an_earlier_kvmnet_wrote_are_rewritten_once(backend: str) -> None:
    """*-installed-earlier.json: the same forwards as installed by kvmnet before its nft
    rules were JSON (the same kernel rules; the comments' hashes covered nft text). show
    says installed; plan rewrites them once, and says so, not "put back"."""
    old = live(f"{backend}-installed-earlier.json", FWDS)
    assert {status(f, old) for f in FWDS} == {"installed"}
    p = plan_forwards(CAPTURE, old, keep_none)
    assert p is not None and p.forwards == FWDS
    assert p.details == tuple(f"~ rewrite in this kvmnet's form (same rules): {describe(f)}"
                              for f in FWDS)
    batch = nft_batch(FWDS, old.facts)
    assert batch is not None and batch["nftables"][:2] == table_commands(())  # whole table


def test_plan_keeps_forwards_outside_the_scope() -> None:
    other = Fwd("team-b", "tcp", (9999, 9999), "10.9.0.5", (80, 80), "10.9.0.0/24")
    p = plan_forwards(CAPTURE, live("iptables-libvirt-only.json", (other,)),
                      lambda n: n == "team-b")
    assert p is not None and p.forwards == (other, *FWDS)
    assert not any(d.startswith("- ") for d in p.details)


def test_plan_without_a_readable_firewall() -> None:
    p = plan_forwards(CAPTURE, None, keep_none, is_test=True)
    assert p is not None and p.skipped and "test:///" in p.skipped
    p = plan_forwards(CAPTURE, None, keep_none)
    assert p is not None and p.skipped and "local host only" in p.skipped
    assert plan_forwards(Spec(), None, keep_none) is None
    p = plan_forwards(CAPTURE, live(None, None, None, error="nft is not installed"), keep_none)
    assert p is not None and p.errors == ((("networks", "default", "forwards"),
                                           "cannot install port forwards: nft is not "
                                           "installed"),)
    p = plan_forwards(CAPTURE, live(None, None, None, legacy=True), keep_none)
    assert p is not None and "iptables-legacy" in p.errors[0][1]


def test_plan_stops_on_a_state_file_it_cannot_read() -> None:
    """It cannot tell which forwards it installed (nor keep other specs' ones)."""
    for spec in (CAPTURE, Spec()):
        bad = replace(live("iptables-installed.json"), state_text='{"kvmnet": 9}',
                      state_path="/r/var/lib/kvmnet/forwards.json")
        p = plan_forwards(spec, bad, keep_none)
        assert p is not None and not p.forwards and len(p.errors) == 1
        assert p.errors[0][1].startswith(
            "cannot read /r/var/lib/kvmnet/forwards.json: kvmnet forwards file format 9 is "
            "newer than this kvmnet"), p.errors
        assert "move it away to start afresh" in p.errors[0][1]
    assert show_rows(bad) == []


def test_make_plan_has_one_firewall_action() -> None:
    state = LiveState("qemu:///system", {}, {}, firewall=live("iptables-libvirt-only.json"))
    p = make_plan(CAPTURE, state)
    acts = [(a.kind, a.target, a.impact) for a in p.actions]
    assert acts[-1] == ("firewall.sync", "firewall/forwards", "live")
    assert p.actions[-1].forwards == FWDS
    test = LiveState("test:///default", {}, {}, is_test=True)
    assert make_plan(CAPTURE, test).actions[-1].skipped


def test_show_states() -> None:
    assert show_rows(None) == []
    rows = show_rows(live("iptables-installed.json", FWDS))
    assert [(r["host_port"], r["address"], r["state"]) for r in rows] == [
        ("2222", "192.168.122.10", "installed"), ("5000-5001", "192.168.122.11", "installed")]
    lost = live("iptables-libvirt-only.json", FWDS)
    assert {status(f, lost) for f in FWDS} == {"not installed"}
    # the DNAT table is there but the accept went (libvirt's reject would win)
    partial = live("iptables-misplaced.json", FWDS)
    assert {status(f, partial) for f in FWDS} == {"partly installed"}


def test_import_gives_back_the_forwards() -> None:
    """import's spec + the state file's forwards resolve to the same forwards again."""
    for spec in (CAPTURE, load(DATA / "variety.in.yaml")[0]):
        bare = spec.model_copy(update={"networks": {
            n: x.model_copy(update={"forwards": []}) for n, x in spec.networks.items()}})
        again = with_forwards(bare, resolve(spec))
        assert resolve(again) == resolve(spec)
        assert again.networks == spec.networks


# -- the hook ---------------------------------------------------------------------------

def test_hook_file(tmp_path: Path) -> None:
    assert files.hook_status(tmp_path) is None
    assert files.install(tmp_path) is True
    path = tmp_path / files.HOOK_FILE
    assert path.parent.name == "network.d"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert files.hook_status(tmp_path) == "ok" and files.install(tmp_path) is False
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n# kvmnet-hook v1")
    assert str(tmp_path.resolve() / STATE_FILE) in text and 'if [ "$2" = started ]' in text
    assert text.rstrip().endswith("exit 0")
    path.write_text("#!/bin/sh\n# someone's\n")
    assert files.hook_status(tmp_path) == "stale" and files.install(tmp_path) is False
    assert files.hook_status(tmp_path) == "ok"
    assert files.remove(tmp_path) is True and files.remove(tmp_path) is False


def test_hook_script_always_exits_0(tmp_path: Path) -> None:
    """Run the sh script as libvirt does; with no state file, a missing interpreter or
    another operation it does nothing, and never fails (libvirt would not start the
    network)."""
    files.install(tmp_path)
    path = tmp_path / files.HOOK_FILE
    for op in ("start", "started", "stopped", "port-created"):
        r = subprocess.run([str(path), "net", op, "begin", "-"], input="<hookData/>",
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not r.stdout, r
    (tmp_path / STATE_FILE).parent.mkdir(parents=True)
    (tmp_path / STATE_FILE).write_text("not json")
    r = subprocess.run([str(path), "net", "started", "begin", "-"], input="<x/>",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "cannot read" in (tmp_path / files.LOG_FILE).read_text()
    path.write_text(path.read_text().replace("PY=", "PY=/nonexistent/python #"))
    r = subprocess.run([str(path), "net", "started", "begin", "-"], input="<x/>",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0


def test_hook_main_never_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hook.main(["--state", str(tmp_path / "none.json"), "net", "started", "begin",
                      "-"]) == 0
    assert "net started: cannot read" in capsys.readouterr().out
    assert hook.main(["--state", str(tmp_path / "none.json"), "net", "stopped", "end",
                      "-"]) == 0
    assert "nothing to do" in capsys.readouterr().out


# -- checks ----------------------------------------------------------------------------

BASE = """\
networks:
  n:
    ipv4: {address: 10.0.0.1/24}
    forwards:
      - %s
"""


@pytest.mark.parametrize(("fwd", "message"), [
    ("{proto: tcp, host_port: 80, address: 10.0.0.5, listen: 127.0.0.1}",
     "127.0.0.1 is a loopback address"),
    ("{proto: tcp, host_port: 80, address: 10.0.0.5, listen: '2001:db8::1'}",
     "listen 2001:db8::1 is IPv6 but the guest address is IPv4"),
    ("{proto: tcp, host_port: 80, address: 10.0.0.5, sources: ['2001:db8::/32']}",
     "source 2001:db8::/32 is IPv6 but the guest address is IPv4"),
])
def test_checks(fwd: str, message: str) -> None:
    spec, pos = load_text(BASE % fwd, "t.yaml")
    found = [p.message for p in errors(check(spec, pos))]
    assert any(message in m for m in found), found
