"""Adapters to megatron-core 0.16: the only package (with pretrain_gpt_wlb.py) importing it.

* ``cpu_shim``  -- patches megatron's CUDA-only call sites when there is no GPU (and, here, has
  ``import megatron.core`` leave its ``torch.compile`` fusions to their first call).
* ``groups``    -- the one module that reads ``megatron.core.parallel_state``.
* ``attention`` -- our CP attention in the ``core_attention`` ModuleSpec slot.
* ``model``     -- layer spec, GPTModel chunks, layout-independent init, DDP and optimizer.
* ``indexed``   -- Megatron ``.bin/.idx`` documents as a :class:`wlb.data.DocumentSource`.
"""

from wlb.megatron import cpu_shim as _cpu_shim

with _cpu_shim.deferred_compile():
    import megatron.core  # noqa: F401  (first, so that every megatron module sees the deferral)
