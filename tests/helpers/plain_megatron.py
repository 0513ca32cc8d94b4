"""A checkpoint written by megatron-core alone, for tests: none of WLB's model or checkpoint code.

    python -m tests.helpers.plain_megatron OURS OUT

Builds megatron-core's ``GPTModel`` with its own local layer spec (RoPE, the shape read from the
``args`` of the torch_dist checkpoint OURS), loads OURS's weights into it with
``dist_checkpointing.load`` (so: ours is readable by megatron-core), then writes them with
``dist_checkpointing.save`` into ``OUT/iter_NNNNNNN`` with Megatron-LM's common keys (``args`` as
an ``argparse.Namespace``, ``iteration``, ``checkpoint_version``) and its tracker file, as a
Megatron-LM run would. One process, gloo, on CPU (our CPU shim for megatron's CUDA-only calls).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist


def main(ours: str, out: str) -> None:
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer import TransformerConfig

    from wlb.megatron import cpu_shim

    cpu_shim.apply()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("gloo", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    model_parallel_cuda_manual_seed(1)

    with open(os.path.join(ours, "latest_checkpointed_iteration.txt")) as f:
        iteration = int(f.read())
    src = os.path.join(ours, f"iter_{iteration:07d}")
    with torch.serialization.safe_globals([argparse.Namespace]):
        a = dist_checkpointing.load_common_state_dict(src)["args"]
    from torch.distributed.checkpoint import FileSystemReader

    vocab = FileSystemReader(src).read_metadata().state_dict_metadata[
        "embedding.word_embeddings.weight"].size[0]
    config = TransformerConfig(
        num_layers=a.num_layers, hidden_size=a.hidden_size, ffn_hidden_size=a.ffn_hidden_size,
        num_attention_heads=a.num_attention_heads, num_query_groups=a.num_query_groups,
        normalization=a.normalization, gated_linear_unit=a.swiglu,
        activation_func=torch.nn.functional.silu if a.swiglu else torch.nn.functional.gelu,
        add_bias_linear=not a.disable_bias_linear, use_cpu_initialization=True,
        bias_activation_fusion=False, masked_softmax_fusion=False,
        gradient_accumulation_fusion=False, persist_layer_norm=False)
    model = GPTModel(config=config, transformer_layer_spec=get_gpt_layer_local_spec(),
                     vocab_size=vocab, max_sequence_length=a.seq_length,
                     share_embeddings_and_output_weights=not a.untie_embeddings_and_output_weights,
                     position_embedding_type="rope")
    with torch.serialization.safe_globals([argparse.Namespace]):  # as Megatron-LM allows it
        loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, src)
    model.load_state_dict(loaded["model"])

    dst = os.path.join(out, f"iter_{iteration:07d}")
    os.makedirs(dst)
    args = argparse.Namespace(tensor_model_parallel_size=1, pipeline_model_parallel_size=1,
                              num_layers=a.num_layers, hidden_size=a.hidden_size,
                              ckpt_format="torch_dist")
    dist_checkpointing.save({"model": model.sharded_state_dict(), "iteration": iteration,
                             "checkpoint_version": 3.0, "args": args}, dst)
    with open(os.path.join(out, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write(str(iteration))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
