"""wlb.megatron.cpu_loop: Megatron-LM's own pretrain() on CPU.

Each patch is checked where it lands (red when a megatron-core release moves its target: apply()
then stops, naming it), the pin and the GPU case by hand, and the whole by Megatron-LM's loop
training a GPT of megatron's local spec (tests/helpers/megatron_lm_gpt.py) at PP 2.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT
from wlb.megatron.replica import CPU_FLAGS

# Megatron-LM's flags for a tiny GPT on CPU (megatron's fused kernels off: they need CUDA)
LM_TINY = [
    "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "255",
    "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
    "--seq-length", "256", "--max-position-embeddings", "256", "--micro-batch-size", "1",
    "--global-batch-size", "4", "--train-iters", "3", "--lr", "1e-3", "--lr-warmup-iters", "1",
    *CPU_FLAGS, "--position-embedding-type", "rope",
    "--hidden-dropout", "0", "--attention-dropout", "0", "--log-interval", "1", "--seed", "7",
    "--eval-iters", "0", "--eval-interval", "1000",
]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                          text=True, cwd=ROOT, env=ENV, timeout=120)


def test_every_patch_lands_on_its_target():
    code = """
import json, torch
from wlb.megatron import cpu_loop
applied = cpu_loop.apply()
import megatron.training.training as T
import megatron.training.arguments as A, megatron.core.tensor_parallel.random as R
import megatron.core.transformer.moe.token_dispatcher as D
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer as O
marks = {
    "initialize": [T.initialize_megatron.__wlb_cpu_patch__],
    "jit_warmup": [T.set_jit_fusion_options.__wlb_cpu_patch__],
    "device_arch": [A.get_device_arch_version.__wlb_cpu_patch__],
    "rng_tracker": [R._get_cuda_rng_state.__wlb_cpu_patch__,
                    R._set_cuda_rng_state.__wlb_cpu_patch__],
    "tensor_types": [torch.Tensor.type.__wlb_cpu_patch__],
    "moe_splits": [D.maybe_move_tensor_to_cpu.__wlb_cpu_patch__],
    "adam_step": [O.state_dict.__wlb_cpu_patch__, O.load_state_dict.__wlb_cpu_patch__],
    "fp32_shards": [O._set_main_param_and_optimizer_states.__wlb_cpu_patch__],
}
effects = {
    "devices": [str(torch.zeros(2, device="cuda").device), str(torch.ones(1).cuda().device),
                str(torch.ones(1).to("cuda:0").device), str(torch.empty(1, device=0).device)],
    "cuda_api": [torch.cuda.current_device(), torch.cuda.synchronize(),
                 torch.cuda.current_stream().wait_stream(None),
                 torch.cuda.Stream().record_event().synchronize()],
    "tensor_types": [torch.ones(1).type(), torch.ones(1, dtype=torch.bfloat16).type()],
    "device_arch": [A.get_device_arch_version()],
    "moe_splits": [type(D.maybe_move_tensor_to_cpu(torch.ones(2), as_numpy=True)).__name__],
}
print(json.dumps({"applied": applied, "again": cpu_loop.apply(), "marks": marks,
                  "effects": effects}))
"""
    out = _python(code)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    names = ["initialize", "jit_warmup", "device_arch", "devices", "cuda_api", "rng_tracker",
             "tensor_types", "moe_splits", "adam_step", "fp32_shards"]
    assert got["applied"] == got["again"] == names
    for name, marks in got["marks"].items():
        assert marks == [name] * len(marks), name
    assert got["effects"] == {
        "devices": ["cpu"] * 4, "cuda_api": [0, None, True, True],
        "tensor_types": ["torch.cuda.FloatTensor", "torch.cuda.BFloat16Tensor"],
        "device_arch": [0], "moe_splits": ["ndarray"]}


def test_a_moved_target_or_another_release_stops_apply_with_one_line():
    moved = _python("import megatron.training.training as T; del T.set_jit_fusion_options\n"
                    "from wlb.megatron import cpu_loop; cpu_loop.apply()")
    assert moved.returncode != 0
    assert ("CudaPatchError: wlb.megatron.cpu_loop: megatron.training.training."
            "set_jit_fusion_options is gone") in moved.stderr
    other = _python("import megatron.core; megatron.core.__version__ = '0.20.0'\n"
                    "from wlb.megatron import cpu_loop; cpu_loop.apply()")
    assert other.returncode != 0
    assert "supports megatron-core 0.19.x, found 0.20.0" in other.stderr


def test_nothing_is_patched_where_cuda_is_available_but_the_wheels_helpers_build():
    """On a GPU no CPU patch lands; the dataset helpers' build, which megatron-core's wheel
    cannot run (no Makefile: ``make`` stops, megatron exits), is skipped there too."""
    out = _python("import torch; torch.cuda.is_available = lambda: True\n"
                  "sync = torch.cuda.synchronize\n"
                  "from wlb.megatron import cpu_loop\n"
                  "print(cpu_loop.apply(), torch.cuda.synchronize is sync)\n"
                  "import subprocess; subprocess.run = None  # a make would raise\n"
                  "from megatron.core.datasets.utils import compile_helpers\n"
                  "print(compile_helpers(), compile_helpers.__wlb_wheel_patch__)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "True", "None", "True"]


def lm_losses(tmp_path, nproc: int, extra: list[str], name: str) -> list[dict]:
    """Run tests/helpers/megatron_lm_gpt.py (Megatron-LM's pretrain) and read its losses."""
    path = tmp_path / f"{name}.jsonl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "tests.helpers.megatron_lm_gpt", *LM_TINY, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**ENV, "WLB_TEST_LOSSES": str(path)})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.dist
@pytest.mark.slow
def test_megatron_lms_own_loop_trains_on_cpu_at_pp2(tmp_path):
    """(PP 2: the pipelined schedule, its P2P exchanges and the embedding groups; 1 process and
    TP 2 / DP 2 with the distributed optimizer were run by hand, the same way.)"""
    rows = lm_losses(tmp_path, 2, ["--pipeline-model-parallel-size", "2"], "lm")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    losses = [r["lm_loss"] for r in rows]
    assert all(4.0 < x < 6.0 for x in losses) and losses[2] < losses[0]  # ln(255) = 5.54
