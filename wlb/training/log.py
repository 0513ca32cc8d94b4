"""Megatron-style console lines, ``--log-json`` (one object per iteration), TensorBoard."""

from __future__ import annotations

import json
import os
import time


def is_logged(iteration: int, log_interval: int, train_iters: int) -> bool:
    """Whether ``iteration`` is a logged one (every ``log_interval``-th, and the last): the
    iterations whose console line, cost-model predictions and measured imbalance are made.

    Example: ``--log-interval 10 --train-iters 25`` logs iterations 10, 20 and 25.
    """
    return iteration % log_interval == 0 or iteration == train_iters


class MetricsLogger:
    """Writes metrics on global rank 0 only (other ranks get a no-op logger).

    Every iteration writes its JSON row (loss, tokens, times); the cost-model predictions and
    the measured imbalance are in the rows of logged iterations only (:func:`is_logged`).
    """

    def __init__(self, *, rank: int, train_iters: int, log_interval: int, json_path: str | None,
                 tensorboard_dir: str | None) -> None:
        self.active = rank == 0
        self.train_iters, self.log_interval = train_iters, log_interval
        self.json_file = None
        self.tb = None
        if not self.active:
            return
        if json_path:
            os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
            self.json_file = open(json_path, "a", buffering=1)  # noqa: SIM115 (closed in close())
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("[wlb] --tensorboard-dir ignored: tensorboard is not installed", flush=True)
            else:
                self.tb = SummaryWriter(log_dir=tensorboard_dir)

    def info(self, msg: str) -> None:
        if self.active:
            print(f"[wlb] {msg}", flush=True)

    def iteration(self, m: dict) -> None:
        if not self.active:
            return
        if self.json_file:
            self.json_file.write(json.dumps(m, sort_keys=True) + "\n")
        if self.tb:
            for k, v in m.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, m["iteration"])
        if is_logged(m["iteration"], self.log_interval, self.train_iters):
            gn = m["grad_norm"]
            strat = ",".join(f"{k}:{v}" for k, v in m["cp_strategy"].items())
            print(
                f" [{time.strftime('%Y-%m-%d %H:%M:%S')}] iteration {m['iteration']:8d}/"
                f"{self.train_iters:8d} | elapsed time per iteration (ms): {m['iter_ms']:.1f} | "
                f"tokens/s: {m['tokens_per_s']:.0f} | learning rate: {m['lr']:.6E} | "
                f"lm loss: {m['lm_loss']:.6E} | grad norm: "
                f"{'nan' if gn is None else f'{gn:.3f}'} | pp imbalance pred/meas: "
                f"{m['pp_imbalance_pred']:.3f}/{m['pp_imbalance_measured']:.3f} | "
                f"cp imbalance pred: {m['cp_imbalance_pred']:.3f} | cp: {strat} |",
                flush=True,
            )

    def validation(self, it: int, tokens_trained: int, v: dict, digest: str) -> None:
        """Megatron's validation block on the console; a ``"kind": "valid"`` JSON row;
        TensorBoard's ``lm loss validation`` (vs iterations, and vs tokens) and its ppl."""
        if not self.active:
            return
        row = {"kind": "valid", "iteration": it, "tokens_trained": tokens_trained,
               "valid_digest": digest, **v}
        if self.json_file:
            self.json_file.write(json.dumps(row, sort_keys=True) + "\n")
        if self.tb:
            self.tb.add_scalar("lm loss validation", v["valid_lm_loss"], it)
            self.tb.add_scalar("lm loss validation vs tokens", v["valid_lm_loss"], tokens_trained)
            self.tb.add_scalar("lm loss validation ppl", v["valid_ppl"], it)
        line = (f" validation loss at iteration {it} | lm loss value: {v['valid_lm_loss']:.6E} | "
                f"lm loss PPL: {v['valid_ppl']:.6E} | ")
        print("-" * len(line) + "\n" + line + "\n" + "-" * len(line), flush=True)

    def close(self) -> None:
        if self.json_file:
            self.json_file.close()
        if self.tb:
            self.tb.close()
