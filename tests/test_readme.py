"""The README's Python examples run as written, and every page it (or a docs page) links to exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def block(marker: str) -> str:
    return re.search(rf"<!-- {marker}.*?-->\n```python\n(.*?)```", README, re.S).group(1)


def test_the_library_example_runs(capsys):
    exec(compile(block("library example"), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["gcd", "join"]


def test_the_compose_example_runs():
    code = block("compose example").replace("/path/to/entrgi/conf", str(ROOT / "conf"))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["cfg"].method.name == "aps" and scope["cfg"].sampler.temperature > 0


def relative_links(page: Path) -> list[str]:
    """The targets of the page's Markdown links that are files of this repository (anchors dropped)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_to_a_page_of_the_repository_exists(page):
    missing = [t for t in relative_links(page) if t and not (page.parent / t).exists()]
    assert missing == []


def test_the_front_page_links_every_docs_page_it_replaced():
    for name in ("running", "judges-and-benchmarks", "loading-models", "post-training", "extending"):
        assert f"(docs/{name}.md)" in README
