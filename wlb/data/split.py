"""Megatron's ``--split`` over documents: train / valid / test ranges of a dataset.

The same rule as megatron-core's dataset builder: the weights are read as numbers (missing ones
are 0), normalised to sum to 1 and accumulated into book-ends; split i is documents
``[round(lo_i * n), round(hi_i * n))``, or None when its weight is 0.

Worked example: ``"969,30,1"`` over 1000 documents -> weights [0.969, 0.03, 0.001] -> book-ends
(0, 0.969), (0.969, 0.999), (0.999, 1.0) -> train [0, 969), valid [969, 999), test [999, 1000).
"""

from __future__ import annotations

import re

#: the splits in Megatron's order
SPLITS = ("train", "valid", "test")


class SplitError(ValueError):
    """A ``--split`` that cannot be read (the message names it)."""


def parse_split(split: str) -> list[float]:
    """``"969,30,1"`` -> [0.969, 0.03, 0.001]: up to three non-negative numbers, normalised.

    Raises:
        SplitError: no number, more than three, or a zero sum.
    """
    nums = re.findall(r"[.0-9]+", split)
    try:
        weights = [float(x) for x in nums]
    except ValueError:
        raise SplitError(f"--split={split!r}: expected numbers like 969,30,1") from None
    if not weights or len(weights) > len(SPLITS) or "-" in split:
        raise SplitError(f"--split={split!r}: expected up to three non-negative weights, "
                         "train,valid,test (e.g. 969,30,1)")
    weights += [0.0] * (len(SPLITS) - len(weights))
    total = sum(weights)
    if total <= 0:
        raise SplitError(f"--split={split!r}: the weights sum to 0")
    return [w / total for w in weights]


def split_ranges(weights: list[float], num_docs: int) -> list[tuple[int, int] | None]:
    """Document range [begin, end) of each split for normalised ``weights`` (None: weight 0)."""
    out: list[tuple[int, int] | None] = []
    lo = 0.0
    for w in weights:
        hi = lo + w
        out.append((int(round(lo * num_docs)), int(round(hi * num_docs))) if w > 0 else None)
        lo = hi
    return out
