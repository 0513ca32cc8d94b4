"""Replay the ``--log-plans`` logs of a run that was stopped and resumed through the token
ledger: every document piece consumed is trained exactly once or still pending."""

from __future__ import annotations

import json

from wlb.packing.ledger import TokenLedger
from wlb.packing.types import Piece


def chain_ledger(plan_logs: list[str], upto: list[tuple[int, int]], iters: int) -> None:
    """``plan_logs[k]``'s rows for iterations ``upto[k]`` (inclusive), which together must be
    iterations 1..``iters``; raises (the ledger's error) unless every piece is accounted for."""
    ledger, rows = TokenLedger(), []
    for path, (lo, hi) in zip(plan_logs, upto):
        with open(path) as f:
            rows += [r for r in map(json.loads, f) if lo <= r["iteration"] <= hi]
    assert [r["iteration"] for r in rows] == list(range(1, iters + 1))

    def piece(e, d, o, n):
        return Piece(e * 10_000 + d, o, n, 0)

    for r in rows:
        ledger.consume(piece(*x) for x in r["consumed"])
        ledger.train(piece(*x) for mb in r["trained"] for x in mb)
    ledger.check(piece(*x) for x in rows[-1]["pending"])
