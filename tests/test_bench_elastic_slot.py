"""tools/bench_elastic_slot.py on a tiny slot: two processes, the figures it prints agree with
its own measurements."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT

pytestmark = [pytest.mark.dist]


def test_the_slot_benchmark_reports_its_ratios_from_its_measurements():
    proc = subprocess.run([sys.executable, "-m", "tools.bench_elastic_slot", "--heavy", "300,20",
                           "--light", "40,40,30", "--reps", "1", "--json"], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(r["fixed_rank_ms"]) == len(r["pooled_compute_rank_ms"]) == 2
    assert r["fixed_slot_ms"] == max(r["fixed_rank_ms"])
    assert r["ideal_ms"] == pytest.approx(sum(r["fixed_rank_ms"]) / 2)
    assert r["speedup_ideal"] == pytest.approx(r["fixed_slot_ms"] / r["ideal_ms"])
    assert r["speedup_full"] == pytest.approx(r["fixed_slot_ms"] / r["pooled_full_ms"])
    assert r["pooled_full_ms"] > 0 and min(r["pooled_compute_rank_ms"]) > 0
