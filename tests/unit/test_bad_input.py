"""Bad input: every file in tests/data/bad/ and a few generated ones must give
exit 1, every expected FILE:LINE:COL with its message, and no traceback.

A catalogue file starts with one or more lines

    # expect: LINE:COL: <a substring of the message>

and every error kvmnet prints for it must be one of those (all problems of a
file are reported at once, and nothing else is).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmnet.cli.main import main
from kvmnet.errors import Problem, SpecError
from kvmnet.spec.check import check, check_file
from kvmnet.spec.load import MAX_BYTES, load
from lab.catalogue import BAD, CASES, expectations

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
KVMNET = Path(sys.executable).parent / "kvmnet"


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["validate", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def error_lines(stderr: str, file: str) -> list[str]:
    prefix = re.escape(file)
    return [ln for ln in stderr.splitlines() if re.match(rf"{prefix}(:\d+:\d+)?: error: ", ln)]


def assert_clean_failure(rc: int, out: str, err: str) -> None:
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err


# ------------------------------------------------------------------ the catalogue

def test_catalogue_is_big_enough() -> None:
    assert len(CASES) >= 60
    for path in CASES:
        assert expectations(path), f"{path.name} has no '# expect: LINE:COL: ...' line"


def problems_of(path: Path) -> list[Problem]:
    """What validate reports: type errors and the semantic findings of the rest."""
    try:
        return check_file(path)[2]
    except SpecError as e:
        return e.problems


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_catalogue_library(path: Path) -> None:
    """load + check find exactly the expected errors (independent of the CLI's printing)."""
    errors = [p for p in problems_of(path) if p.severity == "error"]
    unmatched = list(errors)
    for line, col, text in expectations(path):
        hits = [p for p in errors if (p.line, p.col) == (line, col) and text in p.message]
        assert hits, f"expected {line}:{col}: {text!r}\n  got:\n    " + "\n    ".join(
            map(str, errors))
        for h in hits:
            if h in unmatched:
                unmatched.remove(h)
    assert not unmatched, "errors the file does not expect:\n  " + "\n  ".join(
        map(str, unmatched))




def _cli_case(p: Path) -> object:
    return pytest.param(p, id=p.stem, marks=[])


@pytest.mark.parametrize("path", [_cli_case(p) for p in CASES])
def test_catalogue(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = validate(capsys, str(path))
    assert_clean_failure(rc, out, err)
    errors = error_lines(err, str(path))
    unmatched = list(errors)
    for line, col, text in expectations(path):
        where = f"{path}:{line}:{col}: error: "
        hits = [e for e in errors if e.startswith(where) and text in e[len(where):]]
        assert hits, f"expected {line}:{col}: {text!r}\n  got:\n    " + "\n    ".join(errors)
        for h in hits:
            if h in unmatched:
                unmatched.remove(h)
    assert not unmatched, "errors the file does not expect:\n  " + "\n  ".join(unmatched)
    assert re.search(rf"^{len(errors)} error\(s\); nothing was changed\.$", err, re.M), err


@pytest.mark.parametrize("path", CASES[:3], ids=[p.stem for p in CASES[:3]])
def test_catalogue_json(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    rc, out, err = validate(capsys, str(path), "--json")
    assert rc == 1 and "Traceback" not in err
    doc = json.loads(out)
    assert doc["ok"] is False
    got = {(p["line"], p["col"]) for p in doc["problems"] if p["severity"] == "error"}
    assert got == {(ln, col) for ln, col, _ in expectations(path)}


@pytest.mark.parametrize("name", ["seed_as_written", "syntax_tab_indent", "name_control_chars"])
def test_catalogue_subprocess(name: str) -> None:
    """The installed entry point: exit 1, messages on stderr, no traceback anywhere."""
    path = BAD / f"{name}.yaml"
    r = subprocess.run([str(KVMNET), "validate", str(path)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert_clean_failure(r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    for line, col, text in expectations(path):
        assert f"{path}:{line}:{col}: error: " in r.stderr
        assert text in r.stderr


def test_control_characters_cannot_forge_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "name_control_chars.yaml"
    rc, _, err = validate(capsys, str(path))
    assert rc == 1
    assert not any(ln.startswith("f.yaml:") for ln in err.splitlines())


# ------------------------------------------------------------------ generated inputs

def test_an_empty_file_is_no_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 19, item 4: an empty file is refused, saying what to write; `networks: {}`
    is the spec that has nothing on purpose."""
    for text in ("", "\n", "# only a comment\n", "---\n"):
        f = tmp_path / "empty.yaml"
        f.write_text(text)
        rc, out, err = validate(capsys, str(f))
        assert rc == 1 and out == ""
        assert f"{f}:1:1: error: the spec is empty: write at least one of networks:, " in err
    f.write_text("networks: {}\n")
    rc, out, err = validate(capsys, str(f))
    assert rc == 0 and f"{f}: valid (0 network(s), 0 guest(s), 0 host bridge(s))" in out


def test_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder is a spec of its *.yaml files (spec.sources): one without any says so."""
    rc, out, err = validate(capsys, str(tmp_path))
    assert_clean_failure(rc, out, err)
    assert f"{tmp_path}: error: a folder with no spec in it: put the spec in one or more " \
        "*.yaml files there" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "nope.yaml"
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert f"{f}: error: no such file" in err


def test_parent_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path through a regular file (NotADirectoryError): say which part is a file."""
    (tmp_path / "spec.yaml").write_text("networks: {}\n")
    f = tmp_path / "spec.yaml" / "more.yaml"
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert f"{f}: error: no such file: {tmp_path / 'spec.yaml'} is a file, not a directory" in err


def _without_root_read(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv so that mode bits apply: as root, drop the capabilities that let root
    read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); otherwise run it as is."""
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is missing: root reads "
                        "chmod-000 files, so there is nothing unreadable to test with")
        caps = "-dac_override,-dac_read_search"
        argv = [setpriv, "--bounding-set", caps, "--inh-caps", caps, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    f = tmp_path / "secret.yaml"
    f.write_text("networks: {}\n")
    f.chmod(0o000)
    yield f
    f.chmod(0o600)


def test_unreadable_file(unreadable: Path) -> None:
    r = _without_root_read([str(KVMNET), "validate", str(unreadable)])
    assert_clean_failure(r.returncode, r.stdout, r.stderr)
    # The CLI's argument check (click) sees it first; load's own message is tested below.
    assert f"'{unreadable}' is not readable" in r.stderr


def test_unreadable_file_load(unreadable: Path) -> None:
    """load() itself, as other callers (and the CLI, if its check went) reach it."""
    code = ("import sys; from kvmnet.errors import SpecError; from kvmnet.spec.load import load\n"
            "try:\n    load(sys.argv[1])\nexcept SpecError as e:\n    print(e)\n")
    r = _without_root_read([sys.executable, "-c", code, str(unreadable)])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith(f"{unreadable}: error: permission denied"), r.stdout


@pytest.mark.parametrize("junk", [
    bytes(range(256)) * 4,
    b"networks:\n  default: {mode: nat}\n\x00\x01\x02\xff\xfe",
    os.urandom(2000) + b"\x00",
], ids=["all-bytes", "yaml-then-nul", "random"])
def test_binary_junk(junk: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "junk.yaml"
    f.write_bytes(junk)
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert "binary data (NUL bytes): this is not a YAML spec file" in err


def test_nul_line_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "junk.yaml"
    f.write_bytes(b"networks:\n  default: {mode: nat}\n\x00")
    rc, _, err = validate(capsys, str(f))
    assert rc == 1 and f"{f}:3:1: error: binary data" in err


def test_invalid_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Latin-1 text (no NUL): the line and the character column of the first bad byte."""
    f = tmp_path / "latin1.yaml"
    f.write_bytes("networks:\n  défaut: {mode: nat}\n  é caf".encode()
                  + "\u00e9: {mode: nat}\n".encode("latin-1"))
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    # column 8 counts characters ('é' before it is 2 bytes), as YAML's columns do
    assert f"{f}:3:8: error: not UTF-8 text (byte 0xe9): save the file as UTF-8" in err


def test_utf16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "utf16.yaml"
    f.write_bytes("networks: {}\n".encode("utf-16"))
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert f"{f}:1:1: error: UTF-16 text: save the file as UTF-8" in err


def test_utf8_bom_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes(b"\xef\xbb\xbf" + SEED.read_bytes())
    rc, _, err = validate(capsys, str(f))
    assert rc == 0, err


def test_ten_megabytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "big.yaml"
    with f.open("w") as fh:
        fh.write("networks:\n")
        line = "  # " + "x" * 95 + "\n"
        fh.write(line * (10 * 1024 * 1024 // len(line)))
    assert f.stat().st_size > MAX_BYTES
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert f"{f}: error: file is 10.0 MiB, larger than 4 MiB" in err


def test_endless_device(capsys: pytest.CaptureFixture[str]) -> None:
    """/dev/zero has no size: the read is bounded all the same (it used to read forever)."""
    rc, out, err = validate(capsys, "/dev/zero")
    assert_clean_failure(rc, out, err)
    assert "/dev/zero: error: input is larger than 4 MiB" in err


def test_pipe(tmp_path: Path) -> None:
    """A spec on a pipe (kvmnet validate <(generate-spec)) is read like a file."""
    r = subprocess.run(["bash", "-c", f'"{KVMNET}" validate <(cat "{SEED}")'],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "valid (3 network(s), 1 guest(s), 1 host bridge(s))" in r.stdout


def test_deeply_nested_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("networks:\n  default:\n    domain: " + "[" * 200 + "]" * 200 + "\n")
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert f"{f}:3:13: error: networks.default.domain: expected a string, got a list" in err
    assert re.search(rf"^{re.escape(str(f))}:3:\d+: error: nesting deeper than 64 levels",
                     err, re.M)


def test_deeply_nested_mappings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "deep.yaml"
    body = "".join("  " * i + f"k{i}:\n" for i in range(200))
    f.write_text("networks:\n  default:\n    domain:\n" + "\n".join(
        "      " + ln for ln in body.splitlines()) + " x\n")
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert f"{f}:4:7: error: networks.default.domain: expected a string, got a mapping" in err
    assert "nesting deeper than 64 levels" in err


def test_extremely_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Far past the YAML parser's own limit: still a message, not a RecursionError."""
    f = tmp_path / "deeper.yaml"
    f.write_text("x: " + "[" * 100_000 + "]" * 100_000 + "\n")
    rc, out, err = validate(capsys, str(f))
    assert_clean_failure(rc, out, err)
    assert "YAML syntax: exceeded maximum nesting depth" in err


def seed_with_networks(n: int) -> str:
    """The seed plus n routed networks, each with its own /24, bridge and DHCP range."""
    extra = []
    for i in range(n):
        a, b = divmod(i, 250)
        net = f"10.{a + 1}.{b}"
        extra.append(
            f"  bulk{i}:\n    mode: route\n    bridge: kb{i}\n"
            f"    ipv4: {{address: {net}.1/24, dhcp: {net}.10-{net}.250}}\n")
    text = SEED.read_text()
    return text.replace("networks:\n", "networks:\n" + "".join(extra), 1)


def test_thousand_networks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "many.yaml"
    f.write_text(seed_with_networks(1000))
    spec, pos = load(f)
    assert len(spec.networks) == 1003
    assert check(spec, pos, str(f)) == []
    rc, out, err = validate(capsys, str(f))
    assert rc == 0, err
    assert "valid (1003 network(s), 1 guest(s), 1 host bridge(s))" in out


# ------------------------------------------------------------------ bad command lines

@pytest.mark.parametrize("argv, message", [
    (["validate"], "Missing argument 'FILE'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["validate", "--frob", "x.yaml"], "No such option: --frob"),
    (["mac", "--count", "0"], "Invalid value for '--count'"),
    (["mac", "--count", "many"], "Invalid value for '--count'"),
    (["mac", "--for", "web1"], "Invalid value for --for: write GUEST/INDEX, e.g. web1/0"),
    (["mac", "--for", "web1/x"], "Invalid value for --for: write GUEST/INDEX"),
    (["mac", "--for", "/0"], "Invalid value for --for: write GUEST/INDEX"),
], ids=["missing-file", "unknown-command", "unknown-option", "count-0", "count-word",
        "for-no-slash", "for-bad-index", "for-no-guest"])
def test_bad_usage(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(argv)
    cap = capsys.readouterr()
    assert_clean_failure(rc, cap.out, cap.err)
    assert "Usage: kvmnet" in cap.err
    assert f"kvmnet: error: {message}" in cap.err
    assert "Try 'kvmnet --help'." in cap.err


def test_bad_usage_subprocess() -> None:
    r = subprocess.run([str(KVMNET), "mac", "--for", "web1"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert_clean_failure(r.returncode, r.stdout, r.stderr)
    assert "write GUEST/INDEX" in r.stderr and r.stdout == ""
