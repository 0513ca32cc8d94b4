"""Build a 1-process run from the flags given and print what the flags reached, as JSON (the
per-flag tests of tests/training/test_megatron_flags.py read it)."""

from __future__ import annotations

import json
import sys
import warnings

warnings.filterwarnings("ignore")


def main(argv: list[str]) -> None:
    from wlb.megatron.attention import WLBCoreAttention
    from wlb.training.arguments import parse
    from wlb.training.setup import build

    cfg = parse(argv)
    run = build(cfg)
    group = run.optimizer.param_groups[0]
    attn = [m for m in run.model[0].modules() if isinstance(m, WLBCoreAttention)][0]
    fc1 = [p for n, p in run.model[0].named_parameters() if "linear_fc1.weight" in n][0]
    sched = run.scheduler
    print(json.dumps({
        "betas": list(group["betas"]), "eps": group["eps"],
        "lr_warmup_steps": sched.lr_warmup_steps, "rotary_base": attn.rope_base,
        "rotary_percent": attn.rotary_percent, "num_query_groups": run.config.num_query_groups,
        "fc1_std": float(fc1.float().std()), "vocab_size": run.documents.source.vocab_size,
        "attention_kernel": run.attention_kernel, "notes": cfg.logging.notes,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
