"""The how-to pages' Python examples run as written (each page's blocks share one namespace)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "howto"
# Every how-to page with python blocks, except those that say they are not executed (they train
# for minutes or need a GPU): a page opts out with the line ``<!-- docs-test: skip -->``.
SKIP = "<!-- docs-test: skip -->"
PAGES = sorted(
    p.name for p in DOCS.glob("*.md") if "```python" in p.read_text() and SKIP not in p.read_text()
)


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("name", PAGES)
def test_howto_examples_run(name: str) -> None:
    page = DOCS / name
    blocks = python_blocks(page)
    assert blocks, f"{name} has no python examples"
    namespace: dict = {"__name__": f"docs_{name}"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # name the failing block
            raise AssertionError(f"{name}, python block {i} failed: {exc!r}\n{block}") from exc
