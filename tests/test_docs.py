"""Every ```python block of the README and of the documentation (docs/) runs as written,
each in a fresh namespace, and its assertions hold; the site builds (mkdocs, strict:
a warning fails) with every page and the API reference in it."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
FILES = [ROOT / "README.md", *PAGES]
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


def test_site_builds_without_warnings(tmp_path):
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(site)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    for page in PAGES:  # every page is built (mkdocs warns, hence fails, on pages left out of the nav)
        rel = page.relative_to(ROOT / "docs").with_suffix("")
        built = site / ("index.html" if rel.name == "index" else rel / "index.html")
        assert built.exists(), f"{page} was not built"
    api = (site / "api" / "index.html").read_text()
    for name in ("qnjax.minimize", "qnjax.lbfgs", "qnjax.Status", "qnjax.linesearch.MoreThuente", "qnjax.plot"):
        assert name in api, f"{name} missing from the API reference"
    assert "Minimise" in api and "bounds" in api  # the docstrings themselves, not only the headings
