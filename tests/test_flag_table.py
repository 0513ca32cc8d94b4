"""docs/flags.md is the parser's own table (regenerate: python -m tools.flag_table)."""

from __future__ import annotations

import os

from tools.flag_table import render
from wlb.training.arguments import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_flags_md_is_generated_from_the_parser():
    with open(os.path.join(ROOT, "docs", "flags.md"), encoding="utf-8") as f:
        assert f.read() == render(), "run: python -m tools.flag_table > docs/flags.md"


def test_every_flag_is_in_the_table_with_a_meaning():
    text = render()
    for a in build_parser()._actions:
        for o in a.option_strings:
            if o not in ("-h", "--help"):
                assert f"`{o}" in text, o
        assert a.help, a.option_strings
