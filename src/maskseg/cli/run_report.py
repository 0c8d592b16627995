"""What ``maskseg predict`` says when it ends, and how it exits: the counts, the reports
written, the wear verdicts, and a run a signal stopped (kept apart from the per-file work in
``maskseg.cli.predict``)."""

from __future__ import annotations

import sys
from typing import Any

from maskseg.cli.predict import PredictResult, verdict_counts
from maskseg.console import exit_status


def announce_stop(name: str) -> None:
    """What a first Ctrl-C or SIGTERM says while ``predict`` runs."""
    print(f"\n{name}: stopping after the file(s) in hand (Ctrl-C again: at once)", file=sys.stderr)


def report_run(res: PredictResult, a: Any, wear: bool) -> int:
    """``maskseg predict``'s closing lines and exit status for ``res`` (``a``: its options):
    1 when a file failed or no input was found, 128 + the signal's number when a signal
    stopped it (130 for Ctrl-C, 143 for SIGTERM), else 0."""
    reports = [str(p) for p in (a.summary, a.coco) if p]
    if res.stopped:
        done = len(res.written) + len(res.failed)
        held = f"; {' and '.join(reports)} hold those" if reports else ""
        remote = (
            "; masks of files other workers had in hand may also lie there, without report rows"
            if getattr(a, "engine", "local") != "local"
            else ""
        )
        print(
            f"stopped by {res.stopped}: {done} of {res.planned} file(s) done, "
            f"{len(res.written)} mask(s) in {a.output}{held}{remote}",
            file=sys.stderr,
        )
        return exit_status(res.stopped, 1)
    if not res.total:
        given = ", ".join(str(i) for i in a.inputs)
        print(f"error: no input images found in {given}", file=sys.stderr)
        return 1
    if not res.written and not res.failed:  # inputs were found: none fell to this shard
        print(f"shard {a.shard}: none of the run's {res.total} input(s) falls to it")
        return 0
    print(
        f"wrote {len(res.written)} mask(s) to {a.output}"
        + (f"; skipped {len(res.failed)} input(s), listed above" if res.failed else "")
    )
    if reports:
        print(f"wrote {' and '.join(reports)}")
    if wear and res.verdicts:
        print(f"wear, {sum(res.verdicts.values())} face(s): {verdict_counts(res.verdicts)}")
    return 1 if res.failed else 0
