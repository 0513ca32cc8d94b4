#!/usr/bin/env python3
"""Pretrain GPT with megatron-core and WLB-LLM workload balancing (thin entry point).

    torchrun --nproc_per_node 2 pretrain_gpt_wlb.py --context-parallel-size 2 --mock-data ...

``--wlb-packing megatron --wlb-cp-sharding per-seq`` is the stock-Megatron baseline. See README.
Bad input is one line from local rank 0 and exit status 2, before anything is built.
"""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# megatron-core's optional-dependency notices (it falls back to torch without Apex / TE)
for _msg in (".*Transformer Engine and Apex are not installed.*", ".*Apex is not installed.*",
             ".*CPU RNG state changed within GPU RNG context.*", ".*full scope is deprecated.*"):
    warnings.filterwarnings("ignore", message=_msg)


def _say(message: str) -> None:
    from wlb.training.one_line import say_once

    say_once(f"pretrain_gpt_wlb.py: {message}")


def main(argv=None) -> int:
    from wlb.config import ConfigError
    from wlb.parallel import LayoutError
    from wlb.training.arguments import ArgumentError, parse_args, run_config

    try:
        args = parse_args(argv)
        cfg = run_config(args)
        from wlb.cost_model import CostModelError
        from wlb.megatron.indexed import IndexedDataError
        from wlb.packing import DataError
        from wlb.training.checkpoint import CheckpointError
        from wlb.training.documents import DocumentsError
        from wlb.training.preflight import preflight

        try:
            preflight(cfg, int(os.environ.get("WORLD_SIZE", "1")))
            if args.preflight_only:
                return 0
            from wlb.training.checks import TrainingError
            from wlb.training.run import run_training

            try:
                return run_training(cfg)
            except TrainingError as e:
                _say(f"training stopped: {e}")
                return 3
        except (IndexedDataError, CheckpointError, CostModelError, DataError,
                DocumentsError) as e:
            raise ArgumentError(str(e)) from e
    except (ArgumentError, ConfigError, LayoutError) as e:
        _say(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
