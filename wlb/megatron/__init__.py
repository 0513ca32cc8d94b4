"""Adapters to megatron-core 0.19: the only package (with pretrain_gpt_wlb.py) importing it.

* ``quiet``     -- without a GPU, ``import megatron.core`` leaves its ``torch.compile`` fusions
  to their first call and does not warn about CUDA_HOME; megatron's notices about its own
  deprecated internals are dropped.
* ``cpu_shim``  -- patches megatron's CUDA-only call sites when there is no GPU.
* ``groups``    -- the one module that reads ``megatron.core.parallel_state``.
* ``attention`` -- our CP attention in the ``core_attention`` ModuleSpec slot.
* ``model``     -- layer spec, GPTModel chunks, layout-independent init, DDP and optimizer.
* ``indexed``   -- Megatron ``.bin/.idx`` documents as a :class:`wlb.data.DocumentSource`.
"""

from wlb.megatron import quiet as _quiet

_quiet.quiet_cuda_home()
_quiet.drop_notices()
with _quiet.deferred_compile():
    import megatron.core  # noqa: F401  (first, so that every megatron module sees the deferral)
