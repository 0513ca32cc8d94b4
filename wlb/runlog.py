"""Reading runs back: ``--log-json`` logs (the figures ``tools/compare_runs.py`` and
``tools/compare_report.py`` compare: time per iteration as the sum over the window, tokens/s,
cost-model work/s, imbalances, final loss; repeats; validation loss), and megatron's console
lines followed live (:data:`ITER`, :func:`eta_s`)."""

from __future__ import annotations

import json
import os
import re
import statistics


def _rows(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: {e}") from None


def load(path: str) -> list[dict]:
    """The training iterations of a ``--log-json`` file (validation rows left out)."""
    rows = [r for r in _rows(path) if r.get("kind") != "valid"]
    if not rows:
        raise SystemExit(f"{path}: no iterations logged")
    return rows


def load_validation(path: str) -> list[dict]:
    """The validation rows (``"kind": "valid"``) of a ``--log-json`` file, in order."""
    return [r for r in _rows(path) if r.get("kind") == "valid"]


def _mean(rows: list[dict], key: str) -> float | None:
    """Mean of ``key`` over the rows that have it (the logged iterations: ``--log-interval``);
    None when none has it (older logs)."""
    have = [r[key] for r in rows if key in r]
    return sum(have) / len(have) if have else None


def summarize(rows: list[dict], skip: int) -> dict:
    win = rows[skip:] or rows
    ms = sum(r["iter_ms"] for r in win)
    toks = sum(r["tokens"] for r in win)
    logged = [r for r in win if "work_pred" in r] or win
    logged_ms = sum(r["iter_ms"] for r in logged)
    return {
        "iterations": len(win),
        "iter_ms_mean": ms / len(win),
        "tokens_per_s": toks / ms * 1e3,
        # cost-model work per second: credits whole documents (more quadratic work per token);
        # over the logged iterations, which alone carry the predictions
        "work_per_s": sum(r["work_pred"] for r in logged) / logged_ms * 1e3,
        "pp_imbalance_pred": _mean(win, "pp_imbalance_pred"),
        "pp_imbalance_measured": _mean(win, "pp_imbalance_measured"),
        "cp_imbalance_pred": _mean(win, "cp_imbalance_pred"),
        # lowest micro-batch imbalance any packing of the same pieces reaches, and the imbalance
        # of the DP replicas' sums (logs before 2026-11-26 lack both)
        "pp_imbalance_floor": _mean(win, "pp_imbalance_floor"),
        "dp_imbalance_pred": _mean(win, "dp_imbalance_pred"),
        "final_loss": rows[-1]["lm_loss"],
        "pending_tokens_at_end": rows[-1].get("pending_tokens", 0),
    }


def compare(baseline: str, wlb: str, skip: int = 1) -> dict:
    """Baseline vs WLB from two ``--log-json`` files: each arm's summary, the three speed-ups
    (time per iteration, tokens/s, cost-model work/s) and, where both were evaluated, their
    last validation loss."""
    sb, sw = summarize(load(baseline), skip), summarize(load(wlb), skip)
    out = {"baseline": sb, "wlb": sw,
           "speedup_iter_time": sb["iter_ms_mean"] / sw["iter_ms_mean"],
           "speedup_tokens_per_s": sw["tokens_per_s"] / sb["tokens_per_s"],
           "speedup_work_per_s": sw["work_per_s"] / sb["work_per_s"]}
    vb, vw = load_validation(baseline), load_validation(wlb)
    if vb and vw:
        out["valid_loss"] = {"baseline": vb[-1]["valid_lm_loss"], "wlb": vw[-1]["valid_lm_loss"]}
    return out


def cell(spec: str, x: float | None) -> str:
    """``x`` formatted with ``spec``, or "n/a" for a figure an older log lacks."""
    return "n/a" if x is None else format(x, spec)


def validation_table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown table of the validation rows of ``runs`` (name -> rows), and the final gaps."""
    names = list(runs)
    n = min(len(rows) for rows in runs.values())
    for i in range(n):  # (megatron's valid iterator moves on: each evaluation has its own)
        digests = {rows[i]["valid_digest"] for rows in runs.values()}
        if len(digests) > 1:
            raise SystemExit(f"the runs evaluated different batches at their evaluation {i + 1}"
                             f" (valid_digest {sorted(digests)}); same --split, --eval-iters, "
                             "--global-batch-size, --seq-length and data?")
    head = " | ".join(f"{k}: tokens | {k}: valid loss" for k in names)
    lines = [f"| iteration | {head} |", "|---" * (1 + 2 * len(names)) + "|"]
    for i in range(n):
        cells = " | ".join(f"{runs[k][i]['tokens_trained']} | {runs[k][i]['valid_lm_loss']:.4f}"
                           for k in names)
        lines.append(f"| {runs[names[0]][i]['iteration']} | {cells} |")
    ref = runs[names[0]][n - 1]["valid_lm_loss"]
    lines.append("")
    for k in names[1:]:
        last = runs[k][n - 1]["valid_lm_loss"]
        lines.append(f"- final validation loss, {k} vs {names[0]}: {last:.4f} vs {ref:.4f} "
                     f"({100 * (last - ref) / ref:+.2f}%)")
    return lines


def plot_validation(runs: dict[str, list[dict]], out: str) -> str:
    """``out``/valid_loss_vs_tokens.png: each run's validation loss against tokens trained."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, rows in runs.items():
        ax.plot([r["tokens_trained"] for r in rows], [r["valid_lm_loss"] for r in rows],
                marker="o", label=k)
    ax.set_xlabel("tokens trained")
    ax.set_ylabel("validation loss")
    ax.legend()
    fig.tight_layout()
    name = "valid_loss_vs_tokens.png"
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    return name


def plot_microbatch_work(arms: dict[str, list[dict]], path: str) -> bool:
    """``path`` (PNG): each arm's predicted per-micro-batch workload, sorted, one line per
    logged iteration (``--log-interval``), side by side. False (nothing drawn) when an arm's
    log has no ``microbatch_work`` (older logs)."""
    arms = {k: [r for r in rows if "microbatch_work" in r] for k, rows in arms.items()}
    if not all(arms.values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(arms), figsize=(5 * len(arms), 3.5), sharey=True)
    for ax, (name, rows) in zip(axes, arms.items()):
        for r in rows:
            w = sorted(r["microbatch_work"], reverse=True)
            ax.plot(range(len(w)), w, color="tab:blue", alpha=0.3)
        ax.set_title(f"{name}: per-micro-batch workload")
        ax.set_xlabel("micro-batch (sorted; one line per iteration)")
    axes[0].set_ylabel("predicted workload (cost model)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


FIGURES = ("speedup_iter_time", "speedup_tokens_per_s")


def repeats(arms: dict[str, list[str]], skip: int = 1) -> list[dict]:
    """One row per pair of arms (later over earlier): per-repeat ratios and their median."""
    names = list(arms)
    n = {len(v) for v in arms.values()}
    if len(n) != 1:
        raise SystemExit(f"every arm needs the same number of repeats; got "
                         f"{ {k: len(v) for k, v in arms.items()} }")
    rows = []
    for i, ref in enumerate(names):
        for arm in names[i + 1:]:
            per = [compare(a, b, skip) for a, b in zip(arms[ref], arms[arm])]
            row = {"arm": arm, "over": ref, "repeats": len(per)}
            for f in FIGURES:
                xs = [p[f] for p in per]
                row[f] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
                          "each": xs}
            rows.append(row)
    return rows


#: Megatron-LM's iteration line (``consumed samples`` and others may come between)
ITER = re.compile(r"iteration\s+(\d+)/\s*(\d+) \|.*?elapsed time per iteration \(ms\): ([\d.]+)")
VALID = re.compile(r"validation loss at iteration (\d+)[^|]*\| lm loss value: ([\d.E+-]+)")


def eta_s(done: int, total: int, times_ms: list[float]) -> float:
    """Seconds left: the median iteration time (the first, start-up, left out once there are
    others) times the iterations still to run.

    >>> eta_s(3, 10, [9000.0, 1000.0, 1200.0])
    7.7
    """
    steady = times_ms[1:] or times_ms
    return statistics.median(steady) * (total - done) / 1e3
