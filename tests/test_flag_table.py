"""docs/flags.md is WLB's parser's own table (regenerate: python -m tests.helpers.flag_table)."""

from __future__ import annotations

import os

from tests.helpers.flag_table import render, wlb_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_flags_md_is_generated_from_the_parser():
    with open(os.path.join(ROOT, "docs", "flags.md"), encoding="utf-8") as f:
        assert f.read() == render(), "run: python -m tests.helpers.flag_table > docs/flags.md"


def test_every_wlb_flag_is_in_the_table_with_a_meaning():
    text = render()
    for a in wlb_parser()._actions:
        for o in a.option_strings:
            assert f"`{o}" in text, o
        assert a.help, a.option_strings
