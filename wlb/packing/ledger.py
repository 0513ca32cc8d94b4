"""Token ledger: proves every token of every consumed document is trained exactly once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from wlb.packing.types import Piece


class LedgerError(AssertionError):
    """A token lost, trained twice, or invented."""


class TokenLedger:
    """Records consumed, trained and pending pieces per document and checks they tile exactly."""

    def __init__(self) -> None:
        self.consumed: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.trained: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.trained_tokens = 0
        self.consumed_tokens = 0

    def consume(self, pieces: Iterable[Piece]) -> None:
        for p in pieces:
            self.consumed[p.doc_id].append((p.offset, p.length))
            self.consumed_tokens += p.length

    def train(self, pieces: Iterable[Piece]) -> None:
        for p in pieces:
            self.trained[p.doc_id].append((p.offset, p.length))
            self.trained_tokens += p.length

    @staticmethod
    def _cover(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Merge spans into disjoint intervals; raise on any overlap."""
        out: list[tuple[int, int]] = []
        for off, n in sorted(spans):
            if out and off < out[-1][1]:
                raise LedgerError(f"token range [{off}, {off + n}) appears twice")
            if out and off == out[-1][1]:
                out[-1] = (out[-1][0], off + n)
            else:
                out.append((off, off + n))
        return out

    def check(self, pending: Iterable[Piece] = ()) -> dict:
        """Trained + pending must equal consumed, token for token, with no overlap.

        Returns a summary; raises LedgerError naming the first document that disagrees.
        """
        held: dict[int, list[tuple[int, int]]] = defaultdict(list)
        n_pending = pending_tokens = 0
        for p in pending:
            held[p.doc_id].append((p.offset, p.length))
            n_pending += 1
            pending_tokens += p.length
        for doc in set(self.consumed) | set(self.trained) | set(held):
            want = self._cover(self.consumed.get(doc, []))
            try:
                got = self._cover(self.trained.get(doc, []) + held.get(doc, []))
            except LedgerError as e:
                raise LedgerError(f"document {doc}: {e}") from None
            if want != got:
                raise LedgerError(f"document {doc}: consumed {want} but trained+pending {got}")
        docs_pending = {p for p in held}
        return {
            "consumed_tokens": self.consumed_tokens,
            "trained_tokens": self.trained_tokens,
            "pending_tokens": pending_tokens,
            "pieces_pending": n_pending,
            "docs_pending": len(docs_pending),
        }
