"""What ``predict`` reads: the files and folders given, expanded into images with their
output names, less the outputs of an earlier run, with bad entries and files of other types
reported (kept apart from the per-file work in ``maskseg.cli.predict``)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from maskseg.files import IMAGE_EXTENSIONS, collect_inputs, is_within, real_path

log = logging.getLogger("maskseg.cli.predict")  # the messages of the predict command


def collect(
    inputs: list[str | Path], out: Path, seen: list[Path] | None = None
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``collect_inputs``, less the files a folder scan finds inside the output folder (they
    are outputs of an earlier run); files and folders given explicitly are kept, except
    links that lead nowhere (a symlink loop, a broken link), skipped with that reason. A
    file given twice (by name and in a folder, or through a link) is done once.

    Files a folder scan leaves out because they are not images of an accepted type (a GIF, a
    file without an extension) are logged as one warning per folder with their count, and
    so are the hidden files named like images it leaves out.
    ``seen`` gets every path the inputs hold (images, those other files, bad entries): what
    no output may replace."""
    items: list[tuple[Path, Path]] = []
    skipped: list[tuple[Path, str]] = []
    seen = [] if seen is None else seen
    done: dict[Path, Path] = {}  # real path -> the path it was first met as
    left_out = 0
    inside: dict[Path, bool] = {}  # per folder: is it the output folder or below it?

    def outside(path: Path) -> bool:
        if path.parent not in inside:
            inside[path.parent] = is_within(path.parent, out)
        return not inside[path.parent]

    for item in inputs:
        dead = None if Path(item).is_dir() else _dead_link(Path(item))
        if dead:
            skipped.append((Path(item), dead))
            seen.append(Path(item))
            continue
        others: list[Path] = []
        hidden: list[Path] = []
        found, bad = collect_inputs([item], others=others, hidden=hidden)
        if Path(item).is_dir() and not is_within(item, out):
            kept = [(p, n) for p, n in found if outside(p)]
            bad = [(p, why) for p, why in bad if outside(p)]
            others = [p for p in others if outside(p)]
            hidden = [p for p in hidden if outside(p)]
            left_out += len(found) - len(kept)
            found = kept
        if others:
            _report_not_images(Path(item), others)
        if hidden:
            _report_hidden(Path(item), hidden)
        for path, name in found:
            real = real_path(path)
            if real in done:
                log.warning("%s: given twice (as %s); segmented once", path, done[real])
                continue
            done[real] = path
            items.append((path, name))
        skipped += bad
        seen += [p for p, _ in found] + [p for p, _ in bad] + others
    if left_out:
        log.info(
            "left out %d file(s) inside the output folder %s (outputs are not read as inputs)",
            left_out,
            out,
        )
    return items, skipped


def _dead_link(path: Path) -> str | None:
    """Why a path given by name leads to no file when that is a link's fault (the same
    reasons as a folder scan gives); None otherwise (decoding reports the rest)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symlink loop ({exc.strerror})"
        if path.is_symlink():
            return f"broken link ({exc.strerror})"
    return None


def _report_not_images(folder: Path, others: list[Path], shown: int = 5) -> None:
    """Log one warning naming the files under ``folder`` that its scan left out because they
    are not images of an accepted type (hidden files and the output folder's are not
    counted)."""
    kinds = sorted({p.suffix.lower() or "no extension" for p in others})
    log.warning(
        "%s: left out %d file(s) that are not images of an accepted type (%s): %s; "
        "accepted: %s (a file given by name is tried whatever its type)",
        folder,
        len(others),
        ", ".join(kinds),
        _first_names(folder, others, shown),
        " ".join(IMAGE_EXTENSIONS),
    )


def _first_names(folder: Path, paths: list[Path], shown: int) -> str:
    """The first ``shown`` of ``paths`` (sorted) under ``folder``, the rest counted:
    ``a.gif, sub/b.txt and 3 more``."""
    paths = sorted(paths)
    names = ", ".join(p.relative_to(folder).as_posix() for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def _report_hidden(folder: Path, hidden: list[Path], shown: int = 5) -> None:
    """Log one warning naming the hidden files under ``folder`` named like images that its
    scan left out (most are macOS's ``._`` copies, not pictures)."""
    log.warning(
        "%s: left out %d hidden file(s) named like images (a name starting with '.'; macOS "
        "leaves '._' files that are not pictures): %s; give a file by name to segment it",
        folder,
        len(hidden),
        _first_names(folder, hidden, shown),
    )
