"""WLB-LLM on Megatron: workload-balanced 4D parallelism for long-context LLM training.

Pure, CPU-testable algorithms live in this package (cost model, packers, outlier queues, CP shard
index math, selector). Adapters to megatron-core / TransformerEngine / flash-attn are the only code
that imports those libraries, and they import them lazily.
"""

__version__ = "0.1.0"
