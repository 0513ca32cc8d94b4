"""Multi-level FIFO outlier queues (paper §4.2, Fig. 8)."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

from wlb.packing.types import Piece


def validate_thresholds(thresholds: Sequence[int], name: str = "outlier thresholds") -> list[int]:
    """Check thresholds are positive ints in strictly ascending order; return them as a list."""
    out = []
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, int) or t <= 0:
            raise ValueError(f"{name}: {t!r} is not a positive integer (got {list(thresholds)})")
        out.append(int(t))
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"{name} must be strictly ascending, got {out}")
    return out


class OutlierQueues:
    """n FIFO queues; queue i holds pieces with ``L_i <= length < L_{i+1}`` (last one unbounded).

    A piece shorter than ``L_1`` is not an outlier. When a queue holds ``release_count`` (= N
    micro-batches) pieces, N of them are released together, so each micro-batch can receive one
    outlier of similar length.

    Example:
        >>> q = OutlierQueues([100, 200], release_count=2)
        >>> q.level(50), q.level(150), q.level(999)
        (-1, 0, 1)
    """

    def __init__(self, thresholds: Sequence[int], release_count: int) -> None:
        if release_count <= 0:
            raise ValueError(f"release_count must be > 0, got {release_count}")
        self.thresholds = validate_thresholds(thresholds)
        self.release_count = release_count
        self.queues: list[deque[Piece]] = [deque() for _ in self.thresholds]

    def level(self, length: int) -> int:
        """Queue index for a length, or -1 when it is not an outlier."""
        return bisect.bisect_right(self.thresholds, length) - 1

    def push(self, piece: Piece) -> bool:
        """Queue the piece if it is an outlier; return whether it was queued."""
        lvl = self.level(piece.length)
        if lvl < 0:
            return False
        self.queues[lvl].append(piece)
        return True

    def pop_ready(self) -> list[Piece]:
        """Release N pieces from every queue holding at least N (FIFO order)."""
        out: list[Piece] = []
        n = self.release_count
        for q in self.queues:
            if len(q) >= n:
                out.extend(q.popleft() for _ in range(n))
        return out

    def pop_overdue(self, step: int, max_wait: int) -> list[Piece]:
        """Release every level whose oldest piece has waited ``max_wait`` iterations or more
        (fewer than N pieces: balance is traded for a bound on delay and queue memory)."""
        out: list[Piece] = []
        for q in self.queues:
            if q and step - q[0].arrival >= max_wait:
                out.extend(q)
                q.clear()
        return out

    def remove(self, indices: set[int], pending: list[Piece]) -> None:
        """Remove the pieces at these indices of ``pending`` (as returned by :meth:`pending`)."""
        drop = {id(pending[i]) for i in indices}
        for lvl, q in enumerate(self.queues):
            if any(id(p) in drop for p in q):
                self.queues[lvl] = deque(p for p in q if id(p) not in drop)

    def flush(self) -> list[Piece]:
        """Release everything (end of epoch)."""
        out = [p for q in self.queues for p in q]
        for q in self.queues:
            q.clear()
        return out

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues)

    def pending(self) -> list[Piece]:
        return [p for q in self.queues for p in q]

    def state_dict(self) -> dict:
        return {
            "thresholds": list(self.thresholds),
            "queues": [[list(p) for p in q] for q in self.queues],
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["thresholds"]) != self.thresholds:
            raise ValueError(
                f"checkpoint outlier thresholds {state['thresholds']} != configured "
                f"{self.thresholds}"
            )
        self.queues = [deque(Piece(*p) for p in q) for q in state["queues"]]
