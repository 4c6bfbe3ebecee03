"""``nbgrader zip_collect`` that only collects what it should, and says why it skipped a file.

* ``SafeExtractor`` (``ZipCollectApp.extractor_plugin``): extracts each ``.zip`` of the archive
  folder into ``extracted/<archive name>/`` after checking every entry: no absolute path, no
  ``..``, no link, at most ``max_entries`` entries, ``max_file_bytes`` per file and
  ``max_total_bytes`` per archive (counted while writing: a declared size can lie). Archives
  inside archives are not opened. Other files are copied; links are skipped.
* ``SafeCollector`` (``ZipCollectApp.collector_plugin``): a file name must be
  ``<student_id>__<notebook>.ipynb`` with a sane id (letters, digits, ``.``, ``_``, ``-``,
  starting with a letter or digit: never ``.`` or ``..``). A file that came out of an archive
  named after a student (``<student_id>__<assignment>.zip``, as one student uploaded it) must
  carry that student's id: a zip cannot submit for someone else. Files of an archive with any
  other name (the LMS's bulk download) are named by the LMS and taken as they are. A second file for the same student
  and notebook is skipped (the first, in sorted order, is kept).

Every skipped file gets one warning saying which file and why.
"""
import os
import re
import shutil
import stat
import zipfile

from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin
from traitlets import Integer, Unicode

STUDENT_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
FILE_NAME = re.compile(rf"^(?P<student_id>{STUDENT_ID})__(?P<file_id>[A-Za-z0-9_][A-Za-z0-9_.-]*\.ipynb)$")
PER_STUDENT_ARCHIVE = re.compile(rf"^(?P<student_id>{STUDENT_ID}?)__[A-Za-z0-9_-]+$")


def _safe_member(name):
    parts = name.replace("\\", "/").split("/")
    return not (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name)
                or any(p in ("..",) for p in parts))


class SafeExtractor(ExtractorPlugin):
    """Extract zip archives with caps; copy plain files; never follow or make links."""

    max_entries = Integer(1000, help="Entries per archive.").tag(config=True)
    max_file_bytes = Integer(64 * 2**20, help="Bytes per extracted file.").tag(config=True)
    max_total_bytes = Integer(256 * 2**20, help="Bytes extracted per archive.").tag(config=True)

    def extract(self, archive_path, extracted_path):
        for name in sorted(os.listdir(archive_path)):
            path = os.path.join(archive_path, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISREG(mode):
                self.log.warning("Skipped %s: not a plain file", path)
                continue
            if name.lower().endswith(".zip"):
                self._extract_zip(path, os.path.join(extracted_path, name[:-4]))
            else:
                shutil.copyfile(path, os.path.join(extracted_path, name), follow_symlinks=False)

    def _extract_zip(self, path, dest):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            self.log.warning("Skipped archive %s: not a readable zip file (%s)", path, exc)
            return
        with archive:
            members = archive.infolist()
            if len(members) > self.max_entries:
                self.log.warning("Skipped archive %s: %d entries, more than %d",
                                 path, len(members), self.max_entries)
                return
            os.makedirs(dest, exist_ok=True)
            total = 0
            for info in members:
                name = info.filename
                kind = stat.S_IFMT(info.external_attr >> 16)
                if info.is_dir():
                    continue
                if not _safe_member(name):
                    self.log.warning("Skipped %s in %s: its path leaves the archive's folder",
                                     name, path)
                    continue
                if kind and kind != stat.S_IFREG:
                    self.log.warning("Skipped %s in %s: a link or special file", name, path)
                    continue
                if name.lower().endswith(".zip"):
                    self.log.warning("Skipped %s in %s: archives inside archives are not "
                                     "opened", name, path)
                    continue
                if info.file_size > self.max_file_bytes or total + info.file_size > self.max_total_bytes:
                    self.log.warning("Skipped %s in %s: it expands to %d bytes (limits: %d per "
                                     "file, %d per archive)", name, path, info.file_size,
                                     self.max_file_bytes, self.max_total_bytes)
                    continue
                target = os.path.join(dest, *[p for p in name.replace("\\", "/").split("/")
                                              if p not in ("", ".")])
                if os.path.lexists(target):
                    self.log.warning("Skipped %s in %s: a file of that name was already "
                                     "extracted", name, path)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                written = self._copy_capped(archive, info, target,
                                            min(self.max_file_bytes, self.max_total_bytes - total))
                if written is None:
                    self.log.warning("Skipped %s in %s: it expands beyond its declared size or "
                                     "the limits", name, path)
                    continue
                total += written

    @staticmethod
    def _copy_capped(archive, info, target, cap):
        written = 0
        with archive.open(info) as src, open(target, "xb") as dst:
            while True:
                chunk = src.read(1 << 16)
                if not chunk:
                    return written
                written += len(chunk)
                if written > cap:
                    break
                dst.write(chunk)
        os.unlink(target)
        return None


class SafeCollector(FileNameCollectorPlugin):
    """``<student_id>__<notebook>.ipynb``, sane ids only, no submitting for someone else."""

    extracted_marker = Unicode("extracted", help="Name of the extracted folder.").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._seen = {}

    def collect(self, submitted_file):
        name = os.path.basename(submitted_file)
        if not name.endswith(".ipynb"):
            self.log.warning("Skipped %s: not a notebook", submitted_file)
            return None
        match = FILE_NAME.match(name)
        if match is None:
            self.log.warning("Skipped %s: the name must be <student_id>__<notebook>.ipynb, the "
                             "id made of letters, digits, '.', '_' and '-', starting with a "
                             "letter or digit", submitted_file)
            return None
        student, file_id = match.group("student_id"), match.group("file_id")
        owner = self._archive_owner(submitted_file)
        if owner is not None and owner != student:
            self.log.warning("Refused %s: it came in %s's archive but names student %s",
                             submitted_file, owner, student)
            return None
        key = (student, file_id)
        if key in self._seen:
            self.log.warning("Skipped %s: a second submission of %s for %s (kept %s)",
                             submitted_file, file_id, student, self._seen[key])
            return None
        self._seen[key] = submitted_file
        return {"student_id": student, "file_id": file_id}

    def _archive_owner(self, path):
        """The student an archive was named after, for a file extracted from it (else None)."""
        parts = os.path.normpath(path).split(os.sep)
        if self.extracted_marker not in parts:
            return None
        below = parts[len(parts) - 1 - parts[::-1].index(self.extracted_marker) + 1:]
        if len(below) < 2:  # a plain file of the archive folder, copied as it was
            return None
        match = PER_STUDENT_ARCHIVE.match(below[0])
        return match.group("student_id") if match else None
