"""`make slides` and `make site`: reveal.js decks and a static reading copy that work offline.

The HTML that nbconvert writes loads reveal.js, require.js, jQuery, MathJax 2 and the
widget HTML manager from CDNs by default. Here every one of them points at a copy under
``<output>/vendor/``, taken from ``web/node_modules`` (pinned in web/package-lock.json and
installed by `make web-assets`, which runs `npm ci`). A deck or site folder is therefore
complete on its own: copy it to a laptop or a USB stick and open it without a network.

Both are built from build/executed/, a copy of each notebook that this script runs in a
fresh kernel with its widget state saved (``execute``); the stored notebooks are never
written. Widgets are drawn from that state without a kernel, and the explorers still work:
each one holds every setting's figure, and the browser shows the one its controls choose.

    python scripts/offline_html.py execute notebooks/00_start_here.ipynb build/executed/00_start_here.ipynb
    python scripts/offline_html.py slides build/slides build/executed/*.ipynb
    python scripts/offline_html.py site build/site build/executed/*.ipynb
"""

from __future__ import annotations

import base64
import html
import io
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter, SlidesExporter
from nbconvert.exporters import Exporter
from PIL import Image

from execute_notebooks import run_top_to_bottom

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "web" / "node_modules"
EXECUTED_DIR = REPO / "build" / "executed"
VENDOR = "vendor"
TEMPLATES = Path(__file__).resolve().parent / "nbconvert_templates"

# What the pages load, as (package, path inside it). Directories are copied whole.
# MathJax 2: only the files that the "TeX-AMS_CHTML-full,Safe" configuration fetches
# (CommonHTML output with the TeX web fonts), 8 MB of the package's 73 MB.
MATHJAX_PARTS = [
    "MathJax.js",
    "config/TeX-AMS_CHTML-full.js",
    "config/Safe.js",
    "extensions",
    "jax/input/TeX",
    "jax/output/CommonHTML",
    "jax/element",
    "fonts/HTML-CSS/TeX/woff",
    "localization/en",
]
# The widget manager: its AMD bundle and the icon fonts its CSS refers to (next to it), as WOFF2 and WOFF,
# which every browser since 2016 reads (its .ttf, .eot and .svg copies, 2.5 MB, are for older ones).
HTML_MANAGER_FONTS = ("*.woff2", "*.woff")
COMMON_ASSETS = [
    ("requirejs", "require.js"),
    ("jquery", "dist/jquery.min.js"),
    ("@jupyter-widgets/html-manager", "dist/embed-amd.js"),
    *(("mathjax", part) for part in MATHJAX_PARTS),
]
# reveal.js: the script, its CSS, the "white" theme and its font, the notes plugin (the speaker view is inside
# notes.js); not its other themes, source maps and ES-module copies (3.3 MB).
REVEAL_ASSETS = [
    ("reveal.js", "dist/reveal.js"),
    ("reveal.js", "dist/reveal.css"),
    ("reveal.js", "dist/theme/white.css"),
    ("reveal.js", "dist/theme/fonts/source-sans-pro"),
    ("reveal.js", "plugin/notes/notes.js"),
]

MISSING_ASSETS = (
    "The browser assets are not installed: {missing} does not exist. "
    "Run `make web-assets` (it runs `npm ci` in web/, from the pinned web/package-lock.json)."
)


def copy_assets(output_dir: Path, with_reveal: bool) -> list[Path]:
    """Copy the pinned assets into ``output_dir/vendor/<package>/...``; return what was copied."""
    assets = COMMON_ASSETS + (REVEAL_ASSETS if with_reveal else [])
    copied = []
    for package, part in assets:
        source = NODE_MODULES / package / part
        if not source.exists():
            raise FileNotFoundError(MISSING_ASSETS.format(missing=source.relative_to(REPO)))
        target = output_dir / VENDOR / package / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        copied.append(target)
    manager_dist = NODE_MODULES / "@jupyter-widgets/html-manager/dist"
    for pattern in HTML_MANAGER_FONTS:
        for font in manager_dist.glob(pattern):
            shutil.copy2(font, output_dir / VENDOR / "@jupyter-widgets/html-manager/dist" / font.name)
    return copied


def exporter_options(depth: int = 0) -> dict[str, str]:
    """nbconvert HTML exporter traits that point every script at vendor/ (``depth``: folders below it)."""
    up = "../" * depth + VENDOR
    return {
        "require_js_url": f"{up}/requirejs/require.js",
        "jquery_url": f"{up}/jquery/dist/jquery.min.js",
        "mathjax_url": f"{up}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
        "widget_renderer_url": f"{up}/@jupyter-widgets/html-manager/dist/embed-amd.js",
        # Not loaded when widget_renderer_url is set; pointed here so no CDN name is left in a page.
        "jupyter_widgets_base_url": f"{up}/",
    }


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def recompress_widget_pngs(nb: nbformat.NotebookNode) -> tuple[int, int]:
    """Re-encode every PNG in the notebook's widget state losslessly (Pillow's ``optimize``), keeping the smaller.

    The explorers' frames are most of a page's weight; the same pixels in fewer bytes make the deck and the
    site about 4 MB lighter each. Returns the PNG bytes before and after.
    """
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    before = after = 0
    for model in state.values():
        for buffer in model.get("buffers", []):
            raw = base64.b64decode(buffer["data"])
            if buffer.get("encoding") != "base64" or not raw.startswith(PNG_SIGNATURE):
                continue
            out = io.BytesIO()
            with Image.open(io.BytesIO(raw)) as image:
                image.save(out, "PNG", optimize=True)
            smaller = min(raw, out.getvalue(), key=len)
            before, after = before + len(raw), after + len(smaller)
            buffer["data"] = base64.b64encode(smaller).decode("ascii")
    return before, after


def execute_with_widget_state(source: Path, target: Path, timeout: int = 300) -> None:
    """Run ``source`` top to bottom in a fresh kernel from its folder; write it with its widget state.

    ``store_widget_state=True`` puts every live widget's state into the notebook's
    metadata, which nbconvert's HTML turns into widgets drawn without a kernel. The
    notebooks in notebooks/ are never written: their outputs change only by `make notebooks`.
    """
    nb, _ = run_top_to_bottom(source, timeout)
    if "widgets" not in nb.metadata:
        has_views = any(
            "application/vnd.jupyter.widget-view+json" in output.get("data", {})
            for cell in nb.cells
            for output in cell.get("outputs", [])
        )
        if has_views:
            raise RuntimeError(f"{source.name} shows widgets, but nbclient stored no widget state.")
    recompress_widget_pngs(nb)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def notebook_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The text of the notebook's first level-1 heading ("# 01 · Why normalization helps")."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def slides_exporter() -> Exporter:
    """reveal.js 5 from vendor/, speaker notes (press S), slide numbers; a 1024x720 slide, and one taller than
    that continues on slides below it (nbconvert_templates/normlab_reveal/paginate.js)."""
    return SlidesExporter(
        template_name="normlab_reveal",
        extra_template_basedirs=[str(TEMPLATES)],
        reveal_url_prefix=f"{VENDOR}/reveal.js",
        reveal_theme="white",  # "simple" and most others @import Google Fonts; white bundles its font
        reveal_number="c/t",
        reveal_width="1024",
        reveal_height="720",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        **exporter_options(),
    )


def site_exporter() -> Exporter:
    """JupyterLab's look (the "lab" template), every script from vendor/."""
    return HTMLExporter(template_name="lab", **exporter_options())


KINDS = {
    "slides": (
        slides_exporter,
        ".slides.html",
        True,
        "normlab slides",
        "Arrow keys or space to advance, S for the speaker view with notes, F for full screen, Esc for the overview.",
    ),
    "site": (
        site_exporter,
        ".html",
        False,
        "normlab: a reading copy",
        "Every notebook as run, with its figures, math and widgets. The explorers work here too, without Python: each holds the figure of every setting of its controls. The exercises need JupyterLab (make lab).",
    ),
}


def build(kind: str, output_dir: Path, notebooks: list[Path]) -> list[Path]:
    """Export every executed notebook into ``output_dir``, write index.html, copy the assets."""
    make_exporter, suffix, with_reveal, heading, how = KINDS[kind]
    output_dir.mkdir(parents=True, exist_ok=True)
    copy_assets(output_dir, with_reveal)
    exporter = make_exporter()
    pages = []
    for path in sorted(notebooks):
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook_title(nb, path.stem)}})
        page = output_dir / f"{path.stem}{suffix}"
        page.write_text(str(body), encoding="utf-8")
        pages.append((page, notebook_title(nb, path.stem)))
    items = "\n".join(f'  <li><a href="{html.escape(p.name)}">{html.escape(t)}</a></li>' for p, t in pages)
    index = output_dir / "index.html"
    index.write_text(
        f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{heading}</title>
<style>body {{ font-family: sans-serif; max-width: 42em; margin: 2em auto; line-height: 1.5; }}</style></head>
<body>
<h1>{heading}</h1>
<p>{html.escape(how)}</p>
<ul>
{items}
</ul>
</body>
</html>
""",
        encoding="utf-8",
    )
    return [index] + [p for p, _ in pages]


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "execute":
        execute_with_widget_state(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] in KINDS:
        for page in build(argv[0], Path(argv[1]), [Path(p) for p in argv[2:]]):
            print(f"wrote {page}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
