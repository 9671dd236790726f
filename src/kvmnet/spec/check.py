"""check: pure semantic checks of a loaded Spec; every finding at once.

Each finding is a Problem at the position of the value it is about, with a
message that says what to write instead. Errors stop; warnings print.
Checks that need the live host (routes, host links, other domains) run in
plan, not here.

check_file runs them on what load could build of a file with type errors too (the
values the errors are about left out: spec.load.Loaded), so one run reports both. A
finding is then dropped when it may only exist because of what was left out: when it
is at, inside or above a left-out path, or when one of the paths it `refs` (what it
compares with or depends on: another network's subnet, the network a NIC names, the
mode that makes a key wrong) is.
"""

from __future__ import annotations

import os

from kvmnet.errors import Problem
from kvmnet.model.derive import nic_macs
from kvmnet.model.spec import Spec
from kvmnet.spec.checks import (
    dns,
    firewall,
    forward,
    guest,
    host,
    ipv6,
    network,
    overlay,
    vlan,
)
from kvmnet.spec.findings import Findings
from kvmnet.spec.hosts import check_hosts
from kvmnet.spec.load import Path_, Positions, load_partial

EMPTY = ("the spec is empty: write at least one of networks:, guests: or host: "
         "(docs/SPEC.md and `kvmnet schema --markdown` list every key; examples/seed.yaml "
         "is a whole spec); `networks: {}` is a spec that has none on purpose")


def check_file(path: str | os.PathLike[str]) -> tuple[Spec, Positions, list[Problem]]:
    """load + check in one run: the file's YAML and type errors, and the findings of
    the checks on the rest of it (sorted). Raises SpecError only when nothing of the
    file can be modelled (YAML syntax, not a mapping, unreadable)."""
    loaded = load_partial(path)
    file = "<stdin>" if os.fspath(path) == "-" else os.fspath(path)  # (spec.sources)
    found = check(loaded.spec, loaded.pos, file, loaded.pruned)
    if not loaded.pos.keys and not loaded.problems:  # no key at all: empty, comments, null
        found.insert(0, Problem(file, 1, 1, EMPTY))
    return (loaded.spec, loaded.pos,
            sorted(loaded.problems + found, key=Problem.sort_key) if loaded.problems
            else found)


def check(spec: Spec, pos: Positions | None = None, file: str = "<spec>",
          pruned: frozenset[Path_] = frozenset()) -> list[Problem]:
    """All findings, errors and warnings, sorted by position. `pruned`: the paths load
    left out of spec (Loaded.pruned); findings that may come from that are dropped."""
    f = Findings(pos or Positions(), file, pruned=pruned)
    for name, net in spec.networks.items():
        network.network(f, name, net)
        dns.dns(f, spec, name, net)
    dns.guest_names(f, spec)
    network.subnets(f, spec)
    network.bridges(f, spec)
    host.host_links(f, spec)
    guest.guests(f, spec)
    guest.macs(f, spec)
    vlan.vlans(f, spec)
    ipv6.ipv6(f, spec)
    forward.forwards(f, spec)
    if spec.has_firewalls():
        firewall.firewalls(f, spec)
    overlay.overlay(f, spec)
    check_hosts(f, spec)
    if not errors(f.items):
        _renders(f, spec)
    return sorted(f.items, key=Problem.sort_key)


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def _renders(f: Findings, spec: Spec) -> None:
    """What the other checks let through must also render: libvirt XML of every network
    (xml_extra holds XML text and paths into it), so plan cannot fail on it later."""
    from kvmnet.errors import KvmnetError
    from kvmnet.render.network import network_xml

    macs = nic_macs(spec)  # once: per network it would make checking quadratic
    for name, net in spec.networks.items():
        if net.mode == "overlay":
            continue
        try:
            network_xml(spec, name, macs)
        except (KvmnetError, ValueError) as e:
            key = ("xml_extra",) if net.xml_extra else ()
            f.error(("networks", name, *key), f"cannot be written as libvirt XML: {e}",
                    key=bool(key), refs=[("networks", name), ("guests",)])
