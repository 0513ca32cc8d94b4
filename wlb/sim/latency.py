"""Per-micro-batch, per-pipeline-stage latency of a 4D layout from document lengths.

For one micro-batch (its document lengths and CP strategy) every CP rank gets its query segments
(``wlb.cp.shard.rank_segments``); a layer costs, on that rank, the attention kernel time of its
segments plus the GEMM time of its tokens, and the CP group waits for its slowest rank at every
layer (the K/V all-gather). TP ranks are identical (they share the CP rank's tokens). Collectives
add their exposed time. A virtual pipeline stage is ``num_layers / (pp * vpp)`` such layers; the
last one also computes the output logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wlb.cp.selector import RankPredictor
from wlb.cp.shard import rank_segments, rank_token_counts
from wlb.parallel import ParallelDims
from wlb.sim.hardware import ATTN_BWD_FACTOR, GEMM_BWD_FACTOR, Hardware
from wlb.sim.model import ModelSpec


@dataclass(frozen=True)
class MicroBatchTimes:
    """Seconds of one micro-batch.

    Attributes:
        fwd, bwd: per virtual stage (pp * vpp entries).
        p2p: activation transfer between consecutive virtual stages.
        attn_rank_s: attention fwd+bwd seconds of one layer on every CP rank (for imbalance).
    """

    fwd: tuple[float, ...]
    bwd: tuple[float, ...]
    p2p: float
    attn_rank_s: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.fwd) + sum(self.bwd)


def attention_rank_seconds(doc_lens: Sequence[int], cp: int, strategy: str, model: ModelSpec,
                           tp: int, hw: Hardware) -> list[float]:
    """Attention fwd+bwd seconds of one layer on every CP rank under ``strategy``."""
    fpp = model.attn_flops_per_pair(tp)
    if cp == 1:  # one rank holds every document whole: one causal segment each
        return [sum(hw.attention.segment_seconds(d, d, fpp) for d in doc_lens if d)]
    out = []
    for r in range(cp):
        front, back = rank_segments(doc_lens, cp, r, strategy)
        out.append(sum(hw.attention.segment_seconds(s.length, s.start + s.length, fpp)
                       for s in (*front, *back) if s.length))
    return out


def attention_predictor(model: ModelSpec, tp: int, hw: Hardware) -> RankPredictor:
    """The adaptive selector's per-rank latency on the simulated hardware (for
    :func:`wlb.cp.selector.choose_strategy` / ``StrategyChooser``)."""

    def predict(doc_lens: Sequence[int], cp: int, strategy: str) -> list[float]:
        return attention_rank_seconds(doc_lens, cp, strategy, model, tp, hw)

    return predict


def _ring_s(bytes_total: float, group: int, bw: float, latency: float) -> float:
    """One ring all-gather / reduce-scatter whose gathered size is ``bytes_total``."""
    return (group - 1) / group * bytes_total / bw + latency if group > 1 else 0.0


def microbatch_times(doc_lens: Sequence[int], strategy: str, model: ModelSpec, layout: ParallelDims,
                     hw: Hardware) -> MicroBatchTimes:
    """Forward and backward seconds of every virtual stage for one micro-batch.

    Args:
        doc_lens: document lengths of the packed micro-batch (incl. any padding document).
        strategy: "per_seq" or "per_doc" CP sharding.
        model, layout, hw: what is simulated.
    """
    tp, cp = layout.tp, layout.cp
    stages = layout.pp * layout.vpp
    if model.num_layers % stages:
        raise ValueError(f"{model.name}: {model.num_layers} layers do not split into "
                         f"pp*vpp={stages} stages")
    layers = model.num_layers // stages
    total_tokens = sum(doc_lens)
    attn = attention_rank_seconds(doc_lens, cp, strategy, model, tp, hw)
    tokens = rank_token_counts(doc_lens, cp, strategy)
    gemm_fwd = model.linear_flops_per_token(tp) / hw.gemm_flops
    a_f = 1.0 / (1.0 + ATTN_BWD_FACTOR)
    layer_fwd = max(a * a_f + t * gemm_fwd for a, t in zip(attn, tokens))
    layer_bwd = max(a * (1 - a_f) + t * gemm_fwd * GEMM_BWD_FACTOR for a, t in zip(attn, tokens))
    tok = max(tokens)
    b = hw.bytes_per_elem
    # sequence parallel: 2 all-gathers + 2 reduce-scatters of [tok, hidden] per layer and pass
    tp_s = 4 * _ring_s(tok * model.hidden_size * b, tp, hw.link_bw(tp), hw.link_latency_s)
    # all-gather of K and V in the forward, reduce-scatter of dK and dV in the backward
    kv_local = max(model.kv_dim // tp, model.head_dim)
    cp_s = _ring_s(total_tokens * 2 * kv_local * b, cp, hw.link_bw(tp * cp), hw.link_latency_s)
    comm = hw.comm_exposed * (tp_s + cp_s)
    over = hw.layer_overhead_s
    fwd_stage = layers * (layer_fwd + comm + over / 3) + hw.microbatch_overhead_s / 3
    bwd_stage = layers * (layer_bwd + comm + 2 * over / 3) + 2 * hw.microbatch_overhead_s / 3
    logits = tok * model.logit_flops_per_token(tp) / hw.gemm_flops
    fwd = [fwd_stage] * stages
    bwd = [bwd_stage] * stages
    fwd[-1] += logits
    bwd[-1] += logits * GEMM_BWD_FACTOR
    span = tp * cp * layout.dp * 2  # pipeline neighbours sit an outer dimension apart
    p2p = tok * model.hidden_size / tp * b / hw.link_bw(span) + hw.link_latency_s
    return MicroBatchTimes(tuple(fwd), tuple(bwd), p2p if layout.pp > 1 else 0.0, tuple(attn))


def dp_sync_seconds(model: ModelSpec, layout: ParallelDims, hw: Hardware) -> float:
    """Exposed gradient reduce-scatter + parameter all-gather over DP (FSDP / distributed opt.)."""
    if layout.dp == 1:
        return 0.0
    shard_bytes = model.num_params() / (layout.tp * layout.pp) * hw.bytes_per_elem
    one = _ring_s(shard_bytes, layout.dp, hw.link_bw(layout.world_size), hw.link_latency_s)
    return hw.dp_exposed * 2 * one
