"""Reading ``--log-json`` run logs back: the figures ``tools/compare_runs.py`` and
``tools/compare_report.py`` compare (time per iteration as the sum over the window, tokens/s,
cost-model work/s, imbalances, final loss)."""

from __future__ import annotations

import json


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
    """Mean of ``key`` over ``rows``; None when a row lacks it (older logs)."""
    if not all(key in r for r in rows):
        return None
    return sum(r[key] for r in rows) / len(rows)


def summarize(rows: list[dict], skip: int) -> dict:
    win = rows[skip:] or rows
    ms = sum(r["iter_ms"] for r in win)
    toks = sum(r["tokens"] for r in win)
    return {
        "iterations": len(win),
        "iter_ms_mean": ms / len(win),
        "tokens_per_s": toks / ms * 1e3,
        # cost-model work per second: credits whole documents (more quadratic work per token)
        "work_per_s": sum(r["work_pred"] for r in win) / ms * 1e3,
        "pp_imbalance_pred": sum(r["pp_imbalance_pred"] for r in win) / len(win),
        "pp_imbalance_measured": sum(r["pp_imbalance_measured"] for r in win) / len(win),
        "cp_imbalance_pred": sum(r["cp_imbalance_pred"] for r in win) / len(win),
        # lowest micro-batch imbalance any packing of the same pieces reaches, and the imbalance
        # of the DP replicas' sums (logs before 2026-11-26 lack both)
        "pp_imbalance_floor": _mean(win, "pp_imbalance_floor"),
        "dp_imbalance_pred": _mean(win, "dp_imbalance_pred"),
        "final_loss": rows[-1]["lm_loss"],
        "pending_tokens_at_end": rows[-1].get("pending_tokens", 0),
    }


def cell(spec: str, x: float | None) -> str:
    """``x`` formatted with ``spec``, or "n/a" for a figure an older log lacks."""
    return "n/a" if x is None else format(x, spec)
