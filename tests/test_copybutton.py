"""Copying an example from the site yields runnable code.

sphinx-copybutton strips prompts and output lines in the browser, with the function
``formatCopyText`` in its ``copybutton_funcs.js``.  ``format_copy_text`` below is a
line-by-line port of that function, fed with the site's real settings from
conf/conf.py, so this test sees exactly the text a reader's clipboard would get.
(tests/test_browser.py clicks the real button in Chromium.)
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from docs_runner import DOCS

CONF = runpy.run_path(str(DOCS.parent / "conf" / "conf.py"))
FENCE = re.compile(r"^(`{3,})\{doctest\}[^\n]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
PAGES = sorted(DOCS.rglob("*.md"))


def format_copy_text(text: str) -> str:
    """Port of sphinx-copybutton 0.5's formatCopyText, with the site's settings."""
    prompt = CONF["copybutton_prompt_text"]
    if not CONF["copybutton_prompt_is_regexp"]:
        prompt = re.escape(prompt)
    regexp = re.compile(f"^({prompt})(.*)")
    only_prompt_lines = CONF["copybutton_only_copy_prompt_lines"]
    remove_prompts = CONF["copybutton_remove_prompts"]
    output: list[str] = []
    prompt_seen = False
    for line in text.split("\n"):
        match = regexp.match(line)
        if match:
            prompt_seen = True
            output.append(match.group(2) if remove_prompts else line)
        elif not only_prompt_lines or line.strip() == "":
            output.append(line)
    if prompt_seen:
        text = "\n".join(output)
    return text.removesuffix("\n")


def doctest_blocks(page: Path) -> list[str]:
    """The text of each doctest block as the site shows it (options removed)."""
    blocks = []
    for match in FENCE.finditer(page.read_text(encoding="utf-8")):
        lines = match.group(2).splitlines()
        while lines and (lines[0].startswith(":") or not lines[0].strip()):
            lines.pop(0)  # directive options, and the blank line after them
        blocks.append("\n".join(lines))
    return blocks


def test_copybutton_drops_prompts_and_output() -> None:
    shown = ">>> total = 0\n>>> for n in (1, 2):\n...     total += n\n...\n>>> total\n3\n"
    assert format_copy_text(shown) == "total = 0\nfor n in (1, 2):\n    total += n\n\ntotal"


def test_copybutton_drops_traceback_lines() -> None:
    shown = ">>> 1 / 0\nTraceback (most recent call last):\n  ...\nZeroDivisionError: division by 0"
    assert format_copy_text(shown) == "1 / 0"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_copybutton_every_example_copies_as_valid_python(page: Path) -> None:
    for number, block in enumerate(doctest_blocks(page), start=1):
        code = format_copy_text(block)
        try:
            compile(code, f"{page.name}, doctest block {number}", "exec")
        except SyntaxError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{page.name} block {number} copies as invalid Python: {exc}\n{code}")
