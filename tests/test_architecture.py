"""The structure docs/architecture.md promises, checked on the code itself."""

from __future__ import annotations

import ast
import os
from dataclasses import fields

from tests.conftest import ROOT


def _py_files(*dirs: str) -> list[str]:
    out = []
    for d in dirs:
        for base, _, names in os.walk(os.path.join(ROOT, d)):
            out += [os.path.join(base, n) for n in names if n.endswith(".py")]
    return sorted(out)


def _imports(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods.add(node.module)
    return mods


def _rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def test_only_wlb_megatron_imports_megatron_core():
    offenders = [_rel(p) for p in _py_files("wlb", "tools") + [os.path.join(ROOT,
                                                                            "pretrain_gpt_wlb.py")]
                 if not _rel(p).startswith(os.path.join("wlb", "megatron"))
                 and _rel(p) != "pretrain_gpt_wlb.py"
                 and any(m == "megatron" or m.startswith("megatron.") for m in _imports(p))]
    assert offenders == []


def test_nothing_below_wlb_megatron_imports_it():
    """wlb/megatron/ stands on top of the rest of wlb/: what it hands down (the .bin/.idx
    reader to host/documents) is passed in, never imported from below."""
    offenders = [_rel(p) for p in _py_files("wlb")
                 if not _rel(p).startswith(os.path.join("wlb", "megatron"))
                 and any(m == "wlb.megatron" or m.startswith("wlb.megatron.")
                         for m in _imports(p))]
    assert offenders == []


def test_tools_are_a_package_on_top_of_wlb():
    tools = {os.path.splitext(os.path.basename(p))[0] for p in _py_files("tools")}
    assert "__init__" in tools
    for p in _py_files("tools"):
        with open(p, encoding="utf-8") as f:
            assert "sys.path" not in f.read(), _rel(p)
        others = {m for m in _imports(p) if m.split(".")[0] in tools or m.startswith("tools")}
        assert others == set(), (_rel(p), others)


def test_tools_are_at_most_twelve_commands_each_named_in_the_docs():
    """tools/ holds only commands a user runs, each named in README.md or docs/."""
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in _py_files("tools")
                   if not p.endswith("__init__.py"))
    docs = ""
    for p in [os.path.join(ROOT, "README.md")] + sorted(
            os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
            if n.endswith(".md")):
        with open(p, encoding="utf-8") as f:
            docs += f.read()
    assert len(names) <= 12, names
    assert [n for n in names if f"tools.{n}" not in docs and f"tools/{n}" not in docs] == []


def test_no_file_over_300_lines():
    long = {}
    for p in _py_files("wlb", "tools", "tests"):
        with open(p, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > 300:
            long[_rel(p)] = n
    assert long == {}


def test_every_config_field_is_a_megatron_lm_or_wlb_flag():
    """WLB's RunConfig is a view of the run's flags: every field is the destination of a flag
    of Megatron-LM's parser or WLB's, or one of the few wlb_run_config derives; each has one
    home."""
    import argparse

    from megatron.training.arguments import add_megatron_arguments

    from wlb.megatron.arguments import add_wlb_arguments
    from wlb.run_config import (
        DataConfig,
        LoggingConfig,
        ModelConfig,
        ParallelConfig,
        TrainingConfig,
    )

    parser = add_wlb_arguments(add_megatron_arguments(argparse.ArgumentParser()))
    dests = {a.dest for a in parser._actions}
    names = [f.name for g in (ModelConfig, ParallelConfig, TrainingConfig, DataConfig,
                              LoggingConfig) for f in fields(g)]
    assert len(names) == len(set(names))  # one home per flag
    derived = {"disable_bias_linear", "vpp", "split_weights", "blend", "notes"}
    assert set(names) - dests == derived
