#!/usr/bin/env python3
"""Pretrain GPT with megatron-core and WLB-LLM workload balancing (thin entry point).

    torchrun --nproc_per_node 2 pretrain_gpt_wlb.py --context-parallel-size 2 --mock-data ...

``--wlb-packing megatron --wlb-cp-sharding per-seq`` is the stock-Megatron baseline. See README.
"""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
warnings.filterwarnings("ignore", message=".*CPU RNG state changed within GPU RNG context.*")


def main(argv=None) -> int:
    from wlb.config import ConfigError
    from wlb.parallel import LayoutError
    from wlb.training.arguments import ArgumentError, build_parser, run_config

    args = build_parser().parse_args(argv)
    try:
        cfg = run_config(args)
        from wlb.cost_model import CostModelError
        from wlb.megatron.indexed import IndexedDataError
        from wlb.packing import DataError
        from wlb.training.checkpoint import CheckpointError
        from wlb.training.run import TrainingError, run_training

        try:
            return run_training(cfg)
        except (IndexedDataError, CheckpointError, CostModelError, DataError) as e:
            raise ArgumentError(str(e)) from e
        except TrainingError as e:
            print(f"pretrain_gpt_wlb.py: training stopped: {e}", file=sys.stderr)
            return 3
    except (ArgumentError, ConfigError, LayoutError) as e:
        print(f"pretrain_gpt_wlb.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
