"""Print the whole web book into one PDF with Chromium (driven by Playwright).

    python scripts/build_pdf.py [--html _build/html] [--out OUT.pdf]

`make book` (and `make pdf`) runs it after building the HTML; every page's download menu links
the result (book/_ext/bufferbook_web.py: DOWNLOADS["pdf"]). Each page of _toc.yml, in reading
order, is opened from a local server so its widgets render (each shows the state stored with
the notebook); its article is copied into one document: ids and links between pages become
links inside the PDF, code cells the book hides (`hide-input` and friends) stay out, dropdowns
(answers to "predict" questions) are open. That document is printed on A4 with the site's own
style sheets in their print form (book/_static/bufferbook.css wraps code and output lines), a
PDF outline from the headings and page numbers.

Before printing it checks the print layout: a code or output block, table or image wider than
the printed column is an error (nothing may be clipped), listed with its page.

Chromium is Debian's (/usr/bin/chromium, BUFFERBOOK_CHROMIUM to override; `make system-deps`
installs it as root). Without it the PDF is skipped with a warning, or fails under CI=true.
"""
import argparse
import functools
import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
sys.path.insert(0, str(ROOT / "scripts"))
from book_toc import toc_files  # noqa: E402
from bufferbook_web import DOWNLOADS  # noqa: E402

CHROMIUM = os.environ.get("BUFFERBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
PAPER = "A4"
MARGIN_MM = {"top": 14, "bottom": 16, "left": 14, "right": 14}
# The printed column in CSS pixels (96 per inch): A4 is 210 mm wide.
COLUMN_PX = int((210 - MARGIN_MM["left"] - MARGIN_MM["right"]) / 25.4 * 96)

WIDGETS_RENDERED = """() => {
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  const areas = document.querySelectorAll('.widget-subarea');
  return views.length === 0 || (areas.length >= views.length &&
         Array.from(areas).every(a => a.querySelector('.jupyter-widgets, .widget-output, img')));
}"""

# Runs in each page: the article, ready to join the others (see the module docstring).
EXTRACT = """([slug, pages]) => {
  const article = document.querySelector('article.bd-article').cloneNode(true);
  const here = location.pathname;
  const prefix = id => slug + '--' + id;
  article.querySelectorAll('script, .headerlink, button.copybtn, .toggle-button, ' +
                           'details.hide, .cell_output .widget-subarea + script').forEach(e => e.remove());
  article.querySelectorAll('details').forEach(d => d.setAttribute('open', 'open'));
  article.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  article.querySelectorAll('[id]').forEach(e => e.id = prefix(e.id));
  article.querySelectorAll('img').forEach(img => img.setAttribute('src', img.src));
  article.querySelectorAll('a[href]').forEach(a => {
    const url = new URL(a.getAttribute('href'), location.href);
    if (url.origin !== location.origin) return;
    const page = pages[url.pathname];
    if (page === undefined) { a.setAttribute('href', url.href); return; }
    const fragment = url.hash ? url.hash.slice(1) : '';
    a.setAttribute('href', '#' + (fragment ? page + '--' + decodeURIComponent(fragment) : page));
  });
  const styles = Array.from(document.querySelectorAll('link[rel="stylesheet"]')).map(l => l.href);
  const inline = Array.from(document.querySelectorAll('head style[id]')).map(s => s.outerHTML);
  return {html: article.outerHTML, styles, inline, title: document.title};
}"""

# Runs in the joined document, laid out for print: what would be cut off at the column's edge.
OVERFLOW = """() => {
  const out = [];
  const page = el => (el.closest('section.bufferbook-print-page') || {}).dataset?.page || '?';
  for (const el of document.querySelectorAll('pre, table, img, .widget-subarea')) {
    const scrolls = el.scrollWidth > el.clientWidth + 1;
    const wide = el.getBoundingClientRect().width > document.documentElement.clientWidth + 1;
    if (scrolls || wide) {
      out.push({page: page(el), element: el.tagName.toLowerCase(),
                width: Math.max(el.scrollWidth, Math.round(el.getBoundingClientRect().width)),
                text: (el.innerText || el.getAttribute('alt') || '').trim().split('\\n')[0].slice(0, 80)});
    }
  }
  return out;
}"""

PRINT_CSS = """
html, body { background: #fff; }
section.bufferbook-print-page { break-before: page; }
section.bufferbook-print-page:first-of-type { break-before: auto; }
.bufferbook-cover { text-align: center; padding-top: 30vh; break-after: page; }
.bufferbook-cover h1 { font-size: 2.4rem; }
.bufferbook-cover ul { text-align: left; display: inline-block; margin-top: 3rem;
                       list-style: none; }
"""

FOOTER = ('<div style="font-size: 8px; width: 100%; text-align: center; color: #555;">'
          '<span class="title"></span> · <span class="pageNumber"></span> / '
          '<span class="totalPages"></span></div>')


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory):
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def slug_of(docname):
    return docname.replace("/", "-").replace("_", "-").replace(".", "-")


def joined_document(page, server, docnames, title):
    """Visit every page; return the HTML of the whole book as one document."""
    pages = {f"/{d}.html": slug_of(d) for d in docnames}
    articles, styles, inline = [], [], []
    for docname in docnames:
        page.goto(f"{server}/{docname}.html", wait_until="load")
        page.wait_for_function(WIDGETS_RENDERED, timeout=60_000)
        part = page.evaluate(EXTRACT, [slug_of(docname), pages])
        styles += [s for s in part["styles"] if s not in styles]
        inline += [s for s in part["inline"] if s not in inline]
        articles.append((docname, part["title"], part["html"]))
    contents = "".join(f'<li><a href="#{slug_of(d)}">{t.split(" — ")[0].split(" - ")[0]}</a></li>'
                       for d, t, _ in articles)
    body = "".join(
        f'<section class="bufferbook-print-page" id="{slug_of(d)}" data-page="{d}">'
        f'<div class="bd-content"><div class="bd-article-container">{html}</div></div></section>'
        for d, _, html in articles)
    links = "".join(f'<link rel="stylesheet" href="{s}">' for s in styles)
    return (f'<!DOCTYPE html><html lang="en" data-theme="light" data-mode="light"><head>'
            f'<meta charset="utf-8"><title>{title}</title>{links}{"".join(inline)}'
            f'<style>{PRINT_CSS}</style></head><body>'
            f'<div class="bufferbook-cover"><h1>{title}</h1><ul>{contents}</ul></div>'
            f'{body}</body></html>')


def build_pdf(html_dir, out, title="Buffers in PyTorch"):
    """Print the book in ``html_dir`` into ``out``; return (pages, overflowing blocks)."""
    from playwright.sync_api import sync_playwright

    docnames = toc_files(Path(html_dir).resolve().parents[1] / "_toc.yml")
    httpd, server = serve(html_dir)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.emulate_media(color_scheme="light")
            document = joined_document(page, server, docnames, title)
            page.set_viewport_size({"width": COLUMN_PX, "height": 1000})
            page.emulate_media(media="print", color_scheme="light")
            page.set_content(document, wait_until="load")
            overflow = page.evaluate(OVERFLOW)
            if not overflow:
                out.parent.mkdir(parents=True, exist_ok=True)
                margin = {k: f"{v}mm" for k, v in MARGIN_MM.items()}
                page.pdf(path=str(out), format=PAPER, margin=margin, print_background=True,
                         outline=True, tagged=True, display_header_footer=True,
                         header_template="<span></span>", footer_template=FOOTER)
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    return docnames, overflow


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or args.html / DOWNLOADS["pdf"]
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = (f"Chromium not found at {CHROMIUM}: the book's PDF is not built (install "
                   "it with `sudo apt-get install chromium` or `make system-deps` as root)")
        if os.environ.get("CI", "").lower() == "true":
            print(f"error: {message}", file=sys.stderr)
            return 1
        print(f"warning: {message}", file=sys.stderr)
        return 0
    start = time.time()
    docnames, overflow = build_pdf(args.html, out)
    if overflow:
        print(f"error: {len(overflow)} blocks would be cut off in the PDF "
              f"(wider than the {COLUMN_PX}-px printed column):", file=sys.stderr)
        for item in overflow:
            print("  " + json.dumps(item), file=sys.stderr)
        return 1
    print(f"book PDF: {out} ({len(docnames)} pages of the book, "
          f"{out.stat().st_size / 1e6:.1f} MB, {time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
