"""Walk, clean and remove folders a student controls: no recursion, never through a link.

A submission folder may hold anything a zip archive or a student's own folder can: a directory
tree thousands of levels deep, symlinks to the instructor's files, fifos, huge files. Python's
``os.walk`` and ``shutil.rmtree`` (3.11) recurse once per level and fail near 1,000 levels;
``shutil.copy`` and ``os.chmod`` follow links. Everything here works through directory file
descriptors (``dir_fd``, ``O_NOFOLLOW``), keeps at most ``max_depth + 2`` of them open, and
never opens, copies or changes the target of a link.

``clean_submission`` is what grading runs on each submitted folder before nbgrader reads it
(book/grading-safely.md, "Nothing outside the submission").
"""
import json
import os
import stat
import tempfile
import time

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(name, dir_fd=None):
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def _entries(fd):
    """(name, lstat result) of each entry of the open directory ``fd``, sorted by name."""
    names = sorted(os.listdir(fd))
    found = []
    for name in names:
        try:
            found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return found


def kind_of(mode):
    """"file", "dir", "link" or "special" for an lstat mode."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    return "special"


def remove_tree(path):
    """Delete ``path`` and everything below it, whatever its depth; links are removed, never
    followed. A missing ``path`` is not an error."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = _open_dir(parent)
    except FileNotFoundError:
        return
    try:
        remove_entry(parent_fd, name)
    finally:
        os.close(parent_fd)


def remove_entry(parent_fd, name):
    """Delete the entry ``name`` of the open directory ``parent_fd`` (a tree of any depth).

    Each directory's subdirectories are first moved up into ``parent_fd`` under fresh names, so
    the walk never goes more than one level below ``parent_fd`` and needs two descriptors."""
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    pending, counter = [name], 0
    while pending:
        current = pending.pop()
        fd = _open_dir(current, dir_fd=parent_fd)
        try:
            for entry, st in _entries(fd):
                if stat.S_ISDIR(st.st_mode):
                    counter += 1
                    moved = f".removing-{os.getpid()}-{counter}"
                    os.rename(entry, moved, src_dir_fd=fd, dst_dir_fd=parent_fd)
                    pending.append(moved)
                else:
                    os.unlink(entry, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(current, dir_fd=parent_fd)


def find_escapes(path, max_depth=64):
    """Relative paths of links and special files below ``path`` (never followed), and of
    folders deeper than ``max_depth`` (not entered)."""
    found = []
    for rel, kind, _ in walk(path, max_depth):
        if kind in ("link", "special", "too deep"):
            found.append(rel)
    return found


def walk(path, max_depth=64):
    """Yield ``(relative path, kind, size)`` for every entry below ``path``, depth first, never
    following a link. Folders at depth ``max_depth`` are yielded as "too deep" and not entered."""
    root = _open_dir(path)
    stack = [(root, "", 0, iter(_entries(root)))]
    try:
        while stack:
            fd, prefix, depth, entries = stack[-1]
            item = next(entries, None)
            if item is None:
                os.close(fd)
                stack.pop()
                continue
            name, st = item
            rel = f"{prefix}{name}"
            kind = kind_of(st.st_mode)
            if kind == "dir" and depth + 1 >= max_depth:
                yield rel, "too deep", 0
                continue
            yield rel, kind, st.st_size
            if kind == "dir":
                try:
                    child = _open_dir(name, dir_fd=fd)
                except OSError:  # replaced by a link meanwhile, or unreadable
                    continue
                stack.append((child, rel + "/", depth + 1, iter(_entries(child))))
    finally:
        for fd, *_ in stack:
            os.close(fd)


def clean_submission(folder, quarantine, *, max_depth=8, max_entries=2000,
                     max_file_bytes=64 * 2**20, max_total_bytes=256 * 2**20, keep=()):
    """Move out of ``folder`` everything grading must not touch; return ``[(path, reason)]``.

    Moved (renamed, so nothing is lost) into a fresh folder under ``quarantine``: links and
    special files, folders nested deeper than ``max_depth``, files over ``max_file_bytes``,
    files beyond ``max_total_bytes`` or ``max_entries`` in all. ``keep`` names top-level files
    that always stay (the notebooks). A ``manifest.json`` there lists the original paths."""
    moved = []
    target = None

    def move(dir_fd, name, rel, reason):
        nonlocal target
        if target is None:
            target = _new_folder(quarantine)
        dest = f"entry-{len(moved) + 1:04d}"
        dest_fd = _open_dir(target)
        try:
            os.rename(name, dest, src_dir_fd=dir_fd, dst_dir_fd=dest_fd)
        finally:
            os.close(dest_fd)
        moved.append((rel, reason, dest))

    root = _open_dir(folder)
    stack = [(root, "", 0, iter(_entries(root)))]
    seen, total = 0, 0
    try:
        while stack:
            fd, prefix, depth, entries = stack[-1]
            item = next(entries, None)
            if item is None:
                os.close(fd)
                stack.pop()
                continue
            name, st = item
            rel = f"{prefix}{name}"
            kind = kind_of(st.st_mode)
            seen += 1
            if depth == 0 and name in keep and kind == "file":
                total += st.st_size
                continue
            if kind in ("link", "special"):
                move(fd, name, rel, f"a {'symbolic link' if kind == 'link' else 'special file'}")
            elif seen > max_entries:
                move(fd, name, rel, f"more than {max_entries} files and folders")
            elif kind == "dir" and depth + 1 >= max_depth:
                move(fd, name, rel, f"folders nested deeper than {max_depth} levels")
            elif kind == "file" and st.st_size > max_file_bytes:
                move(fd, name, rel, f"a file over {max_file_bytes // 2**20} MiB")
            elif kind == "file" and total + st.st_size > max_total_bytes:
                move(fd, name, rel, f"more than {max_total_bytes // 2**20} MiB in all")
            elif kind == "dir":
                try:
                    child = _open_dir(name, dir_fd=fd)
                except OSError:
                    move(fd, name, rel, "a folder that cannot be opened")
                    continue
                stack.append((child, rel + "/", depth + 1, iter(_entries(child))))
            else:
                total += st.st_size
    finally:
        for fd, *_ in stack:
            os.close(fd)
    if target is not None:
        manifest = [{"path": rel[:1000], "reason": reason, "stored_as": dest}
                    for rel, reason, dest in moved]
        with open(os.path.join(target, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump({"from": str(folder), "entries": manifest}, fh, indent=1)
    return [(rel, reason) for rel, reason, _ in moved]


def _new_folder(quarantine):
    """A fresh folder under ``quarantine`` named by the time (quarantine made 0700)."""
    os.makedirs(quarantine, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix=time.strftime("%Y%m%dT%H%M%S-"), dir=quarantine)


def quarantine_everything(folder, quarantine, keep=()):
    """Last resort when ``clean_submission`` failed: move every top-level entry except the
    regular files named in ``keep`` (the notebooks) out of ``folder``; return their names."""
    target = _new_folder(quarantine)
    fd, target_fd = _open_dir(folder), _open_dir(target)
    moved = []
    try:
        for name, st in _entries(fd):
            if name in keep and stat.S_ISREG(st.st_mode):
                continue
            os.rename(name, name, src_dir_fd=fd, dst_dir_fd=target_fd)
            moved.append(name)
    finally:
        os.close(fd)
        os.close(target_fd)
    return moved
