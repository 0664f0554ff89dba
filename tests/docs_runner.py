"""Run the documentation's examples under pytest, with the rules Sphinx uses.

Sybil finds the examples in each page; this module teaches it the parts of Sphinx's
doctest extension that the site uses, and refuses the rest, so that an example can
never pass under one runner and be ignored by the other:

* ```` ```{doctest} ```` blocks, with no group argument and only the ``:skipif:`` and
  ``:hide:`` options.  ``:skipif:`` is evaluated over the names the global setup
  defines for it (``doctest_env.SKIP_NAMES``), as Sphinx sees them.
* ```` ```{testsetup} ```` and ```` ```{testcleanup} ```` blocks.  Sphinx runs them
  first and last whatever their place, so ``tests/test_docs_pipeline.py`` checks
  they stand before the first and after the last example.
* ```` ```{testcode} ```` and ```` ```{testoutput} ```` are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import doctest_env
import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.doctest import DocTestEvaluator
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.abstract import DocTestStringParser
from sybil.parsers.myst.lexers import DirectiveLexer

DOCS = Path(__file__).resolve().parent.parent / "docs"
SUPPORTED_OPTIONS = {"skipif", "hide"}
REFUSED_DIRECTIVES = re.compile(r"^\s*(```+|:::+)\s*\{(testcode|testoutput)\}", re.MULTILINE)


class DocsError(ValueError):
    """A page uses a doctest feature that the two runners would treat differently."""


class SkipIf:
    """Wrap an evaluator: skip the example, visibly, when the condition holds."""

    def __init__(self, condition: str, evaluator: Any) -> None:
        self.condition = condition
        self.evaluator = evaluator

    def __call__(self, example: Example) -> Any:
        # The names GLOBAL_SETUP defines for conditions, without running it: running
        # it here, in the middle of a page, would cancel the page's watchdog.
        should_skip = eval(self.condition, dict(doctest_env.SKIP_NAMES))
        if should_skip:
            reason = doctest_env.skip_reason(self.condition)
            pytest.skip(f"{example.path}:{example.line}: {reason}")
        return self.evaluator(example)


class DoctestDirectiveParser:
    """Yield one region per ``>>>`` example in each ```` ```{doctest} ```` block."""

    def __init__(self) -> None:
        self.lexer = DirectiveLexer("doctest")
        self.string_parser = DocTestStringParser(DocTestEvaluator(doctest_env.OPTIONFLAGS))

    def __call__(self, document: Document) -> Iterable[Region]:
        for lexed in self.lexer(document):
            line = document.line_column(lexed.start)
            if lexed.lexemes.get("arguments", "").strip():
                raise DocsError(f"{line}: doctest groups are not used on this site")
            options: dict[str, str] = lexed.lexemes.get("options", {})
            unknown = set(options) - SUPPORTED_OPTIONS
            if unknown:
                raise DocsError(f"{line}: unsupported doctest option(s) {sorted(unknown)}")
            source = lexed.lexemes["source"]
            for region in self.string_parser(source, document.path):
                region.adjust(lexed, source)
                if "skipif" in options:
                    region.evaluator = SkipIf(options["skipif"], region.evaluator)
                yield region


class SetupCodeParser:
    """Run ```` ```{testsetup} ```` or ```` ```{testcleanup} ```` code as it stands."""

    def __init__(self, directive: str) -> None:
        self.lexer = DirectiveLexer(directive)
        self.evaluator = PythonEvaluator()

    def __call__(self, document: Document) -> Iterable[Region]:
        for lexed in self.lexer(document):
            yield Region(lexed.start, lexed.end, lexed.lexemes["source"], self.evaluator)


def refuse_unsupported(document: Document) -> Iterable[Region]:
    """A parser that finds nothing, but fails on directives only Sphinx would run."""
    match = REFUSED_DIRECTIVES.search(document.text)
    if match:
        where = document.line_column(match.start())
        raise DocsError(f"{where}: use {{doctest}} blocks, not {{{match.group(2)}}}")
    return ()


# Under pytest, pytest-timeout bounds every example with SIGALRM: the page watchdog,
# another SIGALRM timer, would replace its handler.
doctest_env.PAGE_WATCHDOG = False


def page_setup(namespace: dict[str, Any]) -> None:
    exec(doctest_env.GLOBAL_SETUP, namespace)


def page_teardown(namespace: dict[str, Any]) -> None:
    exec(doctest_env.GLOBAL_CLEANUP, namespace)


def make_sybil(root: Path = DOCS) -> Sybil:
    """The Sybil that collects every Markdown page under the folder ``root``."""
    return Sybil(
        parsers=[
            refuse_unsupported,
            SetupCodeParser("testsetup"),
            DoctestDirectiveParser(),
            SetupCodeParser("testcleanup"),
        ],
        patterns=["*.md"],
        path=str(root.resolve()),
        setup=page_setup,
        teardown=page_teardown,
    )


def examples_in(page: Path) -> list[Example]:
    """Every example pytest would run in ``page``, setup and cleanup blocks included."""
    return list(make_sybil().parse(page).examples())


def count_doctests(page: Path) -> int:
    """How many ``>>>`` examples ``page`` holds, by Sybil's parse."""
    return sum(
        1 for ex in examples_in(page) if isinstance(ex.region.evaluator, (DocTestEvaluator, SkipIf))
    )
