"""Run set-up helpers that need no processes: a cost model calibrated on another kernel."""

from __future__ import annotations

import json


def test_a_calibration_from_another_torch_kernel_revision_is_a_warning(tmp_path, monkeypatch):
    import wlb.cp.torch_kernel as tk
    from wlb.cost_model import kernel_revision
    from wlb.training.setup import stale_calibration

    old = tmp_path / "old.json"  # written before the file recorded a revision: revision 1
    old.write_text(json.dumps({"attn_coef": 0.01, "linear_coef": 1.0}))
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"attn_coef": 0.01, "linear_coef": 1.0,
                               "torch_kernel_revision": tk.REVISION}))
    assert kernel_revision(old) == 1 and kernel_revision(new) == tk.REVISION
    assert stale_calibration(str(new), "torch") == []
    assert stale_calibration(str(old), "flash") == []  # another kernel: not ours to judge
    assert stale_calibration(None, "torch") == []
    (w,) = stale_calibration(str(old), "torch")
    assert w.startswith(f"{old} was calibrated on torch-kernel revision 1, this build runs "
                        f"revision {tk.REVISION}") and "recalibrate" in w
    monkeypatch.setattr(tk, "REVISION", tk.REVISION + 1)
    assert stale_calibration(str(new), "torch")  # bumping the revision flags it


def test_a_plain_single_process_needs_no_port():
    """Two `python pretrain_gpt_wlb.py` runs on one machine (or one beside the test suite) do
    not fight over a port: without torchrun's environment the group's store is in-process."""
    import contextlib
    import socket
    import subprocess
    import sys

    from tests.helpers.torchrun import ENV, ROOT

    env = {k: v for k, v in ENV.items() if k not in ("WORLD_SIZE", "MASTER_PORT", "RANK")}
    with socket.socket() as busy:  # the port a one-process group used to take
        with contextlib.suppress(OSError):  # (already taken: as good)
            busy.bind(("127.0.0.1", 29511))
            busy.listen()
        code = ("import torch.distributed as d\n"
                "from wlb.training.setup import init_distributed\n"
                "init_distributed('gloo'); print(d.get_world_size(), d.get_rank())")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.split() == ["1", "0"]
