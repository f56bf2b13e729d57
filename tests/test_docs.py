"""The README, the manual in docs/, bench/README.md and the changelog name only what the
repository has: every relative link and every file path in inline code exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
# Made by the benchmarks and git-ignored, so a fresh checkout lacks them.
MADE_BY_RUNS = ("bench/data", "bench/results")

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\s]+)`")
_REPO_PATH = re.compile(
    r"(?:dmp_cli|dmp_tasks|tests|bench|deploy|docs|\.ci)/[\w./@-]*|[\w.-]+\.(?:md|yml|toml)"
)


def _prose(page: Path) -> str:
    return _FENCE.sub("", page.read_text())


def _exists(path: str) -> bool:
    target = ROOT / path.rstrip("/")
    return target.exists() or target.with_suffix(".py").exists() or Path(f"{target}.py").exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(page: Path) -> None:
    links = [link for link in _LINK.findall(_prose(page)) if "://" not in link]
    for link in links:
        path = link.partition("#")[0]
        if path:
            assert (page.parent / path).exists(), f"{page.name}: {link}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_named_in_code_exist(page: Path) -> None:
    named = [
        code
        for code in _CODE.findall(_prose(page))
        if _REPO_PATH.fullmatch(code) and "*" not in code and not code.startswith(MADE_BY_RUNS)
    ]
    missing = [path for path in named if not _exists(path)]
    assert not missing, f"{page.name} names files the repository lacks: {missing}"


def test_the_checks_above_see_a_missing_file() -> None:
    assert _REPO_PATH.fullmatch("docs/nowhere.md") and not _exists("docs/nowhere.md")
    assert _exists("dmp_tasks/executor") and _exists("dmp_cli/store/")


def test_the_readme_is_short_and_starts_with_its_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert "pip install" in blocks[0] and "dmp manifest --fetch" in blocks[0]
    assert blocks[1] == "bash .ci/run\n"
    assert (ROOT / ".ci" / "run").is_file()


def test_mkdocs_builds_the_pages_in_docs() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", config, re.MULTILINE)
    assert sorted(nav) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))
