"""Every slide of every deck fits a projector: 1280x720 and an older 1024x768.

Each deck is opened once per screen size; every slide is then shown in turn (reveal.js's
own navigation, by the address) and measured in the page. A slide fails when its content
is taller than the slide (the room loses its bottom), when code or output is cut off on
the right (a pre or output area that scrolls sideways, or anything that sticks out of the
slide), when it is blank, or when its code type is drawn smaller than MIN_CODE_PX screen pixels. Each
failing slide is named by its number (the one reveal.js shows, bottom right, and that
docs/instructor_guide.md uses) and its first heading or first line of code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lab_harness import REPO
from playwright.sync_api import Browser, Page
from static_pages import BUILD, built_pages, visit_offline, wait_for_math

SLIDES = BUILD / "slides"
DECKS = built_pages(SLIDES, ".slides.html", "slides") if SLIDES.exists() else []
SCREENS = {"1280x720": {"width": 1280, "height": 720}, "1024x768": {"width": 1024, "height": 768}}
# The smallest code type the room may be shown, in screen pixels at either size (1/45 of a 720-pixel-high screen).
MIN_CODE_PX = 16
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"

# Ready: reveal.js laid the deck out and every widget view was drawn (an explorer with its figure).
DECK_READY_JS = f"""() => document.querySelector('.reveal.ready') !== null
    && document.body.classList.contains('normlab-paginated')
    && [...document.querySelectorAll('.jp-OutputArea-output')].every(o => !o.querySelector(
        'script[type="{WIDGET_VIEW_MIME}"]') || o.querySelector('.jupyter-widgets img'))"""

# A slide is measured where it rests, not while reveal.js slides it in.
NO_TRANSITIONS_CSS = ".reveal .slides section, .reveal .slides { transition: none !important; }"
# Show each slide in turn (by the address, as a reader's link does) and measure it. Lengths are in the
# slide's own pixels (reveal.js scales the whole slide to the screen), code type in screen pixels.
MEASURE_SLIDES_JS = """async () => {
    const frame = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const slidesBox = document.querySelector('.reveal .slides');
    const width = parseFloat(slidesBox.style.width), height = parseFloat(slidesBox.style.height);
    const slides = [];
    [...document.querySelectorAll('.reveal .slides > section')].forEach((top, h) => {
        const stack = top.querySelectorAll(':scope > section');
        (stack.length ? [...stack] : [top]).forEach((slide, v) => slides.push({slide, h, v}));
    });
    const label = (slide) => {
        const heading = slide.querySelector('h1, h2, h3, h4');
        if (heading) return heading.textContent.replace(/¶/g, '').trim().slice(0, 70);
        const code = slide.querySelector('.jp-InputArea pre');
        if (code) return code.textContent.split('\\n')[0].trim().slice(0, 70);
        return (slide.textContent.trim().split('\\n')[0] || '(empty)').slice(0, 70);
    };
    const what = (el) => (el.className && typeof el.className === 'string'
        ? el.tagName.toLowerCase() + '.' + el.className.trim().split(/\\s+/)[0] : el.tagName.toLowerCase());
    const results = [];
    for (const [n, {slide, h, v}] of slides.entries()) {
        location.hash = `#/${h}/${v}`;
        await frame();
        const scale = slidesBox.getBoundingClientRect().width / width;
        const box = slide.getBoundingClientRect();
        const cut = [];
        for (const el of slide.querySelectorAll('pre, .jp-OutputArea-output, .jp-RenderedHTMLCommon, table')) {
            if (el.getClientRects().length && el.scrollWidth > el.clientWidth + 1
                && getComputedStyle(el).overflowX !== 'visible') {
                cut.push(`${what(el)} scrolls ${el.scrollWidth - el.clientWidth}px`);
            }
        }
        if (slide.scrollWidth > width + 1) cut.push(`the slide is ${slide.scrollWidth}px wide`);
        // What the room reads (text, pictures, formulas) must lie inside the slide; a box's padding may not.
        const right = box.left + width * scale + 1, left = box.left - 1;
        const outside = new Set();
        const walker = document.createTreeWalker(slide, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            if (!node.textContent.trim()) continue;
            const range = document.createRange();
            range.selectNodeContents(node);
            const whole = range.getBoundingClientRect();
            if (whole.right <= right && whole.left >= left) continue;
            // Word by word: a wrapped line's trailing spaces hang past the edge, and nobody reads them.
            for (const word of node.textContent.matchAll(/\\S+/g)) {
                range.setStart(node, word.index);
                range.setEnd(node, word.index + word[0].length);
                const r = range.getBoundingClientRect();
                if (r.width > 0 && (r.right > right || r.left < left)) outside.add(node.parentElement);
            }
        }
        for (const el of slide.querySelectorAll('img, svg, canvas')) {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && (r.right > right || r.left < left)) outside.add(el);
        }
        if (outside.size) cut.push(`${[...outside].slice(0, 3).map(what).join(', ')} beyond the slide's edge`);
        const codeSizes = [...slide.querySelectorAll('pre')].filter(p => p.getClientRects().length)
            .map(p => parseFloat(getComputedStyle(p).fontSize) * scale);
        results.push({
            number: n + 1, h, v, label: label(slide), cut, text: slide.textContent.replace(/\\s+/g, ' '),
            blank: !slide.textContent.trim() && !slide.querySelector('img, svg, canvas'),
            tall: Math.max(0, slide.scrollHeight - height),
            code_px: codeSizes.length ? Math.min(...codeSizes) : null,
        });
    }
    return {width, height, results};
}"""


def measure_deck(page: Page) -> dict:
    """Wait for the deck (math typeset, widgets drawn), then measure every slide."""
    page.wait_for_function(DECK_READY_JS, timeout=60_000, polling=250)
    wait_for_math(page)
    page.add_style_tag(content=NO_TRANSITIONS_CSS)
    return page.evaluate(MEASURE_SLIDES_JS)


MEASURED: dict[tuple[str, str], dict] = {}  # (deck, screen) -> what the fit test measured, for the guide's walk


def measured_deck(browser: Browser, deck: Path, screen: str) -> dict:
    """The deck measured at ``screen``: once per run, whichever test asks first."""
    if (deck.name, screen) not in MEASURED:
        with visit_offline(browser, SLIDES, deck.name, SCREENS[screen]) as visit:
            MEASURED[deck.name, screen] = measure_deck(visit.page)
    return MEASURED[deck.name, screen]


def misfits(measured: dict) -> list[str]:
    """One line per slide that does not fit, naming it."""
    lines = []
    for slide in measured["results"]:
        problems = list(slide["cut"]) + (["the slide is blank"] if slide["blank"] else [])
        if slide["tall"] > 0:
            problems.append(f"{slide['tall']}px taller than the slide")
        if slide["code_px"] is not None and slide["code_px"] < MIN_CODE_PX - 0.05:
            problems.append(f"code type {slide['code_px']:.1f}px < {MIN_CODE_PX}px")
        if problems:
            lines.append(
                f"slide {slide['number']} ({slide['h']}/{slide['v']}) {slide['label']!r}: {'; '.join(problems)}"
            )
    return lines


@pytest.mark.parametrize("screen", SCREENS, ids=list(SCREENS))
@pytest.mark.parametrize("deck", DECKS, ids=[p.name.removesuffix(".slides.html") for p in DECKS])
def test_every_slide_fits_the_screen(deck: Path, screen: str, browser: Browser, run_log: list[str]) -> None:
    measured = measured_deck(browser, deck, screen)
    results = measured["results"]
    bad = misfits(measured)
    cut = sum(bool(s["cut"]) for s in results)
    tall = sum(s["tall"] > 0 for s in results)
    sizes = [s["code_px"] for s in results if s["code_px"] is not None]
    run_log.append(
        f"fit {deck.name} at {screen}: {len(results)} slides, {cut} cut off on the right, {tall} taller than the "
        f"slide ({measured['width']:.0f}x{measured['height']:.0f}); smallest code type {min(sizes):.1f}px"
    )
    assert results, f"{deck.name}: no slides measured"
    assert not bad, f"{deck.name} at {screen}: {len(bad)} of {len(results)} slides do not fit:\n" + "\n".join(bad)


# A slide made to fail both ways: a line of code that cannot wrap, and a box taller than the slide.
PLANT_MISFITS_JS = """() => {
    const first = document.querySelector('.reveal .slides > section > section');
    const pre = document.createElement('pre');
    pre.style.whiteSpace = 'pre';
    pre.style.overflowX = 'auto';
    pre.textContent = 'x = ' + '1'.repeat(300);
    first.appendChild(pre);
    const second = document.querySelectorAll('.reveal .slides > section > section')[1];
    const tall = document.createElement('div');
    tall.style.height = '2000px';
    second.appendChild(tall);
}"""


def test_the_fit_check_names_a_slide_cut_off_and_a_slide_too_tall(browser: Browser) -> None:
    deck = DECKS[0]
    with visit_offline(browser, SLIDES, deck.name, SCREENS["1280x720"]) as visit:
        visit.page.wait_for_function(DECK_READY_JS, timeout=60_000, polling=250)
        visit.page.evaluate(PLANT_MISFITS_JS)
        bad = misfits(measure_deck(visit.page))
    assert len(bad) == 2, bad
    assert bad[0].startswith("slide 1 (0/0) ") and "pre scrolls" in bad[0] and "beyond the slide's edge" in bad[0]
    assert bad[1].startswith("slide 2 ") and "px taller than the slide" in bad[1]


GUIDE = REPO / "docs" / "instructor_guide.md"
# The path's table: "| 0:05–0:25 | 01 §1 Feature scales | 01, slides 3–11 | ...".
PATH_ROW = re.compile(r"^\| [\d:–]+ \| (?P<stop>[^|]+) \| (?P<deck>\d\d), slides (?P<first>\d+)–(?P<last>\d+) \|", re.M)
# Under a stop's heading ("### 0:05–0:25 · Feature scales (01 §1)"), each paragraph or bullet that names slides
# ("Slide 6", "slides 21–24") quotes what they show: `code` and "printed text with a number".
STOP_HEADING = re.compile(r"^### .*\((?P<deck>\d\d)\b[^)]*\)$")
SLIDE_REF = re.compile(r"[Ss]lides? (\d+)(?:–(\d+))?")
QUOTED = re.compile(r"`([^`]+)`|\"([^\"]*\d[^\"]*)\"")


def guide_stops() -> list[tuple[str, list[int], list[str], str]]:
    """(deck, slide numbers, quoted texts, the guide's line) for every line of the path that names slides."""
    path = GUIDE.read_text().split("## The path", 1)[1].split("\n## ", 1)[0]
    stops, deck = [], None
    for line in path.splitlines():
        heading = STOP_HEADING.match(line)
        if heading:
            deck = heading["deck"]
            continue
        refs = [(int(a), int(b or a)) for a, b in SLIDE_REF.findall(line)]
        if deck and refs and not line.startswith("|"):
            numbers = [n for a, b in refs for n in range(a, b + 1)]
            quoted = [code or text for code, text in QUOTED.findall(line)]
            stops.append((deck, numbers, quoted, line))
    return stops


def test_the_guides_90_minute_path_shows_what_it_says_at_1280x720(browser: Browser) -> None:
    """Every slide the instructor guide's path names exists, fits, starts the section named, and shows what is quoted."""
    decks = {deck.name[:2]: deck for deck in DECKS}
    rows = list(PATH_ROW.finditer(GUIDE.read_text()))
    stops = guide_stops()
    assert len(rows) == 6 and len(stops) >= 12, (len(rows), len(stops))
    problems = []
    for row in rows:
        measured = measured_deck(browser, decks[row["deck"]], "1280x720")
        slides = measured["results"]
        first, last = int(row["first"]), int(row["last"])
        if last > len(slides):
            problems.append(f"{row['deck']}, slides {first}–{last}: the deck has {len(slides)} slides")
            continue
        section = re.search(r"§(\d+)", row["stop"])
        if section and not slides[first - 1]["label"].startswith(f"{section[1]} · "):
            problems.append(f"{row['deck']} slide {first} opens {slides[first - 1]['label']!r}, not §{section[1]}")
        problems += [f"{row['deck']}: {line}" for line in misfits({"results": slides[first - 1 : last]})]
    for deck, numbers, quoted, line in stops:
        slides = measured_deck(browser, decks[deck], "1280x720")["results"]
        shown = " ".join(slides[n - 1]["text"] for n in numbers if n <= len(slides))
        missing = [q for q in quoted if " ".join(q.split()) not in shown]
        if max(numbers) > len(slides) or missing:
            problems.append(f"{deck}, slides {numbers}: not shown {missing} ({line[:60]}...)")
    assert not problems, "\n".join(problems)
