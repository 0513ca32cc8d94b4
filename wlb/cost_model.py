"""Per-document workload model: quadratic attention plus linear everything-else.

``W(d) = attn_coef * d**2 + linear_coef * d + doc_coef`` for a document of ``d`` tokens under a
causal document mask. A micro-batch costs the sum over its documents (paper §4.1, Eq. 2).

Three sources of coefficients:
    (a) analytic FLOPs from model dimensions (:meth:`CostModel.from_flops`),
    (b) explicit coefficients (the constructor),
    (c) a calibration JSON written by a profiling tool (:meth:`CostModel.from_json`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

# LLaMA-7B (hidden 4096, ffn 11008, SwiGLU, MHA): linear FLOPs per token / attention FLOPs per d^2.
LLAMA7B_LINEAR_PER_ATTN = 49408.0


def layer_gemm_flops(hidden_size: int, kv_dim: int, ffn_hidden_size: int,
                     swiglu: bool = True) -> int:
    """Forward GEMM FLOPs of one transformer layer for one token (the one FLOP formula, shared by
    :meth:`CostModel.from_flops` and the cluster simulator's ``ModelSpec``).

    QKV projection ``2*h*(h + 2*kv)``, output projection ``2*h*h``, MLP ``2*h*ffn*(3 if swiglu
    else 2)``. Example: LLaMA-7B (h=4096, kv=4096, ffn=11008) -> 404,750,336.
    """
    h = hidden_size
    mlp_mats = 3 if swiglu else 2
    return 2 * h * (h + 2 * kv_dim) + 2 * h * h + 2 * h * ffn_hidden_size * mlp_mats


def attn_flops_per_pair(hidden_size: int) -> int:
    """Forward FLOPs of one (query, key) pair in one layer: ``QK^T`` and ``PV``, ``4*h``."""
    return 4 * hidden_size


def logit_flops(hidden_size: int, vocab_size: int) -> int:
    """Forward FLOPs of the output-logit GEMM for one token, ``2*h*V``."""
    return 2 * hidden_size * vocab_size


class CostModelError(ValueError):
    """A cost model with missing, negative or non-finite coefficients."""


@dataclass(frozen=True)
class CostModel:
    """Workload of a document as a function of its length (arbitrary but consistent units).

    Attributes:
        attn_coef: coefficient of d**2 (causal document-masked attention, fwd+bwd).
        linear_coef: coefficient of d (GEMMs, collectives, element-wise ops).
        doc_coef: constant per document (kernel launch and per-call overheads); 0 by default.
        source: where the coefficients came from (informational).
    """

    attn_coef: float
    linear_coef: float
    doc_coef: float = 0.0
    source: str = "explicit"

    def __post_init__(self) -> None:
        for name in ("attn_coef", "linear_coef", "doc_coef"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise CostModelError(f"cost model {name}={value!r} is not a number")
            if not math.isfinite(value) or value < 0:
                raise CostModelError(f"cost model {name}={value!r} must be finite and >= 0")
        if self.attn_coef == 0 and self.linear_coef == 0:
            raise CostModelError("cost model has attn_coef=0 and linear_coef=0: every doc costs 0")

    # ---- evaluation -------------------------------------------------------------------------
    def doc_workload(self, length: int) -> float:
        """Workload of one document (scalar fast path, used inside packers)."""
        return self.attn_coef * length * length + self.linear_coef * length + self.doc_coef

    def workloads(self, lengths: Iterable[int] | np.ndarray) -> np.ndarray:
        """Vectorised per-document workloads, float64 array of the same length."""
        d = np.asarray(lengths, dtype=np.float64)
        return self.attn_coef * d * d + self.linear_coef * d + self.doc_coef

    def attention(self, lengths: Iterable[int] | np.ndarray) -> float:
        """Summed attention part of a set of documents."""
        d = np.asarray(lengths, dtype=np.float64)
        return float(self.attn_coef * np.dot(d, d))

    def total(self, lengths: Iterable[int] | np.ndarray) -> float:
        """Workload of a micro-batch holding these documents."""
        return float(self.workloads(lengths).sum())

    def crossover_length(self) -> float:
        """Document length at which attention equals the linear part (inf if attn_coef is 0)."""
        return math.inf if self.attn_coef == 0 else self.linear_coef / self.attn_coef

    # ---- constructors -----------------------------------------------------------------------
    @classmethod
    def default(cls) -> CostModel:
        """LLaMA-7B FLOP ratio, normalised so the linear coefficient is 1: W = d^2/49408 + d."""
        return cls(1.0 / LLAMA7B_LINEAR_PER_ATTN, 1.0, 0.0, source="default-llama7b-flops")

    @classmethod
    def from_flops(
        cls,
        *,
        num_layers: int,
        hidden_size: int,
        ffn_hidden_size: int,
        num_attention_heads: int,
        num_query_groups: int | None = None,
        vocab_size: int = 0,
        swiglu: bool = True,
        tensor_parallel_size: int = 1,
        context_parallel_size: int = 1,
        normalize: bool = True,
        num_experts: int = 0,
        moe_router_topk: int = 1,
        moe_ffn_hidden_size: int | None = None,
    ) -> CostModel:
        """Analytic forward FLOPs per GPU (backward is ~2x both parts, so ratios are unchanged).

        Per layer and token: :func:`layer_gemm_flops` (QKV ``2*h*(h + 2*kv)``, output ``2*h*h``,
        MLP ``2*h*ffn*(3 if swiglu else 2)``); attention ``4*h`` FLOPs per (query, key) pair
        (:func:`attn_flops_per_pair`) and a causal
        document of length d has ``d*(d+1)/2`` pairs, so attn = ``2*h*d^2 + 2*h*d``. TP divides
        everything; CP divides the per-document work (each CP rank holds 1/CP of the tokens).

        Args:
            num_layers, hidden_size, ffn_hidden_size, num_attention_heads: model dimensions.
            num_query_groups: K/V heads for GQA (defaults to num_attention_heads).
            vocab_size: adds the output-logit GEMM ``2*h*V`` per token when > 0.
            swiglu: gated MLP (3 matrices) vs plain (2).
            tensor_parallel_size, context_parallel_size: split of the work per GPU.
            normalize: scale so that linear_coef == 1 (keeps numbers readable).
            num_experts, moe_router_topk, moe_ffn_hidden_size: a mixture-of-experts MLP in every
                layer (``num_experts`` > 0): each token runs ``moe_router_topk`` experts of
                ``moe_ffn_hidden_size`` (default ``ffn_hidden_size``) and the router's
                ``2*h*num_experts``. Expert parallelism moves tokens, not work: each rank still
                computes about its own tokens' share.

        Returns:
            A CostModel whose coefficients are FLOPs (or FLOPs / linear FLOPs when normalised).
        """
        dims = dict(L=num_layers, h=hidden_size, ffn=ffn_hidden_size, heads=num_attention_heads)
        for k, v in dims.items():
            if not isinstance(v, int) or v <= 0:
                raise CostModelError(f"from_flops: {k}={v!r} must be a positive int")
        groups = num_query_groups or num_attention_heads
        if num_attention_heads % groups:
            raise CostModelError(
                f"num_attention_heads={num_attention_heads} not divisible by "
                f"num_query_groups={groups}"
            )
        h = hidden_size
        kv = h // num_attention_heads * groups
        if num_experts:
            ffn = moe_router_topk * (moe_ffn_hidden_size or ffn_hidden_size)
            lin_layer = layer_gemm_flops(h, kv, ffn, swiglu) + 2 * h * num_experts
        else:
            lin_layer = layer_gemm_flops(h, kv, ffn_hidden_size, swiglu)
        attn_pair = attn_flops_per_pair(h)
        linear = num_layers * (lin_layer + attn_pair / 2) + logit_flops(h, vocab_size)
        attn = num_layers * attn_pair / 2
        split = tensor_parallel_size * context_parallel_size
        linear, attn = linear / split, attn / split
        if normalize:
            attn, linear = attn / linear, 1.0
        return cls(attn, linear, 0.0, source="flops")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> CostModel:
        """Load ``{"attn_coef": .., "linear_coef": .., "doc_coef": ..}`` (a calibration file).

        Other keys (fit error, kernel tables, machine) are ignored here. Raises CostModelError
        naming the file and the bad or missing key.
        """
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError as e:
            raise CostModelError(f"cost model file {str(path)!r} not found") from e
        except json.JSONDecodeError as e:
            raise CostModelError(f"cost model file {str(path)!r} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise CostModelError(f"cost model file {str(path)!r} must hold a JSON object")
        missing = [k for k in ("attn_coef", "linear_coef") if k not in data]
        if missing:
            raise CostModelError(f"cost model file {str(path)!r} lacks key(s) {missing}")
        try:
            return cls(
                data["attn_coef"],
                data["linear_coef"],
                data.get("doc_coef", 0.0),
                source=f"json:{os.path.basename(str(path))}",
            )
        except CostModelError as e:
            raise CostModelError(f"cost model file {str(path)!r}: {e}") from e

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | os.PathLike, **extra) -> None:
        """Write the coefficients (plus any extra keys) atomically."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**self.to_dict(), **extra}, f, indent=2)
        os.replace(tmp, path)


def kernel_revision(path: str | os.PathLike) -> int:
    """The ``torch`` kernel revision a calibration file was measured on (its
    ``torch_kernel_revision``; files without one predate revision 2, so 1). Compare it with
    ``wlb.cp.torch_kernel.REVISION``."""
    with open(path, encoding="utf-8") as f:
        return int(json.load(f).get("torch_kernel_revision", 1))
