"""wlb.megatron.gpt.wlb_layer_spec: WLB's core attention in the ``core_attention`` slot of
whatever layer spec megatron picks, its other modules kept, and where a run needs it.

TransformerEngine is not installed here, so megatron cannot build its TE spec: a stand-in spec
(megatron's local spec with stand-in classes in the TE modules' places) carries the same slots.
The GPU test of TE's layers with WLB's attention is tests/megatron/test_gpu.py.
"""

from __future__ import annotations

import argparse

import pytest
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.dot_product_attention import DotProductAttention

from wlb.megatron.attention import WLBCoreAttention
from wlb.megatron.combinations import needs_wlb_core_attention
from wlb.megatron.gpt import wlb_layer_spec
from wlb.megatron.model import swap_modules

ATTENTION = {"attention_backend": "torch", "rotary_percent": 1.0, "rotary_base": 10000}


class TEDotProductAttention:  # (stand-ins for TransformerEngine's modules)
    pass


class TELayerNormColumnParallelLinear:
    pass


class TERowParallelLinear:
    pass


def _attention(spec):
    return spec.submodules.self_attention.submodules


def test_the_core_attention_slot_takes_wlbs_attention_on_local_and_te_layers():
    local = get_gpt_layer_local_spec()
    te = swap_modules(local, {DotProductAttention: TEDotProductAttention,
                              ColumnParallelLinear: TELayerNormColumnParallelLinear,
                              RowParallelLinear: TERowParallelLinear})
    for base, linears in ((local, (ColumnParallelLinear, RowParallelLinear)),
                          (te, (TELayerNormColumnParallelLinear, TERowParallelLinear))):
        got = _attention(wlb_layer_spec(None, base=base, attention=ATTENTION))
        assert got.core_attention.module is WLBCoreAttention
        assert got.core_attention.params == ATTENTION
        assert (got.linear_qkv, got.linear_proj) == linears  # the layer's own linears stay
        assert _attention(base).core_attention in (DotProductAttention, TEDotProductAttention)
    # without WLB's attention the spec is megatron's
    plain = _attention(wlb_layer_spec(None, base=te))
    assert plain.core_attention is TEDotProductAttention


def test_every_layer_of_a_block_spec_gets_it():
    """A block spec (MoE's, VPP's) lists its layers: each layer's slot is taken."""
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    block = TransformerBlockSubmodules(layer_specs=[get_gpt_layer_local_spec()] * 3)
    got = wlb_layer_spec(None, base=block, attention=ATTENTION)
    assert [_attention(s).core_attention.module for s in got.layer_specs] == [WLBCoreAttention] * 3


@pytest.mark.parametrize("stock, impl, masking, cp, needed", [
    (False, "transformer_engine", False, 1, True),  # WLB's packing: its attention, any layers
    (False, "local", False, 1, True),
    (True, "transformer_engine", True, 2, False),  # stock on TE: TE's THD / CP attention
    (True, "local", False, 2, True),  # megatron's local attention has no CP
    (True, "local", True, 1, True),  # ... nor THD
    (True, "local", False, 1, False),
])
def test_where_wlbs_attention_takes_megatrons_place(stock, impl, masking, cp, needed):
    args = argparse.Namespace(wlb_stock=stock, transformer_impl=impl,
                              dataloader_inter_document_masking=masking,
                              context_parallel_size=cp)
    assert needs_wlb_core_attention(args) is needed
