"""wlb.megatron.cpu_shim's import-time patch: megatron's torch.compile fusions wait for a call."""

from __future__ import annotations

import subprocess
import sys

import torch

from tests.helpers.torchrun import ENV, ROOT
from wlb.megatron import cpu_shim


def test_compile_waits_for_the_first_call_and_keeps_its_arguments():
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append((fn.__name__, kwargs))
        return lambda *a, **k: ("compiled", fn(*a, **k))

    deferred = cpu_shim._compile_on_first_call(fake_compile)

    def double(x):
        """Doc kept."""
        return 2 * x

    direct = deferred(double, dynamic=False)
    decorated = deferred(backend="eager")(double)  # the @torch.compile(...) form
    assert calls == [] and direct.__name__ == "double" and direct.__doc__ == "Doc kept."
    assert direct(3) == ("compiled", 6) and direct(4) == ("compiled", 8)
    assert decorated(5) == ("compiled", 10)
    assert calls == [("double", {"dynamic": False}), ("double", {"backend": "eager"})]


def test_deferred_compile_restores_torch_compile():
    real = torch.compile
    with cpu_shim.deferred_compile():
        assert (torch.compile is real) == torch.cuda.is_available()
    assert torch.compile is real


def test_importing_wlb_megatron_compiles_nothing():
    """megatron-core's fusions are decorated at import; none of torch's compiler is loaded for
    that (it costs ~2 s per process: every training process of the suite paid it)."""
    code = ("import sys, torch, wlb.megatron.model\n"
            "from megatron.core import jit\n"
            "print('torch._inductor.compile_fx' in sys.modules, torch.compile is jit.jit_fuser)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
