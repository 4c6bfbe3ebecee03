"""The built web book as readers use it, checked in a real browser (headless Chromium).

`make test` builds the book first (`make book`); this file then serves `_build/html` on
127.0.0.1 (a free port, http.server in a thread), drives Debian's Chromium through Playwright
over every page once, and then checks (one test, so one crawl whatever the xdist scheduling; it
lists every problem found):

- every page in `_toc.yml` (plus the home page and the search page) loads with no console error,
  no uncaught exception, no failed request (network error or HTTP status >= 400) and no request
  to any host other than the local server: every other request is aborted and counted, and the
  count must be 0 (the widget, MathJax and RequireJS scripts are vendored by
  scripts/vendor_web_assets.sh);
- every `<img>`, in the built HTML and in the rendered page (widget outputs included), has
  alt text (not empty, not the file name docutils puts there when a cell has no alt metadata)
  and actually loaded;
- every piece of math is typeset by the vendored MathJax;
- every internal link (`a[href]` to this site) resolves: the file exists, and so does the
  element its `#anchor` names;
- the search page finds `register_buffer`;
- each page carrying stored widget state renders every widget view (controls or an image, not a
  blank area or an error), and the book has at least one such page;
- every notebook page has a download button that serves the notebook (.ipynb) itself;
- in the theme's dark mode, plot images sit on a white background without the theme's dimming
  filter (book/_static/bufferbook.css).

It writes a summary to artifacts/browser-report.json (also printed) and screenshots to
artifacts/ (git-ignored): home.png, chapter.png (a chapter's widget in light mode) and
chapter-dark.png (the same in dark mode).

Without Chromium or Playwright the test skips and says how to install them; under CI=true it
fails instead. BUFFERBOOK_BOOK_DIR points it at another built book (a folder holding _toc.yml
and _build/html), e.g. a temporary one; BUFFERBOOK_CHROMIUM at another Chromium binary.
"""
import functools
import http.server
import json
import os
import re
import shutil
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = Path(os.environ.get("BUFFERBOOK_BOOK_DIR", REPO)).resolve()
HTML = BOOK / "_build" / "html"
ARTIFACTS = REPO / "artifacts"
CHROMIUM = os.environ.get("BUFFERBOOK_CHROMIUM", "/usr/bin/chromium")  # Debian's Chromium
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("install it with: sudo apt-get install chromium  (or run `make system-deps` as "
                "root); Playwright drives this Debian Chromium and never downloads a browser")
IN_CI = os.environ.get("CI", "").lower() == "true"
TIMEOUT_MS = 60_000


def _unavailable(reason):
    """Skip with the reason and the fix, or fail under CI=true, where nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the browser test must run); {INSTALL_HINT}")
    pytest.skip(f"{reason}; {INSTALL_HINT}")


# ---------------------------------------------------------------------------------------------
# What the book should contain


def toc_pages(toc_path):
    """Source files listed in a jupyter-book `_toc.yml`, in reading order (root first)."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("sections", "chapters"):
                walk(entry.get(key))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return files


def source_of(docname):
    """The source file (.ipynb, .md, ...) of a toc entry given without suffix."""
    matches = sorted(BOOK.glob(docname + ".*"))
    matches = [m for m in matches if m.suffix in (".ipynb", ".md", ".rst")]
    return matches[0] if matches else None


def meaningful_alt(alt):
    """Alt text a reader can use: not missing or blank, and not a file name. (Without alt
    metadata, docutils sets an image's alt to its path, e.g. "../_images/<hash>.png".)"""
    alt = (alt or "").strip()
    return bool(alt) and not re.search(r"\.(png|jpe?g|gif|svg|webp)$", alt, re.IGNORECASE)


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (name == "name" and tag == "a"):
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def ids_in(path):
    parser = _Ids()
    parser.feed(Path(path).read_text(encoding="utf8", errors="replace"))
    return frozenset(parser.ids)


class _StaticResources(HTMLParser):
    """<img> alt texts and the URLs of resources a page loads by itself (not plain links)."""

    def __init__(self):
        super().__init__()
        self.images = []      # (src, alt or None)
        self.resources = []   # URLs in src/href of script, link, img, iframe, source, ...

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            alt = a.get("alt")
            self.images.append((a.get("src", "")[:80], None if alt == a.get("src") else alt))
        if tag in ("script", "img", "iframe", "source", "video", "audio", "embed") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") not in ("canonical",):
            self.resources.append(a["href"])


# ---------------------------------------------------------------------------------------------
# Local server and browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    index = HTML / "index.html"
    if not index.is_file():
        pytest.fail(f"{index} is missing: build the book first with `make book` "
                    "(`make test` does that before running the tests)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser_context(server):
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright is not importable ({exc}); it is in requirements.txt")
    profile = tempfile.mkdtemp(prefix="bufferbook-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900}, service_workers="block")
        context.set_default_timeout(TIMEOUT_MS)
        origin = urlsplit(server).netloc
        outside = []

        def route(route):
            # Only the local server may be asked for anything; count and abort the rest.
            if urlsplit(route.request.url).netloc == origin:
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort("blockedbyclient")

        context.route("**/*", route)
        context.outside_requests = outside
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Visiting a page

WIDGETS_RENDERED_JS = """() => {
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  if (views.length === 0) return true;
  const areas = document.querySelectorAll('.widget-subarea');
  return areas.length >= views.length &&
         Array.from(areas).every(a => a.querySelector('.jupyter-widgets, .widget-output, img'));
}"""

PAGE_FACTS_JS = """() => {
  const imgs = Array.from(document.querySelectorAll('img')).map(img => ({
    src: (img.getAttribute('src') || '').slice(0, 80),
    alt: img.getAttribute('alt'),
    alt_is_src: img.getAttribute('alt') === img.getAttribute('src'),
    loaded: img.complete && img.naturalWidth > 0,
    in_widget: !!img.closest('.widget-subarea'),
  }));
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  const views = document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]').length;
  const areas = Array.from(document.querySelectorAll('.widget-subarea')).map(a => {
    const r = a.getBoundingClientRect();
    return {width: r.width, height: r.height,
            controls: a.querySelectorAll('input, select, button, textarea, .widget-slider').length,
            images: a.querySelectorAll('img').length,
            text: a.innerText.slice(0, 300)};
  });
  const math = Array.from(document.querySelectorAll('.math'));
  const unrendered_math = math.filter(m => !m.querySelector('mjx-container'))
                              .map(m => m.textContent.slice(0, 60));
  const output_images = document.querySelectorAll('div.cell_output img').length;
  return {title: document.title, imgs, links, views, areas, math: math.length, unrendered_math,
          output_images,
          has_state: !!document.querySelector(
              'script[type="application/vnd.jupyter.widget-state+json"]')};
}"""


def visit(context, url, wait_for_widgets=True):
    """Load a page; return what it requested, logged and rendered."""
    page = context.new_page()
    log = {"requests": [], "failed": [], "console_errors": [], "page_errors": []}
    page.on("request", lambda r: log["requests"].append(r.url))
    page.on("requestfailed", lambda r: log["failed"].append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and log["failed"].append(f"{r.url} (HTTP {r.status})"))
    page.on("console", lambda m: m.type == "error" and log["console_errors"].append(m.text))
    page.on("pageerror", lambda e: log["page_errors"].append(str(e)))
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    if wait_for_widgets:
        try:
            page.wait_for_function(WIDGETS_RENDERED_JS, timeout=TIMEOUT_MS)
        except Exception:  # reported as unrendered widgets by the test below
            pass
        page.wait_for_load_state("networkidle")
    # MathJax typesets asynchronously after loading.
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise"
                  " ? MathJax.startup.promise.then(() => true) : true")
    facts = page.evaluate(PAGE_FACTS_JS)
    return page, log, facts


def broken_links_of(links, server):
    """Broken internal links of one page: missing files or missing anchors."""
    broken, checked = [], 0
    for href in links:
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" != server:
            continue
        checked += 1
        path = unquote(parts.path).lstrip("/")
        target = HTML / path
        if path == "" or target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href}: no file {target.relative_to(HTML)}")
            continue
        if parts.fragment and target.suffix == ".html":
            anchor = unquote(parts.fragment)
            if anchor not in ids_in(str(target)):
                broken.append(f"{href}: no element with id {anchor!r} in {target.relative_to(HTML)}")
    return broken, checked


# ---------------------------------------------------------------------------------------------
# The crawl (once per module) and the checks on its results


def crawl(context, server):
    """Visit every page; return the report (what was requested, logged, rendered, linked)."""
    docnames = toc_pages(BOOK / "_toc.yml")
    report = {"server": server, "book": str(HTML), "pages": [], "search": {}, "widgets": [],
              "downloads": [], "dark_mode": {}, "screenshots": []}
    ARTIFACTS.mkdir(exist_ok=True)

    targets = [("index.html", None)] + [(d + ".html", d) for d in docnames]
    for rel, docname in targets:
        url = f"{server}/{rel}"
        page, log, facts = visit(context, url)
        html_file = HTML / rel
        static = _StaticResources()
        if html_file.is_file():
            static.feed(html_file.read_text(encoding="utf8"))
        broken, n_links = broken_links_of(facts["links"], server)
        outside_links = sorted({h for h in facts["links"]
                                if urlsplit(h).scheme in ("http", "https")
                                and not h.startswith(server)})
        entry = {
            "page": rel, "final_url": page.url.replace(server, ""), "title": facts["title"],
            "requests": len(log["requests"]),
            "outside_requests": [u for u in log["requests"] if not u.startswith(server)
                                 and urlsplit(u).scheme in ("http", "https", "ws", "wss")],
            "failed_requests": log["failed"], "console_errors": log["console_errors"],
            "page_errors": log["page_errors"],
            "images": len(facts["imgs"]), "output_images": facts["output_images"],
            "images_without_alt": [i["src"] for i in facts["imgs"]
                                   if i["alt_is_src"] or not meaningful_alt(i["alt"])],
            "images_not_loaded": [i["src"] for i in facts["imgs"] if not i["loaded"]],
            "static_images_without_alt": [s for s, alt in static.images if not meaningful_alt(alt)],
            "static_outside_resources": [u for u in static.resources
                                         if re.match(r"(https?:)?//", u)],
            "links_checked": n_links, "broken_links": broken,
            "outside_links_not_followed": outside_links,
            "math": facts["math"], "unrendered_math": facts["unrendered_math"],
            "widget_views": facts["views"], "widget_areas": facts["areas"],
            "has_widget_state": facts["has_state"],
        }
        report["pages"].append(entry)

        if facts["has_state"]:
            report["widgets"].append({"page": rel, "views": facts["views"], "areas": facts["areas"]})
        if docname is not None:
            src = source_of(docname)
            if src is not None and src.suffix == ".ipynb":
                want = f"_sources/{docname}.ipynb"
                downloads = [h for h in facts["links"] if urlsplit(h).path.endswith("/" + want)]
                nb_file = HTML / want
                ok_nb = False
                if nb_file.is_file():
                    try:
                        ok_nb = "cells" in json.loads(nb_file.read_text(encoding="utf8"))
                    except ValueError:
                        ok_nb = False
                report["downloads"].append({"page": rel, "download_links": len(downloads),
                                            "notebook": want, "is_notebook": ok_nb})
        if rel == "index.html":
            shot = ARTIFACTS / "home.png"
            page.screenshot(path=str(shot))
            report["screenshots"].append(str(shot.relative_to(REPO)))
        page.close()

    # A chapter with a widget and a plot, on screen: light mode, then the theme's dark mode.
    chapters = [p for p in report["pages"] if p["page"].startswith("chapters/")] or report["pages"]
    ranked = sorted(chapters, key=lambda p: (not (p["widget_views"] and p["output_images"]),
                                             not p["output_images"], not p["widget_views"]))
    shot_page = ranked[0]["page"] if ranked else None
    if shot_page:
        for mode in ("light", "dark"):
            if mode == "dark":
                context.add_init_script(
                    "localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
            page, log, facts = visit(context, f"{server}/{shot_page}")
            target = page.locator(".widget-subarea").first
            if target.count() == 0:
                target = page.locator("div.cell_output img").first
            if target.count():
                target.scroll_into_view_if_needed()
                page.evaluate("window.scrollBy(0, -150)")
            name = "chapter.png" if mode == "light" else "chapter-dark.png"
            page.screenshot(path=str(ARTIFACTS / name))
            report["screenshots"].append(f"artifacts/{name}")
            if mode == "dark":
                report["dark_mode"] = page.evaluate("""() => ({
                  page: location.pathname,
                  theme: document.documentElement.dataset.theme,
                  images: Array.from(document.querySelectorAll('div.cell_output img')).map(img => {
                    const s = getComputedStyle(img);
                    return {src: (img.getAttribute('src') || '').slice(0, 60),
                            background: s.backgroundColor, filter: s.filter};
                  }),
                })""")
                report["dark_mode"]["failed_requests"] = log["failed"]
                report["dark_mode"]["console_errors"] = log["console_errors"]
            page.close()

    # Sphinx search, with the query in the URL as readers share it.
    page, log, _ = visit(context, f"{server}/search.html?q=register_buffer", wait_for_widgets=False)
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li').length > 0 || "
            "/(found|did not match)/i.test("
            "(document.querySelector('#search-results') || {}).innerText || '')",
            timeout=TIMEOUT_MS)
    except Exception:
        pass
    results = page.evaluate("""() => Array.from(document.querySelectorAll('#search-results li a'))
                                 .map(a => a.getAttribute('href'))""")
    report["search"] = {"query": "register_buffer", "results": results,
                        "summary": page.evaluate(
                            "() => (document.querySelector('#search-results p') || {}).innerText || ''"),
                        "failed_requests": log["failed"], "console_errors": log["console_errors"],
                        "page_errors": log["page_errors"]}
    page.close()

    pages = report["pages"]
    report["totals"] = {
        "pages_checked": len(pages) + 1,  # + the search page
        "requests": sum(p["requests"] for p in pages),
        "outside_requests_blocked": len(context.outside_requests),
        "failed_requests": sum(len(p["failed_requests"]) for p in pages),
        "console_errors": sum(len(p["console_errors"]) + len(p["page_errors"]) for p in pages),
        "images": sum(p["images"] for p in pages),
        "links_checked": sum(p["links_checked"] for p in pages),
        "widget_pages": len(report["widgets"]),
    }
    report["outside_requests_blocked"] = list(context.outside_requests)
    return report


def _per_page(report, key):
    return {p["page"]: p[key] for p in report["pages"] if p[key]}


def _rgb(css):
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    return values[:3], (values[3] if len(values) > 3 else 1.0)


# Each check returns a list of problems (empty: passed).

def check_offline_without_errors(report):
    problems = [f"request to an outside host (blocked): {u}" for u in report["outside_requests_blocked"]]
    for key, what in [("static_outside_resources", "loads a resource from an outside host"),
                      ("failed_requests", "failed request"), ("console_errors", "console error"),
                      ("page_errors", "uncaught exception")]:
        problems += [f"{page}: {what}: {v}" for page, vs in _per_page(report, key).items() for v in vs]
    expected = {d + ".html" for d in toc_pages(BOOK / "_toc.yml")} | {"index.html"}
    missing = expected - {p["page"] for p in report["pages"]}
    problems += [f"toc page not checked: {m}" for m in sorted(missing)]
    root = toc_pages(BOOK / "_toc.yml")[0]
    home = report["pages"][0]
    if not home["final_url"].endswith(f"/{root}.html"):
        problems.append(f"index.html did not open the root page {root}: {home['final_url']}")
    return problems


def check_alt_text(report):
    return ([f"{page}: <img> without alt in the built HTML: {src}"
             for page, srcs in _per_page(report, "static_images_without_alt").items() for src in srcs]
            + [f"{page}: <img> without alt in the rendered page: {src}"
               for page, srcs in _per_page(report, "images_without_alt").items() for src in srcs]
            + [f"{page}: image did not load: {src}"
               for page, srcs in _per_page(report, "images_not_loaded").items() for src in srcs])


def check_math(report):
    return [f"{page}: math not typeset: {m!r}"
            for page, ms in _per_page(report, "unrendered_math").items() for m in ms]


def check_links(report):
    problems = [f"{page}: broken link {b}" for page, bs in _per_page(report, "broken_links").items()
                for b in bs]
    if not sum(p["links_checked"] for p in report["pages"]):
        problems.append("no internal link found at all")
    return problems


def check_search(report):
    search = report["search"]
    problems = [f"search page: {v}" for key in ("failed_requests", "console_errors", "page_errors")
                for v in search[key]]
    if not search["results"]:
        problems.append(f"search.html?q=register_buffer found nothing: {search['summary']!r}")
    return problems


def check_widgets(report):
    if not report["widgets"]:
        return ["no page in the toc carries ipywidgets state (each chapter should)"]
    problems = []
    for w in report["widgets"]:
        if not w["views"]:
            problems.append(f"{w['page']}: widget state but no widget view")
        if len(w["areas"]) < w["views"]:
            problems.append(f"{w['page']}: {w['views']} widget views, {len(w['areas'])} rendered")
        for area in w["areas"]:
            text = area["text"].lower()
            if area["height"] <= 10 or area["width"] <= 10:
                problems.append(f"{w['page']}: blank widget area {area}")
            elif area["controls"] + area["images"] == 0:
                problems.append(f"{w['page']}: widget rendered no control and no image {area}")
            elif "error" in text or "kernel" in text:
                problems.append(f"{w['page']}: widget shows {area['text']!r}")
    return problems


def check_downloads(report):
    if not report["downloads"]:
        return ["no notebook page in the toc"]
    return ([f"{d['page']}: no download link to {d['notebook']}"
             for d in report["downloads"] if not d["download_links"]]
            + [f"{d['page']}: {d['notebook']} is not a notebook"
               for d in report["downloads"] if not d["is_notebook"]])


def check_dark_mode(report):
    dark = report["dark_mode"]
    if not dark:
        return ["no chapter page to check in dark mode"]
    problems = [f"dark mode: {v}" for key in ("failed_requests", "console_errors") for v in dark[key]]
    if dark["theme"] != "dark":
        problems.append(f"dark mode not applied: data-theme={dark['theme']!r}")
    if not dark["images"]:
        problems.append(f"{dark['page']}: no output image to check in dark mode")
    for img in dark["images"]:
        (r, g, b), alpha = _rgb(img["background"])
        if min(r, g, b) < 240 or alpha != 1.0:
            problems.append(f"{dark['page']}: output image not on white in dark mode: {img}")
        if img["filter"] not in ("none", ""):
            problems.append(f"{dark['page']}: output image dimmed in dark mode: {img}")
    return problems


def check_screenshots(report):
    problems = [f"{shot} looks empty" for shot in report["screenshots"]
                if (REPO / shot).stat().st_size < 10_000]
    missing = {"artifacts/home.png", "artifacts/chapter.png"} - set(report["screenshots"])
    return problems + [f"screenshot not taken: {m}" for m in sorted(missing)]


CHECKS = [check_offline_without_errors, check_alt_text, check_math, check_links, check_search,
          check_widgets, check_downloads, check_dark_mode, check_screenshots]


def test_web_book_in_browser(browser_context, server, request):
    """One test (one crawl of the book, one browser) running every check; all problems are
    listed together, and written with the full record to artifacts/browser-report.json."""
    report = crawl(browser_context, server)
    report["checks"] = {check.__name__: check(report) for check in CHECKS}
    out = ARTIFACTS / "browser-report.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")

    pages = report["pages"]
    summary = ["browser check of " + str(HTML), *(
        f"  {p['page']:<55} requests={p['requests']:<3} outside={len(p['outside_requests'])} "
        f"failed={len(p['failed_requests'])} console_errors={len(p['console_errors'])} "
        f"images={p['images']} links={p['links_checked']} widgets={p['widget_views']}"
        for p in pages),
        f"  search.html?q=register_buffer: {len(report['search']['results'])} results",
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

    problems = [f"[{name}] {p}" for name, found in report["checks"].items() for p in found]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
