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
