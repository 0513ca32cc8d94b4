"""WLB's figures beside Megatron-LM's own iteration log: a WLB line after megatron's line,
TensorBoard scalars on megatron's writer, and ``--log-json`` (one JSON object per iteration).

megatron's ``training_log`` runs on every rank each iteration (its line is printed by the last
rank); :func:`install` wraps it, so that after it, at megatron's logged iterations
(``iteration % --log-interval == 0``), every rank joins one all-reduce of the micro-batches'
forward times (the measured imbalance; :class:`ForwardTimes` records them in the forward step),
and the last rank prints the WLB line and writes the scalars. The predictions are the cost
model's for the iteration's plan (``wlb.training.batches.plan_predictions``), the same on every
rank. JSON rows carry megatron's loss, learning rate and grad norm with WLB's figures.
"""

from __future__ import annotations

import json
import os
import time

import torch
from megatron.core import mpu
from megatron.training import get_args, get_tensorboard_writer
from megatron.training.utils import is_last_rank

from wlb.training.loop import measured_imbalance


class ForwardTimes:
    """Each micro-batch's forward time on this rank: (plan index, VPP chunk, ms)."""

    def __init__(self) -> None:
        self._marks: list[tuple[int, int, object, object]] = []
        self.cuda = torch.cuda.is_available()

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def add(self, index: int, chunk: int, start, end) -> None:
        self._marks.append((index, chunk, start, end))

    def take(self) -> list[tuple[int, int, float]]:
        """The records since the last ``take`` (waits for the GPU)."""
        marks, self._marks = self._marks, []
        if self.cuda:
            torch.cuda.synchronize()
            return [(j, vp, a.elapsed_time(b)) for j, vp, a, b in marks]
        return [(j, vp, (b - a) * 1e3) for j, vp, a, b in marks]


FORWARD_TIMES = ForwardTimes()


def _lm_loss(loss_dict: dict) -> float | None:
    """The iteration's loss as megatron's ``train_step`` reduced it (its token-weighted mean
    over the global batch: the last pipeline stage has it)."""
    value = loss_dict.get("lm loss") if loss_dict else None
    return None if value is None else float(value)


def _line(it: int, m: dict) -> str:
    strat = ",".join(f"{k}:{v}" for k, v in m.get("cp_strategy", {}).items())
    return (f" WLB | iteration {it:8d} | predicted imbalance PP {m['pp_imbalance_pred']:.3f} "
            f"(floor {m['pp_imbalance_floor']:.3f}), DP {m['dp_imbalance_pred']:.3f}, CP "
            f"{m['cp_imbalance_pred']:.3f} | measured PP imbalance "
            f"{m['pp_imbalance_measured']:.3f} | cp: {strat} | host ms {m['host_ms']:.1f} "
            f"(waited {m['host_wait_ms']:.1f}) | tokens {m['tokens']} |")


def install(data) -> None:
    """Wrap megatron's ``training_log`` for ``data`` (a ``wlb.megatron.wlb_data.WLBData``)."""
    from megatron.training import training

    original = training.training_log
    args = get_args()
    json_file = None
    if args.log_json and is_last_rank():
        os.makedirs(os.path.dirname(os.path.abspath(args.log_json)), exist_ok=True)
        json_file = open(args.log_json, "a", buffering=1)  # noqa: SIM115 (the run's)
    last = [time.perf_counter()]
    layout = data.layout

    def training_log(loss_dict, total_loss_dict, learning_rate, iteration, loss_scale,
                     report_memory_flag, skipped_iter, grad_norm, *rest, **kwargs):
        out = original(loss_dict, total_loss_dict, learning_rate, iteration, loss_scale,
                       report_memory_flag, skipped_iter, grad_norm, *rest, **kwargs)
        records = FORWARD_TIMES.take()
        m = data.pop_figures(iteration)
        now = time.perf_counter()
        elapsed_ms, last[0] = (now - last[0]) * 1e3, now
        if iteration % args.log_interval == 0 and "pp_imbalance_pred" in m:  # every rank
            dev = torch.device("cuda", torch.cuda.current_device()) if FORWARD_TIMES.cuda \
                else None
            m["pp_imbalance_measured"] = measured_imbalance(
                records, mpu.get_pipeline_model_parallel_rank(), layout.pp, layout.vpp,
                layout.global_batch_size, dev)
        if not is_last_rank():
            return out
        m.update(iteration=iteration, lm_loss=_lm_loss(loss_dict), lr=learning_rate,
                 grad_norm=None if grad_norm is None else float(grad_norm),
                 iter_ms=elapsed_ms)
        if "pp_imbalance_measured" in m:
            print(_line(iteration, m), flush=True)
            writer = get_tensorboard_writer()
            if writer:
                for k in ("pp_imbalance_pred", "pp_imbalance_floor", "dp_imbalance_pred",
                          "cp_imbalance_pred", "pp_imbalance_measured", "host_ms"):
                    writer.add_scalar(f"wlb/{k}", m[k], iteration)
        if json_file:
            json_file.write(json.dumps(m, sort_keys=True) + "\n")
        return out

    training.training_log = training_log
