"""The README and docs/ send readers only to what is there: every relative link and
image names a file of the repository, every #anchor a heading of its page, every
*.md named in prose exists. (A link that worked on a maintainer's machine, to a file
that was never committed, is invisible until a reader clicks it.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target), ![alt](target), and reference definitions `[name]: target`
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
                   r"|^\s*\[[^\]\n]+\]:\s*(\S+)", re.M)
_CODE = re.compile(r"^```.*?^```|^(?: {4}|\t)[^\n]*|`[^`\n]*`", re.M | re.S)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def links(text: str) -> list[str]:
    prose = _CODE.sub("", text)      # (code shows paths of the host, not of this repo)
    return [a or b for a, b in _LINK.findall(prose)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped,
    spaces as '-'."""
    text = _CODE.sub("", page.read_text())
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
            for h in _HEADING.findall(text)}


def test_the_link_finder_finds_links() -> None:
    assert links("a [b](c.md) ![d](e/f.png \"t\") `[g](h)`\n[i]: j.md\n") == [
        "c.md", "e/f.png", "j.md"]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_exist(page: Path) -> None:
    found = links(page.read_text())
    assert page.name != "README.md" or len(found) >= 5
    missing = []
    for target in found:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):      # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or ROOT not in file.parents:
            missing.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to what is not there: {missing}"


def _md_names() -> set[str]:
    """Names of the repository's Markdown pages (not the venv's, build's or caches')."""
    out = set()
    for _top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "dist")]
        out.update(f for f in files if f.endswith(".md"))
    return out


def test_pages_named_in_prose_exist() -> None:
    """A page named without a link (`see DESIGN.md`) must be in the repository too."""
    names = _md_names()
    assert {"README.md", "SPEC.md"} <= names
    for page in PAGES:
        prose = _CODE.sub("", page.read_text())
        unknown = {m for m in re.findall(r"\b[\w.-]+\.md\b", prose) if m not in names}
        assert not unknown, f"{page.relative_to(ROOT)} names {sorted(unknown)}: not here"
