"""Module swaps for megatron's layer specs: what megatron lacks for WLB's GPT on any device.

megatron's local norms refuse sequence parallelism and its specs name their modules in nested
``ModuleSpec`` trees; ``wlb.megatron.gpt`` builds its specs with these two.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

import torch
from megatron.core.transformer.spec_utils import ModuleSpec


class SPTorchNorm:
    """torch LayerNorm/RMSNorm that also works under sequence parallelism.

    megatron's ``WrappedTorchNorm`` asserts ``not sequence_parallel`` (torch_norm.py:32). Under SP
    each TP rank normalises its own slice of the sequence, so the norm weights get partial
    gradients; marking them ``sequence_parallel`` makes ``finalize_model_grads`` all-reduce them
    over TP, exactly as for megatron's fused norms.
    """

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **_unused):
        norm_cls = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}.get(
            config.normalization
        )
        if norm_cls is None:
            raise ValueError(f"normalization={config.normalization!r}: LayerNorm or RMSNorm")
        # in the model's dtype, as megatron's Float16Module casts them (bf16: a checkpoint of
        # the plain bf16 optimizer maps only bf16 parameters to their keys)
        norm = norm_cls(hidden_size, eps=eps, dtype=config.params_dtype)
        for p in norm.parameters():
            p.sequence_parallel = bool(config.sequence_parallel)
        return norm


def swap_modules(spec, mapping: dict):
    """Recursively replace module classes in a ModuleSpec tree (returns a new tree)."""
    if isinstance(spec, ModuleSpec):
        if spec.module in mapping:
            new = mapping[spec.module]
            if isinstance(new, ModuleSpec):
                return new
            return ModuleSpec(module=new, params=spec.params)
        return ModuleSpec(module=spec.module, params=dict(spec.params),
                          submodules=swap_modules(spec.submodules, mapping), metainfo=spec.metainfo)
    if isinstance(spec, type) and spec in mapping:
        return mapping[spec]
    if isinstance(spec, (list, tuple)):  # a block's layer_specs
        return type(spec)(swap_modules(s, mapping) for s in spec)
    if is_dataclass(spec) and not isinstance(spec, type):
        return type(spec)(**{f.name: swap_modules(getattr(spec, f.name), mapping)
                             for f in fields(spec)})
    return spec
