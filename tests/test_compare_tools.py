"""compare_runs.py / compare_report.py on synthetic --log-json files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log(path, iter_ms, loss0, imb=1.5):
    rows = [{"iteration": i + 1, "iter_ms": ms, "tokens": 1000, "work_pred": 2000.0,
             "pp_imbalance_pred": imb, "pp_imbalance_measured": 1.4, "cp_imbalance_pred": 1.1,
             "lm_loss": loss0 - 0.1 * i, "pending_tokens": 0, "microbatch_work": [3.0, 1.0]}
            for i, ms in enumerate(iter_ms)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _report(tmp_path, *extra, wlb_imbalance=1.2):
    base = _log(tmp_path / "b.jsonl", [500.0, 200.0, 200.0], 5.0)
    wlb = _log(tmp_path / "w.jsonl", [500.0, 100.0, 100.0], 5.0, wlb_imbalance)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "tools.compare_report", base, wlb, "--out",
                           str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return (out / "summary.md").read_text(), out


def test_report_speedup_skips_the_first_iteration_and_draws_plots(tmp_path):
    summary, out = _report(tmp_path, "--nproc", "1")
    assert "WLB speed-up per iteration: 2.000x" in summary
    assert "shared" not in summary  # one process: no oversubscription note
    assert "not lower" not in summary  # WLB balanced better: nothing to explain
    for png in ("iter_time.png", "loss.png", "imbalance.png", "microbatch_work.png"):
        assert (out / png).stat().st_size > 0


def test_report_explains_oversubscription_and_unbalanced_wlb(tmp_path):
    summary, _ = _report(tmp_path, "--nproc", str(4 * (os.cpu_count() or 1)),
                         wlb_imbalance=1.6)
    assert "processes shared" in summary and "CPU cores" in summary
    assert "imbalance is not lower here** (predicted 1.60 vs 1.50)" in summary


def test_compare_runs_prints_the_floor_and_na_for_logs_without_it(tmp_path):
    base = _log(tmp_path / "b.jsonl", [500.0, 200.0, 200.0], 5.0)
    wlb = tmp_path / "w.jsonl"
    _log(wlb, [500.0, 100.0, 100.0], 5.0, 1.2)
    rows = [dict(json.loads(x), pp_imbalance_floor=1.25) for x in wlb.read_text().splitlines()]
    wlb.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, "-m", "tools.compare_runs", base, str(wlb)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if "pp_imbalance_floor" in x]
    assert line.split() == ["pp_imbalance_floor:", "baseline", "n/a", "wlb", "1.2500"]
    assert "time per iteration: 2.000x" in proc.stdout


def _valid_log(path, losses, digest="d1", step=1000):
    rows = [{"kind": "valid", "iteration": 5 * (i + 1), "tokens_trained": step * (i + 1),
             "valid_digest": digest, "valid_lm_loss": x, "valid_ppl": 1.0, "valid_tokens": 9}
            for i, x in enumerate(losses)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_quality_report_tables_validation_loss_and_the_final_gap(tmp_path):
    a = _valid_log(tmp_path / "a.jsonl", [4.0, 3.0])
    b = _valid_log(tmp_path / "b.jsonl", [4.1, 3.3], step=900)
    out = subprocess.run([sys.executable, "-m", "tools.compare_runs", "quality", f"stock={a}",
                          f"wlb={b}", "--out", str(tmp_path / "q")], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "| 10 | 2000 | 3.0000 | 1800 | 3.3000 |" in out.stdout
    assert "wlb vs stock: 3.3000 vs 3.0000 (+10.00%)" in out.stdout
    assert (tmp_path / "q" / "valid_loss_vs_tokens.png").stat().st_size > 0


def test_quality_report_refuses_runs_evaluated_on_different_batches(tmp_path):
    a = _valid_log(tmp_path / "a.jsonl", [4.0], digest="x")
    b = _valid_log(tmp_path / "b.jsonl", [4.0], digest="y")
    out = subprocess.run([sys.executable, "-m", "tools.compare_runs", "quality", f"a={a}", f"b={b}",
                          "--out", str(tmp_path / "q")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "evaluated different batches" in out.stderr


def test_bench_repeats_takes_each_repeats_ratio_then_the_median(tmp_path, capsys):
    from tools.compare_runs import main
    from wlb.runlog import repeats

    arms = {"baseline": [], "wlb": [], "elastic": []}
    # per repeat: baseline, wlb, elastic iteration times (the first iteration is skipped)
    for k, (b, w, e) in enumerate([(300, 200, 100), (300, 150, 150), (600, 200, 300)]):
        for name, ms in zip(arms, (b, w, e)):
            path = tmp_path / f"{name}{k}.jsonl"
            _log(path, [9999, ms, ms], 5.0)
            arms[name].append(str(path))
    rows = {(r["arm"], r["over"]): r for r in repeats(arms)}
    assert rows["wlb", "baseline"]["speedup_iter_time"]["each"] == pytest.approx([1.5, 2, 3])
    assert rows["wlb", "baseline"]["speedup_iter_time"]["median"] == pytest.approx(2.0)
    assert rows["elastic", "wlb"]["speedup_iter_time"]["each"] == pytest.approx([2, 1, 2 / 3])
    assert rows["elastic", "wlb"]["speedup_iter_time"]["median"] == pytest.approx(1.0)
    assert rows["elastic", "baseline"]["speedup_tokens_per_s"]["median"] == pytest.approx(2.0)
    main(["repeats", *(f"{k}={','.join(v)}" for k, v in arms.items())])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("wlb over baseline: time per iteration 2.000x median of 3 (1.500, 2.000, "
                      "3.000); tokens/s 2.000x (1.500-3.000)")
    with pytest.raises(SystemExit, match="same number of repeats"):
        repeats({"a": arms["wlb"], "b": arms["elastic"][:2]})
