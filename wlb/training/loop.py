"""The training loop: plan -> micro-batches -> megatron schedule -> optimizer -> metrics."""

from __future__ import annotations

import time
from functools import partial

import torch
import torch.distributed as dist

from wlb.megatron.attention import WLBPackedSeqParams
from wlb.megatron.schedule import forward_backward
from wlb.metrics import imbalance
from wlb.training.batches import MicroBatchInput
from wlb.training.elastic import agree
from wlb.training.host import RankView, StepInputs, make_prepare


def _loss_func(loss_mask: torch.Tensor, output: torch.Tensor):
    """Per-token loss summed over this rank's tokens; megatron divides by the global count."""
    losses = output.float().reshape(-1)
    loss_sum = (losses * loss_mask).sum()
    n = loss_mask.sum().to(torch.int)
    return loss_sum, n, {"lm loss": torch.stack([loss_sum.detach(), n.float()])}


class TimedForwardStep:
    """Forward step that moves each micro-batch to ``device`` and records its forward compute
    time on this rank (CUDA events on a GPU, so the launch is not mistaken for the work)."""

    def __init__(self, device: torch.device, elastic=None) -> None:
        self.device = device
        self.elastic = elastic  # ElasticRuntime: the groups of elastic micro-batches
        self._marks: list[tuple[int, int, object, object]] = []  # (mb index, vp chunk, t0, t1)

    def _mark(self):
        if self.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    @property
    def records(self) -> list[tuple[int, int, float]]:
        """(micro-batch index, virtual chunk, forward ms); call after the step."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return [(j, vp, a.elapsed_time(b)) for j, vp, a, b in self._marks]
        return [(j, vp, (b - a) * 1e3) for j, vp, a, b in self._marks]

    def __call__(self, data_iterator, model):
        mb: MicroBatchInput = next(data_iterator)
        t0 = self._mark()
        dev = self.device
        tokens, labels, positions, loss_mask = (
            x.to(dev, non_blocking=True) for x in (mb.tokens, mb.labels, mb.positions,
                                                   mb.loss_mask))
        params = WLBPackedSeqParams(qkv_format="thd", seq_lens=mb.seq_lens,
                                    cp_strategy=mb.strategy, positions=positions)
        if mb.group is not None:
            params.cp_group, params.cp_override = self.elastic.group(*mb.group), True
        output = model(
            input_ids=tokens[None],
            position_ids=positions[None],
            attention_mask=None,
            labels=labels[None],
            packed_seq_params=params,
        )
        vp = getattr(model, "vp_stage", None)
        if vp is None:
            vp = getattr(getattr(model, "module", None), "vp_stage", None) or 0
        self._marks.append((mb.index, int(vp), t0, self._mark()))
        return output, partial(_loss_func, loss_mask)


def measured_imbalance(records: list[tuple[int, int, float]], pp_rank: int, pp: int, vpp: int,
                       n: int, device=None) -> float:
    """Imbalance of measured per-micro-batch forward times: for each micro-batch, the slowest
    rank of every (pipeline stage, virtual chunk) summed over stages; then max x N / sum.

    A collective: every rank passes its own ``records`` (``TimedForwardStep.records``); one
    all-reduce (MAX) of an [N, PP, VPP] table, whose size does not grow with DP, CP or TP.
    """
    table = torch.zeros(n, pp, vpp, dtype=torch.float64)  # [N, PP, VPP]: ms, this rank's
    for j, vp, ms in records:
        table[j, pp_rank, vp] = max(float(table[j, pp_rank, vp]), ms)
    table = table.to(device) if device is not None else table
    dist.all_reduce(table, op=dist.ReduceOp.MAX)
    return imbalance(table.sum(dim=(1, 2)).cpu().tolist())


def host_path(run):
    """This rank's host path, ``(plan, plan_ms, iteration) -> StepInputs``
    (``wlb.training.host.make_prepare``: the predictions at logged iterations only)."""
    g, layout = run.groups, run.groups.layout
    return make_prepare(RankView(layout, g.dp_rank, g.cp_rank), run.chooser, run.source,
                        cost=run.cost, elastic=run.elastic,
                        rank_tokens=run.packer_max_tokens // layout.cp,
                        log_interval=run.cfg.logging.log_interval,
                        train_iters=run.cfg.training.train_iters)


def train_step(run, plan, prepared: StepInputs | None = None,
               pending_tokens: int | None = None, logged: bool = True) -> dict:
    """One iteration on this rank; returns the metrics (identical on every rank).

    Args:
        prepared: this rank's host-path output for ``plan``, when it was made ahead
            (``wlb.training.prefetch``); else it is made here, with its predictions.
        pending_tokens: tokens the packer held right after ``plan`` was drawn (default: what
            it holds now, which is that when nothing was drawn since).
        logged: a logged iteration: measure the imbalance (a collective: every rank must pass
            the same); the predictions are ``prepared``'s.
    """
    g, layout = run.groups, run.groups.layout
    if prepared is None:
        prepared = host_path(run)(plan)
    if pending_tokens is None:
        pending_tokens = sum(p.length for p in run.schedule.packer.pending())
    inputs = prepared.inputs
    if prepared.eplan is not None:
        agree(prepared.eplan, plan, run.device)
    data = [iter(inputs) for _ in run.model] if len(run.model) > 1 else iter(inputs)
    timed = TimedForwardStep(run.device, run.elastic)
    for m in run.model:
        m.zero_grad_buffer()
    run.optimizer.zero_grad()
    reports = forward_backward(timed, data, run.model if len(run.model) > 1 else run.model[0],
                               num_microbatches=len(inputs), seq_length=run.cfg.model.seq_length,
                               pp_size=layout.pp, vpp_size=layout.vpp)
    lr = float(run.optimizer.param_groups[0]["lr"])  # the rate this step applies
    ok, grad_norm, _ = run.optimizer.step()
    run.scheduler.step(increment=1)
    # loss over the global batch: last stage, one TP rank per replica contributes
    stats = torch.zeros(2, dtype=torch.float64, device=run.device)
    if g.is_last_stage() and g.tp_rank == 0:
        for r in reports:
            stats += r["lm loss"].double()
    dist.all_reduce(stats)
    stats = stats.cpu()
    out = {
        "lm_loss": float(stats[0] / max(stats[1], 1.0)),
        "loss_tokens": int(stats[1]),
        "grad_norm": float(grad_norm) if grad_norm is not None else None,
        "skipped": not ok,
        "lr": lr,
        "tokens": plan.num_tokens,
        "pending_tokens": pending_tokens,
    }
    if logged:
        out["pp_imbalance_measured"] = measured_imbalance(
            timed.records, g.pp_rank, layout.pp, layout.vpp, len(plan.microbatches), run.device)
    out.update(prepared.predictions)
    return out
