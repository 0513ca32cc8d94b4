"""Validation loss on the held-out split: the same micro-batches for every packer and layout.

The validation set is built once: ``--eval-iters`` global batches of ``--seq-length`` samples of
the valid split, in stock Megatron's order (its valid ``GPTDataset``'s first samples,
``wlb.packing.stock_samples``), dealt to DP ranks as Megatron's sampler deals them. Every
evaluation reads the same batches (Megatron's iterator moves on between evaluations; fixed
batches make the curve of one run, and two runs that differ only in WLB flags, comparable), so
its inputs do not depend on the packer, the CP strategy or the layout.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from wlb.data.sources import DocumentSource
from wlb.megatron.schedule import forward_backward
from wlb.packing.stock_samples import StockSampleBatcher
from wlb.packing.types import BatchPlan, Piece

#: Megatron caps the exponent of the reported perplexity
PPL_MAX_LOSS = 20.0


class ValidationSet:
    """The fixed validation batches.

    Args:
        docs: the valid split.
        num_microbatches: samples per global batch (--global-batch-size).
        seq_length: tokens per sample.
        eval_iters: global batches per evaluation.
        dp_size: DP ranks (sample j of a batch goes to rank j % dp_size).
        seed: the sample order's seed (--seed).
    """

    def __init__(self, docs: DocumentSource, num_microbatches: int, seq_length: int,
                 eval_iters: int, dp_size: int, seed: int) -> None:
        self.docs = docs
        order = StockSampleBatcher(docs.lengths, num_microbatches, seq_length,
                                   eval_iters * num_microbatches, seed)
        ranks = [j % dp_size for j in range(num_microbatches)]
        self.plans: list[BatchPlan] = []
        for b in range(eval_iters):
            samples = order.shuffle[b * num_microbatches:(b + 1) * num_microbatches]
            mbs = [[Piece(d, o, n, 0) for d, o, n, _ in order.sample_pieces(int(s))]
                   for s in samples]
            self.plans.append(BatchPlan(b, mbs, ranks))
        self.num_tokens = sum(p.num_tokens for p in self.plans)
        #: one hash of every validation micro-batch, whatever the DP size (equal across runs
        #: that evaluate the same tokens); the batches never change, so it is computed once
        self.digest = BatchPlan(0, [mb for p in self.plans for mb in p.microbatches],
                                []).digest()


def evaluate(run, validation: ValidationSet) -> dict:
    """The loss over every token of the validation set (collective; same on every rank).

    Returns:
        ``{"valid_lm_loss", "valid_ppl", "valid_tokens"}`` (tokens with a label).
    """
    from wlb.training.batches import build_inputs, lay_out
    from wlb.training.loop import TimedForwardStep

    g, layout = run.groups, run.groups.layout
    stats = torch.zeros(2, dtype=torch.float64, device=run.device)
    for m in run.model:
        m.eval()
    try:
        with torch.no_grad():
            for plan in validation.plans:
                layouts = lay_out(plan, layout.pad_multiple, run.chooser, g.dp_rank)
                inputs = build_inputs(layouts, g.dp_rank, validation.docs,
                                      pad_multiple=layout.pad_multiple, cp_size=layout.cp,
                                      cp_rank=g.cp_rank)
                data = [iter(inputs) for _ in run.model] if len(run.model) > 1 else iter(inputs)
                reports = forward_backward(
                    TimedForwardStep(run.device), data,
                    run.model if len(run.model) > 1 else run.model[0],
                    num_microbatches=len(inputs), seq_length=run.cfg.model.seq_length,
                    pp_size=layout.pp, vpp_size=layout.vpp, forward_only=True)
                if g.is_last_stage() and g.tp_rank == 0:  # one TP rank per replica's stage
                    for r in reports:
                        stats += r["lm loss"].double()
    finally:
        for m in run.model:
            m.train()
    dist.all_reduce(stats)
    stats = stats.cpu()
    loss = float(stats[0] / max(float(stats[1]), 1.0))
    return {"valid_lm_loss": loss, "valid_ppl": math.exp(min(PPL_MAX_LOSS, loss)),
            "valid_tokens": int(stats[1])}
