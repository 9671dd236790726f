"""The tools users would pick instead of kvmnet, doing the apply job.

Each peer gets the same networks (the XML kvmnet renders, reservations included,
except kcli, which cannot express per-network reservations) and is run the way its
users run it: a virsh shell loop, an Ansible playbook with community.libvirt.virt_net,
a kcli plan and a kcli shell loop. Ansible and kcli live in their own venv
(bench/.peers-venv, made from PyPI by `ensure_venv`); virsh is Debian's
libvirt-clients. What a peer checks on a re-run is written next to it (CHECKS).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import PEERS_VENV, BenchError, Proc, bench_env, run
from bench.specgen import host_xml, net_name, reservation

PEER_PACKAGES = ("ansible", "kcli", "libvirt-python", "lxml")

# What each peer's second run looks at on the live host (the no-op column).
CHECKS = {
    "virsh loop": "net-info per network: exists, active, autostart (not the XML)",
    "Ansible virt_net": "define always re-sends the XML (a write); state/autostart read "
                        "the live flags",
    "kcli plan": "lists networks; skips those that exist (not their XML)",
    "kcli loop": "lists networks; refuses those that exist (not their XML)",
}


@dataclass(frozen=True)
class Peer:
    """A peer's three steps; `change` is None when the peer cannot express the change."""

    name: str
    create: Callable[[], Proc]
    noop: Callable[[], Proc]
    change: Callable[[], Proc] | None
    note: str = ""


def ensure_venv(install: bool) -> str | None:
    """bench/.peers-venv with PEER_PACKAGES; None when usable, else why not."""
    py = PEERS_VENV / "bin" / "python"
    probe = "import ansible_collections.community.libvirt, kvirt, libvirt, lxml"
    if py.exists() and run([str(py), "-c", probe]).rc == 0:
        return None
    if not install:
        return f"{PEERS_VENV} is missing or incomplete (run without --no-install)"
    base = Path(sys.base_prefix) / "bin" / "python3"
    steps = [[str(base), "-m", "venv", str(PEERS_VENV)],
             [str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES]]
    for argv in steps:
        p = run(argv, timeout=1800)
        if p.rc != 0:
            tail = " ".join((p.err or p.out).strip().splitlines()[-3:])
            return f"`{shlex.join(argv)}` failed: {tail}"
    if run([str(py), "-c", probe]).rc != 0:
        return "the peers venv installed, but importing ansible's community.libvirt, kcli, " \
               "libvirt and lxml fails"
    return None


class PeerJobs:
    """Files and commands of every peer for one apply job of n networks."""

    def __init__(self, work: Path, uri: str, xmls: dict[str, str], n: int) -> None:
        self.work, self.uri, self.xmls, self.n = work, uri, xmls, n
        (work / "xml").mkdir(parents=True, exist_ok=True)
        for name, xml in xmls.items():
            (work / "xml" / f"{name}.xml").write_text(xml)
        self.home = work / "home"  # Ansible and kcli keep state under $HOME: not root's
        self.home.mkdir(exist_ok=True)
        self.bin = PEERS_VENV / "bin"
        self.moved = reservation(0, 0, moved=True)

    def env(self) -> dict[str, str]:
        return bench_env(HOME=str(self.home), ANSIBLE_LOCALHOST_WARNING="False",
                         ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_NOCOLOR="1",
                         ANSIBLE_PYTHON_INTERPRETER=str(self.bin / "python"))

    # -- virsh -------------------------------------------------------------
    def virsh(self) -> Peer:
        if shutil.which("virsh") is None:
            raise BenchError("virsh is not installed (Debian: libvirt-clients)")
        v = f"virsh -q -c {shlex.quote(self.uri)}"
        lines = ["#!/bin/bash", "# idempotent: what an admin would re-run", "set -eu"]
        for name in self.xmls:
            f = shlex.quote(str(self.work / "xml" / f"{name}.xml"))
            lines += [f"if info=$({v} net-info {name} 2>/dev/null); then",
                      f"  grep -q '^Active: *yes' <<<\"$info\" || {v} net-start {name}",
                      f"  grep -q '^Autostart: *yes' <<<\"$info\" || {v} net-autostart {name}",
                      "else",
                      f"  {v} net-define {f} >/dev/null && {v} net-start {name} >/dev/null"
                      f" && {v} net-autostart {name} >/dev/null",
                      "fi"]
        script = self.work / "virsh-loop.sh"
        script.write_text("\n".join(lines) + "\n")
        change = ["virsh", "-q", "-c", self.uri, "net-update", net_name(0), "modify",
                  "ip-dhcp-host", host_xml(self.moved), "--live", "--config"]
        return Peer("virsh loop", lambda: run(["bash", str(script)]),
                    lambda: run(["bash", str(script)]), lambda: run(change))

    # -- Ansible -------------------------------------------------------------
    def ansible(self) -> Peer:
        names = json.dumps(list(self.xmls))
        xml_dir = json.dumps(str(self.work / "xml"))
        task = "    community.libvirt.virt_net:\n      uri: " + json.dumps(self.uri) + "\n"
        play = (
            "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
            f"  vars:\n    nets: {names}\n    xml_dir: {xml_dir}\n  tasks:\n"
            "  - name: define\n" + task
            + "      command: define\n      name: \"{{ item }}\"\n"
            "      xml: \"{{ lookup('file', xml_dir + '/' + item + '.xml') }}\"\n"
            "    loop: \"{{ nets }}\"\n"
            "  - name: start\n" + task + "      state: active\n      name: \"{{ item }}\"\n"
            "    loop: \"{{ nets }}\"\n"
            "  - name: autostart\n" + task + "      autostart: true\n      name: \"{{ item }}\"\n"
            "    loop: \"{{ nets }}\"\n")
        (self.work / "play.yml").write_text(play)
        change = ("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                  "  - name: move one reservation\n" + task
                  + f"      command: modify\n      name: {net_name(0)}\n"
                  f"      xml: {json.dumps(host_xml(self.moved))}\n")
        (self.work / "change.yml").write_text(change)

        def playbook(f: str) -> Callable[[], Proc]:
            argv = [str(self.bin / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                    str(self.work / f)]
            return lambda: run(argv, env=self.env(), cwd=self.work)

        return Peer("Ansible virt_net", playbook("play.yml"), playbook("play.yml"),
                    playbook("change.yml"))

    # -- kcli ----------------------------------------------------------------
    def _kcli_nets(self) -> list[tuple[str, int]]:
        return [(net_name(i), i) for i in range(self.n)]

    def kcli_plan(self) -> Peer:
        lines = []
        for name, i in self._kcli_nets():
            lines += [f"{name}:", "  type: network", f"  cidr: 10.250.{i}.0/24",
                      f"  dhcp_start: 10.250.{i}.100", f"  dhcp_end: 10.250.{i}.199"]
        (self.work / "kcli-plan.yml").write_text("\n".join(lines) + "\n")
        argv = [str(self.bin / "kcli"), "create", "plan", "-f",
                str(self.work / "kcli-plan.yml"), "kvbplan"]
        return Peer("kcli plan", lambda: run(argv, env=self.env(), cwd=self.work),
                    lambda: run(argv, env=self.env(), cwd=self.work), None,
                    "no DHCP reservations: kcli reserves addresses per VM, not per network")

    def kcli_loop(self) -> Peer:
        k = shlex.quote(str(self.bin / "kcli"))
        lines = ["#!/bin/bash"]
        for name, i in self._kcli_nets():
            lines.append(f"{k} create network -c 10.250.{i}.0/24 -P dhcp_start=10.250.{i}.100"
                         f" -P dhcp_end=10.250.{i}.199 {name} || true")
        script = self.work / "kcli-loop.sh"
        script.write_text("\n".join(lines) + "\n")
        return Peer("kcli loop", lambda: run(["bash", str(script)], env=self.env()),
                    lambda: run(["bash", str(script)], env=self.env()), None,
                    "no DHCP reservations, as kcli plan")


def peer_list(jobs: PeerJobs, names: list[str]) -> list[Peer]:
    make = {"virsh": jobs.virsh, "ansible": jobs.ansible, "kcli-plan": jobs.kcli_plan,
            "kcli-loop": jobs.kcli_loop}
    return [make[n]() for n in names]


def virsh_version() -> str:
    p = subprocess.run(["virsh", "--version"], capture_output=True, text=True, check=False)
    return p.stdout.strip()
