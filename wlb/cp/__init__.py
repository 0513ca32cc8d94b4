"""Context-parallel level: strategies, shard index math, CP attention, adaptive selection.

Modules, in data-flow order: ``strategy`` (the vocabulary), ``shard`` (which tokens each rank
holds: pure index math), ``selector`` (the per-micro-batch strategy choice), ``layout`` (index
tensors for the collectives), ``kernels`` (the attention-kernel registry; ``torch_kernel`` is its
pure-torch entry) and ``attention`` (the collectives and their autograd functions).

Public functional API::

    wlb.cp.shard_indices(doc_lens, cp_size, cp_rank, strategy) -> torch.LongTensor
    wlb.cp.cp_attention(q, k, v, doc_lens, cp_group, strategy, softmax_scale=None,
                        backend="torch") -> torch.Tensor
"""

from wlb.cp.shard import (
    Segment,
    SegmentArrays,
    causal_pairs,
    inverse_permutation,
    pad_to_tile,
    per_seq_padding,
    rank_attention_pairs,
    rank_segments,
    rank_token_counts,
    segment_arrays,
    shard_position_array,
    shard_positions,
)
from wlb.cp.strategy import ALL_STRATEGIES, PAPER_STRATEGIES, Strategy


def shard_indices(doc_lens, cp_size: int, cp_rank: int, strategy: Strategy):
    """Global token positions held by this rank, in its storage order, as a LongTensor."""
    import torch

    return torch.from_numpy(shard_position_array(doc_lens, cp_size, cp_rank, strategy))


def cp_attention(q, k, v, doc_lens, cp_group, strategy: Strategy, softmax_scale=None,
                 backend: str = "torch"):
    """All-gather-KV causal document-masked attention; see :mod:`wlb.cp.attention`.

    ``backend`` picks the attention kernel (:mod:`wlb.cp.kernels`); the default runs anywhere.
    """
    from wlb.cp.attention import cp_attention as _impl

    return _impl(q, k, v, doc_lens, cp_group, strategy, softmax_scale, backend)


__all__ = [
    "ALL_STRATEGIES",
    "PAPER_STRATEGIES",
    "Segment",
    "SegmentArrays",
    "Strategy",
    "causal_pairs",
    "cp_attention",
    "inverse_permutation",
    "pad_to_tile",
    "per_seq_padding",
    "rank_attention_pairs",
    "rank_segments",
    "rank_token_counts",
    "segment_arrays",
    "shard_indices",
    "shard_position_array",
    "shard_positions",
]
