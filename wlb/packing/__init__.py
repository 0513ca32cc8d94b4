"""Packing layer: registry of packers, outlier queues, batcher, ledger and simulator."""

from wlb.packing import fixed_greedy, stock, wlb  # noqa: F401  (register packers)
from wlb.packing.base import Packer, available_packers, build_packer, register_packer
from wlb.packing.queues import OutlierQueues
from wlb.packing.stream import DataError, GlobalBatcher
from wlb.packing.types import BatchPlan, Piece, assign_dp_ranks

__all__ = [
    "BatchPlan",
    "DataError",
    "GlobalBatcher",
    "OutlierQueues",
    "Packer",
    "Piece",
    "assign_dp_ranks",
    "available_packers",
    "build_packer",
    "register_packer",
]
