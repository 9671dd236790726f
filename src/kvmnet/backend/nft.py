"""Every nft call kvmnet makes, both ways in nft's JSON, and the runner of the firewall
tools (nft, iptables-restore, iptables) inside --netns.

Read: `nft -j list ruleset` (kvmnet.parse.firewall turns it into facts; nft's text
output is never parsed). Write: `nft -j -f -` with one batch {"nftables": [{"add": ...},
{"delete": ...}, {"flush": ...}, {"insert": ...}]} built from data by
kvmnet.render.firewall: one kernel transaction, all of it or nothing. No text is
formatted for nft, so no value can end a rule early or start another, and what is
written has the shape reading gives back (the rules' expressions as `nft -j` lists
them).

Checked here (nftables 1.0.6, Debian 12): `nft -j -f -` reads such batches from stdin,
including every form kvmnet writes (base chains with type/hook/prio/policy, anonymous
sets of prefixes, port ranges, `fib daddr type local`, `ct status dnat`, a DNAT port
map, insert at the head of a chain, delete by handle, flush and delete of a chain);
reading the ruleset back lists each rule with the expressions written. JSON support
is no new requirement: reads have used `nft -j` all along. One thing text did better:
when the kernel refuses a command, nft's error names no line for JSON input
("internal:0:0-0: Error: Could not process rule: No such file or directory", where a
text script got the failing line quoted). The batch is all or nothing either way, and
its commands are made from checked values, so such errors come from the host (a chain
libvirt removed in between); the message says what nft said and that nothing of the
batch was applied.

iptables-restore has no JSON: its input stays text (kvmnet.render.iptables, built
from checked values only) and runs through the same `run`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

from kvmnet.backend.netns import entered
from kvmnet.errors import LiveError
from kvmnet.render.firewall import batch_text

TIMEOUT = 30.0
LIST = ("nft", "-j", "list", "ruleset")
APPLY = ("nft", "-j", "-f", "-")


def _spawn(args: Sequence[str], netns: str | None, stdin: bool) -> subprocess.Popen[str]:
    """Start `args` inside `netns`: this thread enters it for the fork only
    (kvmnet.backend.netns), two syscalls where `ip netns exec` starts two more programs."""
    try:
        with entered(netns) if netns else nullcontext():
            try:
                return subprocess.Popen(
                    list(args), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            except FileNotFoundError:
                raise LiveError(f"{args[0]} is not installed (apt-get install nftables "
                                "iptables)") from None
            except OSError as e:
                raise LiveError(f"cannot run {args[0]}: {e.strerror or e}") from None
    except OSError as e:
        raise LiveError(f"cannot enter network namespace {netns}: {e.strerror or e}") from None


def _finish(p: subprocess.Popen[str], args: Sequence[str], stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    try:
        out, err = p.communicate(stdin, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise LiveError(f"{' '.join(args[:3])} did not finish within {TIMEOUT:.0f} s") from None
    return subprocess.CompletedProcess(list(args), p.returncode, out, err)


def run(args: Sequence[str], netns: str | None, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`args` (a list, never a shell) inside `netns`, `stdin` fed to it; LiveError when
    it cannot start or does not finish within TIMEOUT."""
    return _finish(_spawn(args, netns, stdin is not None), args, stdin)


def write(args: Sequence[str], text: str, netns: str | None) -> None:
    """Feed `text` to a tool that applies it in one transaction; LiveError with the
    tool's first error lines when it refuses."""
    r = run(args, netns, text)
    if r.returncode != 0:
        err = "\n".join(r.stderr.strip().splitlines()[:6])
        raise LiveError(f"{' '.join(args)} failed (nothing of it was applied): {err}")


def _ruleset(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if r.returncode != 0:
        why = r.stderr.strip() or str(r.returncode)
        hint = " (run kvmnet as root)" if "not permitted" in why.lower() else ""
        raise LiveError(f"nft -j list ruleset failed: {why}{hint}")
    try:
        data = json.loads(r.stdout or '{"nftables": []}')
    except json.JSONDecodeError as e:
        raise LiveError(f"nft -j list ruleset gave no JSON: {e}") from None
    if not isinstance(data, dict):
        raise LiveError("nft -j list ruleset gave no JSON object")
    return data


def list_ruleset(netns: str | None = None) -> dict[str, Any]:
    return _ruleset(run(LIST, netns))


def start_list_ruleset(netns: str | None = None) -> Callable[[], dict[str, Any]]:
    """list_ruleset in two halves: nft starts now, calling the result waits for it (so
    libvirt is read meanwhile); a failure to start is raised by the call, not here."""
    try:
        proc = _spawn(LIST, netns, False)
    except LiveError as e:
        failed = e

        def fail() -> dict[str, Any]:
            raise failed
        return fail
    return lambda: _ruleset(_finish(proc, LIST))


def apply_batch(batch: dict[str, Any], netns: str | None = None) -> None:
    """One nft transaction: `batch` ({"nftables": [commands]}) in the form `kvmnet
    render` writes it (one command a line)."""
    write(APPLY, batch_text(batch), netns)
