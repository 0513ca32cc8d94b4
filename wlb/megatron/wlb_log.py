"""WLB's figures beside Megatron-LM's own log, for both arms: a WLB line after megatron's
iteration line, TensorBoard scalars on megatron's writer, and ``--log-json`` (one JSON object per
iteration, one per evaluation).

megatron's ``training_log`` runs on every rank each iteration (its line is printed by the last
rank); :func:`install` wraps it, so that after it, at megatron's logged iterations
(``iteration % --log-interval == 0``), every rank joins one all-reduce of the micro-batches'
forward times (the measured imbalance; ``wlb.megatron.observe`` records them in the forward
steps), and the last rank prints the WLB line and writes the scalars. The predictions are the
cost model's: for WLB of the iteration's plan, known in advance (``WLBData.pop_figures``); for
stock Megatron of the micro-batches its forward steps saw, gathered over the DP replicas (one
``all_gather_object`` per logged iteration). JSON rows carry megatron's loss, learning rate and
grad norm with these figures; after each evaluation a ``"kind": "valid"`` row has megatron's
validation loss, the tokens trained so far and a fingerprint of the tokens evaluated
(``valid_digest``: equal when two runs evaluated the same tokens, however packed and sharded).
"""

from __future__ import annotations

import json
import os
import time

import torch
from megatron.core import mpu
from megatron.training import get_args, get_tensorboard_writer
from megatron.training.utils import is_last_rank

from wlb.host.batches import MicroBatchLayout, plan_predictions
from wlb.megatron.observe import FORWARD_STEPS
from wlb.metrics import imbalance
from wlb.packing.types import BatchPlan, Piece

#: the fingerprint's modulus (``wlb.megatron.observe``)
_P = (1 << 31) - 1


def measured_imbalance(records: list[tuple[int, int, float]], pp_rank: int, pp: int, vpp: int,
                       n: int, device=None) -> float:
    """Imbalance of measured per-micro-batch forward times: for each micro-batch, the slowest
    rank of every (pipeline stage, virtual chunk) summed over stages; then max x N / sum.

    A collective: every rank passes its own ``records`` (``(micro-batch, chunk, ms)``, from
    ``wlb.megatron.observe``); one all-reduce (MAX) of an [N, PP, VPP] table, whose size does
    not grow with DP, CP or TP.
    """
    table = torch.zeros(n, pp, vpp, dtype=torch.float64)  # [N, PP, VPP]: ms, this rank's
    for j, vp, ms in records:
        table[j, pp_rank, vp] = max(float(table[j, pp_rank, vp]), ms)
    table = table.to(device) if device is not None else table
    torch.distributed.all_reduce(table, op=torch.distributed.ReduceOp.MAX)
    return imbalance(table.sum(dim=(1, 2)).cpu().tolist())


def _line(it: int, m: dict) -> str:
    strat = ",".join(f"{k}:{v}" for k, v in m.get("cp_strategy", {}).items())
    host = (f" host ms {m['host_ms']:.1f} (waited {m['host_wait_ms']:.1f}) |"
            if "host_ms" in m else "")
    return (f" WLB | iteration {it:8d} | predicted imbalance PP {m['pp_imbalance_pred']:.3f} "
            f"(floor {m['pp_imbalance_floor']:.3f}), DP {m['dp_imbalance_pred']:.3f}, CP "
            f"{m['cp_imbalance_pred']:.3f} | measured PP imbalance "
            f"{m['pp_imbalance_measured']:.3f} | cp: {strat} |{host} tokens {m['tokens']} |")


def stock_predictions(iteration: int, units: list[tuple[int, ...]], cost, cp: int) -> dict:
    """The cost model's figures for stock Megatron's iteration from this DP replica's observed
    micro-batches (``units``: each one's attention units), gathered over the replicas
    (collective over the DP group)."""
    every: list = [None] * mpu.get_data_parallel_world_size()
    torch.distributed.all_gather_object(every, units, group=mpu.get_data_parallel_group())
    mbs, ranks = [], []
    for r, rank_units in enumerate(every):
        for u in rank_units:
            mbs.append([Piece(len(mbs), 0, n, 0) for n in u])  # (a document id of its own)
            ranks.append(r)
    layouts = [MicroBatchLayout(j, mb, r, tuple(p.length for p in mb), "per_seq")
               for j, (mb, r) in enumerate(zip(mbs, ranks))]
    return plan_predictions(BatchPlan(iteration - 1, mbs, ranks), layouts, cost, cp)


def say_notes(cfg) -> None:
    """Say the run's notes once (first rank): flags that change nothing in this mode, what WLB
    turned on (``cfg.logging.notes``), and a ``--wlb-cost-model`` calibrated on another
    revision of the ``torch`` attention kernel than the one this run uses."""
    from megatron.training import print_rank_0

    notes = list(cfg.logging.notes)
    if cfg.wlb.cost_model:
        from wlb.cp.kernels import resolve_backend
        from wlb.host.build import stale_calibration

        args = get_args()
        dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
        like = torch.empty(0, device="cuda" if torch.cuda.is_available() else "cpu",
                           dtype=dtype)
        notes += stale_calibration(cfg.wlb.cost_model,
                                   resolve_backend(cfg.model.attention_backend, like))
    for note in notes:
        print_rank_0(f"> WLB: note: {note}")


def install(data=None, cost=None) -> None:
    """Wrap megatron's ``training_log`` and ``evaluate`` for ``data`` (WLB's arm: a
    ``wlb.megatron.wlb_data.WLBData``) or, with ``data`` None, for stock Megatron priced by
    ``cost`` (a ``wlb.cost_model.CostModel``)."""
    from megatron.training import training

    original_log, original_eval = training.training_log, training.evaluate
    args = get_args()
    json_file = None
    if args.log_json and is_last_rank():
        os.makedirs(os.path.dirname(os.path.abspath(args.log_json)), exist_ok=True)
        json_file = open(args.log_json, "a", buffering=1)  # noqa: SIM115 (the run's)
    last = [time.perf_counter()]
    pp, vpp = args.pipeline_model_parallel_size, args.virtual_pipeline_model_parallel_size or 1
    n = args.global_batch_size // args.micro_batch_size  # micro-batches per iteration
    state = {"iteration": args.iteration,  # (a resumed run's tokens: its data path's count)
             "tokens": data.replayed_tokens if data is not None
             else args.consumed_train_samples * args.seq_length}

    def training_log(loss_dict, total_loss_dict, learning_rate, iteration, loss_scale,
                     report_memory_flag, skipped_iter, grad_norm, *rest, **kwargs):
        out = original_log(loss_dict, total_loss_dict, learning_rate, iteration, loss_scale,
                           report_memory_flag, skipped_iter, grad_norm, *rest, **kwargs)
        records, units = FORWARD_STEPS.take()
        logged = iteration % args.log_interval == 0
        if data is not None:
            m = data.pop_figures(iteration)
            logged = logged and "pp_imbalance_pred" in m
        else:  # stock: this replica's micro-batches are n / DP of the iteration's, in order
            first = mpu.get_data_parallel_rank() * len(units)
            records = [(first + j, vp, ms) for j, vp, ms in records]
            m = {"tokens": args.global_batch_size * args.seq_length}
            if logged:
                m.update(stock_predictions(iteration, units, cost, args.context_parallel_size))
        state["iteration"], state["tokens"] = iteration, state["tokens"] + m["tokens"]
        now = time.perf_counter()
        elapsed_ms, last[0] = (now - last[0]) * 1e3, now
        if logged:  # every rank
            dev = torch.device("cuda", torch.cuda.current_device()) if FORWARD_STEPS.cuda \
                else None
            m["pp_imbalance_measured"] = measured_imbalance(
                records, mpu.get_pipeline_model_parallel_rank(), pp, vpp, n, dev)
        if not is_last_rank():
            return out
        lm = loss_dict.get("lm loss") if loss_dict else None
        m.update(iteration=iteration, lm_loss=None if lm is None else float(lm),
                 lr=learning_rate, grad_norm=None if grad_norm is None else float(grad_norm),
                 iter_ms=elapsed_ms)
        if "pp_imbalance_measured" in m:
            print(_line(iteration, m), flush=True)
            writer = get_tensorboard_writer()
            if writer:
                for k in ("pp_imbalance_pred", "pp_imbalance_floor", "dp_imbalance_pred",
                          "cp_imbalance_pred", "pp_imbalance_measured", "host_ms"):
                    if k in m:
                        writer.add_scalar(f"wlb/{k}", m[k], iteration)
        if json_file:
            json_file.write(json.dumps(m, sort_keys=True) + "\n")
        return out

    def evaluate(*a, **kw):
        out = original_eval(*a, **kw)
        digest = torch.tensor([FORWARD_STEPS.take_valid()], dtype=torch.int64,
                              device="cuda" if FORWARD_STEPS.cuda else "cpu")
        torch.distributed.all_reduce(digest)  # every rank's share of the tokens evaluated
        total = out[0]
        if json_file and total and "lm loss" in total:
            json_file.write(json.dumps({
                "kind": "valid", "iteration": state["iteration"],
                "tokens_trained": state["tokens"],
                "valid_digest": f"{int(digest.item()) % _P:08x}",
                "valid_lm_loss": float(total["lm loss"])}) + "\n")
        return out

    training.training_log, training.evaluate = training_log, evaluate
