"""The whole book as one PDF (scripts/build_pdf.py, run by `make book` and `make pdf`).

The PDF `make book` wrote is checked here (every page of the book in it, an outline, A4);
tests/test_browser.py checks that every page links it. The build itself refuses to print when
a block would be cut off; the last test shows that this check catches such a block.
"""
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import build_pdf  # noqa: E402
from book_toc import toc_files  # noqa: E402
from bufferbook_web import DOWNLOADS  # noqa: E402

PDF = ROOT / "_build" / "html" / DOWNLOADS["pdf"]
HAS_CHROMIUM = os.path.isfile(build_pdf.CHROMIUM) and os.access(build_pdf.CHROMIUM, os.X_OK)


def _need_chromium():
    if not HAS_CHROMIUM:
        message = f"Chromium not found at {build_pdf.CHROMIUM}: install it (make system-deps)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_the_book_pdf_holds_every_page_with_an_outline():
    _need_chromium()
    if not PDF.is_file():
        pytest.fail(f"{PDF} is missing: `make book` (or `make pdf`) prints it")
    data = PDF.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert pages >= len(toc_files(ROOT / "_toc.yml"))  # every page starts on a new sheet
    assert b"/Outlines" in data  # headings as a PDF outline
    assert re.search(rb"/MediaBox\s*\[0 0 59[0-9.]+ 84[0-9.]+\]", data)  # A4 portrait


@pytest.mark.parametrize("wrap, cut_off", [("pre", True), ("pre-wrap", False)])
def test_a_block_wider_than_the_printed_column_is_caught(wrap, cut_off):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    line = "x = " + "1 + " * 60
    html = (f'<section class="bufferbook-print-page" data-page="sample">'
            f'<pre style="white-space: {wrap}">{line}</pre></section>')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=build_pdf.CHROMIUM,
                                    args=build_pdf.CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": build_pdf.COLUMN_PX, "height": 800})
        page.emulate_media(media="print")
        page.set_content(html)
        found = page.evaluate(build_pdf.OVERFLOW)
        browser.close()
    assert bool(found) == cut_off, found
    if cut_off:
        assert found[0]["page"] == "sample" and found[0]["element"] == "pre"
