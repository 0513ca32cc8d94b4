"""Spawn a gloo process group from pytest (cf. nanotron's test helpers).

* The ranks meet through a file store in a fresh temporary directory, not through a TCP port
  chosen here, released, and bound seconds later by rank 0: in between another process may take
  it (rank 0 then cannot bind it, and the other ranks talk to a stranger).
* A rank that succeeded ends with ``os._exit`` after tearing its process group down, without
  finalizing the interpreter. A spawned process otherwise exits through ``sys.exit``, and gloo's
  worker thread may still be releasing the last collective's work, whose tensor's Python object
  only it still holds: it needs the GIL for that, a finalizing Python ends the thread instead
  (``pthread_exit``), and the unwinding through gloo's C++ destructor calls ``std::terminate``:
  SIGABRT, "terminate called without an active exception". Seen under load (4 processes on 2
  cores beside other work), in the core dump of such a rank: the main thread in
  ``Py_FinalizeEx``, the gloo thread in ``~AsyncAllreduceWork`` -> ``take_gil`` ->
  ``PyThread_exit_thread`` -> ``std::terminate``.
"""

from __future__ import annotations

import os
import socket
import sys
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
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # (no interpreter finalization beside a gloo thread: the module docstring)


def run_distributed(fn, world: int, *args) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` processes; raises if any rank fails."""
    with tempfile.TemporaryDirectory(prefix="wlb-dist-") as tmp:
        mp.spawn(_entry, args=(world, os.path.join(tmp, "store"), fn, args), nprocs=world,
                 join=True)
