"""A small web book built from this repository's book set-up, for tests of the web book itself.

`build_sample_book(dest, repository_url=...)` writes a book into ``dest``: the repository's
`_config.yml` (with ``repository.url`` replaced, and ``launch_buttons.jupyterhub_url`` set when
a repository is given, so that every launch button can show), its `book/_static` and
`book/_ext` (linked, not copied), one page per notebook in tests/fixtures/web/ (executed and
committed with their widget state, like the chapters: `python scripts/execute_notebooks.py
tests/fixtures/web/*.ipynb`; nbval checks they reproduce) and a `_toc.yml` listing them, then
builds it with jupyter-book (warnings are errors) as `make book` builds the book, with the
downloads every page links: the course bundle (this repository's) and the book's PDF.
Used by tests/test_web_sample_book.py; tests/test_browser.py crawls such a book when
BUFFERBOOK_BOOK_DIR points at it.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "book" / "_ext"))
from build_bundle import build_bundle  # noqa: E402
from build_pdf import build_pdf  # noqa: E402
from bufferbook_web import DOWNLOADS  # noqa: E402
FIXTURES = REPO / "tests" / "fixtures" / "web"
SAMPLE_HUB = "https://hub.example.org"
PAGES = ["widget_sample", "widget_callback"]  # tests/fixtures/web/<name>.ipynb, in toc order


def build_sample_book(dest, repository_url="", notebooks=None, downloads=True):
    """Build the sample book into ``dest`` (a new folder); return ``dest / "_build" / "html"``."""
    dest = Path(dest)
    (dest / "book").mkdir(parents=True)
    for name in ("_static", "_ext"):
        (dest / "book" / name).symlink_to(REPO / "book" / name, target_is_directory=True)

    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    config["title"] = "Sample book"
    config["repository"] = {"url": repository_url, "branch": "main"}
    if repository_url:
        config["launch_buttons"]["jupyterhub_url"] = SAMPLE_HUB
    (dest / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf8")

    sources = list(notebooks or [FIXTURES / f"{name}.ipynb" for name in PAGES])
    for source in sources:
        shutil.copy(source, dest / source.name)
    toc = {"format": "jb-book", "root": sources[0].stem,
           "chapters": [{"file": s.stem} for s in sources[1:]]}
    if not toc["chapters"]:
        del toc["chapters"]
    (dest / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf8")

    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    done = subprocess.run([str(jupyter_book), "build", str(dest),
                           "--warningiserror", "--keep-going"],
                          capture_output=True, text=True, cwd=dest)
    if done.returncode != 0:
        raise RuntimeError(f"sample book build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    html = dest / "_build" / "html"
    if downloads:  # what every page's download menu links, as `make book` makes them
        build_bundle(html / DOWNLOADS["bundle"])  # (this repository's bundle)
        pages, overflow = build_pdf(html, html / DOWNLOADS["pdf"], title=config["title"])
        if overflow:
            raise RuntimeError(f"sample book PDF: blocks cut off: {overflow}")
    return html
