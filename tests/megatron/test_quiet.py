"""wlb.megatron.quiet: megatron's torch.compile fusions wait for a call; no CUDA_HOME warning;
megatron's notices about its deprecated internals dropped, other messages kept."""

from __future__ import annotations

import subprocess
import sys

import torch

from tests.helpers.torchrun import ENV, ROOT
from wlb.megatron import quiet


def test_compile_waits_for_the_first_call_and_keeps_its_arguments():
    calls = []

    def fake_compile(fn, **kwargs):
        calls.append((fn.__name__, kwargs))
        return lambda *a, **k: ("compiled", fn(*a, **k))

    deferred = quiet._compile_on_first_call(fake_compile)

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
    with quiet.deferred_compile():
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


def test_importing_wlb_megatron_prints_nothing():
    """(PyPI's CUDA build of torch warns about CUDA_HOME where nvcc is on the PATH.)"""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", "import wlb.megatron.model"],
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stderr[-2000:]


def test_megatrons_deprecation_notices_are_dropped_and_nothing_else(caplog):
    import logging

    import wlb.megatron  # noqa: F401  (installs the filters)
    from wlb.megatron.quiet import NOTICES

    for name, prefix in NOTICES:
        log = logging.getLogger(name)
        with caplog.at_level(logging.WARNING, logger=name):
            caplog.clear()
            log.warning(prefix + " and more")
            log.warning("something else")
        assert [r.getMessage() for r in caplog.records] == ["something else"], name
