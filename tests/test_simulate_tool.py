import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from wlb.data.lengths import DEFAULT_LENGTHS


def run(*args):
    return subprocess.run([sys.executable, "-m", "tools.simulate_packing", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def lens_file(tmp_path):
    import random

    rng = random.Random(0)
    p = tmp_path / "lens.json"
    p.write_text(json.dumps([rng.randint(1, 300) if rng.random() < 0.9 else
                             rng.randint(300, 1200) for _ in range(3000)]))
    return str(p)


def test_json_output_and_plan_dump(lens_file, tmp_path):
    plan = tmp_path / "plan.jsonl"
    r = run("--doc-lengths", lens_file, "--context-length", "1000", "--num-microbatches", "4",
            "--packer", "megatron,wlb", "--num-batches", "20", "--attn-coef", "0.002",
            "--linear-coef", "1", "--dump-plan", str(plan), "--json",
            "--outlier-thresholds", "500,900")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["packer"] for x in rows] == ["megatron", "wlb"]
    for key in ("num_batches", "imbalance_mean", "imbalance_p50", "imbalance_p99",
                "imbalance_max", "delay_iters_mean", "delay_iters_max", "pack_ms_mean",
                "tokens_per_batch_mean", "docs_pending_at_end"):
        assert key in rows[0]
    lines = [json.loads(x) for x in plan.read_text().splitlines()]
    assert len(lines) == 40 and lines[0]["batch"] == 0
    doc_id, length = lines[0]["microbatches"][0][0]
    assert isinstance(doc_id, int) and isinstance(length, int)


def test_exact_cost_model_used(lens_file):
    r = run("--doc-lengths", lens_file, "--context-length", "1000", "--num-microbatches", "2",
            "--packer", "megatron", "--num-batches", "3", "--attn-coef", "1", "--linear-coef",
            "0", "--json")
    assert json.loads(r.stdout)["cost_model"]["attn_coef"] == 1.0


def test_table_output(lens_file):
    r = run("--doc-lengths", lens_file, "--context-length", "1000", "--num-microbatches", "4",
            "--packer", "all", "--num-batches", "10")
    assert r.returncode == 0, r.stderr
    assert "imb mean" in r.stdout and "wlb-paper" in r.stdout


def test_runs_on_the_shipped_sample():
    # the same file as ../shared/data/doc_lengths_wlbllm.json, shipped so a fresh clone has it
    r = run("--doc-lengths", DEFAULT_LENGTHS, "--context-length", "131072",
            "--num-microbatches", "4", "--packer", "megatron", "--num-batches", "5", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["num_batches"] == 5


@pytest.mark.parametrize(
    "content,extra,match",
    [
        (None, [], "not found"),
        ("[1, 2, \"x\"]", [], "non-integer length 'x'"),
        ("[1, -4]", [], "length -4"),
        ("{\"a\": 1}", [], "JSON list"),
        ("[1, 2", [], "not valid JSON"),
        ("[5, 6]", ["--max-tokens", "500"], "--max-tokens 500 is below --context-length 1000"),
        ("[5, 6]", ["--num-microbatches", "0"], "--num-microbatches must be > 0, got 0"),
        ("[5, 6]", ["--outlier-thresholds", "900,100"], "strictly ascending"),
        ("[5, 6]", ["--attn-coef", "1"], "together"),
        ("[5, 6]", ["--packer", "bogus"], "bogus"),
    ],
)
def test_bad_input_one_clear_line(tmp_path, content, extra, match):
    path = tmp_path / "l.json"
    if content is not None:
        path.write_text(content)
    args = ["--doc-lengths", str(path), "--context-length", "1000", "--num-microbatches", "4"]
    # later flags override earlier ones in argparse
    r = run(*args, *extra)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and match in err[0], r.stderr
