"""Firewall helpers for the port forward tests (integration and e2e): read a namespace's
whole ruleset as JSON and compare two of them, take kvmnet's rules away the way a
reboot or a firewall reload would, fetch a URL from a namespace, replay libvirt's own
firewall commands from its test data (networkxml2firewalldata: lab/testdata.py)."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any


def ns_run(ns: str, args: list[str], stdin: str | None = None,
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, check=False)


def ruleset(ns: str) -> dict[str, Any]:
    r = ns_run(ns, ["nft", "-j", "list", "ruleset"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _strip(v: Any, handles: bool = False) -> Any:
    """Counter values zeroed; handles dropped unless `handles`."""
    if isinstance(v, dict):
        if set(v) == {"packets", "bytes"}:
            return {"packets": 0, "bytes": 0}
        return {k: _strip(x, handles) for k, x in v.items() if handles or k != "handle"}
    if isinstance(v, list):
        return [_strip(x, handles) for x in v]
    return v


def exact(rs: dict[str, Any]) -> Any:
    """The ruleset with its handles (a rewritten rule gets a new one), counters zeroed."""
    return _strip(rs, handles=True)


def normalized(rs: dict[str, Any], drop: tuple[str, ...] = ()) -> Counter[str]:
    """Every table, chain, set and rule as canonical JSON without handles and counter
    values, as a multiset: libvirt re-adds its rules at the top of its chains on a
    network restart, so the order of rules of different networks may change; items
    whose JSON mentions a string in `drop` are left out (other tests' networks)."""
    out: Counter[str] = Counter()
    for item in rs.get("nftables", ()):
        if "metainfo" in item:
            continue
        text = json.dumps(_strip(item), sort_keys=True)
        if not any(d in text for d in drop):
            out[text] += 1
    return out


def diff(before: Counter[str], after: Counter[str]) -> str:
    gone, new = before - after, after - before
    return "\n".join([*(f"- {x}" for x in gone), *(f"+ {x}" for x in new)])


def kvmnet_items(rs: dict[str, Any]) -> list[str]:
    """kvmnet's own objects in a ruleset (its table, chains and their rules, jumps)."""
    out = []
    for item in rs.get("nftables", ()):
        text = json.dumps(item)
        if "kvmnet" in text or "KVMNET" in text:
            out.append(text)
    return out


def drop_kvmnet_rules(ns: str) -> None:
    """Take kvmnet's rules away (what a reboot or a firewall reload does to them),
    leaving libvirt's alone; with plain nft/iptables commands, not kvmnet's code."""
    ns_run(ns, ["nft", "delete", "table", "inet", "kvmnet"])
    for tool in ("iptables", "ip6tables"):
        while ns_run(ns, [tool, "-w", "-D", "FORWARD", "-j", "KVMNET_FWD"]).returncode == 0:
            pass
        ns_run(ns, [tool, "-w", "-F", "KVMNET_FWD"])
        ns_run(ns, [tool, "-w", "-X", "KVMNET_FWD"])
    for item in ruleset(ns)["nftables"]:
        r = item.get("rule")
        if r and r["table"] == "libvirt_network" and "kvmnet_forwards" in json.dumps(r["expr"]):
            ns_run(ns, ["nft", "delete", "rule", r["family"], r["table"], r["chain"], "handle",
                        str(r["handle"])])
    for fam in ("ip", "ip6"):
        ns_run(ns, ["nft", "delete", "chain", fam, "libvirt_network", "kvmnet_forwards"])
    left = kvmnet_items(ruleset(ns))
    assert not left, left


def wget(ns: str, url: str, timeout: int = 4) -> tuple[int, str, str]:
    """(exit code, body, error) of one GNU wget try from namespace NS (exit 4: network
    failure, e.g. connection refused or timed out)."""
    r = ns_run(ns, ["wget", "--no-proxy", "-nv", "-t", "1", "-T", str(timeout), "-O", "-", url],
               timeout=timeout + 15)
    return r.returncode, r.stdout, r.stderr


def libvirt_commands(path: Path, subst: dict[str, str]) -> list[list[str]]:
    """The commands of one of libvirt's networkxml2firewalldata files (.args, .iptables,
    .nftables: one argument per line, `\\` continuations), names replaced by `subst`."""
    text = path.read_text()
    for old, new in subst.items():
        text = text.replace(old, new)
    cmds: list[list[str]] = []
    for word in shlex.split(text.replace("\\\n", " ")):
        if word in ("iptables", "ip6tables", "nft", "tc") or not cmds:
            cmds.append([])
        cmds[-1].append(word)
    return cmds


def replay(ns: str, path: Path, subst: dict[str, str]) -> None:
    """Run libvirt's firewall commands of one test data file in NS, skipping its
    listings and traffic control (not firewall)."""
    for cmd in libvirt_commands(path, subst):
        if cmd[0] == "tc" or "--list-rules" in cmd or cmd[1:2] == ["list"]:
            continue
        if cmd[0] == "nft" and cmd[1] == "-ae":
            cmd = ["nft", *cmd[2:]]
        r = ns_run(ns, cmd)
        assert r.returncode == 0, f"{shlex.join(cmd)}: {r.stderr}"
