"""Spawn a gloo process group from pytest (cf. nanotron's test helpers).

Two races of the earlier helper are gone:

* The ranks meet through a file store in a fresh temporary directory, not through a TCP port
  chosen here, released, and bound seconds later by rank 0: in between, another process may take
  it (rank 0 then fails to bind it and the other ranks talk to a stranger).
* Every rank passes a barrier before it tears its process group down, so no rank closes its
  gloo connections while a peer may still be reading the last messages of a collective from
  them. Seen once in ~60 runs of the 4-process imbalance test beside other work on 2 cores: a
  rank died in C++ with no Python traceback ("terminate called without an active exception",
  SIGABRT); the test makes one collective, then tears down, and a teardown racing a peer that
  is still in the collective is where its ranks can diverge (not reproduced often enough to
  prove: see docs/reliability.md).
"""

from __future__ import annotations

import os
import socket
import tempfile

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port free now (for a launcher that needs one: torchrun, our scripts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, store: str, fn, args) -> None:
    import torch

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        fn(rank, world, *args)
        dist.barrier()  # (every rank is done with its collectives before any tears down)
    finally:
        dist.destroy_process_group()


def run_distributed(fn, world: int, *args) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` processes; raises if any rank fails."""
    with tempfile.TemporaryDirectory(prefix="wlb-dist-") as tmp:
        mp.spawn(_entry, args=(world, os.path.join(tmp, "store"), fn, args), nprocs=world,
                 join=True)
