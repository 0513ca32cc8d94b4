"""tools/length_profile.py: pieces, the attention share by hand, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tools.length_profile import pieces, profile
from wlb.cost_model import CostModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pieces_cut_long_documents_at_the_cap():
    assert sorted(pieces(np.array([5, 2, 4]), 2).tolist()) == [1, 2, 2, 2, 2, 2]
    assert pieces(np.array([1, 1]), 8).tolist() == [1, 1]


def test_profile_by_hand():
    # pieces 4, 4, 2 (a 10-token document at seq 4) and 1: sum d^2 = 16+16+4+1 = 37, sum d = 11
    # W = 0.5 * 37 + 1 * 11 + 2 * 4 = 37.5; attention share 18.5 / 37.5
    r = profile(np.array([10, 1]), 4, CostModel(0.5, 1.0, 2.0))
    assert r["attention_share"] == pytest.approx(18.5 / 37.5)
    assert r["d2_per_token"] == pytest.approx(37 / 11)
    assert r["tokens_in_docs_over_seq"] == pytest.approx(10 / 11)
    assert (r["documents"], r["tokens"], r["max"]) == (2, 11, 10)


def test_cli_prints_the_profile_and_refuses_bad_input(tmp_path):
    f = tmp_path / "l.json"
    f.write_text(json.dumps([10, 1]))
    run = [sys.executable, "-m", "tools.length_profile", "--doc-lengths", str(f)]
    proc = subprocess.run([*run, "--seq-length", "4", "--attn-coef", "0.5", "--doc-coef", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "attention share of the work 49.3%" in proc.stdout
    f.write_text(json.dumps([10, -1]))
    proc = subprocess.run([*run, "--seq-length", "4"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
