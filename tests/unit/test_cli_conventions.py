"""The conventions an admin expects of a CLI (issue 19, item 7), each run as a user runs
it: shell completion through a real bash, the man page, `-` for standard input, a spec
split over a folder's files, doctor's words, and render -o cleaning up after itself.
(--version: test_cli_basic; status and confirm's countdown: test_cli_status.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kvmnet.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
KVMNET = Path(sys.executable).parent / "kvmnet"
T = "test:///default"

NETS = """\
networks:
  kvt-ub-a:
    mode: nat
    ipv4: {address: 10.154.1.1/24, dhcp: 10.154.1.100-10.154.1.199}
"""
GUESTS = """\
guests:
  web1:
    interfaces:
      - {network: kvt-ub-a, ipv4: 10.154.1.10}
      - {network: kvt-ub-a}
"""


def kvmnet(*args: str, stdin: str | None = None, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(KVMNET), *args], input=stdin, capture_output=True, text=True,
                         cwd=cwd, env=env, check=False, timeout=60)
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "spec.d"
    d.mkdir()
    (d / "10-networks.yaml").write_text(NETS)
    (d / "20-guests.yaml").write_text(GUESTS)
    (d / "notes.txt").write_text("not: [yaml\n")   # only *.yaml / *.yml are read
    return d


# -- completion -----------------------------------------------------------------------

def bash_complete(line: str, tmp_path: Path) -> list[str]:
    """What bash offers for `line` + TAB, through the script `kvmnet completion bash`
    prints (the same calls bash makes: COMP_WORDS, COMP_CWORD, the function)."""
    script = tmp_path / "kvmnet.bash"
    script.write_text(kvmnet("completion", "bash").stdout)
    prog = (f'PATH={KVMNET.parent}:$PATH; source {script}; '
            f'COMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); '
            f'_kvmnet_completion kvmnet; printf "%s\\n" "${{COMPREPLY[@]}}"')
    res = subprocess.run(["bash", "--norc", "-c", prog], capture_output=True, text=True,
                         cwd=tmp_path, check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    return [x for x in res.stdout.splitlines() if x]


def test_bash_completes_commands_options_and_names(folder: Path, tmp_path: Path) -> None:
    assert bash_complete("kvmnet lea", tmp_path) == ["leases"]
    assert bash_complete("kvmnet show --no", tmp_path) == ["--no-headers"]
    # network names: live ones at -c URI, or the spec's (a folder counts)
    assert bash_complete(f"kvmnet leases -c {T} ''", tmp_path) == ["default"]
    assert bash_complete(f"kvmnet plan {folder} --adopt kvt", tmp_path) == ["kvt-ub-a"]
    assert bash_complete(f"kvmnet mac --spec {folder} --for ''", tmp_path) == [
        "web1/0", "web1/1"]
    # an unreachable URI completes nothing, and prints nothing into the prompt
    assert bash_complete("kvmnet leases -c nosuch:///x ''", tmp_path) == []


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_call_kvmnet_back(shell: str, folder: Path) -> None:
    """The scripts zsh and fish load, and the answer kvmnet gives them (the way each
    script asks: _TYPER_COMPLETE_ARGS); with the shell installed, through the shell."""
    script = kvmnet("completion", shell).stdout
    assert f"_KVMNET_COMPLETE=complete_{shell}" in script
    env = {"PATH": str(KVMNET.parent), "_KVMNET_COMPLETE": f"complete_{shell}",
           "_TYPER_COMPLETE_ARGS": f"kvmnet mac --spec {folder} --for w",
           "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    got = kvmnet(env=env).stdout
    assert "web1/0" in got and "web1/1" in got
    if shutil.which(shell) is None:
        return  # (not installed here: the protocol above is what the script runs)
    check = ["zsh", "-n"] if shell == "zsh" else ["fish", "--no-execute"]
    assert subprocess.run([*check], input=script, text=True, check=False).returncode == 0


# -- the man page ---------------------------------------------------------------------

def test_the_checked_in_man_page_is_the_clis() -> None:
    page = kvmnet("man").stdout
    assert page == (ROOT / "docs/kvmnet.1").read_text(), (
        "docs/kvmnet.1 is out of date: .venv/bin/kvmnet man > docs/kvmnet.1")
    from kvmnet.cli.main import COMMANDS

    for name in COMMANDS:
        assert f'.SS "kvmnet {name} ' in page, name
    assert "\\-\\-no\\-headers" in page and ".SH EXIT STATUS" in page


def test_the_man_page_renders_without_a_warning() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    res = subprocess.run(["groff", "-man", "-ww", "-Tutf8", str(ROOT / "docs/kvmnet.1")],
                         capture_output=True, text=True, check=False)
    assert (res.returncode, res.stderr) == (0, "")
    text = re.sub(".\x08", "", res.stdout)   # (the terminal's bold: overstrikes)
    assert "kvmnet leases [OPTIONS] [[NETWORK]]" in text and "--no-headers" in text


# -- the spec from stdin, or from a folder --------------------------------------------

def test_dash_reads_the_spec_from_stdin() -> None:
    res = kvmnet("validate", "-", stdin=NETS + GUESTS)
    assert (res.returncode, res.stdout) == (0, "<stdin>: valid (1 network(s), 1 guest(s), "
                                                "0 host bridge(s))\n")
    res = kvmnet("validate", "-", stdin=NETS.replace("nat", "natt"))
    assert res.returncode == 1
    assert res.stderr.startswith("<stdin>:3:11: error: networks.kvt-ub-a.mode: ")
    owned = "owner: kvt-ub\n" + NETS
    res = kvmnet("plan", "-", "-c", T, stdin=owned)
    assert res.returncode == 0 and "network.create network/kvt-ub-a" in res.stdout
    # apply reads it once (plan and apply of one run), then asks nothing: --yes
    res = kvmnet("apply", "-", "-c", T, "--yes", stdin=owned)
    assert res.returncode == 0 and "Applied 1 change(s)" in res.stdout


NO_OWNER = ("says no owner:, and has no file path to take one from (kvmnet records the "
            "owner on every network and NIC it makes; the path of a pipe differs from run "
            "to run): write owner: NAME at the top of the spec")


@pytest.mark.parametrize("argv", [["plan", "-", "-c", T], ["apply", "-", "-c", T, "--yes"],
                                  ["destroy", "-", "-c", T, "--yes"],
                                  ["mac", "--spec", "-", "--for", "web1/0"]])
def test_a_spec_from_stdin_must_name_its_owner(argv: list[str]) -> None:
    """Its owner cannot be its path (there is none that stays): every command that needs
    the owner refuses it, saying what to write, and changes nothing; validate needs none."""
    res = kvmnet(*argv, stdin=NETS + GUESTS)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == (f"<stdin>: error: a spec read from standard input {NO_OWNER}\n"
                          "1 error(s); nothing was changed.\n")
    res = kvmnet(*argv, "--json", stdin=NETS + GUESTS)
    doc = json.loads(res.stdout)
    assert (res.returncode, doc["ok"]) == (1, False)
    assert [(p["file"], p["hint"]) for p in doc["problems"]] == [
        ("<stdin>", "write owner: NAME at the top of the spec")]
    assert kvmnet("validate", "-", stdin=NETS + GUESTS).returncode == 0


def test_a_spec_from_a_pipe_must_name_its_owner() -> None:
    """/dev/stdin (and a shell's <(...)) resolves to a new pipe:[N] each run: as `-`."""
    res = kvmnet("plan", "/dev/stdin", "-c", T, stdin=NETS)
    assert res.returncode == 1
    assert res.stderr.startswith(f"/dev/stdin: error: a spec read from a pipe or a device "
                                 f"{NO_OWNER}\n"), res.stderr
    res = kvmnet("plan", "/dev/stdin", "-c", T, stdin="owner: kvt-ub\n" + NETS)
    assert res.returncode == 0 and "network.create network/kvt-ub-a" in res.stdout


def test_a_folder_is_one_spec(folder: Path) -> None:
    res = kvmnet("validate", str(folder))
    assert (res.returncode, res.stdout) == (0, f"{folder}: valid (1 network(s), 1 guest(s), "
                                                "0 host bridge(s))\n")
    res = kvmnet("plan", str(folder), "-c", T)
    assert res.returncode == 0
    assert "+ reservation for web1 (" in res.stdout   # a guest's file, a network's file
    # a warning about a guest points into the guests' file
    assert res.stderr.startswith(f"{folder}/20-guests.yaml:2:3: warning: guests.web1: ")


def test_errors_in_a_folder_point_into_the_right_file(folder: Path) -> None:
    (folder / "30-more.yaml").write_text(
        "networks:\n  kvt-ub-a:\n    mode: route\n  kvt-ub-b:\n    mode: isolated\n"
        "    mtu: 20\n")
    (folder / "20-guests.yaml").write_text(GUESTS.replace("- {network: kvt-ub-a}",
                                                          "- {network: kvt-ub-c}"))
    res = kvmnet("validate", str(folder), "--json")
    assert res.returncode == 1
    got = [(Path(p["file"]).name, p["line"], p["col"], p["path"])
           for p in json.loads(res.stdout)["problems"]]
    assert got == [("20-guests.yaml", 5, 19, "guests.web1.interfaces.1.network"),
                   ("30-more.yaml", 2, 3, "networks.kvt-ub-a"),
                   ("30-more.yaml", 6, 10, "networks.kvt-ub-b.mtu")]
    dup = json.loads(res.stdout)["problems"][1]["message"]
    assert dup == (f"networks.kvt-ub-a: also in {folder}/10-networks.yaml:2: define it "
                   "in one file only")


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    res = kvmnet("validate", str(tmp_path))
    assert res.returncode == 1
    assert res.stderr.startswith(f"{tmp_path}: error: a folder with no spec in it")


# -- doctor ----------------------------------------------------------------------------

def test_doctor_says_it_reads_only_and_what_test_uris_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "lan.yaml"
    spec.write_text("host:\n  bridges:\n    kvtubbr0: {ports: [kvtubnic0]}\n"
                    "networks:\n  kvt-ub-lan: {mode: bridge, bridge: kvtubbr0}\n")
    main(["doctor", str(spec), "-c", T])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("kvmnet doctor reads only: it changes nothing; each fix is for you "
                        "to run.")
    assert lines[1].startswith(f"note: {T} is libvirt's test driver")
    assert "host checks (forwarding, firewall, bridges, MTUs) are of this machine's real " \
           "host networking" in lines[1]
    # the fix it suggests runs against the same URI the user asked about
    assert f"       fix: kvmnet apply {spec} -c {T}   # creates host.bridges.kvtubbr0" in lines


# -- render -o -------------------------------------------------------------------------

def test_render_into_a_folder_removes_its_own_stale_files_only(tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(NETS + "  kvt-ub-b: {mode: isolated}\n  kvt-ub-c: {mode: isolated}\n")
    one = tmp_path / "one.yaml"
    one.write_text(NETS)
    out = tmp_path / "out"
    assert kvmnet("render", str(two), "-o", str(out)).returncode == 0
    assert sorted(p.name for p in (out / "networks").iterdir()) == [
        "kvt-ub-a.xml", "kvt-ub-b.xml", "kvt-ub-c.xml"]
    (out / "networks" / "mine.xml").write_text("<mine/>")       # the user's own file
    (out / "networks" / "kvt-ub-c.xml").write_text("<edited/>")  # kvmnet's, changed
    res = kvmnet("render", str(one), "-o", str(out))
    assert res.returncode == 0
    assert "removed 1 the last render wrote and this one does not (networks/kvt-ub-b.xml)" \
        in res.stdout
    assert f"note: kept {out}/networks/kvt-ub-c.xml" in res.stderr
    assert sorted(p.name for p in (out / "networks").iterdir()) == [
        "kvt-ub-a.xml", "kvt-ub-c.xml", "mine.xml"]
    assert (out / "networks" / "mine.xml").read_text() == "<mine/>"
    manifest = json.loads((out / ".kvmnet-render.json").read_text())
    assert sorted(manifest["files"]) == ["networks/kvt-ub-a.xml"]
