"""What the forward steps of both arms record for the log (``wlb.megatron.wlb_log``).

Both arms' forward steps (``wlb.megatron.gpt``) call :func:`record` once per micro-batch and
model chunk. In training it keeps each micro-batch's forward time on this rank (the measured
imbalance) and, for stock Megatron, the micro-batch's attention units (its documents, or its
samples when attention is causal over the whole sample): WLB knows its plans in advance, the
stock arm's batches are only seen here. In evaluation it adds the micro-batch's tokens to a
fingerprint (:func:`fingerprint`) that tells whether two runs evaluated the same tokens, however
they were packed and sharded.
"""

from __future__ import annotations

import time

import torch

#: a prime below 2^61 and two multipliers: the fingerprint's arithmetic (int64 sums never wrap)
_P, _A, _B = (1 << 31) - 1, 1_000_003, 7_919


def fingerprint(tokens: torch.Tensor, positions: torch.Tensor) -> int:
    """Order-free fingerprint of (token, position in its document) pairs: a sum of a hash of
    each, so that a micro-batch's CP shards add up to the whole micro-batch, and any packing of
    the same documents into micro-batches gives the same sum.

    Example: tokens [5, 6], positions [0, 1] -> h(5, 0) + h(6, 1) (mod 2^31 - 1), the same as
    tokens [6, 5], positions [1, 0].
    """
    t = tokens.reshape(-1).to(torch.int64).cpu()
    p = positions.reshape(-1).to(torch.int64).cpu()
    h = (t * _A + p * _B + 1) % _P
    return int(((h * h) % _P).sum()) % _P


class ForwardSteps:
    """This rank's records since the log last took them."""

    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self._marks: list[tuple[int, int, object, object]] = []  # (index, chunk, start, end)
        self._units: list[tuple[int, ...]] = []  # stock: each micro-batch's attention units
        self._count: dict[int, int] = {}  # stock: micro-batches seen per chunk
        self.valid_sum = 0  # the evaluated tokens' fingerprint (first stage, TP rank 0)

    def mark(self):
        """A point in time (a CUDA event on a GPU, so the launch is not taken for the work)."""
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def add(self, index: int | None, chunk: int, start, end,
            units: tuple[int, ...] | None = None) -> None:
        """One training micro-batch's forward on model chunk ``chunk``: its index in the
        iteration's plan (None: stock Megatron's, counted here per chunk from 0 on this DP rank)
        and, for stock Megatron, its attention units (kept once, from chunk 0)."""
        if index is None:
            index = self._count.get(chunk, 0)
            self._count[chunk] = index + 1
            if chunk == 0:
                self._units.append(units)
        self._marks.append((index, chunk, start, end))

    def add_valid(self, tokens: torch.Tensor, positions: torch.Tensor) -> None:
        self.valid_sum = (self.valid_sum + fingerprint(tokens, positions)) % _P

    def take(self) -> tuple[list[tuple[int, int, float]], list[tuple[int, ...]]]:
        """(index, chunk, forward ms) of each record, and the stock micro-batches' units, since
        the last ``take`` (waits for the GPU)."""
        marks, units, self._marks, self._units, self._count = self._marks, self._units, [], [], {}
        if self.cuda:
            torch.cuda.synchronize()
            return [(j, vp, a.elapsed_time(b)) for j, vp, a, b in marks], units
        return [(j, vp, (b - a) * 1e3) for j, vp, a, b in marks], units

    def take_valid(self) -> int:
        out, self.valid_sum = self.valid_sum, 0
        return out


FORWARD_STEPS = ForwardSteps()
