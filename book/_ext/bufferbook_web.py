"""Sphinx extension for the bufferbook web book (loaded via `sphinx.local_extensions` in
_config.yml). Two fixes for how Sphinx 7.4 builds this book:

1. Repeated inline scripts. Sphinx lists an inline script twice when an extension adds it with
   `app.add_js_file(None, body=...)` after the builder started (the builder keeps the filename
   None, the registry replays it as ''), so every page carried sphinx-thebe's
   `const THEBE_JS_URL = ...` twice and the browser logged "Identifier 'THEBE_JS_URL' has already
   been declared". `_dedupe_scripts` drops the repeats from each page's script list.
2. Stale static files. When no page source changed, Sphinx stops at "no targets are out of
   date" and does not copy `html_static_path` again, so an edited book/_static/*.css or *.js, or
   re-vendored assets, never reached _build/html. `_static_files_changed` marks the root page
   out of date when a file in the book's own static folders is newer than its copy (or has
   none), which makes Sphinx finish the build and copy the static files.
"""
from pathlib import Path


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for js in scripts:
        key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("env-get-outdated", _static_files_changed)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
