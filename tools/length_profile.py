#!/usr/bin/env python3
"""Where a corpus's training time goes: document lengths and the attention share of the work.

    python -m tools.length_profile --data-path data/corpus/stdlib --seq-length 4096 \\
        [--cost-model calibration.json | --attn-coef A --linear-coef B --doc-coef C]
    python -m tools.length_profile --doc-lengths data/doc_lengths/doc_lengths_wlbllm.json \\
        --length-scale 0.03125 --seq-length 8192 --cost-model calibration.json

Documents longer than ``--seq-length`` are cut into seq-length pieces, as stock Megatron's
samples cut them. With the cost model W(d) = A d² + B d + C per piece it prints the attention
share of the work (A Σd² / ΣW) and Σd²/Σd, the mean attention span per token: the higher both
are, the more of an iteration packing and CP sharding can balance, and the slower tokens/s is.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from wlb.cost_model import CostModel
from wlb.data.lengths import read_lengths
from wlb.packing.stream import DataError


def pieces(lengths: np.ndarray, cap: int) -> np.ndarray:
    """Each document cut into ``cap``-token pieces and a remainder (all full pieces first).

    >>> pieces(np.array([5, 2]), 2).tolist()
    [2, 2, 2, 1]
    """
    full = lengths // cap
    rest = lengths % cap
    return np.concatenate([np.repeat(np.full(len(lengths), cap), full), rest[rest > 0]])


def profile(lengths: np.ndarray, seq_length: int, cost: CostModel) -> dict:
    p = pieces(lengths, seq_length).astype(np.float64)
    attn = cost.attn_coef * float((p ** 2).sum())
    total = attn + cost.linear_coef * float(p.sum()) + cost.doc_coef * len(p)
    return {"documents": len(lengths), "tokens": int(lengths.sum()),
            "median": float(np.median(lengths)), "p99": float(np.percentile(lengths, 99)),
            "max": int(lengths.max()),
            "tokens_in_docs_over_seq": float(lengths[lengths > seq_length].sum() / lengths.sum()),
            "attention_share": attn / total, "d2_per_token": float((p ** 2).sum() / p.sum())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-path", help="a .bin/.idx prefix")
    src.add_argument("--doc-lengths", help="a JSON list of document lengths")
    p.add_argument("--length-scale", type=float, default=1.0, help="multiply --doc-lengths")
    p.add_argument("--seq-length", type=int, required=True)
    p.add_argument("--cost-model", help="calibration JSON (tools/calibrate_cost_model.py)")
    p.add_argument("--attn-coef", type=float, default=1 / 49408)
    p.add_argument("--linear-coef", type=float, default=1.0)
    p.add_argument("--doc-coef", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.seq_length < 1:
        p.error(f"--seq-length {a.seq_length} must be >= 1")
    try:
        if a.data_path:
            from wlb.megatron.indexed import IndexedDocuments  # megatron-core only for .bin/.idx

            lengths = np.asarray(IndexedDocuments(a.data_path).lengths, dtype=np.int64)
        else:
            lengths = np.maximum(1, np.round(read_lengths(a.doc_lengths) * a.length_scale))
            lengths = lengths.astype(np.int64)
        cost = (CostModel.from_json(a.cost_model) if a.cost_model else
                CostModel(a.attn_coef, a.linear_coef, a.doc_coef))
    except (DataError, ValueError, OSError) as e:
        print(f"length_profile.py: {e}", file=sys.stderr)
        return 2
    r = profile(lengths, a.seq_length, cost)
    print(f"{r['documents']} documents, {r['tokens']} tokens; length median {r['median']:.0f}, "
          f"p99 {r['p99']:.0f}, max {r['max']}; {r['tokens_in_docs_over_seq']:.0%} of the tokens "
          f"in documents longer than {a.seq_length}")
    print(f"attention share of the work {r['attention_share']:.1%}; sum d^2 / sum d = "
          f"{r['d2_per_token']:.0f} (pieces of at most {a.seq_length} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
