"""``--shard K/N``: one job of a job array (SLURM, PBS, a shell loop) takes the K-th of N
shares of a run's files, without any scheduler of its own.

The share is dealt from the run's planned file list (the order ``predict`` lists its inputs:
each folder sorted), in turn: shard K takes the files at positions K-1, K-1+N, K-1+2N, ...
Output names are planned over the whole list before the share is taken, so a file gets the
same output name whichever shard runs it, and the N shards together cover every file exactly
once. K counts from 1, as in GNU ``split -n K/N``: ``1/4`` .. ``4/4``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` (1..count) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard {self}: N must be at least 1")
        if not 1 <= self.index <= self.count:
            raise ValueError(
                f"shard {self}: K counts from 1 to N (1/{self.count} .. {self.count}/{self.count})"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every N-th, starting at the K-th (the same order as given)."""
        return list(items[self.index - 1 :: self.count])


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> ``Shard(K, N)``; a ValueError that says the expected form otherwise."""
    match = _SPEC.fullmatch(text)
    if match is None:
        raise ValueError(
            f"shard {text!r}: expected K/N with whole numbers, K from 1 to N (e.g. 1/4 .. 4/4)"
        )
    return Shard(int(match.group(1)), int(match.group(2)))
