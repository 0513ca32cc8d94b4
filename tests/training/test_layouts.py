"""Layout equivalence: every 4D layout reproduces the 1-process losses (WLB and baseline).

Plans and token counts compare exactly; losses and gradient norms within a tolerance, because
another layout sums in another order (TP all-reduces, CP attention merges, DP gradient reductions):
docs/reliability.md, "What is bitwise"."""

from __future__ import annotations

import pytest

from tests.helpers.torchrun import BASELINE, TINY, WLB, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]

LAYOUTS = {
    "tp2": (2, ["--tensor-model-parallel-size", "2"]),
    "tp2-sp": (2, ["--tensor-model-parallel-size", "2", "--sequence-parallel"]),
    "pp2": (2, ["--pipeline-model-parallel-size", "2"]),
    "pp2-vpp2": (2, ["--pipeline-model-parallel-size", "2",
                     "--num-layers-per-virtual-pipeline-stage", "1"]),
    "cp2": (2, ["--context-parallel-size", "2"]),
    "dp2": (2, []),
    "tp2-pp2-cp2": (8, ["--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size",
                        "2", "--context-parallel-size", "2", "--sequence-parallel"]),
    "tp2-pp2-dp2-distopt": (8, ["--tensor-model-parallel-size", "2",
                                "--pipeline-model-parallel-size", "2",
                                "--use-distributed-optimizer"]),
}
SETTINGS = {"wlb": WLB, "baseline": BASELINE}
_REFERENCE: dict[str, list[dict]] = {}


def _reference(setting: str, tmp_path_factory) -> list[dict]:
    if setting not in _REFERENCE:
        path = tmp_path_factory.mktemp(f"ref-{setting}") / "log.jsonl"
        _REFERENCE[setting] = run_pretrain(1, TINY + SETTINGS[setting], str(path))
    return _REFERENCE[setting]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_matches_single_process(layout, setting, tmp_path, tmp_path_factory):
    ref = _reference(setting, tmp_path_factory)
    nproc, flags = LAYOUTS[layout]
    got = run_pretrain(nproc, TINY + SETTINGS[setting] + flags, str(tmp_path / "log.jsonl"))
    if "dp2" not in layout:  # the digest also covers the DP assignment
        assert [r["plan_digest"] for r in got] == [r["plan_digest"] for r in ref]
    assert [r["tokens"] for r in got] == [r["tokens"] for r in ref]
    assert [r["loss_tokens"] for r in got] == [r["loss_tokens"] for r in ref]
    for a, b in zip(got, ref):
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-5), (layout, a["iteration"])
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4), (layout, a["iteration"])
    # training moves: the loss is not frozen at its initial value
    assert len({round(r["lm_loss"], 6) for r in got}) > 1


def test_bf16_with_distributed_optimizer_tracks_fp32(tmp_path, tmp_path_factory):
    """bf16 params + megatron's bf16 (distributed) optimizer on CPU: close to the fp32 curve."""
    ref = _reference("wlb", tmp_path_factory)
    got = run_pretrain(2, TINY + WLB + ["--bf16", "--pipeline-model-parallel-size", "2",
                                        "--use-distributed-optimizer"],
                       str(tmp_path / "log.jsonl"))
    for a, b in zip(got, ref):
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=5e-3), a["iteration"]
