"""The pages of the book, in reading order, from jupyter-book's _toc.yml (used by
scripts/build_bundle.py and scripts/build_pdf.py)."""
from pathlib import Path

import yaml


def toc_files(toc_path):
    """Source files (without suffix) listed in a jupyter-book _toc.yml, root first."""
    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return files
