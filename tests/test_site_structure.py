"""The site's shape, which a reader relies on: every concept page opens with what
you will see, ends with where to go next, and checks you before that; the
glossary carries the course notes' Chinese terms; every page is reachable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONCEPTS = sorted((DOCS / "concepts").glob("*.md"))
HEADING = re.compile(r"^## (.+)$", re.MULTILINE)


def sections(page: Path) -> list[str]:
    """The page's second-level headings, outside code fences."""
    text = re.sub(r"^(`{3,}).*?^\1", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return HEADING.findall(text)


def check_yourself(page: Path) -> str:
    text = page.read_text()
    start = text.index("## Check yourself")
    return text[start : text.index("## Where to go next", start)]


def test_concepts_exist() -> None:
    assert len(CONCEPTS) >= 29


@pytest.mark.parametrize("page", CONCEPTS, ids=lambda page: page.stem)
def test_concept_page_opens_and_closes_the_same_way(page: Path) -> None:
    headings = sections(page)
    assert headings[0] == "What you will see"
    assert headings[-2:] == ["Check yourself", "Where to go next"]


@pytest.mark.parametrize("page", CONCEPTS, ids=lambda page: page.stem)
def test_concept_page_has_two_to_four_hidden_answers(page: Path) -> None:
    block = check_yourself(page)
    answers = re.findall(r"^`{3,}\{dropdown\}", block, re.MULTILINE)
    assert 2 <= len(answers) <= 4


@pytest.mark.parametrize("page", CONCEPTS, ids=lambda page: page.stem)
def test_concept_page_is_in_the_toctree(page: Path) -> None:
    index = (DOCS / "index.md").read_text()
    assert re.search(rf"^concepts/{re.escape(page.stem)}$", index, re.MULTILINE)


REQUIRED_CHINESE_TERMS = [
    "三次握手",
    "四次挥手",
    "滑动窗口",
    "半关闭",
    "半连接队列",
    "全连接队列",
    "初始序列号",
    "最大报文段长度",
    "端口复用",
    "僵尸进程",
    "信号捕捉",
    "回收子进程",
]


def test_glossary_has_the_issue_terms_as_terms() -> None:
    glossary = (DOCS / "reference" / "glossary.md").read_text()
    body = glossary[glossary.index("```{glossary}") :]
    term_lines = {line.strip() for line in body.splitlines() if line and not line[0].isspace()}
    missing = [term for term in REQUIRED_CHINESE_TERMS if term not in term_lines]
    assert not missing


ERRATA_TOPICS = [
    "tcp_syn_retries",
    "4.55",
    "x+1",
    "EINTR",
    "1024",
    "somaxconn",
    "tcp_fin_timeout",
    "recv",
]


def test_errata_covers_each_known_mistake_and_shows_it() -> None:
    errata = (DOCS / "reference" / "errata.md").read_text()
    entries = re.split(r"^## ", errata, flags=re.MULTILINE)[1:]
    for topic in ERRATA_TOPICS:
        holding = [entry for entry in entries if topic in entry and "{doctest}" in entry]
        assert holding, topic
