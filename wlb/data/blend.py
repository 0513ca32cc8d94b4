"""Megatron's weighted ``--data-path`` (``W1 P1 W2 P2 ...`` or ``P1 P2 ...``) over documents.

Megatron blends equal-size samples from each dataset in proportion to the weights, which is a
blend in tokens; the packers here take whole documents, so the blend is drawn in documents with
the same token proportions: split ``s`` of the blend holds, from each dataset k, documents of its
own split ``s`` (the ``--split`` applies per dataset, as in Megatron) totalling ``w_k x T``
tokens, where T is the tokens of split ``s`` over all datasets. A dataset asked for more than it
has is repeated (whole passes, then a seeded subset), one asked for less is a seeded subset. A
plain list of prefixes is their concatenation (Megatron's weights-None blend): every document
once.

Worked example: datasets of 100 and 300 train tokens, weights 0.5 / 0.5 -> T = 400 -> 200 tokens
from each: dataset 0 twice over, dataset 1 a seeded subset of about 200 of its 300 tokens.
"""

from __future__ import annotations

import numpy as np

from wlb.data.split import split_ranges


class BlendError(ValueError):
    """A ``--data-path`` list that cannot be read (the message names it)."""


def parse_blend(items: list[str]) -> tuple[list[str], list[float] | None]:
    """``["30", "A", "70", "B"]`` -> (["A", "B"], [0.3, 0.7]); ``["A", "B"]`` -> (["A", "B"],
    None). As megatron-core's ``get_blend_from_list``: an even list whose every other item is a
    number is weighted, anything else is a list of prefixes."""
    if not items:
        raise BlendError("--data-path needs at least one dataset prefix")
    weights: list[float] | None = None
    prefixes = list(items)
    if len(items) % 2 == 0:
        try:
            raw = [float(w) for w in items[0::2]]
        except ValueError:
            raw = None
        if raw is not None:
            weights, prefixes = raw, list(items[1::2])
    if weights is not None:
        bad = [w for w in weights if w < 0]
        if bad or sum(weights) <= 0:
            raise BlendError(f"--data-path weights {weights}: need non-negative weights with a "
                             "positive sum")
        weights = [w / sum(weights) for w in weights]
    return [p.strip() for p in prefixes], weights


def _draw(lengths: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """Document indices (into ``lengths``) totalling about ``target`` tokens: whole passes, then
    a seeded permutation's prefix up to the target (the crossing document included)."""
    total = int(lengths.sum())
    passes = int(target // total)
    rest = target - passes * total
    picks = [np.arange(len(lengths))] * passes
    if rest > 0:
        order = rng.permutation(len(lengths))
        cum = np.cumsum(lengths[order])
        picks.append(order[: int(np.searchsorted(cum, rest, side="left")) + 1])
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def blend_split(sizes: list[np.ndarray], weights: list[float] | None, split: list[float],
                which: int, seed: int) -> np.ndarray:
    """Global document ids (datasets concatenated in order) of split ``which`` of the blend.

    Args:
        sizes: document lengths of each dataset.
        weights: normalised blend weights, or None (concatenation).
        split: normalised ``--split`` weights (``wlb.data.split.parse_split``).
        which: 0 train, 1 valid, 2 test.
        seed: the subset draws' seed.

    Returns:
        int64 ids into the concatenation of ``sizes`` (empty when the split is empty).
    """
    starts = np.concatenate([[0], np.cumsum([len(s) for s in sizes])])
    ranges = [split_ranges(split, len(s))[which] for s in sizes]
    local = [np.arange(*r) if r else np.zeros(0, dtype=np.int64) for r in ranges]
    tokens = [int(s[ids].sum()) for s, ids in zip(sizes, local)]
    if weights is None:
        return np.concatenate([starts[k] + ids for k, ids in enumerate(local)]).astype(np.int64)
    total = sum(tokens)
    rng = np.random.default_rng([seed, which])
    out = []
    for k, (s, ids, w) in enumerate(zip(sizes, local, weights)):
        if w == 0 or total == 0:
            continue
        if tokens[k] == 0:
            raise BlendError(f"--data-path dataset {k + 1} has weight {w:.3g} but no documents "
                             f"in split {which} ({['train', 'valid', 'test'][which]})")
        out.append(starts[k] + ids[_draw(s[ids], w * total, rng)])
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
