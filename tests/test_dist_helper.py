"""tests/helpers/dist.py: spawned ranks meet without a TCP port and end without finalizing the
interpreter beside gloo's threads (the cause of a SIGABRT under load: the helper's docstring)."""

from __future__ import annotations

import pytest

from tests.helpers.dist import run_distributed


def _rank(rank, world, out_dir):
    import atexit
    import os

    import torch
    import torch.distributed as dist

    t = torch.ones(1)
    dist.all_reduce(t)
    assert os.environ.get("MASTER_PORT") is None  # (a file store, not a port)
    with open(os.path.join(out_dir, f"sum{rank}"), "w") as f:
        f.write(str(int(t.item())))
    # would run if the rank finalized its interpreter
    atexit.register(lambda: open(os.path.join(out_dir, f"finalized{rank}"), "w").close())


@pytest.mark.dist
def test_ranks_meet_through_a_file_and_end_without_finalizing(tmp_path):
    run_distributed(_rank, 2, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sum0", "sum1"]
    assert (tmp_path / "sum0").read_text() == "2"
