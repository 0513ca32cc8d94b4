"""Model shapes and 4D layouts the cluster simulator knows, including the paper's Table 1 grid."""

from __future__ import annotations

from dataclasses import dataclass

from wlb.cost_model import attn_flops_per_pair, layer_gemm_flops, logit_flops
from wlb.parallel import ParallelDims


@dataclass(frozen=True)
class ModelSpec:
    """A LLaMA-like decoder (SwiGLU MLP, RoPE, untied output layer).

    Attributes:
        name: label ("7b", ...).
        num_layers, hidden_size, ffn_hidden_size, num_attention_heads: dimensions.
        num_query_groups: K/V heads (GQA); equal to the heads for plain multi-head attention.
        vocab_size: embedding rows (the output-logit GEMM is charged to the last stage).
    """

    name: str
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    vocab_size: int = 32000

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.num_query_groups

    def layer_params(self) -> int:
        h = self.hidden_size
        return h * (h + 2 * self.kv_dim) + h * h + 3 * h * self.ffn_hidden_size + 2 * h

    def num_params(self) -> int:
        return self.num_layers * self.layer_params() + 2 * self.vocab_size * self.hidden_size

    def linear_flops_per_token(self, tp: int = 1) -> float:
        """Forward GEMM FLOPs of one layer for one token on one GPU (TP splits every GEMM)."""
        return layer_gemm_flops(self.hidden_size, self.kv_dim, self.ffn_hidden_size) / tp

    def logit_flops_per_token(self, tp: int = 1) -> float:
        return float(logit_flops(self.hidden_size, self.vocab_size)) / tp

    def attn_flops_per_pair(self, tp: int = 1) -> float:
        """Forward FLOPs of one (query, key) pair in one layer on one GPU: QK^T and PV."""
        heads = max(self.num_attention_heads // tp, 1)
        return float(attn_flops_per_pair(heads * self.head_dim))

    def megatron_args(self) -> list[str]:
        """The model flags of ``scripts/pretrain_gpt.sh MODEL=<name>`` (kept equal by a test)."""
        args = ["--num-layers", self.num_layers, "--hidden-size", self.hidden_size,
                "--num-attention-heads", self.num_attention_heads]
        if self.num_query_groups != self.num_attention_heads:
            args += ["--group-query-attention", "--num-query-groups", self.num_query_groups]
        args += ["--ffn-hidden-size", self.ffn_hidden_size]
        return [str(a) for a in args]


#: 7B and 70B are the LLaMA-2 shapes. The paper does not give its 550M and 30B shapes ("LLaMA-like,
#: layers and dimensions scaled"); ours have that many parameters and head counts that divide the
#: paper's TP sizes.
MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("550m", 24, 1280, 3456, 16, 16),
        ModelSpec("7b", 32, 4096, 11008, 32, 32),
        ModelSpec("30b", 56, 7168, 19200, 56, 8),
        ModelSpec("70b", 80, 8192, 28672, 64, 8),
    )
}


#: Paper Table 1: (model, context) -> (TP, CP, PP, DP). The paper runs interleaved 1F1B but does not
#: say how many chunks; we use 2 per rank.
PAPER_GRID: dict[tuple[str, int], ParallelDims] = {
    ("550m", 65536): ParallelDims(2, 2, 4, 2, 2),
    ("550m", 131072): ParallelDims(2, 4, 4, 1, 2),
    ("7b", 65536): ParallelDims(4, 2, 4, 1, 2),
    ("7b", 131072): ParallelDims(8, 2, 4, 1, 2),
    ("30b", 65536): ParallelDims(8, 2, 4, 1, 2),
    ("30b", 131072): ParallelDims(8, 4, 4, 1, 2),
    ("70b", 65536): ParallelDims(16, 4, 4, 1, 2),
    ("70b", 131072): ParallelDims(16, 4, 4, 1, 2),
}

#: Speed-ups over Plain-4D the paper reports (Fig. 12 text, Fig. 13 ablation on 7B-128K).
PAPER_SPEEDUP = {"average": 1.23, 65536: 1.15, 131072: 1.30, "fixed_vs_plain": 1.03}
PAPER_ABLATION_7B_128K = {"cp-per-doc": 1.02, "cp-adaptive": 1.05, "pp-packing": 1.28, "wlb": 1.33}
