"""wlb.megatron.wheel: megatron's dataset-helper build is skipped only where megatron-core's wheel
cannot run it (no Makefile, helpers built); a checkout with its Makefile still builds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from megatron.core import datasets

from tests.helpers.torchrun import ENV, ROOT
from wlb.megatron.wheel import nothing_to_build


def test_nothing_to_build_only_without_a_makefile_and_with_built_helpers(tmp_path):
    wheel, checkout, unbuilt = (tmp_path / n for n in ("wheel", "checkout", "unbuilt"))
    for d in (wheel, checkout, unbuilt):
        d.mkdir()
        (d / "helpers.cpp").write_text("")
    for d in (wheel, checkout):
        (d / "helpers_cpp.cpython-312-x86_64-linux-gnu.so").write_text("")
    (checkout / "Makefile").write_text("")
    assert nothing_to_build(str(wheel))
    assert not nothing_to_build(str(checkout)) and not nothing_to_build(str(unbuilt))


@pytest.mark.skipif(not nothing_to_build(os.path.dirname(datasets.__file__)),
                    reason="megatron-core installed from a checkout, with its Makefile")
def test_without_it_megatrons_build_stops_a_wheel_install():
    """The failure the patch prevents, as megatron-core's wheel gives it (on a GPU too)."""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c",
                          "from megatron.core.datasets.utils import compile_helpers\n"
                          "compile_helpers()"], capture_output=True, text=True, cwd=ROOT,
                         env=ENV, timeout=120)
    assert out.returncode == 1 and "no makefile found" in out.stdout + out.stderr
