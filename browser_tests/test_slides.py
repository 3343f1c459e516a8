"""`make slides` in Chromium: each deck opens, advances, shows speaker notes, math and figures, offline.

Each deck (build/slides/<notebook>.slides.html, reveal.js 5 from build/slides/vendor) is
opened from a server on 127.0.0.1 with every other request refused and recorded: the
record must be empty, the speaker view (a popup) included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from notebook_driver import EXPLORER, wait_for_figure
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

SLIDES = BUILD / "slides"
DECKS = built_pages(SLIDES, ".slides.html", "slides") if SLIDES.exists() else []

# reveal.js puts the slide number ("current/total", as nbconvert's reveal_number="c/t" asks) here.
SLIDE_NUMBER = ".reveal .slide-number"
# The first slide (horizontal, vertical indices) whose notes are not empty, with the notes' text.
FIRST_NOTES_JS = """() => {
    const tops = [...document.querySelectorAll('.reveal .slides > section')];
    for (const [h, top] of tops.entries()) {
        const stack = top.querySelectorAll(':scope > section');
        const slides = stack.length ? [...stack] : [top];
        for (const [v, slide] of slides.entries()) {
            const notes = [...slide.querySelectorAll(':scope > aside.notes')].map(a => a.textContent.trim()).join(' ');
            if (notes) return {h, v, notes};
        }
    }
    return null;
}"""
# Slides with a figure or a formula, as (h, v): each is visited and checked.
SLIDES_WITH_JS = """(selector) => {
    const found = [];
    [...document.querySelectorAll('.reveal .slides > section')].forEach((top, h) => {
        const stack = top.querySelectorAll(':scope > section');
        (stack.length ? [...stack] : [top]).forEach((slide, v) => {
            if (slide.querySelector(selector)) found.push([h, v]);
        });
    });
    return found;
}"""


# One keypress on the explorer's first slider, dispatched to its handle only: reveal.js takes the arrow
# keys that reach the document for moving between slides.
NUDGE_SLIDER_JS = """(explorer) => {
    const handle = explorer.querySelector('.noUi-handle');
    const atMax = Number(handle.getAttribute('aria-valuenow')) >= Number(handle.getAttribute('aria-valuemax'));
    const key = atMax ? 'ArrowLeft' : 'ArrowRight';
    handle.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: false, cancelable: true}));
    return key;
}"""


def slide_number(page) -> tuple[int, int]:
    text = page.locator(SLIDE_NUMBER).inner_text().strip()
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+)", text)
    assert match, f"slide number {text!r} is not 'current/total'"
    return int(match.group(1)), int(match.group(2))


def test_the_slides_have_an_index_linking_every_deck() -> None:
    decks = built_pages(SLIDES, ".slides.html", "slides")
    index = (SLIDES / "index.html").read_text()
    for deck in decks:
        assert f'href="{deck.name}"' in index, f"index.html does not link {deck.name}"
    assert (SLIDES / "vendor/reveal.js/plugin/notes/notes.js").is_file()


@pytest.mark.parametrize("deck", DECKS, ids=[p.name.removesuffix(".slides.html") for p in DECKS])
def test_deck_opens_advances_and_shows_notes_offline(deck: Path, browser: Browser, run_log: list[str]) -> None:
    with visit_offline(browser, SLIDES, deck.name) as visit:
        page, requests, errors = visit.page, visit.requests, visit.errors
        page.locator(".reveal.ready").wait_for(timeout=30_000)
        page.locator("body.normlab-paginated").wait_for(state="attached", timeout=60_000)  # tall slides cut first
        first, total = slide_number(page)
        page.keyboard.press("Space")  # next slide, down a vertical stack first
        page.wait_for_function(
            f"() => document.querySelector('{SLIDE_NUMBER}').textContent.replace(/\\s/g, '').startsWith('2/')",
            timeout=10_000,
        )
        second, _ = slide_number(page)

        formulas = wait_for_math(page)
        math_errors = page.evaluate(MATH_ERRORS_JS)
        figure_slides = page.evaluate(SLIDES_WITH_JS, ".jp-OutputArea-output img")
        broken = []
        for h, v in figure_slides:
            page.evaluate(f"() => {{ location.hash = '#/{h}/{v}'; }}")
            page.locator(
                ".reveal .slides section.present:not(.stack) .jp-OutputArea-output img:visible"
            ).first.wait_for()
            broken += page.evaluate(BROKEN_IMAGES_JS, ".reveal .slides section.present:not(.stack)")
        widget_text = " ".join(page.locator(".reveal .jupyter-widgets").all_inner_texts())
        moves = []  # an explorer on a slide answers its controls, with no kernel (it holds every setting)
        for h, v in page.evaluate(SLIDES_WITH_JS, EXPLORER):
            page.evaluate(f"() => {{ location.hash = '#/{h}/{v}'; }}")
            explorer = page.locator(f".reveal .slides section.present:not(.stack) {EXPLORER}").first
            before = wait_for_figure(explorer, None, 10)
            key = explorer.evaluate(NUDGE_SLIDER_JS)
            moves.append((f"slider {key}", before, wait_for_figure(explorer, before, 10)))

        notes = page.evaluate(FIRST_NOTES_JS)
        assert notes, f"{deck.name} has no slide with speaker notes"
        page.evaluate(f"() => {{ location.hash = '#/{notes['h']}/{notes['v']}'; }}")
        with page.expect_popup(timeout=15_000) as popup_info:
            page.keyboard.press("s")
        speaker = popup_info.value
        shown = speaker.locator(".speaker-controls-notes .value")
        speaker.wait_for_function(
            "() => document.querySelector('.speaker-controls-notes .value')?.textContent.trim().length > 0",
            timeout=15_000,
        )
        speaker_notes = shown.inner_text().strip()
        speaker.close()
    run_log.append(
        f"slides {deck.name}: {total} slides, {formulas} formulas, {len(figure_slides)} slides with figures, "
        f"{len(requests.local)} local requests, refused: {requests.refused}; explorer moves: {[m[0] for m in moves]}"
    )
    assert requests.refused == [], f"{deck.name} asked another host for: {requests.refused}"
    assert not visit.missing, f"{deck.name} asked for files the build does not hold: {visit.missing}"
    assert not errors, f"{deck.name}: JavaScript errors: {errors}"
    assert (first, second) == (1, 2) and total > 2, f"{deck.name}: slide {first} then {second} of {total}"
    assert formulas > 0 and not math_errors, f"{deck.name}: {formulas} formulas typeset, errors {math_errors}"
    assert figure_slides and not broken, f"{deck.name}: {len(figure_slides)} slides with figures, broken: {broken}"
    assert not any(t in widget_text for t in WIDGET_FAILURE_TEXTS), widget_text[:300]
    assert " ".join(speaker_notes.split())[:60] == " ".join(notes["notes"].split())[:60]
    for control, before, after in moves:
        assert before and after and before != after, f"{deck.name}: an explorer's {control} changed nothing"
