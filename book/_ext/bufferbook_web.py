"""Sphinx extension for the bufferbook web book (loaded via `sphinx.local_extensions` in
_config.yml). What it changes in how jupyter-book 1.x / Sphinx 7.4 / sphinx-book-theme 1.3 build
this book, each checked by tests/test_browser.py or tests/test_web_sample_book.py:

1. Repeated inline scripts. Sphinx lists an inline script twice when an extension adds it with
   `app.add_js_file(None, body=...)` after the builder started; `_page_assets` drops the repeats.
2. Stale static files. When no page source changed, Sphinx stops at "no targets are out of
   date" and does not copy `html_static_path` again; `_static_files_changed` marks the root page
   out of date when a file in the book's own static folders is newer than its copy.
3. Page weight. pydata-sphinx-theme loads `fontawesome.js` (1.5 MB) on every page although its
   stylesheet already draws the same icons from a web font: templates/layout.html drops the
   script (filter `bufferbook_without_fontawesome_js`). sphinx-thebe's scripts and its
   configuration (a placeholder Binder repository) leave every page: the book has no live code.
4. Downloads. The download menu of every page also offers the course bundle (zip of the chapter
   and exercise notebooks, the `bufferbook` package and pinned requirements, built by
   scripts/build_bundle.py) and the whole book as a PDF (scripts/build_pdf.py); the role
   ``{download-file}`bundle` `` (or ``pdf``) links to them from a page.
5. Launch buttons. With `repository.url` set in _config.yml, notebook pages get the launch
   buttons configured under `launch_buttons` (Binder, Colab, JupyterHub) and the repository
   button; without it, none of them (they would point nowhere).
6. Accessibility (axe-core): the sidebar's expand/collapse `<summary>` elements get a name;
   a collapsed cell's toggle (myst-nb's `HideCodeCellNode`) is named by its visible text
   ("Show code cell source") instead of a different `aria-label` (label-content-name-mismatch);
   templates/ fixes the search and colour-mode buttons' names and puts the logo in a landmark.
8. Icons: the theme's Font Awesome fonts (150 kB for the solid style alone) are cut, when the
   build finishes, to the icons the pages use (classes in the HTML and JS, icons the style
   sheets name outside Font Awesome's own class list) with fontTools; bufferbook.css points
   the icon fonts at the subsets. sphinx-design's style sheet and script load only on pages
   that use its components.
7. Math without MathJax in the browser: the math renderer `bufferbook-svg` (html_math_renderer
   in _config.yml) writes the same markup as Sphinx's MathJax renderer but loads no script;
   when the build finishes, render-math.js (Node.js, the pinned `mathjax` npm package) turns
   each formula into SVG with a MathML copy for screen readers.
"""
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

from bs4 import BeautifulSoup, Tag
from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.ext.mathjax import html_visit_displaymath, html_visit_math
from sphinx.util import logging

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
RENDER_MATH = HERE / "render-math.js"
SPHINX_DESIGN_MARKUP = re.compile(r'class="(?:[^"]* )?sd-')
SPHINX_DESIGN_ASSET = re.compile(r"(?:^|/)(?:sphinx-design[^/]*\.css|design-tabs\.js)$")
ICON_FONTS = ("fa-solid-900", "fa-regular-400", "fa-brands-400")
ICON_SUBSET_DIR = "fontawesome-subset"  # in _static/; bufferbook.css points the fonts here
UNTYPESET_MATH = re.compile(r'class="math notranslate nohighlight">\s*\\[(\[]')

# Where the build puts the downloads, relative to the HTML root (_build/html). The scripts that
# make them import these names.
DOWNLOADS = {
    "bundle": "downloads/buffers-in-pytorch-course.zip",
    "pdf": "downloads/buffers-in-pytorch.pdf",
}
DOWNLOAD_TEXT = {"bundle": "Course bundle (.zip)", "pdf": "Whole book (.pdf)"}
DOWNLOAD_TOOLTIP = {
    "bundle": "All chapter and exercise notebooks with the bufferbook package: unzip, "
              "install, run",
    "pdf": "The whole book as one PDF",
}
DOWNLOAD_ICON = {"bundle": "fas fa-file-zipper", "pdf": "fas fa-book"}
LAUNCH_KEYS = ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url", "jupyterlite_url")

_FONTAWESOME_JS = re.compile(r'\s*<script[^>]*src="[^"]*_static/scripts/fontawesome\.js[^"]*"'
                             r"[^>]*></script>")


# ---------------------------------------------------------------------------------------------
# Configuration


def _configure(app, config):
    config.templates_path = [str(TEMPLATES), *config.templates_path]
    options = config.html_theme_options
    if not options.get("repository_url"):
        # No repository: no launch button and no repository link (they would point nowhere).
        buttons = dict(options.get("launch_buttons") or {})
        buttons.update({key: "" for key in LAUNCH_KEYS})
        buttons["thebe"] = False
        options["launch_buttons"] = buttons
        for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
            options[key] = False
    else:
        options["use_repository_button"] = True


def _template_filters(app):
    templates = getattr(app.builder, "templates", None)
    if templates is not None and hasattr(templates, "environment"):
        templates.environment.filters["bufferbook_without_fontawesome_js"] = (
            lambda html: type(html)(_FONTAWESOME_JS.sub("", str(html))))


# ---------------------------------------------------------------------------------------------
# Pages


def _drop_thebe_config(app, doctree, docname):
    """sphinx-thebe appends its configuration to every page as raw HTML."""
    for node in list(doctree.findall(nodes.raw)):
        if "text/x-thebe-config" in node.astext() or "kernelName =" in node.astext():
            node.parent.remove(node)


def _is_thebe(asset):
    return ("sphinx-thebe" in (asset.filename or "")
            or "THEBE_JS_URL" in str(asset.attributes.get("body", "")))


def _page_assets(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        seen, unique = set(), []
        for js in scripts:
            key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
            if key not in seen and not _is_thebe(js):
                seen.add(key)
                unique.append(js)
        context["script_files"] = unique
    css = context.get("css_files")
    if isinstance(css, list):
        context["css_files"] = [c for c in css if not _is_thebe(c)]
    if not SPHINX_DESIGN_MARKUP.search(context.get("body") or ""):
        for key in ("script_files", "css_files"):
            if isinstance(context.get(key), list):
                context[key] = [a for a in context[key]
                                if not SPHINX_DESIGN_ASSET.search(a.filename or "")]


def _download_buttons(app, pagename, templatename, context, doctree):
    pathto = context.get("pathto")
    for group in context.get("header_buttons") or []:
        if group.get("label") != "download-buttons":
            continue
        for button in group["buttons"]:
            if button.get("label") == "download-pdf-button":
                button["text"] = "Print this page"
        group["buttons"] += [
            {"type": "link", "url": pathto(DOWNLOADS[key], 1), "text": DOWNLOAD_TEXT[key],
             "tooltip": DOWNLOAD_TOOLTIP[key], "icon": DOWNLOAD_ICON[key],
             "label": f"download-{key}-button"}
            for key in ("bundle", "pdf")]


def _name_summaries(html):
    """Give each expand/collapse <summary> of the sidebar a name (axe-core: summary-name)."""
    # (the theme returns HTML text, or the parsed tree when asked for kind="soup")
    soup = html if isinstance(html, Tag) else BeautifulSoup(str(html), "html.parser")
    for summary in soup.select("summary"):
        if summary.get_text(strip=True) or summary.get("aria-label"):
            continue
        item = summary.find_parent("li")
        link = item.find("a", recursive=False) if item else None
        title = link.get_text(" ", strip=True) if link else ""
        summary["aria-label"] = f"Sections of {title}" if title else "Sections"
    return html if soup is html else type(html)(str(soup))


def _accessible_toctree(app, pagename, templatename, context, doctree):
    generate = context.get("generate_toctree_html")
    if generate is None or getattr(generate, "bufferbook", False):
        return

    def named(*args, **kwargs):
        return _name_summaries(generate(*args, **kwargs))

    named.bufferbook = True
    context["generate_toctree_html"] = named


# ---------------------------------------------------------------------------------------------
# {download-file}`bundle` and {download-file}`pdf`


def download_file_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """A link to one of the book's downloads, relative to the page (see DOWNLOADS)."""
    key = text.strip()
    if key not in DOWNLOADS:
        message = inliner.reporter.error(
            f"{{download-file}} takes one of {sorted(DOWNLOADS)}, not {key!r}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    docname = inliner.document.settings.env.docname
    target = posixpath.relpath(DOWNLOADS[key], posixpath.dirname(docname) or ".")
    node = nodes.reference(rawtext, DOWNLOAD_TEXT[key], refuri=target)
    return [node], []


# ---------------------------------------------------------------------------------------------
# Math, typeset when the build finishes


def _render_math(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    if app.config.html_math_renderer != "bufferbook-svg":
        return
    pages = [str(p) for p in sorted(Path(app.outdir).rglob("*.html"))
             if UNTYPESET_MATH.search(p.read_text(encoding="utf8", errors="replace"))]
    if not pages:
        return
    node = shutil.which("node")
    if node is None or not (HERE.parents[1] / "node_modules" / "mathjax").is_dir():
        raise ExtensionError("typesetting the book's math needs Node.js and the pinned npm "
                             "packages: run `make web-assets` (see scripts/vendor_web_assets.sh)")
    done = subprocess.run([node, str(RENDER_MATH), *pages], capture_output=True, text=True,
                          cwd=HERE.parents[1])
    if done.returncode != 0:
        raise ExtensionError(f"render-math.js failed: {done.stderr.strip()}")
    logger.info(done.stdout.strip())


# ---------------------------------------------------------------------------------------------
# Icon fonts cut to the icons in use


_CSS_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_FA_CLASS_RULE = re.compile(r"^\.(fa-[a-z0-9-]+):{1,2}before$")
_CSS_CODEPOINT = re.compile(r'"\\([0-9a-fA-F]{4,6})"')
# Minified style sheets also write an icon as the character itself (Unicode private use area),
# e.g. pydata-sphinx-theme's `--pst-icon-info-circle:"\uf05a"` behind the admonition icons.
_CSS_PRIVATE_USE_CHAR = re.compile('"([\ue000-\uf8ff])"')
_FA_CLASS = re.compile(r"\bfa-[a-z0-9-]+")


def icon_codepoints(static_dir, texts):
    """Codepoints of the icons used: Font Awesome classes named in ``texts`` (the pages'
    HTML and scripts) looked up in the style sheets, plus every codepoint the style sheets
    give outside Font Awesome's own `.fa-NAME:before` list (e.g. the admonition icons)."""
    by_class, named = {}, set()
    for css in Path(static_dir).rglob("*.css"):
        for selectors, body in _CSS_RULE.findall(css.read_text(encoding="utf8", errors="replace")):
            points = {int(p, 16) for p in _CSS_CODEPOINT.findall(body)}
            points |= {ord(c) for c in _CSS_PRIVATE_USE_CHAR.findall(body)}
            if not points:
                continue
            parts = [part.strip() for part in selectors.split(",")]
            classes = [_FA_CLASS_RULE.match(part) for part in parts]
            if all(classes):
                for match in classes:
                    by_class.setdefault(match.group(1), set()).update(points)
            elif not selectors.lstrip().startswith("@"):
                named |= points
    used = set()
    for text in texts:
        used.update(_FA_CLASS.findall(text))
    points = set(named)
    for name in used:
        points |= by_class.get(name, set())
    return points


def _subset_icon_fonts(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    from fontTools import subset
    from fontTools.ttLib import TTFont

    out = Path(app.outdir)
    static = out / "_static"
    texts = [p.read_text(encoding="utf8", errors="replace")
             for pattern in ("**/*.html", "_static/**/*.js") for p in out.glob(pattern)]
    points = icon_codepoints(static, texts)
    target = static / ICON_SUBSET_DIR
    target.mkdir(exist_ok=True)
    for name in ICON_FONTS:
        source = next(static.rglob(f"{name}.ttf"), None)
        if source is None:
            raise ExtensionError(f"icon font {name}.ttf not found under {static}")
        font = TTFont(source)
        options = subset.Options()
        options.flavor = "woff"  # zlib: no Brotli needed, unlike woff2
        options.layout_features = ["*"]
        options.name_IDs = ["*"]
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(points & set(font.getBestCmap())))
        subsetter.subset(font)
        font.flavor = "woff"
        font.save(target / f"{name}.woff")
    logger.info(f"icon fonts cut to {len(points)} icons: {ICON_SUBSET_DIR}/")


# ---------------------------------------------------------------------------------------------
# Static files


def _static_files_changed(app, env, added, changed, removed):
    if app.builder.format != "html":
        return []
    out = Path(app.outdir) / "_static"
    for entry in app.config.html_static_path:
        if Path(entry).is_absolute():
            continue  # an extension's own static folder, not this book's
        src = Path(app.confdir) / entry
        for path in src.rglob("*"):
            rel = path.relative_to(src)
            if (not path.is_file() or path.name.endswith("_t")
                    or any(part.startswith(".") for part in rel.parts)):
                continue
            copy = out / rel
            if not copy.is_file() or path.stat().st_mtime > copy.stat().st_mtime:
                return [app.config.root_doc]
    return []


def _visit_hidden_cell(self, node):
    """myst-nb's toggle of a collapsed cell, without its `aria-label` ("Toggle hidden content"),
    which differed from the visible text: the name is now the text shown."""
    from html import escape
    classes = " ".join(node["classes"])
    self.body.append(f'<details class="admonition hide {classes}">\n<summary>\n')
    for state, key in (("collapsed", "prompt_show"), ("expanded", "prompt_hide")):
        self.body.append(f'<p class="{state} admonition-title">{escape(node[key])}</p>\n')
    self.body.append("</summary>\n")


def setup(app):
    from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput
    app.add_node(HideCodeCellNode, override=True,
                 html=(_visit_hidden_cell, depart_HideCellInput))
    app.connect("config-inited", _configure)
    app.connect("builder-inited", _template_filters)
    app.connect("doctree-resolved", _drop_thebe_config, priority=900)
    app.connect("html-page-context", _page_assets, priority=900)
    app.connect("html-page-context", _download_buttons, priority=900)
    app.connect("html-page-context", _accessible_toctree, priority=900)
    app.connect("env-get-outdated", _static_files_changed)
    app.add_role("download-file", download_file_role)
    app.add_html_math_renderer("bufferbook-svg", (html_visit_math, None),
                               (html_visit_displaymath, None))
    app.connect("build-finished", _render_math)
    app.connect("build-finished", _subset_icon_fonts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
