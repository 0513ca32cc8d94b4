"""`--help` on every script and tool names its purpose in one line (and starts no work)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(p for p in glob.glob(os.path.join(ROOT, "scripts", "*"))
                 if not os.path.basename(p).startswith("_"))
TOOLS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "tools", "*.py"))
               if not p.endswith("__init__.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_script_help_is_its_purpose(script, tmp_path):
    # WLB_VENV points nowhere: --help must answer before any set-up
    proc = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "WLB_VENV": str(tmp_path / "none")})
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert 20 < len(first) <= 100 and first.endswith("."), first
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_help_is_its_purpose(tool):
    proc = subprocess.run([sys.executable, "-m", f"tools.{tool}", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    desc = lines[lines.index("") + 1]  # argparse: usage, a blank line, the description
    assert 20 < len(desc) <= 100 and desc.rstrip().endswith((".", "?")), desc
