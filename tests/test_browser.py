"""The built web book as readers use it, checked in a real browser (headless Chromium).

`make test` builds the book first (`make book`); this file serves `_build/html` on 127.0.0.1
(a free port, http.server in a thread), drives Debian's Chromium through Playwright over every
page once and runs every check of tests/browser_checks.py on what it saw (one test, so one
crawl whatever the xdist scheduling; it lists every problem found):

- every page in `_toc.yml` (plus the home page and the search page) loads with no console error,
  no uncaught exception, no failed request and no request to any host other than the local
  server (every other request is aborted and counted; the count must be 0), and has a favicon;
- alt text on every image (built HTML, rendered page, every stored widget state, every state a
  widget was seen to show), math typeset (SVG, at build time), internal links resolve, search
  finds `register_buffer`;
- widgets: each renders, and every control of every widget on every page, moved through its
  positions, changes what the widget shows (the states are stored with the notebook and
  switched in the browser, bufferbook.widget_states);
- axe-core (pinned in package-lock.json): no serious or critical violation on any page;
- weight: chapter pages at most 2.5 MB, other pages 1 MB (uncompressed); the widget script only
  on pages with widgets; no MathJax, fontawesome.js, RequireJS or thebe; icons still drawn;
- no code or output block clipped (scrolling) on a 1280-px screen; no page wider than a 390-px
  phone screen, widget controls usable there; nothing cut off in print;
- the download menu of every page links the notebook, the course bundle and the book's PDF, and
  the bundle downloads (from the menu, as a reader does) with chapters, exercises and
  `bufferbook`; launch buttons and the repository link exactly when `_config.yml` names a
  repository;
- in the theme's dark mode, plot images sit on white without the dimming filter.

It writes the full record to artifacts/browser-report.json and prints a per-page summary
(bytes, requests, axe violations, width at 390 px, clipped blocks, widgets: states seen /
combinations visited); screenshots go to artifacts/ (home.png, chapter.png, chapter-dark.png).

Without Chromium or Playwright the test skips and says how to install them; under CI=true it
fails instead. BUFFERBOOK_BOOK_DIR points it at another built book (a folder holding _toc.yml,
_config.yml and _build/html), e.g. tests/sample_book.py's; BUFFERBOOK_CHROMIUM at another
Chromium binary.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import browser_checks as bc

REPO = Path(__file__).resolve().parents[1]
BOOK = Path(os.environ.get("BUFFERBOOK_BOOK_DIR", REPO)).resolve()
HTML = BOOK / "_build" / "html"
CHROMIUM = os.environ.get("BUFFERBOOK_CHROMIUM", "/usr/bin/chromium")  # Debian's Chromium
INSTALL_HINT = ("install it with: sudo apt-get install chromium  (or run `make system-deps` as "
                "root); Playwright drives this Debian Chromium and never downloads a browser")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason):
    """Skip with the reason and the fix, or fail under CI=true, where nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser test must run); {INSTALL_HINT}")
    pytest.skip(f"{reason}; {INSTALL_HINT}")


def browse(html_dir):
    """(playwright, context, server, stop) for a built book, or skip/fail without a browser."""
    if not (html_dir / "index.html").is_file():
        pytest.fail(f"{html_dir / 'index.html'} is missing: build the book first with "
                    "`make book` (`make test` does that before running the tests)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"Chromium not found at {CHROMIUM}")
    if not bc.AXE.is_file():
        pytest.fail(f"{bc.AXE} is missing: run `make web-assets` (npm ci of package-lock.json)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        unavailable(f"Playwright is not importable ({exc}); it is in requirements.txt")
    return sync_playwright, bc.serve(html_dir)


def run_all_checks(book, html_dir, request, prefix=""):
    sync_playwright, (httpd, server) = browse(html_dir)
    profile = tempfile.mkdtemp(prefix="bufferbook-chromium-")
    try:
        with sync_playwright() as p:
            context = bc.open_context(p, CHROMIUM, profile, server)
            report = bc.crawl(context, server, book, html_dir, prefix)
            chapters = [q for q in report["pages"] if (q["docname"] or "").startswith("chapters/")]
            ranked = sorted(chapters or report["pages"],
                            key=lambda q: (not (q["widget_views"] and q["output_images"]),
                                           not q["output_images"], not q["widget_views"]))
            bc.extra_pages(context, server, report, ranked[0]["page"] if ranked else None,
                           prefix)
            bc.totals(report, context)
            context.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    report["checks"] = {check.__name__: check(report) for check in bc.CHECKS}
    out = bc.ARTIFACTS / f"{prefix}browser-report.json"
    out.write_text(json.dumps(report, indent=2, default=sorted) + "\n", encoding="utf8")

    summary = [f"browser check of {html_dir}", *("  " + line for line in bc.summary_lines(report)),
               f"  search.html?q=register_buffer: {len(report['search']['results'])} results",
               f"  bundle downloaded from the menu: {report['bundle_download']}",
               f"  totals: {json.dumps(report['totals'])}",
               *(f"  {name}: {'ok' if not found else f'{len(found)} problem(s)'}"
                 for name, found in report["checks"].items()),
               f"  screenshots: {', '.join(report['screenshots'])}",
               f"  full report: {out.relative_to(REPO)}"]
    # Shown with or without -s; under pytest-xdist the JSON file is the record.
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + "\n".join(summary), flush=True)
    else:
        print("\n".join(summary))
    return report


def test_web_book_in_browser(request):
    """One crawl of the book, one browser, every check; all problems listed together."""
    report = run_all_checks(BOOK, HTML, request)
    problems = [f"[{name}] {p}" for name, found in report["checks"].items() for p in found]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
