"""Serve a built folder (build/slides, build/site) on 127.0.0.1 and list every request that leaves it.

The deck and the site must work in a room without a network: every request a page makes
is intercepted; one for this server is let through, any other (a CDN, a font service,
another port) is refused and recorded. The tests assert that the record stays empty.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab_harness import REPO
from notebook_driver import VIEWPORT
from playwright.sync_api import Browser, BrowserContext, Page, Route

BUILD = REPO / "build"
NOT_BUILT = "{folder} has no {what}: run `make {target}` first (`make test-browser` does)."

# MathJax 2 marks each typeset formula with a .MathJax_CHTML span; a formula it could not
# parse becomes a .MathJax_Error; a widget the HTML manager could not draw shows one of these.
MATH_RENDERED_JS = """() => document.querySelectorAll('.MathJax_CHTML').length"""
MATH_ERRORS_JS = """() => [...document.querySelectorAll('.MathJax_Error, merror')].map(e => e.textContent)"""
MATHJAX_IDLE_JS = (
    """() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running"""
)
BROKEN_IMAGES_JS = """(root) => [...document.querySelectorAll(root + ' img')]
    .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80))"""
WIDGET_FAILURE_TEXTS = ("Error displaying widget", "Failed to create view", "Could not instantiate widget")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the test prints what matters
        pass


@dataclass
class StaticServer:
    """A folder served on 127.0.0.1 (a thread of the test process)."""

    folder: Path
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.origin}/{name}"


@contextmanager
def serving(folder: Path) -> Iterator[StaticServer]:
    """Serve ``folder`` on a free port of 127.0.0.1 until the block ends."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticServer(folder, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class RequestLog:
    """Every URL the pages asked for, split into this server's and the refused others."""

    origin: str
    local: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def handle(self, route: Route) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/"):
            self.local.append(url)
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("blockedbyclient")


def guard_requests(context: BrowserContext, server: StaticServer) -> RequestLog:
    """Route every request of ``context`` (popups included) through a RequestLog."""
    log = RequestLog(server.origin)
    context.route("**/*", log.handle)
    return log


@dataclass
class OfflineVisit:
    """A page opened from a served folder: the page, its request log and its uncaught errors."""

    page: Page
    requests: RequestLog
    errors: list[str]
    missing: list[str] = field(default_factory=list)  # "404 <url>": a file the page asked this server for, not there


@contextmanager
def visit_offline(
    browser: Browser, folder: Path, name: str, viewport: dict[str, int] | None = None
) -> Iterator[OfflineVisit]:
    """Serve ``folder``, open ``name`` in a fresh context (``viewport``, else VIEWPORT) whose requests are
    guarded; close both after."""
    context = browser.new_context(viewport=viewport or VIEWPORT)
    try:
        with serving(folder) as server:
            visit = OfflineVisit(context.new_page(), guard_requests(context, server), [])
            visit.page.on("pageerror", lambda error: visit.errors.append(str(error)))
            context.on("response", lambda r: visit.missing.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            visit.page.goto(server.url(name), wait_until="load")
            yield visit
    finally:
        context.close()


def wait_for_math(page: Page, timeout_ms: int = 30_000) -> int:
    """Wait until MathJax has nothing queued; return how many formulas it typeset."""
    page.wait_for_function(MATHJAX_IDLE_JS, timeout=timeout_ms, polling=200)
    return page.evaluate(MATH_RENDERED_JS)


def built_pages(folder: Path, suffix: str, target: str) -> list[Path]:
    """The pages of a build (index.html first), or an AssertionError that says how to build them."""
    pages = sorted(p for p in folder.glob(f"*{suffix}") if p.name != "index.html")
    assert (folder / "index.html").is_file() and pages, NOT_BUILT.format(
        folder=folder.relative_to(REPO), what="pages", target=target
    )
    return pages
