"""The generated benchmark pages: tools/bench_results.py, the report's verdict,
tools/compare_runs.py follow and the front page's shape (README length, every docs page linked)."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

from tests.test_compare_tools import _log
from wlb.runlog import eta_s

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tools.bench_results", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _checkout(tmp_path):
    """A stand-in checkout: a README with the headline block, a docs page with a table block."""
    (tmp_path / "docs").mkdir(parents=True)
    (tmp_path / "README.md").write_text(
        "# x\n<!-- results:quickstart -->\nold\n<!-- /results:quickstart -->\n")
    (tmp_path / "docs" / "benchmarks.md").write_text(
        "# b\n<!-- results:bench_cpu -->\n<!-- /results:bench_cpu -->\ntail\n")
    return tmp_path


def test_collect_publish_render_and_check(tmp_path):
    root = _checkout(tmp_path / "repo")
    base = _log(tmp_path / "b.jsonl", [500.0, 200.0, 200.0], 5.0)
    wlb = _log(tmp_path / "w.jsonl", [500.0, 100.0, 100.0], 5.0, 1.2)
    fig = tmp_path / "figs.json"
    proc = _tool("collect", str(fig), f"cp2={base},{wlb}", "dp2=" + base + "," + base,
                 "--setting", "tiny, 4K", "--plots", str(tmp_path / "bench_cpu"))
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(fig.read_text())
    assert figures["layouts"]["cp2"]["speedup_iter_time"] == 2.0  # first iteration left out
    assert figures["layouts"]["dp2"]["speedup_iter_time"] == 1.0
    assert figures["plots"] == ["bench_cpu_iter_time.png", "bench_cpu_microbatch_work.png"]
    for name in ("bench_cpu", "quickstart"):
        proc = _tool("--root", str(root), "publish", name, str(fig), "--command", "bash x.sh")
        assert proc.returncode == 0, proc.stderr
    page = (root / "docs" / "benchmarks.md").read_text()
    (row,) = [x for x in page.splitlines() if x.startswith("| cp2 |")]
    assert "| 200 → 100 | **2.000×** |" in row and "1.50 → 1.20" in row
    assert "`bash x.sh`" in page and "commit `" in page and page.endswith("tail\n")
    assert "![bench_cpu_iter_time.png](results/bench_cpu_iter_time.png)" in page
    assert (root / "docs" / "results" / "bench_cpu_iter_time.png").stat().st_size > 0
    readme = (root / "README.md").read_text()
    assert "old" not in readme and "**2.000× faster per iteration than stock Megatron**" in readme
    assert _tool("--root", str(root), "render", "--check").returncode == 0
    rec = json.loads((root / "docs" / "results" / "bench_cpu.json").read_text())
    rec["figures"]["layouts"]["cp2"]["speedup_iter_time"] = 1.5  # a hand edit of the figures
    (root / "docs" / "results" / "bench_cpu.json").write_text(json.dumps(rec))
    proc = _tool("--root", str(root), "render", "--check")
    assert proc.returncode == 1 and "docs/benchmarks.md" in proc.stdout


def test_the_repositorys_result_blocks_match_their_files():
    proc = _tool("render", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_leads_with_the_verdict_and_writes_its_figures(tmp_path):
    base = _log(tmp_path / "b.jsonl", [500.0, 200.0, 200.0], 5.0)
    wlb = _log(tmp_path / "w.jsonl", [500.0, 100.0, 100.0], 5.0, 1.2)
    out = tmp_path / "r"
    many = str(4 * len(os.sched_getaffinity(0)))
    proc = subprocess.run([sys.executable, "-m", "tools.compare_report", base, wlb, "--out",
                           str(out), "--nproc", many, "--layout", "CP=2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[:4]
    assert first[0].startswith("WLB is 2.000x faster per iteration than stock Megatron")
    assert first[1].startswith("imbalance (predicted, max x N / sum): micro-batches 1.50 -> 1.20")
    assert "training loss" in first[2] and first[3] == f"report: {out / 'summary.md'}"
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[0].startswith(f"**{many} processes shared")  # the first line says so
    assert summary[4] == "- " + first[0]  # then the title, then the verdict
    assert summary[8].startswith("![iter_time.png]")  # one picture, before the table
    figures = json.loads((out / "results.json").read_text())
    assert figures["layouts"]["CP=2"]["speedup_iter_time"] == 2.0
    assert "Both runs consumed the same tokens in every iteration" in "\n".join(summary)


def test_report_says_when_wlb_packed_its_own_stream(tmp_path):
    base = _log(tmp_path / "b.jsonl", [500.0, 200.0, 200.0], 5.0)
    wlb = tmp_path / "w.jsonl"
    _log(wlb, [500.0, 100.0, 100.0], 5.0, 1.2)
    rows = [dict(json.loads(x), tokens=900) for x in wlb.read_text().splitlines()]
    wlb.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "r"
    subprocess.run([sys.executable, "-m", "tools.compare_report", base, str(wlb), "--out",
                    str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    text = (out / "summary.md").read_text()
    assert "WLB packed its own document stream" in text and "consumed 10.0% fewer" in text


def test_progress_prints_one_line_per_iteration_with_an_eta():
    lines = "".join(
        f" [t] iteration {i:8d}/{4:8d} | elapsed time per iteration (ms): {ms} | x\n"
        for i, ms in ((1, 9000.0), (2, 1000.0), (3, 3000.0))) + "warning: noise\n" + (
        " validation loss at iteration 4 | lm loss value: 2.910023E+00 | lm loss PPL: 1 |\n")
    proc = subprocess.run([sys.executable, "-m", "tools.compare_runs", "follow", "--label",
                           "WLB"], cwd=ROOT, input=lines, capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.splitlines() == [
        "[WLB] iteration 1/4 | 9.0 s/iter | ETA 27 s",
        "[WLB] iteration 2/4 | 1.0 s/iter | ETA 2 s",  # the start-up iteration left out
        "[WLB] iteration 3/4 | 3.0 s/iter | ETA 2 s",
        "[WLB] validation loss 2.9100 (iteration 4)"]
    assert eta_s(3, 10, [9000.0, 1000.0, 1200.0]) == 7.7


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_readme_is_short_links_every_page_and_names_no_issue():
    readme = _read(os.path.join(ROOT, "README.md"))
    assert len(readme.splitlines()) <= 150
    for page in glob.glob(os.path.join(ROOT, "docs", "*.md")):
        assert f"(docs/{os.path.basename(page)})" in readme, page
    for path in [os.path.join(ROOT, "README.md"), *glob.glob(os.path.join(ROOT, "docs", "*.md"))]:
        text = _read(path)
        assert not re.search(r"^#+ .*issue", text, re.M | re.I), path
