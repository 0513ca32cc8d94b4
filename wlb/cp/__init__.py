"""Context-parallel level: shard index math, all-gather CP attention, adaptive selection.

Public functional API::

    wlb.cp.shard_indices(doc_lens, cp_size, cp_rank, strategy) -> torch.LongTensor
    wlb.cp.cp_attention(q, k, v, doc_lens, cp_group, strategy, softmax_scale=None,
                        backend="torch") -> torch.Tensor
"""

from wlb.cp.shard import (
    ALL_STRATEGIES,
    STRATEGIES,
    Segment,
    inverse_permutation,
    per_seq_padding,
    rank_attention_pairs,
    rank_segments,
    rank_token_counts,
    shard_positions,
)


def shard_indices(doc_lens, cp_size: int, cp_rank: int, strategy: str):
    """Global token positions held by this rank, in its storage order, as a LongTensor."""
    import torch

    return torch.tensor(shard_positions(doc_lens, cp_size, cp_rank, strategy), dtype=torch.long)


def cp_attention(q, k, v, doc_lens, cp_group, strategy: str, softmax_scale=None,
                 backend: str = "torch"):
    """All-gather-KV causal document-masked attention; see :mod:`wlb.cp.attention`.

    ``backend`` picks the attention kernel (:mod:`wlb.cp.kernels`); the default runs anywhere.
    """
    from wlb.cp.attention import cp_attention as _impl

    return _impl(q, k, v, doc_lens, cp_group, strategy, softmax_scale, backend)


__all__ = [
    "ALL_STRATEGIES",
    "STRATEGIES",
    "Segment",
    "cp_attention",
    "inverse_permutation",
    "per_seq_padding",
    "rank_attention_pairs",
    "rank_segments",
    "rank_token_counts",
    "shard_indices",
    "shard_positions",
]
