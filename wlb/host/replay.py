"""Replay a training run's plans through the cluster simulator: predicted vs measured time.

The run's flags rebuild exactly the plan schedule and CP chooser the run used (checked against
the ``plan_digest`` of every logged iteration), the simulator turns each plan into an iteration
time with a hardware profile calibrated on this machine, and the two are printed side by side.
No model is built and nothing is trained.
"""

from __future__ import annotations

import json

import numpy as np

from wlb.host.build import build_schedule, make_cost_model, padded_vocab, stock_blend
from wlb.host.documents import OpenDataset, build_documents
from wlb.run_config import RunConfig
from wlb.sim.cluster import SimReport, simulate_iteration
from wlb.sim.hardware import from_calibration
from wlb.sim.model import ModelSpec


def _read_log(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise SystemExit(f"--log {path}: {e}") from None
    rows = [r for r in rows if "iter_ms" in r and "plan_digest" in r]
    if not rows or [r["iteration"] for r in rows] != list(range(1, len(rows) + 1)):
        raise SystemExit(f"--log {path}: need iterations 1, 2, ... with iter_ms and plan_digest "
                         "(a --log-json file of a run that did not resume)")
    return rows


def replay(cfg: RunConfig, nproc: int, calibration: str | list[str], log_path: str,
           skip: int = 1, open_dataset: OpenDataset | None = None) -> dict:
    """Predicted and measured iteration times of the run logged in ``log_path``.

    Args:
        cfg: the run's configuration (from its pretrain flags).
        nproc: world size of the run.
        calibration: ``tools/calibrate_cost_model.py`` JSON(s) of the same model on this
            machine (several are averaged).
        log_path: the run's ``--log-json`` file.
        skip: leading iterations left out of the summary (warm-up).
        open_dataset: the reader of the run's ``--data-path`` datasets
            (``wlb.host.documents.build_documents``).
    """
    spec = cfg.model
    layout = cfg.layout(nproc)
    documents = build_documents(cfg.data, spec, cfg.training.seed, stock_blend(cfg),
                                open_dataset)
    vocab = padded_vocab(spec, documents.source.vocab_size)
    cost = make_cost_model(spec, cfg.wlb, layout, vocab)
    schedule, _, chooser = build_schedule(cfg, layout, documents.train, cost,
                                          documents.train_blend)
    model = ModelSpec("run", spec.num_layers, spec.hidden_size, spec.ffn_hidden_size,
                      spec.num_attention_heads,
                      spec.num_query_groups or spec.num_attention_heads, vocab)
    hw = from_calibration(calibration, model)
    sim_layout = layout.dims
    rows = _read_log(log_path)
    report = SimReport("replay", [], [], [], {}, [])
    for row in rows:
        plan = schedule.next_plan()
        if plan.digest() != row["plan_digest"]:
            raise SystemExit(f"--log {log_path}: iteration {row['iteration']} plan digest "
                             f"{row['plan_digest']} differs from the replay's {plan.digest()}: "
                             "pass exactly the flags of that run")
        before = dict(report.strategies)
        simulate_iteration(plan, model, sim_layout, hw, chooser, report,
                           pad_multiple=layout.pad_multiple)
        used = {s: n - before.get(s, 0) for s, n in report.strategies.items()
                if n != before.get(s, 0)}
        if "cp_strategy" in row and row["cp_strategy"] != used:
            raise SystemExit(f"--log {log_path}: iteration {row['iteration']} used CP strategies "
                             f"{row['cp_strategy']}, the replay chose {used}: pass exactly the "
                             "flags of that run (and the same code version)")
    measured = np.array([r["iter_ms"] for r in rows])[skip:]
    predicted = np.array(report.iter_s)[skip:] * 1e3
    if measured.size == 0:
        raise SystemExit(f"--skip {skip} leaves no iteration of {len(rows)}")
    return {
        "log": log_path,
        "layout": layout.describe(),
        "iterations": int(measured.size),
        "measured_ms": [float(x) for x in measured],
        "predicted_ms": [float(x) for x in predicted],
        "measured_mean_ms": float(measured.mean()),
        "predicted_mean_ms": float(predicted.mean()),
        "mean_error": float(predicted.mean() / measured.mean() - 1),
        "per_iter_abs_error_mean": float(np.mean(np.abs(predicted / measured - 1))),
        "strategies": report.strategies,
    }


def validate(tool_args, cfg: RunConfig, open_dataset: OpenDataset | None = None) -> int:
    """``tools/simulate_cluster.py validate``: replay each logged run of ``cfg`` (its flags,
    parsed by Megatron-LM's parser; its datasets opened by ``open_dataset``) and print
    predicted against measured."""
    results = []
    for path in tool_args.log:
        result = replay(cfg, tool_args.nproc, tool_args.calibration, path, tool_args.skip,
                        open_dataset)
        results.append(result)
        print(f"{path}: {result['layout']}, {result['iterations']} iterations: measured "
              f"{result['measured_mean_ms']:.0f} ms/iter, predicted "
              f"{result['predicted_mean_ms']:.0f} ({result['mean_error']:+.1%}); "
              f"per-iteration |error| mean {result['per_iter_abs_error_mean']:.1%}")
    if tool_args.json:
        with open(tool_args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0
