"""Packed (THD) micro-batches: pieces -> tokens, labels, loss mask, positions; CP slicing.

Labels come from the document, not from the packed sequence: a piece ``(doc, offset, L)`` reads
tokens [offset, offset+L] and predicts token i+1 from token i. The document's last token has no
next token, so its loss mask is 0. The trained (input, label) pairs therefore depend only on the
pieces, never on how they were packed -- which is what makes the loss packing-independent.

Worked example (pad_multiple=4): pieces of docs A (3 tokens, whole) and B (offset 2, 2 tokens of
a 6-token doc) -> 5 tokens, padded with a 3-token pad document to 8:
    seq_lens  = (3, 2, 3)
    positions = [0, 1, 2, 0, 1, 0, 1, 2]   (per piece, as Megatron's --reset-position-ids)
    loss_mask = [1, 1, 0, 1, 1, 0, 0, 0]   (A ends; B continues; padding)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wlb.cp import shard_position_array
from wlb.cp.shard import segment_arrays
from wlb.data.sources import DocumentSource
from wlb.packing.types import Piece, packed_seq_lens


@dataclass
class PackedMicroBatch:
    """One packed micro-batch in global token order.

    Attributes:
        tokens, labels: int64 [T].
        loss_mask: float32 [T] (0 at document ends and padding).
        positions: int64 [T], position of each token inside its piece (the attention unit).
        seq_lens: lengths of the packed pieces, then the pad document if any (sum = T).
        num_pad: padding tokens at the end.
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    positions: torch.Tensor
    seq_lens: tuple[int, ...]
    num_pad: int

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.numel())


def _check_pieces(pieces: list[Piece], source: DocumentSource) -> None:
    for p in pieces:
        doc_len = int(source.lengths[p.doc_id])
        if p.offset + p.length > doc_len:
            raise ValueError(f"piece {p} runs past document {p.doc_id} of length {doc_len}")


def collate(pieces: list[Piece], source: DocumentSource, pad_multiple: int = 1) -> PackedMicroBatch:
    """Concatenate ``pieces`` into one THD micro-batch padded to a multiple of ``pad_multiple``.

    No pieces (a packer may leave a micro-batch empty) gives a padding-only micro-batch of
    ``packed_seq_lens([], pad_multiple)`` tokens, which trains nothing.
    """
    lens = [p.length for p in pieces]
    seq_lens = packed_seq_lens(lens, pad_multiple)
    total = sum(seq_lens)
    pad = total - sum(lens)
    tokens = np.full(total, source.eod, dtype=np.int64)  # the pad document is EOD tokens
    labels = np.full(total, source.eod, dtype=np.int64)
    loss_mask = np.ones(total, dtype=np.float32)
    _check_pieces(pieces, source)
    a = 0
    for p in pieces:
        doc_len = int(source.lengths[p.doc_id])
        stop = min(p.offset + p.length + 1, doc_len)  # one token more: the last one's label
        t = source.tokens(p.doc_id, p.offset, stop)
        tokens[a : a + p.length] = t[: p.length]
        labels[a : a + len(t) - 1] = t[1:]
        if stop - p.offset == p.length:  # the piece ends the document: last token has no label
            loss_mask[a + p.length - 1] = 0.0
        a += p.length
    loss_mask[a:] = 0.0
    # [T]: each token's position inside its piece (the pad document counts as one)
    starts = np.cumsum(seq_lens) - np.asarray(seq_lens)
    positions = np.arange(total, dtype=np.int64) - np.repeat(starts, seq_lens)
    return PackedMicroBatch(
        tokens=torch.from_numpy(tokens),
        labels=torch.from_numpy(labels),
        loss_mask=torch.from_numpy(loss_mask),
        positions=torch.from_numpy(positions),
        seq_lens=tuple(seq_lens),
        num_pad=pad,
    )


def shard_for_cp(mb: PackedMicroBatch, cp_size: int, cp_rank: int, strategy: str) -> dict:
    """This CP rank's rows of ``mb`` under ``strategy`` ("per_seq" | "per_doc" | "mixed").

    Returns:
        dict with ``tokens``, ``labels``, ``loss_mask``, ``positions`` ([t_local] each, in the
        rank's storage order).
    """
    if cp_size == 1 and strategy == "per_seq":  # the whole micro-batch, in order
        return {k: getattr(mb, k) for k in ("tokens", "labels", "loss_mask", "positions")}
    idx = shard_position_array(mb.seq_lens, cp_size, cp_rank, strategy)
    # numpy's gather: several times faster than indexing a CPU tensor with a LongTensor
    return {k: torch.from_numpy(getattr(mb, k).numpy()[idx])
            for k in ("tokens", "labels", "loss_mask", "positions")}


def collate_shard(pieces: list[Piece], source: DocumentSource, pad_multiple: int, cp_size: int,
                  cp_rank: int, strategy: str) -> tuple[dict, tuple[int, ...]]:
    """This CP rank's rows of the packed micro-batch of ``pieces``, read directly.

    The same tensors as ``shard_for_cp(collate(pieces, source, pad_multiple), cp_size, cp_rank,
    strategy)``, but only the rank's tokens are read (about 1/CP of them) and no whole-sequence
    array is built: the rank's query segments (``wlb.cp.shard.segment_arrays``, each inside one
    document) are read from the source one by one, each with one token more for its labels.

    Worked example (pad_multiple=4, CP=2, rank 0, per_doc): pieces A (doc 0, 3 tokens, whole)
    and B (offset 2, 2 tokens of the 6-token doc 1) -> seq_lens (3, 2, 3). Each document is
    dealt to chunk positions 0..3 (rank 0: 0 and 3), remainders round-robin, so rank 0 holds
    A[0:1], B[0:2] and pad[2:3]:
        positions = [0, 0, 1, 2]
        tokens    = [A0, B2, B3, EOD]; labels = [A1, B3, B4, EOD]
        loss_mask = [1, 1, 1, 0]   (B's last token is followed by doc 1's token 4; padding)

    Returns:
        (``{"tokens", "labels", "loss_mask", "positions"}`` [t_local] each, the micro-batch's
        ``seq_lens``: the pieces, then the pad document if any).
    """
    if cp_size == 1 and strategy == "per_seq":  # the whole micro-batch, in order
        mb = collate(pieces, source, pad_multiple)
        keys = ("tokens", "labels", "loss_mask", "positions")
        return {k: getattr(mb, k) for k in keys}, mb.seq_lens
    _check_pieces(pieces, source)
    seq_lens = packed_seq_lens([p.length for p in pieces], pad_multiple)
    seg = segment_arrays(seq_lens, cp_size, strategy, ranks=[cp_rank])
    first = np.cumsum(seg.length) - seg.length  # [S]: each segment's first local row
    n = int(seg.length.sum())
    # [n]: each row's position inside its document (the pad document counts as one)
    positions = np.repeat(seg.start - first, seg.length) + np.arange(n, dtype=np.int64)
    tokens = np.full(n, source.eod, dtype=np.int64)  # the pad document is EOD tokens
    labels = np.full(n, source.eod, dtype=np.int64)
    pad = seg.doc >= len(pieces)  # [S]: a segment of the pad document
    loss_mask = np.repeat(~pad, seg.length).astype(np.float32)
    for s in np.flatnonzero(~pad).tolist():
        p = pieces[int(seg.doc[s])]
        a, length, o = p.offset + int(seg.start[s]), int(seg.length[s]), int(first[s])
        stop = min(a + length + 1, int(source.lengths[p.doc_id]))  # + the last one's label
        t = source.tokens(p.doc_id, a, stop)
        tokens[o:o + length] = t[:length]
        labels[o:o + len(t) - 1] = t[1:]
        if len(t) == length:  # the segment ends the document: its last token has no label
            loss_mask[o + length - 1] = 0.0
    out = {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "positions": positions}
    return {k: torch.from_numpy(v) for k, v in out.items()}, tuple(seq_lens)
