"""tools/simulate_elastic.py: every system on the same batches, elastic never below WLB."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_elastic_is_never_predicted_slower_than_wlb_and_at_most_ideal():
    out = subprocess.run([sys.executable, "-m", "tools.simulate_elastic", "--iters", "4",
                          "--gbs", "2", "4", "--json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["gbs"] for r in rows] == [2, 4]
    for r in rows:
        assert r["elastic_over_wlb"] >= 1.0
        assert r["elastic_fraction_of_ideal"] <= 1.0 + 1e-12
        assert r["hybrid_cp_over_stock"] > 0
    pp = subprocess.run([sys.executable, "-m", "tools.simulate_elastic", "--iters", "2",
                         "--gbs", "4", "--pp", "2"], capture_output=True, text=True, cwd=ROOT,
                        timeout=300)
    assert pp.returncode == 0 and "n/a (PP > 1)" in pp.stdout
