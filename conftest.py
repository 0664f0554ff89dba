"""pytest configuration at the root: collect the site's examples from docs/.

Each ``>>>`` example in a page under docs/ becomes a pytest item, run with the same
flags, setup and leak check as ``sphinx-build -b doctest`` (see tests/docs_runner.py
and conf/doctest_env.py).  At the end of the run, a table reports how many examples
each page ran, passed and skipped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from docs_runner import DOCS, make_sybil

pytest_collect_file = make_sybil().pytest()

# Importing it runs the command line.
collect_ignore = ["tcpref/__main__.py"]

_outcomes: defaultdict[str, Counter[str]] = defaultdict(Counter)


def pytest_runtest_logreport(report: Any) -> None:
    path = Path(str(report.fspath))
    if path.suffix != ".md":
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _outcomes[str(path.resolve().relative_to(DOCS.parent))][report.outcome] += 1
    elif report.when == "teardown" and report.outcome != "passed":
        _outcomes[str(path.resolve().relative_to(DOCS.parent))]["page cleanup failed"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    terminalreporter.section("documentation examples per page")
    for page in sorted(_outcomes):
        counts = _outcomes[page]
        ran = counts["passed"] + counts["failed"]
        detail = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
        terminalreporter.write_line(f"{page}: {ran} ran ({detail})")
