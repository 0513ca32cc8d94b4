"""Packer interface and registry (cf. megatron-core's pluggable packing schedulers)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from wlb.cost_model import CostModel
from wlb.packing.types import MicroBatch, Piece

#: WLB's micro-batch token cap S_max defaults to this many times the sequence length
DEFAULT_MAX_TOKENS_FACTOR = 1.25


def default_max_tokens(seq_length: int) -> int:
    """The default S_max for ``seq_length`` (the one place the 1.25 x rule is written).

    Example: ``default_max_tokens(4096) == 5120``.
    """
    return int(round(DEFAULT_MAX_TOKENS_FACTOR * seq_length))


class Packer(ABC):
    """Turns the pieces of one global batch into N micro-batches.

    A packer is deterministic: the same (config, stream of batches) gives the same plans, so every
    rank can compute the plan itself. Pieces it cannot place now (carry-over, outlier queues) are
    its state; :meth:`flush` releases them at epoch end and :meth:`state_dict` saves them.

    Args:
        num_microbatches: N, micro-batches balanced together (micro-batches per iteration x DP).
        seq_length: the context length (stock micro-batch size in tokens).
        cost_model: per-document workload model.
    """

    name: str = "base"
    #: whether global batches are cut exactly at the token budget (documents split at the cut)
    split_at_budget: bool = False

    def __init__(self, num_microbatches: int, seq_length: int, cost_model: CostModel) -> None:
        if num_microbatches <= 0:
            raise ValueError(f"num_microbatches must be > 0, got {num_microbatches}")
        if seq_length <= 0:
            raise ValueError(f"seq_length must be > 0, got {seq_length}")
        self.n = num_microbatches
        self.seq_length = seq_length
        self.cost = cost_model

    @property
    def max_tokens(self) -> int:
        """Largest micro-batch this packer emits, in tokens."""
        return self.seq_length

    @property
    def max_piece(self) -> int | None:
        """Pieces longer than this are split by the batcher before packing (None: no limit)."""
        return self.max_tokens

    @abstractmethod
    def pack(self, pieces: list[Piece]) -> list[MicroBatch]:
        """Pack one global batch's pieces (plus held-back state) into N micro-batches."""

    def flush(self) -> list[MicroBatch]:
        """Pack everything still held back (end of epoch). May need several calls; returns []
        when nothing is pending."""
        return []

    def pending(self) -> list[Piece]:
        """Pieces held back (carry-over and queues)."""
        return []

    def state_dict(self) -> dict:
        return {"name": self.name}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"packer state is for {state.get('name')!r}, not {self.name!r}")


PackerFactory = Callable[..., Packer]
_REGISTRY: dict[str, PackerFactory] = {}


def register_packer(name: str) -> Callable[[PackerFactory], PackerFactory]:
    """Decorator: make a packer class (or factory) available under ``name``."""

    def deco(factory: PackerFactory) -> PackerFactory:
        if name in _REGISTRY:
            raise ValueError(f"packer {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_packers() -> list[str]:
    return sorted(_REGISTRY)


def build_packer(name: str, **kwargs) -> Packer:
    """Instantiate a registered packer; kwargs the packer does not take raise TypeError."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown packer {name!r}; choose from {available_packers()}")
    return _REGISTRY[name](**kwargs)
