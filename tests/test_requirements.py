"""The GPU extras files install what they name."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT

GPU_FILES = {"requirements-gpu.txt": 12, "requirements-gpu-cu13.txt": 13}


def _requirements(name: str) -> list[str]:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def _project(req: str) -> str:
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("name, cuda", sorted(GPU_FILES.items()))
def test_gpu_extras_name_the_right_packages(name, cuda):
    reqs = _requirements(name)
    projects = [_project(r) for r in reqs]
    # PyPI's "apex" is an unrelated web toolkit; NVIDIA Apex is built from its own repository
    assert "apex" not in projects, name
    # flash-attn is a CUDA source build: documented in the file, not installed by it
    assert "flash-attn" not in projects, name
    te = [r for r in reqs if _project(r) == "transformer-engine"]
    assert len(te) == 1, reqs
    # the TransformerEngine core wheel for this CUDA major version, and its PyTorch extension
    extras = set(re.search(r"\[([^\]]*)\]", te[0]).group(1).replace(" ", "").split(","))
    assert extras == {"pytorch", f"core_cu{cuda}"}, te[0]
