"""Restart after a killed worker, in Megatron-LM's loop: torchrun (``--max-restarts``) starts the
job again and it resumes from the last checkpoint (``--load`` = ``--save``), as
``scripts/pretrain_gpt.sh RESTARTS=N SAVE=DIR`` runs it.

A 2-process WLB run saving every 2 iterations has one worker SIGKILLed right after its first
save; the restarted attempt loads it, replays WLB's plans and trains to the end: every
iteration's loss (the last attempt's) is the uninterrupted run's. Without a store key space per
attempt (``wlb.megatron.restart``) the restarted attempt hangs creating its process groups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.lm_runs import COMMON, json_losses
from tests.helpers.torchrun import ENV, ROOT

pytestmark = [pytest.mark.dist, pytest.mark.slow]
WLB = ["--wlb-packing", "wlb", "--micro-batch-size", "1", "--eod-mask-loss",
       "--use-cpu-initialization", "--train-iters", "8"]


def _launch(corpus, cache, log, extra, restarts=0):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           f"--max-restarts={restarts}", "pretrain_gpt_wlb.py", "--data-path", corpus, *COMMON,
           *WLB, "--data-cache-path", cache, "--log-json", log, *extra]
    # (output to a file: a pipe nobody reads while the test waits would block the job)
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=open(log + ".out", "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT)


def _output(log: str) -> str:
    with open(log + ".out") as f:
        return f.read()


def test_a_killed_worker_restarts_the_job_from_the_last_checkpoint(corpus, data_cache,
                                                                    tmp_path):
    full = _launch(corpus, data_cache, str(tmp_path / "full.jsonl"), [])
    assert full.wait(timeout=300) == 0, _output(str(tmp_path / "full.jsonl"))[-3000:]
    ckpt = str(tmp_path / "ckpt")
    job = _launch(corpus, data_cache, str(tmp_path / "killed.jsonl"),
                  ["--save", ckpt, "--load", ckpt, "--save-interval", "2"], restarts=1)
    tracker = os.path.join(ckpt, "latest_checkpointed_iteration.txt")
    deadline = time.time() + 240
    while not os.path.exists(tracker) and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(job.pid), "-f", "pretrain_gpt_wlb.py"],
                             capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signal.SIGKILL)  # one worker dies right after the first save
    try:
        job.wait(timeout=240)
    except subprocess.TimeoutExpired:
        job.kill()
        raise AssertionError("the restarted job hung") from None
    out = _output(str(tmp_path / "killed.jsonl"))
    assert job.returncode == 0, out[-3000:]
    assert "exitcode: -9" in out and "loading distributed checkpoint" in out, out[-3000:]
    want = json_losses(str(tmp_path / "full.jsonl"))
    got = json_losses(str(tmp_path / "killed.jsonl"))
    assert sorted(got) == list(range(1, 9))
    for it in want:
        assert got[it] == pytest.approx(want[it], rel=1e-5), it
