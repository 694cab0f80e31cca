"""The documentation holds together: README.md stays short, every relative link in README.md and docs/
points to a file that exists, every page under docs/ is reachable from docs/README.md, and nothing in
the repository points to notes or trackers a reader of the repository does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...

# References to documents outside the repository (a design note, a style guide, an issue tracker, notes
# kept elsewhere): a reader of the repository cannot follow them.
OUTSIDE = [re.compile(pattern) for pattern in (
    r"DESIGN(\.md| §)",
    r"\bSTYLE \d",
    r"[Ii]ssue \d+",
    r"shared\s+folder",
    r"note of \d{4}-\d{2}-\d{2}",
    r"SPECS\.md",
    r"shared[/]vectors",  # (the brackets keep this line from matching itself)
)]
# Captured third-party data quotes its sources' own words (their READMEs, issue numbers): the files under
# tests/frames/ are left out, but not the READMEs there, which are ours.
THIRD_PARTY = "tests/frames/"
OURS = ".md"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def links(page: Path) -> list[str]:
    """The relative link targets of a Markdown page, without their anchors (code blocks and spans left out)."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    targets = []
    for target in LINK.findall(text):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def repository_files() -> list[Path]:
    """Every file git tracks, and the new ones it would (not ignored), that exist."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [ROOT / name for name in sorted(set(listed))
            if name and not (name.startswith(THIRD_PARTY) and not name.endswith(OURS)) and (ROOT / name).is_file()]


def test_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move the details into docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_to_files(page: Path) -> None:
    broken = [target for target in links(page) if not (page.parent / target).exists()]
    assert broken == [], f"{page.relative_to(ROOT)}: no such file for {broken}"


def test_every_docs_page_is_linked_from_the_index() -> None:
    index = DOCS / "README.md"
    linked = {(index.parent / target).resolve() for target in links(index)}
    orphans = [str(page.relative_to(ROOT)) for page in sorted(DOCS.rglob("*.md"))
               if page != index and page.resolve() not in linked]
    assert orphans == [], f"not linked from docs/README.md: {orphans}"


def test_no_reference_to_documents_outside_the_repository() -> None:
    found = []
    for path in repository_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:  # binary (the recorded days, ...)
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert found == [], "references to documents a reader of the repository does not have:\n" + "\n".join(found)
