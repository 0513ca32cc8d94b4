"""Adapters to megatron-core 0.19: the only package (with pretrain_gpt_wlb.py) importing it.

Megatron-LM's ``pretrain()`` runs the loop; these plug WLB in at its hooks.

* ``arguments`` -- Megatron-LM's parser with WLB's flags, WLB's checks, one line on bad input.
* ``gpt``       -- the model provider, the layer specs and both arms' forward steps.
* ``stock_data``-- stock Megatron's datasets and batches (the ``--wlb-packing megatron`` arm).
* ``wlb_data``  -- WLB's external data iterator (packer, outlier queues, host prefetch).
* ``wlb_log``   -- WLB's figures beside megatron's log, TensorBoard and ``--log-json``.
* ``observe``   -- the forward steps' timings and the evaluated tokens' fingerprint.
* ``attention`` -- WLB's CP attention in the ``core_attention`` ModuleSpec slot.
* ``model``     -- module swaps for the layer specs (SP-capable torch norms).
* ``elastic``   -- elastic CP's process groups over a stage's DP x CP pool.
* ``hybrid_cp`` -- megatron-core's hybrid-CP scheduler, for the simulator's comparison.
* ``indexed``   -- Megatron ``.bin/.idx`` documents as a :class:`wlb.data.DocumentSource`.
* ``mock_corpus``-- ``--mock-data``'s documents written once as ``.bin/.idx`` for both arms.
* ``cpu_loop``  -- patches of megatron's CUDA-only call sites, applied only without CUDA.
* ``wheel``     -- what megatron-core's wheel lacks of a Megatron-LM checkout (the dataset
  helpers' Makefile): applied on every machine.
* ``quiet``     -- without a GPU, ``import megatron.core`` leaves its ``torch.compile`` fusions
  to their first call and does not warn about CUDA_HOME; megatron's notices about its own
  deprecated internals are dropped.
"""

from wlb.megatron import quiet as _quiet

_quiet.quiet_cuda_home()
_quiet.drop_notices()
with _quiet.deferred_compile():
    import megatron.core  # noqa: F401  (first, so that every megatron module sees the deferral)
