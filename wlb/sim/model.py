"""Model shapes and 4D layouts the cluster simulator knows, including the paper's Table 1 grid."""

from __future__ import annotations

from dataclasses import dataclass


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
        h = self.hidden_size
        gemm = 2 * h * (h + 2 * self.kv_dim) + 2 * h * h + 2 * 3 * h * self.ffn_hidden_size
        return gemm / tp

    def logit_flops_per_token(self, tp: int = 1) -> float:
        return 2.0 * self.hidden_size * self.vocab_size / tp

    def attn_flops_per_pair(self, tp: int = 1) -> float:
        """Forward FLOPs of one (query, key) pair in one layer on one GPU: QK^T and PV."""
        heads = max(self.num_attention_heads // tp, 1)
        return 4.0 * heads * self.head_dim

    def megatron_args(self) -> list[str]:
        """The model flags of ``scripts/pretrain_gpt.sh MODEL=<name>`` (kept equal by a test)."""
        args = ["--num-layers", self.num_layers, "--hidden-size", self.hidden_size,
                "--num-attention-heads", self.num_attention_heads]
        if self.num_query_groups != self.num_attention_heads:
            args += ["--num-query-groups", self.num_query_groups]
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


@dataclass(frozen=True)
class Layout:
    """4D layout of one simulated job (global batch = pp * dp sequences, as in the paper §7.1)."""

    tp: int
    cp: int
    pp: int
    dp: int
    vpp: int = 1

    def __post_init__(self) -> None:
        for k in ("tp", "cp", "pp", "dp", "vpp"):
            if getattr(self, k) < 1:
                raise ValueError(f"layout {k}={getattr(self, k)} must be >= 1")

    @property
    def world(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def describe(self) -> str:
        v = f" vpp={self.vpp}" if self.vpp > 1 else ""
        return f"TP{self.tp} CP{self.cp} PP{self.pp} DP{self.dp}{v}"


#: Paper Table 1: (model, context) -> (TP, CP, PP, DP). The paper runs interleaved 1F1B but does not
#: say how many chunks; we use 2 per rank.
PAPER_GRID: dict[tuple[str, int], Layout] = {
    ("550m", 65536): Layout(2, 2, 4, 2, 2),
    ("550m", 131072): Layout(2, 4, 4, 1, 2),
    ("7b", 65536): Layout(4, 2, 4, 1, 2),
    ("7b", 131072): Layout(8, 2, 4, 1, 2),
    ("30b", 65536): Layout(8, 2, 4, 1, 2),
    ("30b", 131072): Layout(8, 4, 4, 1, 2),
    ("70b", 65536): Layout(16, 4, 4, 1, 2),
    ("70b", 131072): Layout(16, 4, 4, 1, 2),
}

#: Speed-ups over Plain-4D the paper reports (Fig. 12 text, Fig. 13 ablation on 7B-128K).
PAPER_SPEEDUP = {"average": 1.23, 65536: 1.15, 131072: 1.30, "fixed_vs_plain": 1.03}
PAPER_ABLATION_7B_128K = {"cp-per-doc": 1.02, "cp-adaptive": 1.05, "pp-packing": 1.28, "wlb": 1.33}
