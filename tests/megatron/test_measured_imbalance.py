"""WLB's measured imbalance (``wlb.megatron.wlb_log.measured_imbalance``): per micro-batch the
slowest rank of each pipeline stage and virtual chunk, over a 4-process gloo group."""

from __future__ import annotations

import pytest


def _measure(rank, world, out_path):
    import torch

    from wlb.megatron.wlb_log import measured_imbalance

    # PP = 2, VPP = 2, two DP replicas (ranks 0, 1 stage 0; ranks 2, 3 stage 1); 3 micro-batches
    records = {
        0: [(0, 0, 5.0), (1, 0, 1.0), (0, 1, 2.0)],
        1: [(0, 0, 3.0), (1, 0, 4.0), (2, 1, 6.0)],  # micro-batch 1, chunk 0: this rank is slower
        2: [(0, 0, 1.0), (1, 1, 2.0)],
        3: [(2, 0, 3.0), (1, 1, 1.0)],
    }[rank]
    got = measured_imbalance(records, rank // 2, 2, 2, 3)
    if rank == 0:
        torch.save(got, out_path)


@pytest.mark.dist
def test_measured_imbalance_takes_each_stage_and_chunk_at_its_slowest_rank(tmp_path):
    import torch

    from tests.helpers.dist import run_distributed

    run_distributed(_measure, 4, str(tmp_path / "m.pt"))
    # per micro-batch, the slowest rank per (stage, chunk), summed: 0: 5 + 2 + 1 = 8;
    # 1: 4 + 2 = 6; 2: 6 + 3 = 9 -> max x N / sum = 9 x 3 / 23
    assert torch.load(tmp_path / "m.pt") == pytest.approx(27 / 23)
