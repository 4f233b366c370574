"""Every ```python block of the README and of the documentation (docs/) runs as written,
each in a fresh namespace, and its assertions hold; the site builds (mkdocs, strict:
a warning fails) with every page and the API reference in it.

The blocks run with x64 off, as a reader's JAX starts. With x64 on, the README and the
pages whose blocks depend on the precision mode run again (mixed precision, the worked
examples, which compare float32 and float64 results); the other pages call the same
API as the unit tests, which run in both modes, so a second run of them would test
compile time, not qnjax (CI time: DEVELOPERS.md).

They run as a reader runs them: in a subprocess without the suite's choice of XLA:CPU's
emitters (the Makefile's XLA_FLAGS), so a solve called directly compiles with qnjax's
options and the reader's own ``jax.jit`` programs with XLA's defaults. (A resumed run
once took other emitters than the run it continued, and only there did it differ.) They
keep the suite's debug build (``conftest.DEBUG_BUILD``: in 262 of the x64-off run's 540 s
they were the longest test): what they check is what a reader's calls compile and what
they print to the page's tolerances, not the optimised build's last bits."""

import os
import pathlib
import re
import subprocess
import sys

import pytest
from conftest import X64, run_pytest, users_xla_flags

AS_A_READER = bool(os.environ.get("QNJAX_TEST_AS_A_READER"))  # set in the subprocess below

ROOT = pathlib.Path(__file__).parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
FILES = [ROOT / "README.md", *PAGES]
BOTH_MODES = {ROOT / "README.md", ROOT / "docs" / "precision.md", *(ROOT / "docs" / "examples").glob("*.md")}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for path in FILES if not X64 else [f for f in FILES if f in BOTH_MODES]:
        for i, match in enumerate(BLOCK.finditer(path.read_text())):
            yield pytest.param(match.group(1), id=f"{path.relative_to(ROOT)}[{i}]")


def test_there_are_code_blocks():
    assert len(list(blocks())) >= 5


@pytest.mark.skipif(not AS_A_READER, reason="runs in test_blocks_run_as_a_reader_runs_them's subprocess")
@pytest.mark.parametrize("code", list(blocks()))
def test_code_block_runs(code):
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc_block__"})


@pytest.mark.skipif(AS_A_READER, reason="this is the subprocess")
def test_blocks_run_as_a_reader_runs_them():
    run, tail = run_pytest("-k", "test_code_block_runs", __file__,
                           env=dict(os.environ, XLA_FLAGS=users_xla_flags(optimised=False),
                                    QNJAX_TEST_AS_A_READER="1"))
    assert run.returncode == 0, tail
    assert f"{len(list(blocks()))} passed" in run.stdout and "skipped" not in run.stdout, tail


@pytest.mark.skipif(X64, reason="the site does not depend on the precision mode: built in the x64-off run")
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
