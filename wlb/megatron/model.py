"""Module swaps for megatron's layer specs: what megatron lacks for WLB's GPT on any device.

megatron's local norms refuse sequence parallelism and its specs name their modules in nested
``ModuleSpec`` trees (the core attention in a ``core_attention`` slot, whichever spec: local,
TransformerEngine's, MoE's); ``wlb.megatron.gpt`` builds its specs with these two.
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


def swap_modules(spec, mapping: dict, slots: dict | None = None):
    """Recursively replace module classes in a ModuleSpec tree (returns a new tree): a class in
    ``mapping`` by its value; whatever fills a submodule slot named in ``slots`` (e.g.
    ``core_attention``: megatron's local, TransformerEngine's or any other spec's) by its value.
    """
    slots = slots or {}
    if isinstance(spec, ModuleSpec):
        if spec.module in mapping:
            new = mapping[spec.module]
            if isinstance(new, ModuleSpec):
                return new
            return ModuleSpec(module=new, params=spec.params)
        return ModuleSpec(module=spec.module, params=dict(spec.params),
                          submodules=swap_modules(spec.submodules, mapping, slots),
                          metainfo=spec.metainfo)
    if isinstance(spec, type) and spec in mapping:
        return mapping[spec]
    if isinstance(spec, (list, tuple)):  # a block's layer_specs
        return type(spec)(swap_modules(s, mapping, slots) for s in spec)
    if is_dataclass(spec) and not isinstance(spec, type):
        return type(spec)(**{f.name: slots[f.name] if f.name in slots and getattr(spec, f.name)
                             is not None else swap_modules(getattr(spec, f.name), mapping, slots)
                             for f in fields(spec)})
    return spec
