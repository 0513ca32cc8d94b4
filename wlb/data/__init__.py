"""Data path: document sources, the per-iteration plan schedule, THD collation and CP slicing.

Modules: ``sources`` (DocumentSource, MockDocuments), ``schedule`` (PlanSchedule),
``collate`` (PackedMicroBatch, collate, shard_for_cp; the only one needing torch), ``corpus`` and
``tokenizer``. Nothing is imported here, so numpy-only users (the packer soak) do not load torch.
"""
