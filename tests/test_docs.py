"""Every ```python block of the README (and of docs/, when there is one) runs as written,
each in a fresh namespace, and its assertions hold."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if (ROOT / "docs").exists() else [
    ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for path in FILES:
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            yield pytest.param(match.group(1), id=f"{path.relative_to(ROOT)}[{i}]")


def test_there_are_code_blocks():
    assert len(list(blocks())) >= 5


@pytest.mark.parametrize("code", list(blocks()))
def test_code_block_runs(code):
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc_block__"})
