"""`make site` in Chromium: every page draws its figures, math and widgets, without a network.

The site (build/site) is nbconvert's HTML of notebooks that scripts/offline_html.py ran
with their widget state saved. Each page is opened from a server on 127.0.0.1 with every
other request refused and recorded: the record must be empty. Each widget view must be
drawn from its saved state, so each explorer shows its controls and its figure; and each
explorer keeps every setting's figure in the page, so moving one of its controls shows
another figure with no kernel at all.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from notebook_driver import EXPLORER, move_and_compare
from playwright.sync_api import Browser
from static_pages import (
    BROKEN_IMAGES_JS,
    BUILD,
    MATH_ERRORS_JS,
    WIDGET_FAILURE_TEXTS,
    built_pages,
    visit_offline,
    wait_for_math,
)

SITE = BUILD / "site"
EXECUTED = BUILD / "executed"
PAGES = built_pages(SITE, ".html", "site") if SITE.exists() else []
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

# Widget views in the page and those the HTML manager drew (each in a .jupyter-widgets root).
WIDGETS_JS = f"""() => {{
    const views = [...document.querySelectorAll('script[type="{WIDGET_VIEW_MIME}"]')];
    return views.map(v => {{
        const drawn = v.parentElement.querySelector('.jupyter-widgets');
        return drawn ? {{text: drawn.textContent.slice(0, 200),
                          images: [...drawn.querySelectorAll('img')].filter(i => i.naturalWidth > 0).length,
                          controls: drawn.querySelectorAll('.widget-slider, .widget-dropdown, .widget-toggle-buttons').length}}
                     : null;
    }});
}}"""


def explorer_views(executed: Path) -> int:
    """How many widget views the executed notebook shows (one per explorer cell)."""
    nb = nbformat.read(executed, as_version=4)
    return sum(WIDGET_VIEW_MIME in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", []))


def test_the_site_has_an_index_linking_every_notebook() -> None:
    pages = built_pages(SITE, ".html", "site")
    index = (SITE / "index.html").read_text()
    assert [p.stem for p in pages] == sorted(p.stem for p in EXECUTED.glob("*.ipynb"))
    for page in pages:
        assert f'href="{page.name}"' in index, f"index.html does not link {page.name}"


@pytest.mark.parametrize("page_path", PAGES, ids=[p.stem for p in PAGES])
def test_site_page_renders_offline(page_path: Path, browser: Browser, run_log: list[str]) -> None:
    with visit_offline(browser, SITE, page_path.name) as visit:
        page, requests, errors = visit.page, visit.requests, visit.errors
        formulas = wait_for_math(page)
        expected_views = explorer_views(EXECUTED / f"{page_path.stem}.ipynb")
        if expected_views:
            page.wait_for_function(
                f"() => document.querySelectorAll('script[type=\"{WIDGET_VIEW_MIME}\"]').length === {expected_views}"
                " && [...document.querySelectorAll('.jp-OutputArea-output')].every(o => !o.querySelector("
                f"'script[type=\"{WIDGET_VIEW_MIME}\"]') || o.querySelector('.jupyter-widgets img'))",
                timeout=30_000,
                polling=250,
            )
        views = page.evaluate(WIDGETS_JS)
        broken = page.evaluate(BROKEN_IMAGES_JS, ".jp-Notebook")
        figures = page.locator(".jp-OutputArea-output img").count()
        math_errors = page.evaluate(MATH_ERRORS_JS)
        explorers = page.locator(EXPLORER).count()
        moves = [move_and_compare(page.locator(EXPLORER).nth(i)) for i in range(explorers)]
    run_log.append(
        f"site {page_path.name}: {formulas} formulas, {figures} images, {len(views)} widget views "
        f"({explorers} explorers), {len(requests.local)} local requests, refused: {requests.refused}; "
        f"moves without a kernel: {[move[0] for move in moves]}"
    )
    assert requests.refused == [], f"{page_path.name} asked another host for: {requests.refused}"
    assert not visit.missing, f"{page_path.name} asked for files the build does not hold: {visit.missing}"
    assert not errors, f"{page_path.name}: JavaScript errors: {errors}"
    assert formulas > 0 and not math_errors, f"{page_path.name}: {formulas} formulas typeset, errors {math_errors}"
    assert figures > 0 and not broken, f"{page_path.name}: {figures} images, broken: {broken}"
    assert len(views) == expected_views
    for i, view in enumerate(views):
        assert view is not None, f"{page_path.name}: widget view {i} was not drawn from its saved state"
        assert not any(t in view["text"] for t in WIDGET_FAILURE_TEXTS), view["text"]
        assert view["images"] >= 1 and view["controls"] >= 1, f"{page_path.name}: widget view {i}: {view}"
    for i, (control, before, after) in enumerate(moves):  # the browser alone switches to the chosen frame
        assert len(before.split(",")) == 1 and len(after.split(",")) == 1, f"explorer {i} shows several images"
        assert before and after and before != after, f"{page_path.name}: explorer {i}: {control} changed nothing"


def test_the_request_guard_refuses_and_lists_what_a_default_export_fetches(browser: Browser, tmp_path: Path) -> None:
    """nbconvert's defaults load require.js and MathJax from cdnjs: the guard must list both."""
    from nbconvert import HTMLExporter

    executed = sorted(EXECUTED.glob("*.ipynb"))[0]
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(executed, as_version=4))
    (tmp_path / "default.html").write_text(body, encoding="utf-8")
    with visit_offline(browser, tmp_path, "default.html") as visit:
        requests = visit.requests
    assert [url.rsplit("/", 1)[-1] for url in requests.local] == ["default.html"]
    refused = " ".join(requests.refused)
    assert "cdnjs.cloudflare.com/ajax/libs/require.js" in refused and "mathjax/2.7.7" in refused, requests.refused
