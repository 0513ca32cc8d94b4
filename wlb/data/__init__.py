"""Data path: document sources, the per-iteration plan schedule, THD collation and CP slicing."""

from wlb.data.collate import PackedMicroBatch, collate, shard_for_cp
from wlb.data.schedule import PlanSchedule
from wlb.data.sources import DocumentSource, MockDocuments

__all__ = [
    "DocumentSource",
    "MockDocuments",
    "PackedMicroBatch",
    "PlanSchedule",
    "collate",
    "shard_for_cp",
]
