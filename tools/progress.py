#!/usr/bin/env python3
"""Turn a training run's console output (stdin) into one short progress line per iteration.

    bash scripts/pretrain_gpt.sh ... 2>&1 | tee run.log | python -m tools.progress --label WLB

Each Megatron-style iteration line becomes ``[WLB] iteration 5/16 | 3.1 s/iter | ETA 34 s``
(the ETA from the median of the iterations so far, the first one left out once there are
others); validation lines become ``[WLB] validation loss 2.9100``. Everything else -- library
warnings, torchrun's banner -- is left to the log file.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--label", required=True, help="the run's name in each line")
    a = p.parse_args(argv)
    times: list[float] = []
    for line in sys.stdin:
        m = ITER.search(line)
        if m:
            it, total, ms = int(m[1]), int(m[2]), float(m[3])
            times.append(ms)
            print(f"[{a.label}] iteration {it}/{total} | {ms / 1e3:.1f} s/iter | "
                  f"ETA {eta_s(it, total, times):.0f} s", flush=True)
            continue
        m = VALID.search(line)
        if m:
            print(f"[{a.label}] validation loss {float(m[2]):.4f} (iteration {m[1]})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
