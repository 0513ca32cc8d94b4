"""Data path: document sources and THD collation of packed micro-batches (with CP slicing).

Modules: ``sources`` (DocumentSource, MockDocuments) and ``collate`` (PackedMicroBatch, collate,
shard_for_cp, and collate_shard, which reads one CP rank's rows only; the only one needing
torch). Plan-making lives in :mod:`wlb.packing`; corpus
building and tokenizers serve only preprocessing (:mod:`wlb.preprocess`). Nothing is imported
here, so numpy-only users (the packer soak) do not load torch.
"""
