"""Fixtures of the Megatron-LM loop tests."""

from __future__ import annotations

import pytest

from tests.helpers.lm_runs import write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> str:
    """A .bin/.idx corpus of 400 EOD-terminated documents (tests.helpers.lm_runs)."""
    return write_corpus(str(tmp_path_factory.mktemp("corpus") / "docs"))


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> str:
    """megatron's dataset index cache, shared by the runs on :func:`corpus`."""
    return str(tmp_path_factory.mktemp("data_cache"))
