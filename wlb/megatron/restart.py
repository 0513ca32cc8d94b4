"""A job that torchrun restarts (``--max-restarts``) after a worker died: what megatron lacks.

Every attempt of a torchrun job rendezvouses through the same store (the agent's), and megatron
creates its process groups again under the same names: the new attempt's groups would read the
dead attempt's addresses from the store and hang connecting to them. Each attempt gets a key
space of its own instead (``TORCHELASTIC_RESTART_COUNT``), handed to ``pretrain(store=...)``,
which megatron passes on to ``torch.distributed.init_process_group``.
"""

from __future__ import annotations

import os

import torch


def attempt_store():
    """torchrun's store under a prefix of this attempt, or None outside torchrun (megatron then
    initialises the process group from the environment as usual)."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or not torch.distributed.is_available():
        return None
    store, _, _ = next(torch.distributed.rendezvous("env://"))
    return torch.distributed.PrefixStore(f"wlb/attempt_{attempt}", store)
