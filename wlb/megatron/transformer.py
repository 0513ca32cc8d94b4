"""megatron-core's ``TransformerConfig`` for a run's model and layout."""

from __future__ import annotations

import torch
from megatron.core.transformer import TransformerConfig

from wlb.parallel import ParallelLayout
from wlb.run_config import ModelConfig

__all__ = ["TransformerConfig", "transformer_config"]


def transformer_config(model: ModelConfig, layout: ParallelLayout) -> TransformerConfig:
    """The TransformerConfig of ``model`` under ``layout`` (fp32, or bf16 with ``model.bf16``)."""
    dtype = torch.bfloat16 if model.bf16 else torch.float32
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.vpp if layout.vpp > 1 else None,
        context_parallel_size=layout.cp,
        sequence_parallel=layout.sequence_parallel,
        normalization=model.normalization,
        gated_linear_unit=model.swiglu,
        activation_func=torch.nn.functional.silu if model.swiglu else torch.nn.functional.gelu,
        add_bias_linear=not model.disable_bias_linear,
        hidden_dropout=model.hidden_dropout,
        attention_dropout=0.0,
        init_method_std=model.init_method_std,
        perform_initialization=True,  # sets the TP partition attributes; values then replaced
        # by init_layout_independent
        use_cpu_initialization=True,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=model.bf16,
        variable_seq_lengths=True,  # WLB micro-batches differ in length
        moe_token_dispatcher_type="alltoall",  # required with variable_seq_lengths
        calculate_per_token_loss=True,  # loss / global token count (repacking-invariant)
        # PP=2 with VPP and batched p2p on gloo swaps activations silently (see notes)
        batch_p2p_comm=not (layout.pp == 2 and layout.vpp > 1),
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        gradient_accumulation_fusion=False,
        recompute_granularity=model.recompute_granularity,
        recompute_method="uniform" if model.recompute_granularity else None,
        recompute_num_layers=1 if model.recompute_granularity else None,
    )
