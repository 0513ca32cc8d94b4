"""WLB's log in Megatron-LM's loop: after megatron's iteration line at its logged iterations, a
WLB line (predicted and measured imbalance, CP strategies, host time); ``--log-json`` rows of
every iteration with megatron's own loss, learning rate and grad norm."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.lm_runs import ENTRY, lm_losses, lm_output

FLAGS = ["--wlb-packing", "wlb", "--micro-batch-size", "1", "--eod-mask-loss",
         "--context-parallel-size", "2", "--global-batch-size", "8", "--train-iters", "4",
         "--log-interval", "2"]


@pytest.mark.dist
@pytest.mark.slow
def test_a_wlb_line_follows_megatrons_and_json_rows_carry_its_figures(corpus, data_cache,
                                                                       tmp_path):
    log_json = tmp_path / "log.jsonl"
    run = (ENTRY, 2, [*FLAGS, "--log-json", str(log_json)], corpus, data_cache)
    lines = [ln for ln in lm_output(*run).splitlines() if " iteration " in ln]
    kinds = [("WLB" if ln.startswith(" WLB |") else "megatron", int(re.search(
        r"iteration\s+(\d+)", ln).group(1))) for ln in lines]
    # megatron logs its first iteration too; WLB's figures come at --log-interval's
    assert kinds == [("megatron", 1), ("megatron", 2), ("WLB", 2), ("megatron", 4), ("WLB", 4)]
    rows = [json.loads(x) for x in log_json.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    # megatron prints the mean since its last print (none after its first iteration's)
    loss = [r["lm_loss"] for r in rows]
    means = [loss[0], (loss[0] + loss[1]) / 2, (loss[2] + loss[3]) / 2]
    for (_, printed), mean in zip(lm_losses(*run), means, strict=True):
        assert abs(printed - mean) <= 1e-6 * mean
    for r in rows:
        assert r["tokens"] > 0 and r["grad_norm"] > 0 and len(r["plan_digest"]) == 16
        logged = r["iteration"] % 2 == 0
        assert ("pp_imbalance_measured" in r) == logged
        if logged:
            assert r["pp_imbalance_pred"] >= r["pp_imbalance_floor"] >= 1.0
            assert r["pp_imbalance_measured"] >= 1.0 and r["cp_imbalance_pred"] >= 1.0
            assert sum(r["cp_strategy"].values()) == 8  # every micro-batch, at CP 2


@pytest.mark.dist
@pytest.mark.slow
def test_both_arms_log_predictions_and_validation_rows_with_the_same_digest(corpus, data_cache,
                                                                           tmp_path):
    """Stock Megatron's rows carry the cost model's figures for the micro-batches its forward
    steps saw (gathered over DP 2), WLB's for its plans; after each evaluation both write a
    validation row whose fingerprint of the evaluated tokens is equal across the arms (WLB at
    CP 2 evaluates stock's samples sharded) and differs between evaluations."""
    evals = ["--split", "90,10,0", "--eval-iters", "2", "--eval-interval", "2",
             "--train-iters", "4", "--micro-batch-size", "1", "--eod-mask-loss"]
    arms = {"stock": ["--wlb-packing", "megatron", "--dataloader-inter-document-masking"],
            "wlb": ["--wlb-packing", "wlb", "--context-parallel-size", "2"]}
    rows = {}
    for arm, flags in arms.items():
        log_json = tmp_path / f"{arm}.jsonl"
        lm_output(ENTRY, 2, [*flags, *evals, "--log-json", str(log_json)], corpus, data_cache)
        rows[arm] = [json.loads(x) for x in log_json.read_text().splitlines()]
    train = [r for r in rows["stock"] if r.get("kind") != "valid"]
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    for r in train:  # DP 2: four micro-batches of one sample, two from each replica
        assert len(r["microbatch_work"]) == 4 and r["pp_imbalance_pred"] >= 1.0
        assert r["dp_imbalance_pred"] >= 1.0 and r["cp_strategy"] == {"per_seq": 4}
        assert r["pp_imbalance_measured"] >= 1.0 and r["tokens"] == 4 * 256
    valid = {arm: [r for r in rs if r.get("kind") == "valid"] for arm, rs in rows.items()}
    assert [r["iteration"] for r in valid["stock"]] == [2, 4, 4]  # (the last: megatron's final)
    assert [r["valid_digest"] for r in valid["stock"]] == [r["valid_digest"]
                                                           for r in valid["wlb"]]
    assert valid["stock"][0]["valid_digest"] != valid["stock"][1]["valid_digest"]
    assert valid["stock"][-1]["tokens_trained"] == 4 * 4 * 256


def test_a_run_says_its_notes_once(corpus, data_cache, tmp_path):
    """Flags that change nothing in this mode and a cost model calibrated on another revision of
    the torch attention kernel are each said once at start-up (``wlb_log.say_notes``)."""
    import json

    from tests.helpers.lm_runs import ENTRY, lm_output
    from tests.megatron.test_wlb_arm import WLB

    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"attn_coef": 0.01, "linear_coef": 1.0, "doc_coef": 0.0,
                                 "torch_kernel_revision": 0}))
    out = lm_output(ENTRY, 1, [*WLB, "--wlb-delay-budget", "0.3", "--wlb-cost-model",
                               str(stale), "--train-iters", "2"], corpus, data_cache)
    notes = [ln for ln in out.splitlines() if ln.startswith("> WLB: note: ")]
    assert len(notes) == 2, notes
    assert "--wlb-delay-budget only applies to --wlb-outlier-thresholds auto" in notes[0]
    assert f"{stale} was calibrated on torch-kernel revision 0" in notes[1]
