"""A built web book as readers use it, checked in a real browser (Debian's Chromium through
Playwright): the crawl and the checks behind tests/test_browser.py (this book) and
tests/test_web_sample_book.py (a small book built from tests/fixtures/web/).

`crawl(context, server, book)` serves nothing itself: it visits every page of the book's
`_toc.yml` (plus the home page and the search page) on `server` and records, per page:

- requests (count, bytes: the uncompressed size of every response), failed requests, console
  errors, uncaught exceptions, requests to other hosts (the browser context aborts them);
- images and their alt text (in the built HTML and in the rendered page), math (typeset to SVG
  when the book was built), internal links (file and #anchor exist), the download menu (the
  notebook, the course bundle, the book's PDF), launch buttons and repository link;
- axe-core's violations (serious and critical ones fail);
- code and output blocks (`pre`) wider than their box on a 1280-px screen (clipped: they
  scroll), with every collapsed block opened;
- the page's width on a 390-px phone screen, what makes it wider, and the widget controls'
  size there;
- blocks that would be cut off when printed (the column of scripts/build_pdf.py);
- each widget: every control (dropdown, selection or plain slider by keyboard, toggle
  buttons, radio buttons, checkbox) moved through its positions, all combinations when there
  are at most MAX_COMBINATIONS (a Gray-code walk: one control, one step at a time), each
  control alone otherwise; after each move the visible output (text and images of the widget,
  not its controls) is read, and each image shown must have alt text.

`CHECKS` turn the report into problems (strings); the tests assert there are none, print a
per-page summary and write the whole record to artifacts/.
"""
import functools
import json
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "book" / "_ext"))
from book_toc import toc_files  # noqa: E402
from build_pdf import COLUMN_PX  # noqa: E402  (the printed column of the book's PDF)
from build_pdf import serve  # noqa: E402  (a quiet local HTTP server on a free port)
from bufferbook_web import DOWNLOADS  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
CHAPTER_BUDGET = 2_500_000   # bytes, uncompressed: chapters (pages under chapters/ or with widgets)
PAGE_BUDGET = 1_000_000      # every other page
MAX_COMBINATIONS = 64        # a widget with more is checked one control at a time
MIN_CONTROL_PX = 100         # a slider track, a dropdown on a phone
CODE_COLUMNS = 80            # what a code or output line may hold (tests/test_notebook_sources.py)
AXE_FAILING = ("serious", "critical")


# ---------------------------------------------------------------------------------------------
# What the book should contain


def source_of(book, docname):
    """The source file (.ipynb, .md, ...) of a toc entry given without suffix."""
    matches = sorted(Path(book).glob(docname + ".*"))
    matches = [m for m in matches if m.suffix in (".ipynb", ".md", ".rst")]
    return matches[0] if matches else None


def repository_url(book):
    config = yaml.safe_load((Path(book) / "_config.yml").read_text(encoding="utf8")) or {}
    return ((config.get("repository") or {}).get("url") or "").strip()


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
    """<img> alt texts, resources a page loads by itself, and stored widget states."""

    def __init__(self):
        super().__init__()
        self.images = []      # (src, alt or None)
        self.resources = []   # URLs in src/href of script, link, img, iframe, source, ...
        self.widget_state = []
        self._in_state = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            alt = a.get("alt")
            self.images.append((a.get("src", "")[:80], None if alt == a.get("src") else alt))
        if tag in ("script", "img", "iframe", "source", "video", "audio", "embed") and a.get("src"):
            self.resources.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") not in ("canonical",):
            self.resources.append(a["href"])
        self._in_state = tag == "script" and a.get("type") == \
            "application/vnd.jupyter.widget-state+json"

    def handle_data(self, data):
        if self._in_state:
            self.widget_state.append(data)

    def handle_endtag(self, tag):
        self._in_state = False


class _ImgAlts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.alts = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))


def stored_states_without_alt(state_json_texts):
    """Images in stored widget states (HTML widgets' values) that carry no usable alt."""
    missing, states = [], 0
    for text in state_json_texts:
        try:
            models = json.loads(text).get("state", {})
        except ValueError:
            continue
        for model_id, model in models.items():
            value = model.get("state", {}).get("value")
            if model.get("model_name") not in ("HTMLModel", "HTMLMathModel") or not value:
                continue
            states += 1
            parser = _ImgAlts()
            parser.feed(value)
            missing += [model_id for alt in parser.alts if not meaningful_alt(alt)]
    return states, missing


# ---------------------------------------------------------------------------------------------
# Browser (the local server is scripts/build_pdf.py's serve)


def open_context(playwright, chromium, profile, server):
    """A Chromium context whose every request to a host other than ``server`` is aborted and
    recorded in ``context.outside_requests``."""
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
        viewport=DESKTOP, service_workers="block", accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    origin = urlsplit(server).netloc
    outside = []

    def route(route):
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", route)
    context.outside_requests = outside
    return context


# ---------------------------------------------------------------------------------------------
# In-page measurements (JavaScript)

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
  const widget_labels = Array.from(document.querySelectorAll('.widget-subarea .widget-label'))
    .map(l => l.innerHTML);
  const math = Array.from(document.querySelectorAll('.math'));
  const unrendered_math = math.filter(m => !m.querySelector('mjx-container svg'))
                              .map(m => m.textContent.slice(0, 60));
  const menu = sel => Array.from(document.querySelectorAll(sel)).map(a => a.href);
  const icon = Array.from(document.querySelectorAll('.search-button-field i, i.fa-solid'))
    .find(i => i.checkVisibility());
  const glyph = icon ? getComputedStyle(icon, '::before') : null;
  // Every character drawn with an icon font (icons in the HTML, and those the style sheets
  // put before or after elements, e.g. admonition titles).
  const icon_chars = new Set();
  for (const el of document.querySelectorAll('body *')) {
    for (const pseudo of ['::before', '::after']) {
      const style = getComputedStyle(el, pseudo);
      if (!/Font Awesome/.test(style.fontFamily)) continue;
      const text = style.content.replace(/^"|"$/g, '');
      for (const ch of style.content === 'none' ? '' : text) {
        if (ch.codePointAt(0) > 0x7f) icon_chars.add(ch.codePointAt(0));
      }
    }
  }
  return {title: document.title, imgs, links, views, areas, math: math.length, unrendered_math,
          output_images: document.querySelectorAll('div.cell_output img').length,
          has_state: !!document.querySelector(
              'script[type="application/vnd.jupyter.widget-state+json"]'),
          bundle_links: menu('a.btn-download-bundle-button'),
          pdf_links: menu('a.btn-download-pdf-button'),
          launch_links: menu('.dropdown-launch-buttons a'),
          repository_links: menu('a.btn-source-repository-button'),
          favicon: (document.querySelector('link[rel="icon"]') || {}).href || null,
          icon_font: glyph ? {content: glyph.content, family: glyph.fontFamily,
                              width: icon.getBoundingClientRect().width,
                              loaded: Array.from(document.fonts).filter(
                                f => /Font Awesome/.test(f.family) && f.status === 'loaded')
                                .map(f => f.family + ' ' + f.weight)}
                           : null,
          icon_chars: Array.from(icon_chars), widget_labels};
}"""

WEIGHT_JS = """() => {
  const entries = [performance.getEntriesByType('navigation')[0],
                   ...performance.getEntriesByType('resource')];
  return entries.map(e => ({url: e.name, bytes: e.decodedBodySize || 0}));
}"""

# Every collapsed block opened, then: code/output blocks wider than their box (they scroll).
CLIPPED_PRE_JS = """() => {
  const article = document.querySelector('article.bd-article') || document.body;
  article.querySelectorAll('details:not([open])').forEach(d => d.setAttribute('open', ''));
  const where = el => { const section = el.closest('section[id]'); return section ? '#' + section.id : ''; };
  return Array.from(article.querySelectorAll('pre'))
    .filter(p => p.checkVisibility() && p.scrollWidth > p.clientWidth + 1)
    .map(p => ({section: where(p), width: p.scrollWidth, box: p.clientWidth,
                line: (p.innerText.split('\\n').find(l => l.length * 8 > p.clientWidth) ||
                       p.innerText.split('\\n')[0]).slice(0, 90)}));
}"""

# 80 columns of code in the first code or output block: do they fit its box?
RULER_JS = """(columns) => {
  const pre = document.querySelector('article.bd-article div.highlight pre');
  if (!pre) return null;
  const probe = document.createElement('span');
  probe.textContent = '0'.repeat(columns);
  const line = document.createElement('div');
  line.appendChild(probe);
  pre.appendChild(line);
  const style = getComputedStyle(pre);
  const box = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const width = probe.getBoundingClientRect().width;
  line.remove();
  return {columns, width: Math.round(width), box: Math.round(box), font: style.fontSize};
}"""

PHONE_JS = """(minPx) => {
  const vw = document.documentElement.clientWidth;
  const scrolls = el => {
    for (let a = el.parentElement; a; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) return true;
      if (s.position === 'fixed') return true;
    }
    return false;
  };
  const offenders = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= vw + 1 || !el.checkVisibility() || scrolls(el)) continue;
    const parent = el.parentElement && el.parentElement.getBoundingClientRect();
    if (parent && parent.right > vw + 1) continue;   // report where the overflow starts
    offenders.push(`${el.tagName.toLowerCase()}.${String(el.className).split(' ')[0]} ` +
                   `(right edge ${Math.round(r.right)} px): ` +
                   (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 60));
  }
  const controls = [];
  for (const area of document.querySelectorAll('.widget-subarea')) {
    for (const el of area.querySelectorAll('select, .noUi-target, .widget-toggle-buttons, input')) {
      if (!el.checkVisibility()) continue;
      const r = el.getBoundingClientRect();
      const narrow = el.matches('select, .noUi-target') && r.width < minPx;
      if (r.left < -1 || r.right > vw + 1 || narrow) {
        controls.push(`${el.tagName.toLowerCase()}.${String(el.className).split(' ')[0]} ` +
                      `${Math.round(r.width)} px wide at ${Math.round(r.left)}..` +
                      `${Math.round(r.right)} px`);
      }
    }
  }
  return {width: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
          viewport: vw, offenders: offenders.slice(0, 5), controls};
}"""

PRINT_OVERFLOW_JS = """() => {
  const article = document.querySelector('article.bd-article');
  if (!article) return [];
  return Array.from(article.querySelectorAll('pre, table, img'))
    .filter(el => el.checkVisibility() &&
            (el.scrollWidth > el.clientWidth + 1 ||
             el.getBoundingClientRect().right > article.getBoundingClientRect().right + 1))
    .map(el => `${el.tagName.toLowerCase()} ${Math.round(el.scrollWidth)} px: ` +
               (el.innerText || el.getAttribute('alt') || '').trim().split('\\n')[0].slice(0, 70));
}"""

# The controls of one widget area, each tagged with data-bb-control for the Python side.
CONTROLS_JS = """(area) => {
  const out = [];
  const label = w => ((w.querySelector(':scope > .widget-label') || {}).textContent || '').trim();
  const tag = (el, info) => { el.dataset.bbControl = String(out.length); out.push(info); };
  const kinds = '.widget-dropdown, .widget-select, .widget-toggle-buttons, .widget-radio, ' +
                '.widget-checkbox, .widget-slider';
  for (const w of area.querySelectorAll(kinds)) {   // in document order
    if (w.matches('.widget-dropdown, .widget-select')) {
      const select = w.querySelector('select');
      if (select && !select.multiple) tag(w, {kind: 'select', label: label(w),
          count: select.options.length, index: select.selectedIndex});
    } else if (w.matches('.widget-toggle-buttons')) {
      const buttons = Array.from(w.querySelectorAll('button'));
      tag(w, {kind: 'toggle', label: label(w), count: buttons.length,
              index: buttons.findIndex(b => b.classList.contains('mod-active'))});
    } else if (w.matches('.widget-radio')) {
      const radios = Array.from(w.querySelectorAll('input[type=radio]'));
      tag(w, {kind: 'radio', label: label(w), count: radios.length,
              index: radios.findIndex(r => r.checked)});
    } else if (w.matches('.widget-checkbox')) {
      const box = w.querySelector('input[type=checkbox]');
      if (box) tag(w, {kind: 'checkbox', label: label(w) || w.innerText.trim(), count: 2,
                       index: box.checked ? 1 : 0});
    } else {
      const handle = w.querySelector('[role=slider]');
      if (!handle) continue;
      const value = name => parseFloat(handle.getAttribute(name));
      tag(w, {kind: 'slider', label: label(w), count: 0, index: -1, min: value('aria-valuemin'),
              max: value('aria-valuemax'), now: value('aria-valuenow')});
    }
  }
  const other = Array.from(area.querySelectorAll(
      'input[type=text], input[type=number], textarea, .widget-play, .widget-colorpicker, ' +
      'input[type=date], .widget-select-multiple'))
    .filter(el => !el.closest('[data-bb-control]') && el.checkVisibility())
    .map(el => (el.closest('.jupyter-widgets') || el).className.split(' ')
               .find(c => c.startsWith('widget-') && !/^widget-(inline-[hv]box|box)$/.test(c))
               || el.tagName.toLowerCase());
  return {controls: out, other};
}"""

# What the widget shows now, without its controls: visible text of its HTML and Output
# widgets, and each visible image (a prefix of its data, its alt text).
VISIBLE_OUTPUT_JS = """(area) => {
  const parts = [], images = [], clipped = [];
  for (const el of area.querySelectorAll(
      '.widget-html-content, .widget-htmlmath-content, .widget-output')) {
    if (el.checkVisibility() && !el.parentElement.closest('.widget-html-content, .widget-output'))
      parts.push(el.innerText.trim());
  }
  for (const img of area.querySelectorAll('img')) {
    if (!img.checkVisibility() || img.closest('[data-bb-control]')) continue;
    const src = img.getAttribute('src') || '';
    images.push({key: src.length + ':' + src.slice(-48), alt: img.getAttribute('alt')});
  }
  for (const pre of area.querySelectorAll('pre')) {
    if (pre.checkVisibility() && pre.scrollWidth > pre.clientWidth + 1)
      clipped.push(pre.innerText.split('\\n')[0].slice(0, 60));
  }
  const key = parts.join('\\n\\u241e') + images.map(i => '\\n[img ' + i.key + ']').join('');
  return {key, empty: !parts.some(p => p) && images.length === 0, images, clipped};
}"""


# ---------------------------------------------------------------------------------------------
# Moving widget controls


def gray_walk(counts):
    """Every combination of positions, consecutive ones differing in one control by one step
    (reflected mixed-radix Gray code), starting at all zeros."""
    if not counts:
        yield ()
        return
    rest = list(gray_walk(counts[1:]))
    for i in range(counts[0]):
        for tail in (rest if i % 2 == 0 else reversed(rest)):
            yield (i, *tail)


def _move(page, control, info, position):
    """Put one control at a position (index); return False if it did not get there."""
    kind = info["kind"]
    if kind == "select":
        control.locator("select").select_option(index=position)
        return control.locator("select").evaluate("s => s.selectedIndex") == position
    if kind == "toggle":
        control.locator("button").nth(position).click()
        return "mod-active" in (control.locator("button").nth(position).get_attribute("class")
                                or "")
    if kind == "radio":
        control.locator("input[type=radio]").nth(position).check()
        return control.locator("input[type=radio]").nth(position).is_checked()
    if kind == "checkbox":
        box = control.locator("input[type=checkbox]")
        box.set_checked(bool(position))
        return box.is_checked() == bool(position)
    handle = control.locator("[role=slider]")
    handle.focus()
    if kind == "slider-sampled":  # the lowest value, one step up, the highest value
        for key in {0: ["Home"], 1: ["Home", "ArrowRight"], 2: ["End"]}[position]:
            page.keyboard.press(key)
        now = float(handle.get_attribute("aria-valuenow"))
        return {0: now == info["min"], 1: now > info["min"], 2: now == info["max"]}[position]
    now = round((float(handle.get_attribute("aria-valuenow")) - info["min"]) / info["step"])
    for _ in range(abs(position - now)):
        page.keyboard.press("ArrowRight" if position > now else "ArrowLeft")
    now = float(handle.get_attribute("aria-valuenow"))
    return round((now - info["min"]) / info["step"]) == position


def _probe_slider(page, control, info):
    """A slider's positions: one keyboard step from its lowest value tells the step; a
    selection slider (or any with few steps) is walked step by step, others sampled."""
    handle = control.locator("[role=slider]")
    handle.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    step = float(handle.get_attribute("aria-valuenow")) - info["min"]
    steps = (info["max"] - info["min"]) / step if step > 0 else 0
    if step > 0 and abs(steps - round(steps)) < 1e-6 and round(steps) < 40:
        info.update(kind="slider", step=step, count=round(steps) + 1, index=1)
    else:
        info.update(kind="slider-sampled", count=3, index=1)


def exercise_widget(page, area):
    """Move every control of one widget; return what was seen (see the module docstring)."""
    found = area.evaluate(CONTROLS_JS)
    controls = found["controls"]
    for i, info in enumerate(controls):
        if info["kind"] == "slider":
            _probe_slider(page, area.locator(f'[data-bb-control="{i}"]'), info)
    record = {"controls": [{k: c[k] for k in ("kind", "label", "count")} for c in controls],
              "not_exercised": found["other"], "moves": 0, "stuck": [], "unchanged_moves": [],
              "changed_by": set(), "outputs": set(), "empty": 0, "images_without_alt": set(),
              "clipped": set(), "combinations": 0, "mode": "none"}
    if not controls:
        return _finish(record)

    def look():
        seen = area.evaluate(VISIBLE_OUTPUT_JS)
        record["outputs"].add(seen["key"])
        record["empty"] += seen["empty"]
        record["images_without_alt"] |= {i["key"] for i in seen["images"]
                                         if not meaningful_alt(i["alt"])}
        record["clipped"] |= set(seen["clipped"])
        return seen["key"]

    locators = [area.locator(f'[data-bb-control="{i}"]') for i in range(len(controls))]
    positions = [c["index"] if c["index"] >= 0 else 0 for c in controls]
    before = look()

    def step(i, position):
        nonlocal before
        if positions[i] == position:
            return
        record["moves"] += 1
        if not _move(page, locators[i], controls[i], position):
            record["stuck"].append(f"{controls[i]['kind']} {controls[i]['label']!r} "
                                   f"to position {position}")
        positions[i] = position
        after = look()
        if after == before:  # the view may update after the event: give it a moment
            page.wait_for_timeout(100)
            after = look()
        if after != before:
            record["changed_by"].add(i)
        else:
            record["unchanged_moves"].append(f"{controls[i]['label'] or controls[i]['kind']} "
                                             f"-> {position}")
        before = after

    counts = [c["count"] for c in controls]
    total = 1
    for n in counts:
        total *= n
    if total <= MAX_COMBINATIONS:
        record["mode"] = "every combination"
        for combination in gray_walk(counts):
            for i, position in enumerate(combination):
                step(i, position)
            record["combinations"] += 1
    else:
        record["mode"] = "one control at a time"
        start = list(positions)
        for i, n in enumerate(counts):
            for position in range(n):
                step(i, position)
                record["combinations"] += 1
            step(i, start[i])
    record["never_changed"] = [f"{c['kind']} {c['label']!r}" for i, c in enumerate(controls)
                               if i not in record["changed_by"]]
    return _finish(record)


def _finish(record):
    record.setdefault("never_changed", [])
    record["distinct_outputs"] = len(record.pop("outputs"))
    record["changed_by"] = sorted(record["changed_by"])
    record["images_without_alt"] = sorted(record["images_without_alt"])
    record["clipped"] = sorted(record["clipped"])
    return record


# ---------------------------------------------------------------------------------------------
# Visiting a page


def visit(context, url, wait_for_widgets=True):
    """Load a page; return it with what it requested and logged."""
    page = context.new_page()
    log = {"requests": [], "failed": [], "console_errors": [], "page_errors": []}
    page.on("request", lambda r: log["requests"].append(r.url))
    page.on("requestfailed", lambda r: log["failed"].append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and log["failed"].append(f"{r.url} (HTTP {r.status})"))
    page.on("console", lambda m: m.type == "error" and log["console_errors"].append(m.text))
    page.on("pageerror", lambda e: log["page_errors"].append(str(e)))
    page.goto(url, wait_until="load")
    if wait_for_widgets:
        try:
            page.wait_for_function(WIDGETS_RENDERED_JS, timeout=TIMEOUT_MS)
        except Exception:  # reported as unrendered widgets by check_widgets
            pass
    page.evaluate("() => document.fonts.ready.then(() => true)")
    return page, log


def broken_links_of(links, server, html_dir):
    """Broken internal links of one page: missing files or missing anchors."""
    broken, checked = [], 0
    for href in links:
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https") or f"{parts.scheme}://{parts.netloc}" != server:
            continue
        checked += 1
        path = unquote(parts.path).lstrip("/")
        target = html_dir / path
        if path == "" or target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href}: no file {target.relative_to(html_dir)}")
            continue
        if parts.fragment and target.suffix == ".html":
            anchor = unquote(parts.fragment)
            if anchor not in ids_in(str(target)):
                broken.append(f"{href}: no element with id {anchor!r} in "
                              f"{target.relative_to(html_dir)}")
    return broken, checked


def _axe(page, context="document"):
    page.add_script_tag(content=AXE.read_text(encoding="utf8"))
    return page.evaluate("""async (context) => {
      const experimental = Object.fromEntries(
          axe.getRules(['experimental']).map(r => [r.ruleId, {enabled: true}]));
      const result = await axe.run(context === 'document' ? document : context,
                                   {rules: experimental, resultTypes: ['violations']});
      return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
          nodes: v.nodes.length, targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""", context)


def check_page(page, server, book, html_dir, rel, docname, log, axe_context="document"):
    """Everything recorded for one page (see the module docstring)."""
    started = time.monotonic()
    facts = page.evaluate(PAGE_FACTS_JS)
    facts_seconds = round(time.monotonic() - started, 2)
    html_file = html_dir / rel
    static = _StaticResources()
    if html_file.is_file():
        static.feed(html_file.read_text(encoding="utf8"))
    states, states_without_alt = stored_states_without_alt(static.widget_state)
    broken, n_links = broken_links_of(facts["links"], server, html_dir)
    entry = {
        "page": rel, "docname": docname, "final_url": page.url.replace(server, ""),
        "title": facts["title"],
        "outside_requests": [u for u in log["requests"] if not u.startswith(server)
                             and urlsplit(u).scheme in ("http", "https", "ws", "wss")],
        "failed_requests": log["failed"], "console_errors": log["console_errors"],
        "page_errors": log["page_errors"],
        "images": len(facts["imgs"]), "output_images": facts["output_images"],
        "images_without_alt": [i["src"] for i in facts["imgs"]
                               if i["alt_is_src"] or not meaningful_alt(i["alt"])],
        "images_not_loaded": [i["src"] for i in facts["imgs"] if not i["loaded"]],
        "static_images_without_alt": [s for s, alt in static.images if not meaningful_alt(alt)],
        "static_outside_resources": [u for u in static.resources if re.match(r"(https?:)?//", u)],
        "links_checked": n_links, "broken_links": broken,
        "math": facts["math"], "unrendered_math": facts["unrendered_math"],
        "widget_views": facts["views"], "widget_areas": facts["areas"],
        "has_widget_state": facts["has_state"], "stored_html_states": states,
        "stored_states_without_alt": states_without_alt,
        "bundle_links": facts["bundle_links"], "pdf_links": facts["pdf_links"],
        "launch_links": facts["launch_links"], "repository_links": facts["repository_links"],
        "favicon": facts["favicon"], "icon_font": facts["icon_font"],
        "icon_chars": facts["icon_chars"], "widget_labels": facts["widget_labels"],
    }
    timing = entry["seconds"] = {"facts": facts_seconds}
    started = time.monotonic()
    entry["code_blocks"] = page.locator("div.highlight").count()
    entry["axe_context"] = axe_context
    entry["axe"] = _axe(page, axe_context)
    timing["axe"] = round(time.monotonic() - started, 2)
    entry["ruler_1280"] = page.evaluate(RULER_JS, CODE_COLUMNS)
    entry["clipped_code_1280"] = page.evaluate(CLIPPED_PRE_JS)
    started = time.monotonic()
    areas = page.locator(".widget-subarea")
    entry["widgets"] = [exercise_widget(page, areas.nth(i)) for i in range(areas.count())]
    timing["widgets"] = round(time.monotonic() - started, 2)
    started = time.monotonic()

    resources = page.evaluate(WEIGHT_JS)
    entry["requests"] = len(resources)
    entry["bytes"] = sum(r["bytes"] for r in resources)
    entry["heaviest"] = [f"{r['bytes']:>9} {r['url'].replace(server, '')}" for r in
                         sorted(resources, key=lambda r: -r["bytes"])[:6]]
    entry["loaded_files"] = sorted({urlsplit(r["url"]).path for r in resources})
    entry["loaded_scripts"] = [f for f in entry["loaded_files"] if f.endswith(".js")]

    page.set_viewport_size(PHONE)
    page.wait_for_timeout(50)
    entry["phone"] = page.evaluate(PHONE_JS, MIN_CONTROL_PX)
    page.set_viewport_size({"width": COLUMN_PX, "height": 1000})
    page.emulate_media(media="print")
    entry["print_overflow"] = page.evaluate(PRINT_OVERFLOW_JS)
    page.emulate_media(media="screen")
    page.set_viewport_size(DESKTOP)
    timing["phone_print"] = round(time.monotonic() - started, 2)
    return entry


def axe_scope(report):
    """What axe checks on the next page: all of it until a page with code blocks was checked
    whole; after that, everything but the code blocks (their colours and markup come from one
    style sheet and one highlighter, so a second check finds nothing new and costs seconds)."""
    checked_code = any(p.get("code_blocks") for p in report["pages"])
    return {"exclude": [["div.highlight"]]} if checked_code else "document"


def crawl(context, server, book, html_dir, prefix=""):
    """Visit every page of the book; return the report (see the module docstring)."""
    book, html_dir = Path(book), Path(html_dir)
    docnames = toc_files(book / "_toc.yml")
    report = {"server": server, "book": str(html_dir), "book_dir": str(book), "pages": [],
              "search": {},
              "downloads": [], "dark_mode": {}, "screenshots": [], "bundle_download": {},
              "repository_url": repository_url(book)}
    ARTIFACTS.mkdir(exist_ok=True)

    root = docnames[0]
    page = context.new_page()  # the home page only sends the reader to the root page
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.url} (HTTP {r.status})"))
    page.goto(f"{server}/index.html")
    try:
        page.wait_for_url(f"**/{root}.html", timeout=10_000)
    except Exception:
        pass
    report["home"] = {"final_url": page.url.replace(server, ""), "failed": [],
                      "console_errors": errors}
    page.close()

    for rel, docname in [(d + ".html", d) for d in docnames]:
        started = time.monotonic()
        page, log = visit(context, f"{server}/{rel}")
        loaded = time.monotonic() - started
        entry = check_page(page, server, book, html_dir, rel, docname, log, axe_scope(report))
        entry["seconds"]["load"] = round(loaded, 2)
        report["pages"].append(entry)
        if docname is not None:
            src = source_of(book, docname)
            if src is not None and src.suffix == ".ipynb":
                want = f"_sources/{docname}.ipynb"
                facts_links = page.evaluate("() => Array.from(document.querySelectorAll("
                                            "'a[href]')).map(a => a.href)")
                downloads = [h for h in facts_links if urlsplit(h).path.endswith("/" + want)]
                nb_file = html_dir / want
                try:
                    ok_nb = "cells" in json.loads(nb_file.read_text(encoding="utf8"))
                except (OSError, ValueError):
                    ok_nb = False
                report["downloads"].append({"page": rel, "download_links": len(downloads),
                                            "notebook": want, "is_notebook": ok_nb})
                entry["is_notebook"] = True
        if docname == root:
            page.screenshot(path=str(ARTIFACTS / f"{prefix}home.png"))
            report["screenshots"].append(f"artifacts/{prefix}home.png")
            report["bundle_download"] = download_bundle(page, prefix)
        page.close()
    return report


def download_bundle(page, prefix=""):
    """Open the download menu and pick the course bundle, as a reader would."""
    import zipfile

    result = {"downloaded": False}
    try:
        page.locator(".dropdown-download-buttons button.dropdown-toggle").first.click()
        link = page.locator("a.btn-download-bundle-button").first
        link.wait_for(state="visible", timeout=5_000)
        with page.context.expect_event("download", timeout=20_000) as waiting:
            link.click()
        download = waiting.value
        path = ARTIFACTS / f"{prefix}downloaded-bundle.zip"
        download.save_as(str(path))
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        result = {"downloaded": True, "file": download.suggested_filename, "members": len(names),
                  "chapters": sum("/chapters/" in n for n in names),
                  "exercises": sum("/exercises/" in n for n in names),
                  "package": any(n.endswith("/src/bufferbook/__init__.py") for n in names),
                  "requirements": any(n.endswith("/requirements.txt") for n in names)}
    except Exception as error:  # reported by check_downloads
        result["error"] = str(error)[:300]
    for other in page.context.pages:
        if other is not page:  # the tab the link opened (target=_blank) for the download
            other.close()
    return result


def extra_pages(context, server, report, shot_page, prefix=""):
    """The search page, and one chapter on screen in light and dark mode (screenshots)."""
    if shot_page:
        for mode in ("light", "dark"):
            if mode == "dark":
                context.add_init_script(
                    "localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
            page, log = visit(context, f"{server}/{shot_page}")
            target = page.locator(".widget-subarea").first
            if target.count() == 0:
                target = page.locator("div.cell_output img").first
            if target.count():
                target.scroll_into_view_if_needed()
                page.evaluate("window.scrollBy(0, -150)")
            name = prefix + ("chapter.png" if mode == "light" else "chapter-dark.png")
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

    page, log = visit(context, f"{server}/search.html?q=register_buffer", wait_for_widgets=False)
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li').length > 0 || "
            "/(found|did not match)/i.test("
            "(document.querySelector('#search-results') || {}).innerText || '')",
            timeout=TIMEOUT_MS)
    except Exception:
        pass
    report["search"] = {
        "query": "register_buffer",
        "results": page.evaluate("""() => Array.from(document.querySelectorAll(
                                    '#search-results li a')).map(a => a.getAttribute('href'))"""),
        "summary": page.evaluate(
            "() => (document.querySelector('#search-results p') || {}).innerText || ''"),
        "failed_requests": log["failed"], "console_errors": log["console_errors"],
        "page_errors": log["page_errors"]}
    page.close()


def totals(report, context):
    pages = report["pages"]
    report["totals"] = {
        "pages_checked": len(pages) + 2,  # + the home (redirect) and search pages
        "requests": sum(p["requests"] for p in pages),
        "bytes": sum(p["bytes"] for p in pages),
        "outside_requests_blocked": len(context.outside_requests),
        "console_errors": sum(len(p["console_errors"]) + len(p["page_errors"]) for p in pages),
        "axe_serious_or_critical": sum(v["nodes"] for p in pages for v in p["axe"]
                                       if v["impact"] in AXE_FAILING),
        "widgets": sum(len(p["widgets"]) for p in pages),
        "pages_wider_than_phone": sum(p["phone"]["width"] > p["phone"]["viewport"]
                                      for p in pages),
        "clipped_code_blocks_1280": sum(len(p["clipped_code_1280"]) for p in pages),
    }
    report["outside_requests_blocked"] = list(context.outside_requests)


# ---------------------------------------------------------------------------------------------
# Checks: each returns a list of problems (empty: passed)


def _per_page(report, key):
    return {p["page"]: p[key] for p in report["pages"] if p[key]}


def _rgb(css):
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    return values[:3], (values[3] if len(values) > 3 else 1.0)


def check_offline_without_errors(report):
    problems = [f"request to an outside host (blocked): {u}"
                for u in report["outside_requests_blocked"]]
    for key, what in [("static_outside_resources", "loads a resource from an outside host"),
                      ("failed_requests", "failed request"), ("console_errors", "console error"),
                      ("page_errors", "uncaught exception")]:
        problems += [f"{page}: {what}: {v}" for page, vs in _per_page(report, key).items()
                     for v in vs]
    book = Path(report["book_dir"])
    expected = {d + ".html" for d in toc_files(book / "_toc.yml")}
    missing = expected - {p["page"] for p in report["pages"]}
    problems += [f"toc page not checked: {m}" for m in sorted(missing)]
    root = toc_files(book / "_toc.yml")[0]
    home = report["home"]
    if not home["final_url"].endswith(f"/{root}.html"):
        problems.append(f"index.html did not open the root page {root}: {home['final_url']}")
    problems += [f"index.html: {e}" for e in home["failed"] + home["console_errors"]]
    problems += [f"{p['page']}: no favicon link" for p in report["pages"] if not p["favicon"]]
    return problems


def check_alt_text(report):
    return ([f"{page}: <img> without alt in the built HTML: {src}"
             for page, srcs in _per_page(report, "static_images_without_alt").items()
             for src in srcs]
            + [f"{page}: <img> without alt in the rendered page: {src}"
               for page, srcs in _per_page(report, "images_without_alt").items() for src in srcs]
            + [f"{page}: image did not load: {src}"
               for page, srcs in _per_page(report, "images_not_loaded").items() for src in srcs]
            + [f"{page}: a stored widget state shows an image without alt text (model {m})"
               for page, ms in _per_page(report, "stored_states_without_alt").items()
               for m in ms])


def check_math(report):
    return [f"{page}: math not typeset: {m!r}"
            for page, ms in _per_page(report, "unrendered_math").items() for m in ms]


def check_links(report):
    problems = [f"{page}: broken link {b}"
                for page, bs in _per_page(report, "broken_links").items() for b in bs]
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


def check_widgets_render(report):
    problems = []
    for p in report["pages"]:
        if not p["has_widget_state"]:
            continue
        if not p["widget_views"]:
            problems.append(f"{p['page']}: widget state but no widget view")
        if len(p["widget_areas"]) < p["widget_views"]:
            problems.append(f"{p['page']}: {p['widget_views']} widget views, "
                            f"{len(p['widget_areas'])} rendered")
        for area in p["widget_areas"]:
            text = area["text"].lower()
            if area["height"] <= 10 or area["width"] <= 10:
                problems.append(f"{p['page']}: blank widget area {area}")
            elif area["controls"] + area["images"] == 0 and not area["text"].strip():
                problems.append(f"{p['page']}: widget rendered nothing {area}")
            elif "error" in text and "could not" in text:
                problems.append(f"{p['page']}: widget shows {area['text']!r}")
    return problems


def check_widgets_interactive(report):
    """Every control changes what the widget shows; every state shown has alt text."""
    problems = []
    for p in report["pages"]:
        for n, w in enumerate(p["widgets"], 1):
            name = f"{p['page']} widget {n}"
            problems += [f"{name}: control {c} never changes the visible output "
                         f"(moved through all its positions; the page has no kernel, so only "
                         f"states stored with the notebook can show: bufferbook.widget_states)"
                         for c in w["never_changed"]]
            problems += [f"{name}: could not move {s}" for s in w["stuck"]]
            problems += [f"{name}: control not exercised by this test: {o}"
                         for o in w["not_exercised"]]
            if w["empty"]:
                problems.append(f"{name}: {w['empty']} visited states show nothing")
            problems += [f"{name}: a state shows an image without alt text ({k})"
                         for k in w["images_without_alt"]]
            problems += [f"{name}: a state's text is wider than the widget: {c!r}"
                         for c in w["clipped"]]
    return problems


def check_accessibility(report):
    return [f"{p['page']}: axe {v['impact']}: {v['id']} ({v['help']}) x{v['nodes']}: "
            f"{', '.join(v['targets'])}"
            for p in report["pages"] for v in p["axe"] if v["impact"] in AXE_FAILING]


def check_weight(report):
    problems = []
    for p in report["pages"]:
        chapter = (p["docname"] or "").startswith("chapters/") or p["has_widget_state"]
        budget = CHAPTER_BUDGET if chapter else PAGE_BUDGET
        if p["bytes"] > budget:
            problems.append(f"{p['page']}: {p['bytes']:,} bytes > {budget:,} "
                            f"(heaviest: {'; '.join(h.strip() for h in p['heaviest'][:3])})")
        scripts = p["loaded_scripts"]
        widget_js = [s for s in scripts if s.endswith("/widget-manager.js")]
        if p["has_widget_state"] != bool(widget_js):
            problems.append(f"{p['page']}: widget script loaded: {bool(widget_js)}, "
                            f"widget state on the page: {p['has_widget_state']}")
        problems += [f"{p['page']}: loads {s}" for s in p["loaded_files"]
                     if re.search(r"mathjax|tex-mml|fontawesome\.js|embed-amd|require\.js|thebe|"
                                  r"webfonts/fa-", s, re.IGNORECASE)]
        missing = sorted(set(p["icon_chars"]) - icon_font_chars(report["book"]))
        if missing:
            problems.append(f"{p['page']}: icons missing from the cut icon fonts: "
                            f"{[hex(c) for c in missing]}")
        icon = p["icon_font"]
        if icon is None or icon["content"] in ("none", "normal", '""') or not icon["loaded"] \
                or "Font Awesome" not in icon["family"] or icon["width"] < 4:
            problems.append(f"{p['page']}: theme icons not drawn by the icon font: {icon}")
    return problems


@functools.lru_cache(maxsize=None)
def icon_font_chars(html_dir):
    """Characters the book's cut icon fonts can draw (book/_ext/bufferbook_web.py)."""
    from fontTools.ttLib import TTFont

    chars = set()
    for font in (Path(html_dir) / "_static" / "fontawesome-subset").glob("*.woff"):
        chars |= {c for c in (TTFont(font).getBestCmap() or {}) if c > 0x7f}
    return frozenset(chars)


def check_phone(report):
    problems = []
    for p in report["pages"]:
        phone = p["phone"]
        if phone["width"] > phone["viewport"]:
            problems.append(f"{p['page']}: {phone['width']} px wide on a {phone['viewport']}-px "
                            f"phone screen; starts at: {' | '.join(phone['offenders'])}")
        problems += [f"{p['page']}: widget control unusable on a phone: {c}"
                     for c in phone["controls"]]
    return problems


def check_clipped_code(report):
    """No block scrolls at 1280 px; and the style lets CODE_COLUMNS columns fit, so that a
    clipped block is always a line longer than the chapters' limit."""
    rulers = [p["ruler_1280"] for p in report["pages"] if p["ruler_1280"]]
    return [f"{p['page']}: {CODE_COLUMNS} columns of code are {p['ruler_1280']['width']} px, "
            f"the code box {p['ruler_1280']['box']} px (font {p['ruler_1280']['font']})"
            for p in report["pages"] if p["ruler_1280"]
            and p["ruler_1280"]["width"] > p["ruler_1280"]["box"]] + ([] if rulers or not any(
                p["clipped_code_1280"] for p in report["pages"]) else ["no code block measured"]) + [f"{p['page']}: {len(p['clipped_code_1280'])} code/output blocks clipped at 1280 px, "
            f"e.g. {c['section']} ({c['width']} px in {c['box']}): {c['line']!r}"
            for p in report["pages"] if p["clipped_code_1280"]
            for c in p["clipped_code_1280"][:3]]


def check_print(report):
    return [f"{p['page']}: cut off when printed: {o}"
            for p in report["pages"] for o in p["print_overflow"]]


def check_downloads(report):
    problems = []
    if not report["downloads"]:
        problems.append("no notebook page in the toc")
    problems += [f"{d['page']}: no download link to {d['notebook']}"
                 for d in report["downloads"] if not d["download_links"]]
    problems += [f"{d['page']}: {d['notebook']} is not a notebook"
                 for d in report["downloads"] if not d["is_notebook"]]
    for p in report["pages"]:
        for key, what in (("bundle_links", DOWNLOADS["bundle"]), ("pdf_links", DOWNLOADS["pdf"])):
            if not any(h.endswith("/" + what) for h in p[key]):
                problems.append(f"{p['page']}: download menu has no link to {what}")
    got = report["bundle_download"]
    if not got.get("downloaded"):
        problems.append(f"the course bundle could not be downloaded from the menu: {got}")
    elif not (got["chapters"] and got["exercises"] and got["package"] and got["requirements"]):
        problems.append(f"the downloaded course bundle is incomplete: {got}")
    return problems


def check_launch_buttons(report):
    """Launch buttons and the repository link exactly when the book names a repository."""
    url = report["repository_url"].rstrip("/")
    problems = []
    for p in report["pages"]:
        if url:
            if p.get("is_notebook"):
                hosts = {urlsplit(h).netloc for h in p["launch_links"]}
                if len(hosts) < 2 or not all(url.split("/")[-1] in h for h in p["launch_links"]):
                    problems.append(f"{p['page']}: launch buttons missing or not for {url}: "
                                    f"{p['launch_links']}")
            if not any(h.rstrip("/") == url for h in p["repository_links"]):
                problems.append(f"{p['page']}: no repository link to {url}")
        elif p["launch_links"] or p["repository_links"]:
            problems.append(f"{p['page']}: launch or repository links without a repository: "
                            f"{p['launch_links'] + p['repository_links']}")
    return problems


def check_dark_mode(report):
    dark = report["dark_mode"]
    if not dark:
        return ["no chapter page to check in dark mode"]
    problems = [f"dark mode: {v}" for key in ("failed_requests", "console_errors") for v in dark[key]]
    if dark["theme"] != "dark":
        problems.append(f"dark mode not applied: data-theme={dark['theme']!r}")
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
    shots = set(report["screenshots"])
    missing = [name for name in ("home.png", "chapter.png")
               if not any(shot.endswith(name) for shot in shots)]
    return problems + [f"screenshot not taken: {m}" for m in sorted(missing)]


CHECKS = [check_offline_without_errors, check_alt_text, check_math, check_links, check_search,
          check_widgets_render, check_widgets_interactive, check_accessibility, check_weight,
          check_phone, check_clipped_code, check_print, check_downloads, check_launch_buttons,
          check_dark_mode, check_screenshots]


def summary_lines(report):
    """The per-page table printed by the tests (the JSON report has everything)."""
    lines = [f"{'page':<52} {'bytes':>10} {'req':>4} {'axe s/c':>7} {'axe all':>7} "
             f"{'w@390':>6} {'clip':>4} widgets (controls: states seen / combinations)"]
    for p in report["pages"]:
        serious = sum(v["nodes"] for v in p["axe"] if v["impact"] in AXE_FAILING)
        widgets = "; ".join(
            f"{'+'.join(c['kind'] for c in w['controls']) or 'static'}: "
            f"{w['distinct_outputs']}/{w['combinations']}"
            f"{' ok' if not (w['never_changed'] or w['stuck']) else ' NOT SWITCHING'}"
            for w in p["widgets"])
        lines.append(f"{p['page']:<52} {p['bytes']:>10,} {p['requests']:>4} {serious:>7} "
                     f"{len(p['axe']):>7} {p['phone']['width']:>6} "
                     f"{len(p['clipped_code_1280']):>4} {widgets}")
    return lines
