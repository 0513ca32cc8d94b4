"""WLB's host work, which megatron lacks: from the run's documents to each rank's micro-batches.

* ``documents`` -- the run's datasets and their train / valid views.
* ``build``     -- the cost model, the plan schedule (packer + outlier queues), the CP chooser.
* ``batches``   -- a plan's micro-batches laid out, collated and CP-sharded as tensors.
* ``step``      -- one rank's host path of an iteration (plan -> strategies -> inputs).
* ``prefetch``  -- that host path one iteration ahead, in a background thread.
* ``elastic``   -- elastic CP's per-iteration slots, checked and agreed across ranks.
* ``replay``    -- a run's plans rebuilt from its flags, for the simulator's validation.

``wlb.megatron`` calls it from megatron's hooks. Nothing here imports megatron-core or
``wlb.megatron``: the ``.bin/.idx`` reader (``wlb.megatron.indexed``, megatron-core's own index
reader) is handed in by the callers (``documents.build_documents``' ``open_dataset``).
"""
