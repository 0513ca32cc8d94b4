"""Hardware profiles for the cluster simulator: GEMM speed, attention-kernel speed, links.

Two kinds of profile:

* ``h100()``: an H100 SXM cluster (8 GPUs per node, NVLink inside, RoCE across) built from public
  peak figures and stated efficiency assumptions. Nothing in it was measured by this project (no
  GPU was available); every number is a named field so a calibrated profile can replace it.
* ``from_calibration(path, model)``: the machine a ``tools/calibrate_cost_model.py`` JSON was
  measured on. A CPU's (gloo links) checks the simulator against measured CPU runs; a GPU's
  (the file names its device) gives that GPU's measured compute with ``h100()``'s links.

Attention kernels answer one question: seconds of forward+backward for one bottom-right-aligned
causal segment of ``q`` queries whose last query sees ``kv`` keys, given the forward FLOPs of one
(query, key) pair on this GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from wlb.cp.shard import causal_pairs, pad_to_tile

#: gloo on one machine (loopback), 2 processes, all_gather, measured on this project's 2-core VM
#: (2026-11-25): 1.07 ms for 4 KB per rank, 3.1 ms for 2 MB, 6.4 ms for 8 MB (~1.3 GB/s).
GLOO_LOOPBACK_LATENCY_S = 1.0e-3
GLOO_LOOPBACK_BW = 1.3e9
#: backward of attention costs about 2.5x its forward (FlashAttention-2 paper), GEMMs 2x.
ATTN_BWD_FACTOR = 2.5
GEMM_BWD_FACTOR = 2.0


@dataclass(frozen=True)
class FlashKernelModel:
    """Analytic FlashAttention-style kernel: tiles of ``tile_q`` query rows, efficiency that rises
    with the query length (the paper's Fig. 10: flat to 128 rows, a jump from 128 to 256 rows when
    Hopper TMA multicast lets thread blocks share K/V tiles) and with the key length (fixed cost
    per tile row).

    Attributes:
        peak_flops: achieved fwd+bwd FLOP/s on long, square causal blocks.
        tile_q: query rows per tile; a segment's queries are padded up to a multiple of it.
        q_eff: (query length, efficiency) knots, interpolated in log2(q); 1.0 at the top.
        kv_half: key length at which the key-length efficiency is 1/2.
        segment_s: fixed seconds per segment (0: one varlen launch runs all segments in
            parallel; the waste of short segments is in the tile padding and ``q_eff``).
    """

    peak_flops: float
    tile_q: int = 128
    q_eff: tuple[tuple[int, float], ...] = ((128, 0.55), (256, 0.85), (512, 0.95), (1024, 1.0))
    kv_half: int = 256
    segment_s: float = 0.0

    def efficiency(self, q: int, kv: int) -> float:
        knots = self.q_eff
        if q <= knots[0][0]:
            e = knots[0][1]
        elif q >= knots[-1][0]:
            e = knots[-1][1]
        else:
            for (q0, e0), (q1, e1) in zip(knots, knots[1:]):
                if q0 <= q <= q1:
                    f = (math.log2(q) - math.log2(q0)) / (math.log2(q1) - math.log2(q0))
                    e = e0 + f * (e1 - e0)
                    break
        return e * kv / (kv + self.kv_half)

    def segment_seconds(self, q: int, kv: int, flops_per_pair: float) -> float:
        qp, kvp = pad_to_tile(q, kv, self.tile_q)
        flops = causal_pairs(qp, kvp) * flops_per_pair * (1 + ATTN_BWD_FACTOR)
        return flops / (self.peak_flops * self.efficiency(qp, kvp)) + self.segment_s


@dataclass(frozen=True)
class CalibratedKernel:
    """Attention as fitted by ``tools/calibrate_cost_model.py``: seconds per pair-FLOP plus a
    fixed cost per segment (the fit's per-document term)."""

    seconds_per_flop: float
    segment_s: float

    def segment_seconds(self, q: int, kv: int, flops_per_pair: float) -> float:
        return causal_pairs(q, kv) * flops_per_pair * self.seconds_per_flop + self.segment_s


@dataclass(frozen=True)
class CurveKernel:
    """Attention time as a measured curve of causal pairs (log-log interpolation between the
    points, proportional beyond them), for kernels whose cost is not exactly quadratic (CPU
    caches). Points come from single-document micro-batches of a calibration, less the fitted
    linear part.

    Attributes:
        pairs: increasing pair counts of the measured points.
        seconds: fwd+bwd seconds of one layer at those pair counts.
        flops_per_pair: the FLOPs per pair of the model the points were measured with.
        segment_s: fixed seconds per segment (the fit's per-document term, which was taken out
            of the points).
    """

    pairs: tuple[float, ...]
    seconds: tuple[float, ...]
    flops_per_pair: float
    segment_s: float = 0.0

    def segment_seconds(self, q: int, kv: int, flops_per_pair: float) -> float:
        x = float(causal_pairs(q, kv))
        if x <= 0:
            return 0.0
        xs, ys = self.pairs, self.seconds
        if x <= xs[0]:
            y = ys[0] * x / xs[0]
        elif x >= xs[-1]:
            y = ys[-1] * x / xs[-1]
        else:
            i = next(k for k in range(1, len(xs)) if xs[k] >= x)
            f = (math.log(x) - math.log(xs[i - 1])) / (math.log(xs[i]) - math.log(xs[i - 1]))
            y = math.exp(math.log(ys[i - 1]) + f * (math.log(ys[i]) - math.log(ys[i - 1])))
        return y * flops_per_pair / self.flops_per_pair + self.segment_s


@dataclass(frozen=True)
class Hardware:
    """What one GPU (or CPU process) and its links can do.

    Attributes:
        name: label printed with results.
        gemm_flops: achieved FLOP/s of the transformer GEMMs (forward and backward alike).
        attention: attention kernel model (``segment_seconds(q, kv, flops_per_pair)``).
        gpus_per_node: ranks per node; inner parallel dims (TP, then CP) fill a node first.
        intra_bw, inter_bw: bytes/s one rank moves in a ring collective inside / across nodes.
        link_latency_s: fixed cost of one collective or point-to-point transfer.
        comm_exposed: fraction of TP/CP collective time not hidden behind compute.
        dp_exposed: fraction of the data-parallel gradient sync not hidden behind the backward.
        layer_overhead_s: fixed seconds per layer and micro-batch (kernel launches), fwd+bwd.
        microbatch_overhead_s: fixed seconds per micro-batch and stage (data, schedule), fwd+bwd.
        step_s: optimizer step and other per-iteration fixed time.
        bytes_per_elem: activation / gradient element size (2 for bf16, 4 for fp32).
        source: where the numbers came from.
    """

    name: str
    gemm_flops: float
    attention: FlashKernelModel | CalibratedKernel | CurveKernel
    gpus_per_node: int = 8
    intra_bw: float = 360e9
    inter_bw: float = 40e9
    link_latency_s: float = 10e-6
    comm_exposed: float = 0.3
    dp_exposed: float = 0.2
    layer_overhead_s: float = 50e-6
    microbatch_overhead_s: float = 0.0
    step_s: float = 0.0
    bytes_per_elem: int = 2
    source: str = "assumed"

    def link_bw(self, span: int) -> float:
        """Bandwidth of a group whose ranks are ``span`` consecutive ranks apart in total."""
        return self.intra_bw if span <= self.gpus_per_node else self.inter_bw


def h100() -> Hardware:
    """H100 SXM 80GB, bf16, 8 per node with NVLink, RoCE 400 Gb/s per GPU (paper §7.1).

    Assumptions (public peak figures, not measured here): dense bf16 peak 989 TFLOP/s; GEMMs reach
    55% of it; FlashAttention fwd+bwd on long causal blocks reaches 450 TFLOP/s; NVLink ring
    bandwidth 360 GB/s per GPU, RoCE 40 GB/s per GPU; 30% of TP/CP collectives exposed (the paper's
    stack overlaps them with compute), 20% of the FSDP sync exposed.
    """
    return Hardware(
        name="h100-assumed",
        gemm_flops=0.55 * 989e12,
        attention=FlashKernelModel(peak_flops=450e12),
        source="public peak figures and stated efficiency assumptions (not measured)",
    )


def _merge_calibrations(paths: list[str]) -> dict:
    """The mean of several calibrations of the same model (fit, step time and every sample)."""
    datas = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            datas.append(json.load(f))
    out = dict(datas[0])
    bad = [p for p, d in zip(paths, datas) if not d.get("fit_ms")]
    if bad:
        raise ValueError(f"calibration file(s) {bad} have no 'fit_ms' (re-run the calibration)")
    out["fit_ms"] = {k: sum(d["fit_ms"].get(k, 0.0) for d in datas) / len(datas)
                     for k in datas[0]["fit_ms"]}
    out["step_ms"] = sum(d.get("step_ms", 0.0) for d in datas) / len(datas)
    groups: dict[tuple, list[float]] = {}
    for d in datas:
        for smp in d.get("samples", []):
            groups.setdefault(tuple(smp["doc_lens"]), []).append(smp["ms"])
    out["samples"] = [{"doc_lens": list(k), "ms": sum(v) / len(v)} for k, v in groups.items()
                      if len(v) == len(datas)]
    return out


def _calibrated_model(data: dict, model):
    """The model a calibration timed (its file's ``model`` entry), else ``model``."""
    from wlb.sim.model import ModelSpec

    m = data.get("model")
    if not m:
        return model
    heads = m["num_attention_heads"]
    return ModelSpec("calibrated", m["num_layers"], m["hidden_size"], m["ffn_hidden_size"],
                     heads, m.get("num_query_groups") or heads,
                     m.get("padded_vocab_size", model.vocab_size))


def from_calibration(path: str | list[str], model) -> Hardware:
    """The profile of the machine a ``tools/calibrate_cost_model.py`` JSON was measured on (or
    the mean of several such files, to average out timing noise), to simulate ``model``.

    The calibration times fwd+bwd of a whole model in one process and fits
    ``t = A*sum(d^2) + B*sum(d) + C*docs + t0`` (milliseconds). Per layer that is ``A/L`` per
    d^2 of attention (= 2 pairs), ``B/L`` per token of GEMM work, ``C/L`` per segment and ``t0``
    per micro-batch, L and the FLOPs counted on the model the file says it timed (``model``
    for files that do not say), so that the achieved FLOP/s carry over to ``model``. When the
    file holds the measured samples, attention follows the measured single-document curve
    instead of ``A`` (:class:`CurveKernel`): on a CPU its cost per pair grows with the working
    set, which one quadratic coefficient cannot follow.

    Links: a CPU file's come from its ``links`` entry when present, else loopback-gloo
    defaults, all exposed. A GPU file's (its ``device`` names a GPU) are ``h100()``'s assumed
    NVLink/RoCE figures and overlap, with no optimizer-step time, as there: only the compute
    is measured.
    """
    paths = [path] if isinstance(path, str) else list(path)
    data = _merge_calibrations(paths)
    fit = data["fit_ms"]
    cal = _calibrated_model(data, model)
    layers = cal.num_layers
    per_token = cal.linear_flops_per_token() + cal.logit_flops_per_token() / layers
    lin_s = fit["linear_ms_per_token"] * 1e-3 / layers
    gemm_flops = per_token * (1 + GEMM_BWD_FACTOR) / lin_s if lin_s > 0 else 1e30
    pair_flops = cal.attn_flops_per_pair()
    attn_s_per_pair = 2.0 * fit["attn_ms_per_d2"] * 1e-3 / layers
    kernel: CalibratedKernel | CurveKernel = CalibratedKernel(
        attn_s_per_pair / pair_flops, fit["doc_ms"] * 1e-3 / layers)
    curve = _attention_curve(data.get("samples", []), fit, layers)
    if curve is not None:
        kernel = CurveKernel(curve[0], curve[1], pair_flops, fit["doc_ms"] * 1e-3 / layers)
    device = data.get("device", "cpu")
    if device != "cpu":
        return replace(h100(), name=f"{device}-calibrated", gemm_flops=gemm_flops,
                       attention=kernel, layer_overhead_s=0.0,
                       microbatch_overhead_s=fit.get("microbatch_ms", 0.0) * 1e-3,
                       source=f"calibrated compute: {', '.join(paths)}; links as h100()")
    links = data.get("links", {})
    return Hardware(
        name=f"cpu-calibrated({data.get('machine', 'this machine')})",
        gemm_flops=gemm_flops,
        attention=kernel,
        gpus_per_node=10**6,
        intra_bw=float(links.get("bw_bytes_per_s", GLOO_LOOPBACK_BW)),
        inter_bw=float(links.get("bw_bytes_per_s", GLOO_LOOPBACK_BW)),
        link_latency_s=float(links.get("latency_s", GLOO_LOOPBACK_LATENCY_S)),
        comm_exposed=1.0,
        dp_exposed=1.0,
        layer_overhead_s=0.0,
        microbatch_overhead_s=fit.get("microbatch_ms", 0.0) * 1e-3,
        step_s=float(data.get("step_ms", 0.0)) * 1e-3,
        bytes_per_elem=4,
        source=f"calibrated: {', '.join(paths)}",
    )


def _attention_curve(samples: list, fit: dict, layers: int):
    """(pairs, seconds per layer) of the calibration's single-document samples with the fitted
    linear, per-document and per-micro-batch parts removed; None when fewer than 3 points."""
    pts = []
    for smp in samples:
        n, d = smp["doc_lens"]
        if n != 1:
            continue
        rest = fit["linear_ms_per_token"] * d + fit["doc_ms"] + fit.get("microbatch_ms", 0.0)
        attn_ms = smp["ms"] - rest
        if attn_ms > 0:
            pts.append((d * (d + 1) / 2, attn_ms * 1e-3 / layers))
    pts.sort()
    if len(pts) < 3:
        return None
    return tuple(p for p, _ in pts), tuple(s for _, s in pts)
