"""Files on disk, apart from their contents: which names are images, how input folders are
scanned (nothing dropped without a word), atomic writes, and the check that no output replaces
an input. Kept apart from decoding (``maskseg.io``) so every writer of models, reports and
splits shares one safe write and one overwrite rule without the image stack."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def is_image_name(path: Path) -> bool:
    """True for names whose extension starts with a known image extension (case-insensitive).

    "Starts with" keeps files such as ``photo.jpg_1088Wx1632H`` that web scrapers leave behind.
    """
    return not path.name.startswith(".") and path.suffix.lower().startswith(IMAGE_EXTENSIONS)


def is_image_file(path: Path) -> bool:
    """An image name (``is_image_name``) that is a regular file (or a link to one)."""
    return is_image_name(path) and path.is_file()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def writable_folders(folders: list[tuple[Path, str]]) -> None:
    """Make each (folder, what it is for) and check a file can be created in it, before any
    work: an unwritable output fails at once with one line, not after the first image. A
    folder (or a folder above it) that is a file is refused before any folder is made."""
    for folder, what in folders:
        for above in (folder, *folder.parents):
            if above.exists():
                if not above.is_dir():
                    raise ValueError(f"{what}: {above} is a file, not a folder")
                break
    for folder, what in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise ValueError(f"{what}: cannot write in {folder}: {exc.strerror or exc}") from None


def make_parents(*paths: str | os.PathLike) -> None:
    """``writable_folders`` for the folders of output files: made (and checked writable)
    before the work that ends in writing them, so a path that cannot be written fails at once
    with its own name (not, minutes later, with a temporary file's)."""
    writable_folders([(Path(p).parent, f"{p}: cannot make its folder") for p in paths])


def report_folder(
    folder: str | os.PathLike,
    data: str | os.PathLike | None,
    reports: Iterable[str],
    writes: Iterable[str],
) -> Path:
    """Check a command's report folder, refusing at once one that is a file or lies inside
    the data folder (its charts would be read back as images or masks), and remove the
    ``reports`` of an earlier run there that this run will not write (``writes``): the folder
    then holds this run's reports only. The folder itself is made by whoever writes the first
    report (a run refused later leaves none). Raises ValueError naming the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder}: a file, not a folder for the reports")
    if data is not None and is_within(folder, data):
        raise ValueError(
            f"--output {folder}: inside the data folder {data}, where its images would be read "
            "as pairs; give a folder outside it"
        )
    if folder.is_dir():
        for name in set(reports) - set(writes):
            (folder / name).unlink(missing_ok=True)
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collect_images(inputs: list[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted list of image files (see ``collect_inputs``)."""
    return [path for path, _ in collect_inputs(inputs, recursive)[0]]


def collect_inputs(
    inputs: list[str | os.PathLike],
    recursive: bool = True,
    others: list[Path] | None = None,
    hidden: list[Path] | None = None,
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Expand files and folders into image files, each with its output name.

    Files given explicitly are kept even with an odd extension (decoding decides); files found
    in folders are filtered by extension, hidden files and folders are left out. The output
    name is the stem under the sub-folder the file was found in, relative to the folder given,
    so same-named files in sub-folders do not clash.

    Returns:
        (found, skipped): found holds (path, output name); skipped holds (path, reason) for
        entries with an image name that cannot be read as a file: folders named like images,
        broken links and symlink loops. Nothing is dropped without a word: the regular files
        a folder scan leaves out because their names are not of an accepted image type (a GIF,
        a file without an extension) are appended to ``others`` when it is given, and the
        hidden entries named like images it leaves out (``.x.jpg``, macOS's ``._x.jpg``) to
        ``hidden``.
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files: list[Path] = []
            _walk(p, recursive, files, skipped, set(), others, hidden)
            found += [(q, q.relative_to(p).with_suffix("")) for q in sorted(files)]
        else:
            found.append((p, Path(p.stem)))
    return found, skipped


def _walk(
    folder: Path,
    recursive: bool,
    files: list[Path],
    skipped: list[tuple[Path, str]],
    seen: set[tuple[int, int]],
    others: list[Path] | None = None,
    hidden: list[Path] | None = None,
) -> None:
    """Depth-first scan that follows linked folders once and reports loops."""
    try:
        st = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        skipped.append((folder, f"cannot read folder ({exc.strerror or exc})"))
        return
    if (st.st_dev, st.st_ino) in seen:
        skipped.append((folder, "symlink loop: this folder was already scanned"))
        return
    seen.add((st.st_dev, st.st_ino))
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            if hidden is not None and is_image_name(path.with_name(entry.name.lstrip("."))):
                hidden.append(path)
            continue
        try:
            target = path.stat()  # follows links; fails on broken links and loops
        except OSError as exc:
            if is_image_name(path) or entry.is_symlink():
                reason = "symlink loop" if exc.errno == errno.ELOOP else "broken link"
                skipped.append((path, f"{reason} ({exc.strerror})"))
            continue
        if stat.S_ISDIR(target.st_mode):
            if is_image_name(path):
                skipped.append((path, "is a directory, not an image"))
            if recursive:
                _walk(path, recursive, files, skipped, seen, others, hidden)
        elif is_image_name(path):
            if stat.S_ISREG(target.st_mode):
                files.append(path)
            else:
                skipped.append((path, "not a regular file"))
        elif others is not None and stat.S_ISREG(target.st_mode):
            others.append(path)


# --------------------------------------------------------------------------- inputs vs outputs


class OverwriteError(ValueError):
    """Some output of a run would replace one of its inputs; raised before anything is written."""


def real_path(path: str | os.PathLike) -> Path:
    """The absolute path with links resolved (as far as they exist)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop on the way
        return Path(os.path.abspath(path))


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies anywhere below it (links resolved)."""
    p, f = real_path(path), real_path(folder)
    return p == f or f in p.parents


def _inode(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def find_overwrites(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]
) -> list[tuple[Path, Path]]:
    """(output, input) for every output that is an input: the same path once links are
    resolved, or the same file under another name (``os.path.samefile``: hard links). In the
    order of ``outputs``; linear in the number of paths."""
    by_path: dict[Path, Path] = {}
    by_inode: dict[tuple[int, int], Path] = {}
    for item in inputs:
        by_path.setdefault(real_path(item), Path(item))
        key = _inode(item)
        if key is not None:
            by_inode.setdefault(key, Path(item))
    hits = []
    for out in outputs:
        hit = by_path.get(real_path(out))
        if hit is None:
            key = _inode(out)
            hit = by_inode.get(key) if key is not None else None
        if hit is not None:
            hits.append((Path(out), hit))
    return hits


def refuse_overwrite(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    hint: str = "choose another --output",
) -> None:
    """Raise ``OverwriteError`` naming the first outputs that would replace an input (see
    ``find_overwrites``); call it with every planned output before writing any of them."""
    hits = find_overwrites(outputs, inputs)
    if not hits:
        return
    named = ", ".join(
        str(src) if out == src else f"{src} (as the output {out})" for out, src in hits[:3]
    )
    more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
    raise OverwriteError(
        f"refusing to write over the input(s) {named}{more}; nothing was written; {hint}"
    )
