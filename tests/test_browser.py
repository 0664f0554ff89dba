"""The site as a reader sees it: headless Chromium over every built page.

The test builds the site with the configuration ``tox -e docs`` uses
(``sphinx-build -b html -c conf docs build/browser/html``), serves it from a local
HTTP server on 127.0.0.1 (as Read the Docs serves it) and also opens it from disk
(as the README tells readers to), then drives Debian's Chromium through Playwright.
Playwright only drives the browser: it is pointed at the system's ``chromium``
and never downloads a browser of its own (never run ``playwright install``).

What it checks:

* **Loading**: every page, over HTTP and from ``file://``, loads with no console
  error, no uncaught exception, no failed request and no 4xx/5xx answer; every
  ``<img>`` decoded (``naturalWidth > 0``); every stylesheet applied (furo's
  colour variables are set).
* **Copying**: clicking the copy button of a doctest block puts on the clipboard
  exactly the block's code, without prompts or output, and it compiles.
* **Themes**: every diagram (an ``<img>`` from ``_images/``, or an inline
  ``<svg class="tcpref-diagram">``) is visible, has a size, and is legible in the
  light and in the dark theme: each text (and each stroke of an inline SVG) stands
  out by a WCAG contrast of at least 4.5:1 from what is painted right behind it
  (a shape of the diagram, else the page).  An ``<img>`` SVG is read and laid out
  in the image's place to find its texts; a raster image is judged by the colours
  of its screenshot.  ``REQUIRED_DIAGRAMS`` lists the pages that must show one.
* **Search**: ``search.html?q=TIME_WAIT`` lists the TIME_WAIT page.
* **Small screens**: at 375x812 no page overflows sideways (code blocks and tables
  may scroll on their own), and the navigation hides behind its toggle.

Screenshots (landing page, a concept page and a diagram, light and dark) are
written to ``build/browser/html/_screenshots/``.  To refresh the README's
screenshot, run ``TCPREF_README_SCREENSHOT=1 pytest tests/test_browser.py``.

Without Chromium (Debian: ``apt-get install chromium``) or the ``playwright``
package (the ``test`` extra), the browser tests skip and say which is missing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from doctest_env import ResourceSnapshot

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "browser"
HTML = BUILD / "html"
SHOTS = HTML / "_screenshots"
README_SHOT = ROOT / "docs" / "_static" / "screenshots" / "landing.png"
README_SHOT_ENV = "TCPREF_README_SCREENSHOT"
CHROMIUM_ENV = "TCPREF_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser")

# Pages that must show at least this many diagrams; add a page when it gains one.
REQUIRED_DIAGRAMS: dict[str, int] = {
    "concepts/choosing-a-model.html": 1,  # an <img> SVG: the benchmark chart
    # Inline SVGs drawn by conf/tcpref_diagrams.py from tcpref.diagrams:
    "concepts/handshake.html": 1,
    "concepts/lost-handshake.html": 4,
    "concepts/lost-teardown.html": 4,
    "concepts/old-duplicates.html": 3,
    "concepts/sliding-window.html": 2,
    "concepts/state-machine.html": 2,
    "concepts/teardown.html": 3,
}
SEARCH_TERM = "TIME_WAIT"
SEARCH_MUST_FIND = "concepts/time-wait.html"
COPY_EVERY_BLOCK_ON = "concepts/errors.html"  # elsewhere: the first block of each page
CONCEPT_SHOT = "concepts/handshake.html"
DIAGRAM_SHOT = "concepts/state-machine.html"  # its first diagram, in both themes

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
WAIT_MS = 15_000  # the bound on every single wait in the browser
MIN_CONTRAST = 4.5  # WCAG 2 AA for normal text
INK_SHARE = 0.002  # a colour covering less of a diagram than this is anti-aliasing
THEMES = ("light", "dark")
PROBLEMS_SHOWN = 5  # per diagram: the rest are counted

pytestmark = [
    pytest.mark.slow,
    # The first test also pays for the Sphinx build and the browser's start.
    pytest.mark.timeout(300),
]


# -- pure helpers (tested below without a browser) ---------------------------------


def relative_luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as 0-255 channels."""

    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(c) for c in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio between two colours, from 1 (same) to 21 (black on white)."""
    light, dark = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def blend(
    rgba: tuple[float, float, float, float], under: tuple[float, float, float]
) -> tuple[float, float, float]:
    """The colour seen when ``rgba`` (alpha 0-1) is painted over the opaque ``under``."""
    *rgb, alpha = rgba
    return (
        rgb[0] * alpha + under[0] * (1 - alpha),
        rgb[1] * alpha + under[1] * (1 - alpha),
        rgb[2] * alpha + under[2] * (1 - alpha),
    )


def split_doctest(shown: str) -> tuple[list[str], list[str]]:
    """Split a doctest block as displayed into (code without prompts, output lines)."""
    code: list[str] = []
    output: list[str] = []
    for line in shown.splitlines():
        if line.startswith((">>> ", "... ")) or line in (">>>", "..."):
            code.append(line[4:])
        elif line.strip():
            output.append(line)
    return code, output


def find_chromium() -> str | None:
    """The system Chromium: $TCPREF_CHROMIUM if set, else the first on PATH."""
    if os.environ.get(CHROMIUM_ENV):
        return os.environ[CHROMIUM_ENV]
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def site_pages(html: Path) -> list[str]:
    """Every HTML page of a built site, relative to its root (Sphinx's own dirs excluded)."""
    return sorted(
        path.relative_to(html).as_posix()
        for path in html.rglob("*.html")
        if not path.relative_to(html).parts[0].startswith("_")
    )


def pages_with(html: Path, pattern: re.Pattern[str]) -> list[str]:
    """The pages whose HTML source matches ``pattern``."""
    return [
        page
        for page in site_pages(html)
        if pattern.search((html / page).read_text(encoding="utf-8"))
    ]


def test_contrast_ratio_spans_1_to_21() -> None:
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21)
    assert contrast_ratio((255, 255, 255), (0, 0, 0)) == pytest.approx(21)
    assert contrast_ratio((119, 119, 119), (119, 119, 119)) == pytest.approx(1)
    # #767676 on white is the classic "just passes AA" grey.
    assert contrast_ratio((0x76, 0x76, 0x76), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)


def test_blend_half_black_over_white_is_mid_grey() -> None:
    assert blend((0, 0, 0, 0.5), (255, 255, 255)) == (127.5, 127.5, 127.5)
    assert blend((10, 20, 30, 1), (255, 255, 255)) == (10, 20, 30)


def test_split_doctest_separates_code_from_output() -> None:
    shown = ">>> for n in (1, 2):\n...     print(n)\n...\n1\n2\n>>> 'done'\n'done'"
    code, output = split_doctest(shown)
    assert code == ["for n in (1, 2):", "    print(n)", "", "'done'"]
    assert output == ["1", "2", "'done'"]


# -- the browser session -----------------------------------------------------------


@dataclass
class Visit:
    """What went wrong while one page was open."""

    problems: list[str] = field(default_factory=list)


@dataclass
class Site:
    """The built site, its local server and one browser shared by every test."""

    html: Path
    base: str  # http://127.0.0.1:PORT/
    browser: Any

    def url(self, page: str, scheme: str = "http") -> str:
        """The address of ``page`` over HTTP or from disk."""
        if scheme == "file":
            path, question, query = page.partition("?")
            return (self.html / path).as_uri() + question + query
        return self.base + page

    @contextlib.contextmanager
    def tab(self, viewport: dict[str, int] = DESKTOP, **options: Any) -> Iterator[Any]:
        """A fresh browser context with one page; closed on exit, whatever happens."""
        context = self.browser.new_context(viewport=viewport, color_scheme="light", **options)
        try:
            context.set_default_timeout(WAIT_MS)
            context.set_default_navigation_timeout(WAIT_MS)
            yield context.new_page()
        finally:
            context.close()

    def open(self, tab: Any, page: str, scheme: str = "http") -> Visit:
        """Load ``page`` in ``tab``, recording console errors and failed requests."""
        visit = Visit()
        record = visit.problems.append

        def on_console(message: Any) -> None:
            if message.type == "error":
                record(f"console error: {message.text}")

        def on_response(response: Any) -> None:
            if response.status >= 400:
                record(f"HTTP {response.status} for {response.url}")

        handlers: list[tuple[str, Callable[[Any], None]]] = [
            ("console", on_console),
            ("pageerror", lambda error: record(f"uncaught exception: {error}")),
            ("requestfailed", lambda r: record(f"request failed: {r.url} ({r.failure})")),
            ("response", on_response),
        ]
        for event, handler in handlers:
            tab.on(event, handler)
        try:
            tab.goto(self.url(page, scheme), wait_until="load")
        finally:
            for event, handler in handlers:
                tab.remove_listener(event, handler)
        return visit


def build_site() -> None:
    """Build the HTML site afresh into build/browser/html, as ``tox -e docs`` does."""
    shutil.rmtree(BUILD, ignore_errors=True)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", "conf", "-n", "-q"]
    command += ["--keep-going", "-d", str(BUILD / "doctrees"), "docs", str(HTML)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"sphinx-build failed ({result.returncode}):\n{result.stderr[-3000:]}")


@contextlib.contextmanager
def build_lock(seconds: float = 240) -> Iterator[None]:
    """Build the site and hold build/browser for this run (another run waits, bounded)."""
    BUILD.parent.mkdir(exist_ok=True)
    with open(BUILD.parent / "browser.lock", "w") as lock:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run held build/browser.lock for {seconds:.0f} s")
                time.sleep(0.5)
        try:
            build_site()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) from a child process."""
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 20)
        banner = server.stdout.readline() if ready else ""
        match = re.search(r"port (\d+)", banner)
        if not match:
            pytest.fail(f"the HTTP server did not say its port within 20 s: {banner!r}")
        yield f"http://127.0.0.1:{match.group(1)}/"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


def _process_table() -> dict[int, tuple[int, str]]:
    """Map every pid to (parent pid, state letter), from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue  # it exited while we looked
            table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (children, grandchildren and so on)."""
    table = _process_table()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_until_gone(pids: set[int], seconds: float) -> set[int]:
    """Wait (bounded) until none of ``pids`` runs; zombies count as gone. Return the rest."""
    deadline = time.monotonic() + seconds
    while True:
        table = _process_table()
        alive = {pid for pid in pids if pid in table and table[pid][1] != "Z"}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@contextlib.contextmanager
def chromium_browser(executable: str) -> Iterator[Any]:
    """Launch headless ``executable`` through Playwright; make sure it is gone after."""
    from playwright.sync_api import sync_playwright

    others = descendants(os.getpid())
    threads = set(threading.enumerate())
    playwright = sync_playwright().start()
    browser = None
    try:
        browser = playwright.chromium.launch(executable_path=executable, timeout=60_000)
        yield browser
    finally:
        # Renderers start per tab, so the browser's processes are listed at the end:
        # Playwright's driver (node) and every Chromium process below it.
        started = descendants(os.getpid()) - others
        if browser is not None:
            browser.close()
        playwright.stop()
        # asyncio's executor threads, which Playwright's event loop leaves to end.
        for thread in set(threading.enumerate()) - threads:
            thread.join(timeout=10)
        left = wait_until_gone(started, seconds=15)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            pytest.fail(f"browser processes outlived browser.close(): {sorted(left)}")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """Build the site once, serve it, and start one Chromium for the whole module."""
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "headless Chromium is not installed: no chromium or chromium-browser on PATH "
            f"and ${CHROMIUM_ENV} unset (Debian: apt-get install chromium)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (it is in the test extra)")
    before = ResourceSnapshot.take()
    with build_lock(), http_server(HTML) as base, chromium_browser(executable) as browser:
        yield Site(html=HTML, base=base, browser=browser)
    ResourceSnapshot.take().check_no_leaks_since(before)


# -- the tours: one pass over every page per way of reading ------------------------

PAGE_HEALTH = """() => ({
    images: [...document.images].map(img => ({
        src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth,
    })),
    stylesheets: [...document.querySelectorAll('link[rel="stylesheet"]')].map(link => ({
        href: link.getAttribute("href"), applied: link.sheet !== null,
    })),
    furo: getComputedStyle(document.body).getPropertyValue("--color-background-primary"),
})"""


def loading_problems(tab: Any) -> tuple[int, list[str]]:
    """(number of images, problems) of the page open in ``tab``, once it has loaded."""
    health = tab.evaluate(PAGE_HEALTH)
    problems = [
        f"image {img['src']} did not load"
        for img in health["images"]
        if not (img["complete"] and img["width"] > 0)
    ]
    problems += [
        f"stylesheet {css['href']} not applied"
        for css in health["stylesheets"]
        if not css["applied"]
    ]
    if not health["furo"].strip():
        problems.append("the theme's stylesheet did not apply (no furo colours)")
    return len(health["images"]), problems


@dataclass
class Tour:
    """What one pass over every page found."""

    pages: list[str]
    loading: list[str] = field(default_factory=list)
    images: int = 0
    copies: int = 0
    copying: list[str] = field(default_factory=list)
    diagrams: dict[str, int] = field(default_factory=dict)  # page -> diagrams shown
    themes: list[str] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)

    def report(self, problems: list[str]) -> str:
        """The problems, one a line, under a count."""
        return f"{len(problems)} problems over {len(self.pages)} pages:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def desktop_tour(site: Site) -> Tour:
    """Every page over HTTP at desktop size: loading, copy buttons, diagrams."""
    tour = Tour(pages=site_pages(site.html))
    with site.tab(permissions=["clipboard-read", "clipboard-write"]) as tab:
        for page in tour.pages:
            visit = site.open(tab, page)
            images, problems = loading_problems(tab)
            tour.images += images
            tour.loading += [f"{page}: {problem}" for problem in visit.problems + problems]
            check_copy_buttons(tab, page, tour)
            check_diagrams(tab, page, tour)
    return tour


@pytest.fixture(scope="module")
def file_tour(site: Site) -> Tour:
    """Every page from disk (file://), as ``tox -e docs`` tells readers to open it."""
    tour = Tour(pages=site_pages(site.html))
    with site.tab() as tab:
        for page in tour.pages:
            visit = site.open(tab, page, scheme="file")
            images, problems = loading_problems(tab)
            tour.images += images
            tour.loading += [f"{page}: {problem}" for problem in visit.problems + problems]
    return tour


@pytest.fixture(scope="module")
def phone_tour(site: Site) -> Tour:
    """Every page at a phone's size: nothing sideways, navigation behind its toggle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    tour = Tour(pages=site_pages(site.html))
    with site.tab(viewport=PHONE, is_mobile=True, has_touch=True) as tab:
        for page in tour.pages:
            site.open(tab, page)
            tour.layout += [f"{page}: {problem}" for problem in phone_layout_problems(tab)]
        site.open(tab, "index.html")
        tab.locator(NAV_TOGGLE).click()
        try:
            tab.wait_for_function(f"({DRAWER_LEFT}) >= 0", timeout=WAIT_MS)
        except PlaywrightTimeout as exc:
            tour.layout.append(f"index.html: the toggle did not open the navigation: {exc}")
    return tour


def test_browser_every_page_loads_over_http(desktop_tour: Tour) -> None:
    assert len(desktop_tour.pages) >= 30, f"only {len(desktop_tour.pages)} pages were built"
    assert desktop_tour.images > 0, "no <img> on any page: the image check checked nothing"
    assert not desktop_tour.loading, desktop_tour.report(desktop_tour.loading)


def test_browser_every_page_loads_from_disk(file_tour: Tour) -> None:
    assert len(file_tour.pages) >= 30, f"only {len(file_tour.pages)} pages were built"
    assert not file_tour.loading, file_tour.report(file_tour.loading)


# -- copying -----------------------------------------------------------------------

DOCTEST_BLOCK = "div.highlight-pycon"
# Exercise answers sit in closed sphinx-design dropdowns: open them as a reader would.
OPEN_DROPDOWNS = """(block) => {
    for (let d = block.closest("details"); d; d = d.parentElement.closest("details"))
        d.open = true;
}"""
CLEAR_CLIPBOARD = "navigator.clipboard.writeText('(the copy button copied nothing)')"


def check_copy_buttons(tab: Any, page: str, tour: Tour) -> None:
    """Click the copy button of doctest blocks (all of them on one page, else the first)."""
    blocks = tab.locator(DOCTEST_BLOCK)
    count = blocks.count()
    for index in range(count if page == COPY_EVERY_BLOCK_ON else min(count, 1)):
        block = blocks.nth(index)
        block.evaluate(OPEN_DROPDOWNS)
        shown = block.locator("pre").inner_text()
        tab.evaluate(CLEAR_CLIPBOARD)
        block.hover()  # the button shows on hover
        block.locator("button.copybtn").click()
        copied = tab.evaluate("navigator.clipboard.readText()")
        tour.copies += 1
        tour.copying += copy_problems(f"{page}, doctest block {index + 1}", shown, copied)


def copy_problems(where: str, shown: str, copied: str) -> list[str]:
    """What is wrong with ``copied`` as the copy of the doctest block ``shown``."""
    code, output = split_doctest(shown)
    lines = copied.splitlines()
    problems = []
    if any(line.startswith(">>>") for line in lines):
        problems.append(f"{where}: the copy keeps '>>>' prompts:\n{copied}")
    leaked = (set(output) - set(code)) & set(lines)
    if leaked:
        problems.append(f"{where}: the copy keeps output lines {sorted(leaked)}")
    if [line for line in lines if line.strip()] != [line for line in code if line.strip()]:
        problems.append(f"{where}: copied\n{copied}\ninstead of\n" + "\n".join(code))
    try:
        compile(copied, where, "exec")
    except SyntaxError as exc:
        problems.append(f"{where}: the copy does not compile: {exc}")
    return problems


def test_copy_problems_catches_prompts_and_output() -> None:
    shown = ">>> x = 1\n>>> x\n1"
    assert copy_problems("here", shown, "x = 1\nx") == []
    assert len(copy_problems("here", shown, ">>> x = 1\n>>> x\n1")) == 4


def test_browser_copy_button_copies_runnable_code(desktop_tour: Tour) -> None:
    with_blocks = pages_with(HTML, re.compile(r'class="highlight-pycon'))
    assert COPY_EVERY_BLOCK_ON in with_blocks
    assert desktop_tour.copies > len(with_blocks), "fewer copy buttons clicked than expected"
    assert not desktop_tour.copying, "\n\n".join(desktop_tour.copying)


# -- themes and diagrams -----------------------------------------------------------

DIAGRAMS = """async (theme) => {
    document.body.dataset.theme = theme;
    const rgba = (() => {
        const ctx = new OffscreenCanvas(1, 1).getContext("2d", {willReadFrequently: true});
        return (css) => {
            ctx.clearRect(0, 0, 1, 1);
            ctx.fillStyle = "rgba(0, 0, 0, 0)";
            ctx.fillStyle = css;
            ctx.fillRect(0, 0, 1, 1);
            const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
            return [r, g, b, a / 255];
        };
    })();
    // What the page paints behind an element: the nearest opaque background.
    const pageBehind = (element) => {
        for (let e = element.parentElement; e; e = e.parentElement) {
            const colour = rgba(getComputedStyle(e).backgroundColor);
            if (colour[3] > 0.99) return colour;
        }
        return [255, 255, 255, 1];
    };
    const opacity = (element, top) => {
        let product = 1;
        for (let e = element; e && e !== top.parentElement; e = e.parentElement)
            product *= parseFloat(getComputedStyle(e).opacity);
        return product;
    };
    const drawn = (e) => {
        const style = getComputedStyle(e);
        return style.display !== "none" && style.visibility !== "hidden"
            && !e.closest("defs, marker, clipPath, mask, pattern, symbol, title");
    };
    const shown = (element) => {
        const style = getComputedStyle(element);
        const box = element.getBoundingClientRect();
        return {
            width: box.width, height: box.height,
            visible: style.display !== "none" && style.visibility !== "hidden"
                && parseFloat(style.opacity) > 0,
        };
    };
    // Each text (and, if asked, each stroke) of an SVG, with the colour right behind
    // it: the topmost opaque shape painted before it under its centre, else the page.
    const inksOf = (svg, behind, strokes) => {
        const shapes = [...svg.querySelectorAll("rect, circle, ellipse, path, polygon")]
            .filter((shape) => {
                const style = getComputedStyle(shape);
                return drawn(shape) && style.fill !== "none"
                    && rgba(style.fill)[3] * parseFloat(style.fillOpacity)
                       * opacity(shape, svg) > 0.99;
            });
        const backgroundOf = (element) => {
            const box = element.getBBox();
            const centre = new DOMPoint(box.x + box.width / 2, box.y + box.height / 2)
                .matrixTransform(element.getCTM());
            let under = behind;
            for (const shape of shapes) {
                if (shape === element
                    || element.compareDocumentPosition(shape) & Node.DOCUMENT_POSITION_FOLLOWING)
                    break;  // painted after the element, so above it
                const local = centre.matrixTransform(shape.getCTM().inverse());
                if (shape.isPointInFill(local)) under = rgba(getComputedStyle(shape).fill);
            }
            return under;
        };
        const inks = [];
        svg.querySelectorAll("*").forEach((e) => {
            if (!drawn(e) || !(e instanceof SVGGraphicsElement)) return;
            const style = getComputedStyle(e);
            const alpha = opacity(e, svg);
            const text = e.tagName === "text";
            const what = `<${e.tagName}> ${(e.textContent || "").trim().slice(0, 40)}`;
            if (text && style.fill !== "none")
                inks.push({what: "text " + what, colour: rgba(style.fill),
                           alpha: alpha * parseFloat(style.fillOpacity),
                           background: backgroundOf(e)});
            // A stroke painted under a text's fill is a halo, not ink.
            const halo = text && style.paintOrder.startsWith("stroke");
            if (strokes && !halo && style.stroke !== "none"
                && parseFloat(style.strokeWidth) > 0)
                inks.push({what: "stroke " + what, colour: rgba(style.stroke),
                           alpha: alpha * parseFloat(style.strokeOpacity),
                           background: backgroundOf(e)});
        });
        return inks;
    };
    const article = document.querySelector("article[role=main]");
    const found = [];
    for (const img of article.querySelectorAll("img")) {
        if (!img.getAttribute("src").includes("_images/")) continue;
        const diagram = {kind: "img", name: img.getAttribute("src"), ...shown(img),
                         loaded: img.complete && img.naturalWidth > 0, inks: null};
        if (diagram.loaded && /\\.svg$/i.test(new URL(img.currentSrc).pathname)) {
            // An <img> SVG is its own document: read it, and lay it out in the img's
            // place (with no colour inherited) to see its text over its own shapes.
            const source = await (await fetch(img.currentSrc)).text();
            const svg = new DOMParser().parseFromString(source, "image/svg+xml")
                .documentElement;
            svg.setAttribute("width", img.width);
            svg.setAttribute("height", img.height);
            svg.style.color = "black";
            img.after(svg);
            try {
                diagram.inks = inksOf(svg, pageBehind(img), false);
            } finally {
                svg.remove();
            }
        }
        found.push(diagram);
    }
    article.querySelectorAll("svg.tcpref-diagram").forEach((svg, n) => {
        const title = svg.querySelector("title");
        found.push({kind: "svg", name: title ? title.textContent : `svg #${n + 1}`,
                    ...shown(svg), loaded: true, inks: inksOf(svg, pageBehind(svg), true)});
    });
    return found;
}"""

# A raster image cannot be read for its text: its screenshot's colours stand in.
HISTOGRAM = """async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], {type: "image/png"}));
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
        const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
        counts.set(key, (counts.get(key) || 0) + 1);
    }
    const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 64);
    return {total: data.length / 4,
            colours: top.map(([k, n]) => [[(k >> 16) & 255, (k >> 8) & 255, k & 255], n])};
}"""
DIAGRAM_IMAGES = "article[role=main] img[src*='_images/']"


def raster_legibility(tab: Any, element: Any) -> tuple[float, str]:
    """Contrast between a raster image's background and its strongest ink, as shown.

    The element is screenshotted as the reader sees it (over the page, in the current
    theme); its most common colour is its background, and any colour covering at
    least ``INK_SHARE`` of it is ink (text, lines, bars).
    """
    png = element.screenshot()
    histogram = tab.evaluate(HISTOGRAM, base64.b64encode(png).decode("ascii"))
    (background, _), *rest = histogram["colours"]
    inks = [rgb for rgb, count in rest if count / histogram["total"] >= INK_SHARE]
    if not inks:
        return 1.0, f"a single colour {background}"
    best = max(inks, key=lambda rgb: contrast_ratio(rgb, background))
    ratio = contrast_ratio(best, background)
    return ratio, f"ink {best} on background {background}: {ratio:.1f}:1"


def check_diagrams(tab: Any, page: str, tour: Tour) -> None:
    """Every diagram on the page: shown, loaded and legible in both themes."""
    for theme in THEMES:
        diagrams = tab.evaluate(DIAGRAMS, theme)
        if theme == THEMES[0]:
            tour.diagrams[page] = len(diagrams)
        for number, diagram in enumerate(diagrams):
            where = f"{page} ({theme} theme) {diagram['kind']} {diagram['name']!r}"
            if not (diagram["visible"] and diagram["width"] and diagram["height"]):
                tour.themes.append(f"{where}: not visible or of no size: {diagram}")
            elif not diagram["loaded"]:
                tour.themes.append(f"{where}: did not load")
            elif diagram["inks"] is not None:
                tour.themes += ink_problems(where, diagram["inks"])
            else:  # a raster <img>; the images come first in the list
                shot = tab.locator(DIAGRAM_IMAGES).nth(number)
                ratio, detail = raster_legibility(tab, shot)
                if ratio < MIN_CONTRAST:
                    tour.themes.append(f"{where}: illegible, {detail}")
        if not diagrams:
            break  # nothing to see in the other theme
    tab.evaluate("() => { document.body.dataset.theme = 'light'; }")


def ink_problems(where: str, inks: list[dict[str, Any]]) -> list[str]:
    """The texts and strokes of a diagram that do not stand out from what is behind them."""
    problems = []
    if not any(ink["what"].startswith("text") for ink in inks):
        problems.append(f"{where}: no text found to check")
    for ink in inks:
        background = tuple(ink["background"][:3])
        red, green, blue, alpha = ink["colour"]
        seen = blend((red, green, blue, alpha * ink["alpha"]), background)
        ratio = contrast_ratio(seen, background)
        if ratio < MIN_CONTRAST:
            problems.append(f"{where}: {ink['what']} at {ratio:.1f}:1 on {background}")
    if len(problems) > PROBLEMS_SHOWN:
        hidden = len(problems) - PROBLEMS_SHOWN
        problems[PROBLEMS_SHOWN:] = [f"{where}: ... and {hidden} more like these"]
    return problems


def test_ink_problems_flags_faint_ink() -> None:
    white = [255, 255, 255, 1]
    black_text = {"what": "text a", "colour": [0, 0, 0, 1], "alpha": 1, "background": white}
    faint_stroke = {"what": "stroke", "colour": [0, 0, 0, 1], "alpha": 0.2, "background": white}
    dark_on_dark = {
        "what": "text b",
        "colour": [26, 32, 44, 1],
        "alpha": 1,
        "background": [19, 20, 22, 1],
    }
    assert ink_problems("here", [black_text]) == []
    problems = ink_problems("here", [black_text, faint_stroke, dark_on_dark])
    assert [problem.split(": ")[1].split(" at ")[0] for problem in problems] == [
        "stroke",
        "text b",
    ]
    assert ink_problems("here", []) == ["here: no text found to check"]


def test_browser_diagrams_are_legible_in_both_themes(desktop_tour: Tour) -> None:
    missing = [
        f"{page}: {desktop_tour.diagrams.get(page, 0)} diagrams, expected at least {need}"
        for page, need in REQUIRED_DIAGRAMS.items()
        if desktop_tour.diagrams.get(page, 0) < need
    ]
    assert not missing, "\n".join(missing)
    assert not desktop_tour.themes, "\n".join(desktop_tour.themes)


# -- search ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_browser_search_finds_time_wait(site: Site, scheme: str) -> None:
    with site.tab() as tab:
        visit = site.open(tab, f"search.html?q={SEARCH_TERM}", scheme)
        target = SEARCH_MUST_FIND.removesuffix(".html")
        tab.locator(f'#search-results a[href*="{target}"]').first.wait_for(state="attached")
        results = tab.locator("#search-results li").count()
        # Sphinx fetches each result page for its summary; Chromium refuses that from
        # file:// (CORS), so there the summaries are missing and the console complains.
        if scheme == "http":
            tab.wait_for_load_state("networkidle")
            assert not visit.problems, "\n".join(visit.problems)
    assert results >= 1


# -- small screens -----------------------------------------------------------------

NAV_TOGGLE = ".mobile-header label[for='__navigation']"
DRAWER_LEFT = "document.querySelector('.sidebar-drawer').getBoundingClientRect().left"
PHONE_LAYOUT = """() => {
    const width = window.innerWidth;
    const content = document.querySelector(".content");
    const scrollsOnItsOwn = (element) => {
        for (let e = element.parentElement; e && e !== content; e = e.parentElement) {
            const overflow = getComputedStyle(e).overflowX;
            if (overflow === "auto" || overflow === "scroll") return true;
        }
        return false;
    };
    const describe = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
        + (typeof e.className === "string" && e.className.trim()
           ? "." + e.className.trim().split(/\\s+/).join(".") : "");
    const wide = [...document.querySelectorAll("article[role=main] *")].filter((e) => {
        const box = e.getBoundingClientRect();
        return box.width > 0 && box.right > width + 1 && !scrollsOnItsOwn(e);
    });
    const culprits = wide.filter((e) => !wide.includes(e.parentElement));
    const drawer = document.querySelector(".sidebar-drawer").getBoundingClientRect();
    const toggle = document.querySelector(".mobile-header label[for='__navigation']");
    const toggleBox = toggle ? toggle.getBoundingClientRect() : null;
    return {
        width,
        page: document.documentElement.scrollWidth,
        content: content.scrollWidth,
        contentBox: content.clientWidth,
        culprits: culprits.slice(0, 5).map((e) => describe(e)
            + ` (right edge at ${Math.round(e.getBoundingClientRect().right)}px)`),
        drawerRight: drawer.right,
        toggleShown: !!toggleBox && toggleBox.width > 0 && toggleBox.right <= width,
    };
}"""


def phone_layout_problems(tab: Any) -> list[str]:
    """What breaks the layout of the page open in ``tab`` (a phone-sized one)."""
    layout = tab.evaluate(PHONE_LAYOUT)
    width = layout["width"]
    problems = []
    if layout["page"] > width + 1:
        problems.append(f"the page is {layout['page']}px wide in a {width}px screen")
    if layout["content"] > layout["contentBox"] + 1 or layout["culprits"]:
        problems.append(
            f"the text is {layout['content']}px wide in {layout['contentBox']}px, "
            f"pushed by {layout['culprits']}"
        )
    if layout["drawerRight"] > 0:
        problems.append("the navigation is not collapsed")
    if not layout["toggleShown"]:
        problems.append("no navigation toggle on screen")
    return problems


def test_browser_layout_holds_at_phone_width(phone_tour: Tour) -> None:
    assert not phone_tour.layout, phone_tour.report(phone_tour.layout)


# -- screenshots -------------------------------------------------------------------


def set_theme(tab: Any, theme: str) -> None:
    """Switch furo's theme the way its toggle does."""
    tab.evaluate("(theme) => { document.body.dataset.theme = theme; }", theme)


def test_browser_screenshots_are_written(site: Site) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with site.tab() as tab:
        for theme in THEMES:
            for name, page in [("landing", "index.html"), ("concept", CONCEPT_SHOT)]:
                site.open(tab, page)
                set_theme(tab, theme)
                written.append(SHOTS / f"{name}-{theme}.png")
                written[-1].write_bytes(tab.screenshot())
            site.open(tab, DIAGRAM_SHOT)
            set_theme(tab, theme)
            diagram = tab.locator(f"article[role=main] svg.tcpref-diagram, {DIAGRAM_IMAGES}")
            written.append(SHOTS / f"diagram-{theme}.png")
            written[-1].write_bytes(diagram.first.screenshot())
    with site.tab(viewport=PHONE, is_mobile=True, has_touch=True) as tab:
        site.open(tab, "index.html")
        written.append(SHOTS / "landing-phone.png")
        written[-1].write_bytes(tab.screenshot())
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG"), path
    if os.environ.get(README_SHOT_ENV):
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHOTS / "landing-light.png", README_SHOT)
