"""The documentation pipeline itself: it must find every example, and it must fail.

A docs example that silently stops running is worse than none, so these tests check
the pipeline from both sides:

* on the real pages: every concept page has examples, Sybil finds every ``>>>`` line
  that is in a doctest block, and setup and cleanup blocks stand where Sphinx would
  run them;
* on temporary pages, under *both* runners (pytest with Sybil, and Sphinx's doctest
  builder): a correct page passes, and a page with a wrong output, a leak or a
  skipped example fails or reports the skip visibly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from docs_runner import DOCS, DocsError, count_doctests, examples_in

ROOT = DOCS.parent
CONF = ROOT / "conf"
CONCEPT_PAGES = sorted((DOCS / "concepts").glob("*.md"))
ALL_PAGES = sorted(DOCS.rglob("*.md"))

FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\{(?P<directive>[\w-]+)\}")


def doctest_lines(text: str) -> int:
    """Count ``>>>`` lines inside ```` ```{doctest} ```` fences, without Sybil."""
    count, fence = 0, None
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None:
            match = FENCE_OPEN.match(stripped)
            if match and match.group("directive") == "doctest":
                fence = match.group("fence")
        elif stripped == fence:
            fence = None
        elif re.match(r">>>( |$)", stripped) and not re.match(r">>>\s*(#|$)", stripped):
            count += 1
    return count


# -- the real pages ----------------------------------------------------------------


def test_docs_every_concept_page_has_examples() -> None:
    assert CONCEPT_PAGES, "no concept pages found"
    empty = [page.name for page in CONCEPT_PAGES if count_doctests(page) == 0]
    assert not empty, f"concept pages without examples: {empty}"


def test_docs_first_chapter_has_at_least_40_examples() -> None:
    counts = {page.name: count_doctests(page) for page in CONCEPT_PAGES}
    first_chapter = ("socket-api.md", "error-handling.md", "errors.md")
    assert sum(counts[name] for name in first_chapter) >= 40, counts


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_sybil_finds_every_doctest_line(page: Path) -> None:
    assert count_doctests(page) == doctest_lines(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_setup_and_cleanup_blocks_stand_where_sphinx_runs_them(page: Path) -> None:
    # Sphinx runs {testsetup} before and {testcleanup} after all examples, wherever
    # they stand; Sybil runs blocks in page order.  They agree only if the page
    # puts them first and last.
    directives = [
        match.group("directive")
        for line in page.read_text(encoding="utf-8").splitlines()
        if (match := FENCE_OPEN.match(line.strip()))
        and match.group("directive") in {"testsetup", "doctest", "testcleanup"}
    ]
    kinds = "".join({"testsetup": "s", "doctest": "d", "testcleanup": "c"}[d] for d in directives)
    assert re.fullmatch(r"s*d*c*", kinds), f"{page.name}: order of blocks is {kinds}"


def test_doctest_lines_counter_counts_only_doctest_fences() -> None:
    text = "```python\n>>> 1\n```\n```{doctest}\n>>> 1\n1\n>>> # note\n>>> 2\n2\n```\n>>> 3\n"
    assert doctest_lines(text) == 2


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        ("```{testcode}\nprint(1)\n```\n", "use {doctest} blocks, not {testcode}"),
        ("```{doctest}\n:options: +SKIP\n\n>>> 1\n1\n```\n", "unsupported doctest option"),
        ("```{doctest} mygroup\n>>> 1\n1\n```\n", "doctest groups are not used"),
    ],
)
def test_docs_runner_refuses_what_sphinx_would_run_differently(
    tmp_path: Path, block: str, complaint: str
) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n" + block, encoding="utf-8")
    with pytest.raises(DocsError, match=re.escape(complaint)):
        examples_in(page)


# -- temporary pages, under both runners ---------------------------------------------

GOOD = """\
    ```{doctest}
    >>> import socket
    >>> with socket.socket() as s:
    ...     s.bind(("127.0.0.1", 0))
    ...     s.getsockname()[0]
    '127.0.0.1'
    ```
"""

WRONG_OUTPUT = """\
    ```{doctest}
    >>> 6 * 7
    41
    ```
"""

LEAKS = """\
    ```{doctest}
    >>> import os, socket, threading
    >>> leaked_socket = socket.socket()
    >>> threading.Thread(target=threading.Event().wait, args=(30,), daemon=True).start()
    >>> if os.fork() == 0: os._exit(0)
    ```
"""

SKIPPED = """\
    ```{doctest}
    :skipif: True

    >>> raise SystemExit("a skipped example must not run")
    ```

    ```{doctest}
    >>> 1 + 1
    2
    ```
"""


def _page(body: str) -> str:
    return "# A page\n\n" + textwrap.dedent(body)


def _run(args: list[str], cwd: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(CONF), str(ROOT / "tests")]))
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def run_pytest(tmp_path: Path, body: str) -> tuple[int, str]:
    """Run pytest with the site's Sybil configuration on one temporary page."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "page.md").write_text(_page(body), encoding="utf-8")
    (tmp_path / "conftest.py").write_text(
        "from pathlib import Path\n"
        "from docs_runner import make_sybil\n"
        "pytest_collect_file = make_sybil(Path(__file__).parent / 'docs').pytest()\n",
        encoding="utf-8",
    )
    return _run(["-m", "pytest", "-p", "no:cacheprovider", "-rs", "docs"], tmp_path)


def run_sphinx_doctest(tmp_path: Path, body: str) -> tuple[int, str]:
    """Run ``sphinx-build -b doctest`` with the site's configuration on one page."""
    pytest.importorskip("sphinx", reason="the docs extra (Sphinx) is not installed")
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text(_page(body), encoding="utf-8")
    return _run(
        ["-m", "sphinx", "-b", "doctest", "-c", str(CONF), str(src), str(tmp_path / "out")],
        tmp_path,
    )


RUNNERS = [
    pytest.param(run_pytest, id="pytest"),
    pytest.param(run_sphinx_doctest, id="sphinx"),
]


@pytest.mark.parametrize("run", RUNNERS)
def test_pipeline_correct_page_passes(tmp_path: Path, run: object) -> None:
    code, output = run(tmp_path, GOOD)  # type: ignore[operator]
    assert code == 0, output


@pytest.mark.parametrize("run", RUNNERS)
def test_pipeline_wrong_output_fails(tmp_path: Path, run: object) -> None:
    code, output = run(tmp_path, WRONG_OUTPUT)  # type: ignore[operator]
    assert code != 0, output
    assert "Expected:" in output
    assert "41" in output
    assert "42" in output


@pytest.mark.parametrize("run", RUNNERS)
def test_pipeline_leaking_page_fails_and_names_each_leak(tmp_path: Path, run: object) -> None:
    code, output = run(tmp_path, LEAKS)  # type: ignore[operator]
    assert code != 0, output
    assert "ResourceLeakError: left behind:" in output
    assert re.search(r"file descriptor \d+ -> socket:", output), output
    assert "thread Thread-" in output
    assert re.search(r"child process \d+", output), output


def test_pipeline_skip_is_visible_under_pytest(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, SKIPPED)
    assert code == 0, output
    assert "1 passed, 1 skipped" in output
    assert "page.md:6: skipif: True" in output


def test_pipeline_skip_is_visible_under_sphinx(tmp_path: Path) -> None:
    code, output = run_sphinx_doctest(tmp_path, SKIPPED)
    assert code == 0, output
    assert re.search(r"SKIPPED \S*index\.md:\d+ \(skipif: True\)", output), output
    # doctest's summary line: "1 passed and 0 failed." up to Python 3.12, "1 passed." from 3.13.
    assert re.search(r"^1 passed( and 0 failed)?\.$", output, re.MULTILINE), output
