#!/usr/bin/env python3
"""GPT pre-training with WLB-LLM on megatron-core -- not implemented yet.

The training loop, arguments and checkpoint glue are the Megatron-integration issue (#4). This
entry point refuses to run rather than pretend to train. Today the packers can be exercised with
``tools/simulate_packing.py`` (see README).
"""

import sys


def main() -> int:
    print(
        "pretrain_gpt_wlb.py: training is not implemented yet (see the Megatron-core "
        "integration issue #4); use tools/simulate_packing.py for the packers",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
