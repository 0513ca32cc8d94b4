"""Megatron-LM flags from users' scripts that mean nothing here, or cannot work here.

A Megatron script's flags run unchanged: the flags with a meaning here are ordinary flags of
``wlb.training.arguments``; the ones below are accepted with one info line each (``NO_OPS``) or
refused with one line that says why (``REFUSED``); any other flag is refused as "not supported
yet" by the parser. ``docs/flags.md`` lists all three (``python -m tools.flag_table``).
"""

from __future__ import annotations

import argparse

#: flag -> why it changes nothing here (accepted; the run prints one info line per flag given)
NO_OPS: dict[str, str] = {
    "--use-mcore-models": "the model is always megatron-core's GPTModel",
    "--no-masked-softmax-fusion": "attention is WLB's CP attention, which uses no masked softmax "
                                  "kernel",
    "--no-rope-fusion": "RoPE is applied per document inside WLB's attention, never fused",
    "--use-rotary-position-embeddings": "RoPE is the default (--position-embedding-type rope)",
    "--no-position-embedding": "no learned absolute position embedding is ever built",
    "--no-gradient-accumulation-fusion": "megatron-core's local layers here do not fuse "
                                         "gradient accumulation",
    "--no-bias-swiglu-fusion": "the local layers do not fuse bias and SwiGLU",
    "--no-bias-dropout-fusion": "the local layers do not fuse bias and dropout",
    "--use-flash-attn": None,  # not a no-op: maps to --attention-backend flash (see resolve)
}

#: flag (or "flag value") -> why it cannot run here
REFUSED: dict[str, str] = {
    "--fp8-format": "fp8 needs TransformerEngine's fp8 layers on a Hopper-class GPU; the layers "
                    "here are megatron-core's local ones (use --bf16)",
    "--fp16": "fp16 with loss scaling is not supported; use --bf16",
    "--use-rope-scaling": "Llama-3.1 RoPE frequency scaling is not supported yet",
    "--transformer-impl transformer_engine": "the layers are megatron-core's local spec; TE's "
                                             "attention kernel is --attention-backend te",
    "--moe-router-topk": "mixture-of-experts layers are not supported yet",
    "--num-experts": "mixture-of-experts layers are not supported yet",
}

#: Megatron's --attention-backend names -> ours (its "flash" and "auto" mean ours too)
ATTENTION_BACKEND_ALIASES = {"fused": "te", "unfused": "torch", "local": "torch"}

#: one line per Megatron flag whose meaning here is Megatron's own (the parser's help)
MEANINGS: dict[str, str] = {
    "--num-layers": "transformer layers", "--hidden-size": "model width",
    "--num-attention-heads": "attention heads",
    "--position-embedding-type": "rope (per document) or none",
    "--rotary-base": "RoPE base (Llama-3: 500000)", "--normalization": "LayerNorm or RMSNorm",
    "--swiglu": "gated SiLU MLP (else GeLU)", "--disable-bias-linear": "no linear biases",
    "--untie-embeddings-and-output-weights": "a separate output layer",
    "--hidden-dropout": "dropout after attention and MLP",
    "--attention-dropout": "must be 0 (WLB's CP attention has no dropout)",
    "--init-method-std": "std of the normal weight init (output layers scaled by depth)",
    "--make-vocab-size-divisible-by": "pad the vocabulary to a multiple of this",
    "--recompute-granularity": "full activation recomputation",
    "--bf16": "bf16 parameters and megatron's bf16 optimizer",
    "--tensor-model-parallel-size": "TP", "--pipeline-model-parallel-size": "PP",
    "--num-layers-per-virtual-pipeline-stage": "interleaved 1F1B (VPP) chunk size",
    "--context-parallel-size": "CP", "--sequence-parallel": "Megatron's sequence parallelism",
    "--use-distributed-optimizer": "megatron's distributed (ZeRO-1) optimizer",
    "--overlap-grad-reduce": "overlap the DP gradient reduce with the backward",
    "--train-iters": "iterations to train", "--seed": "every seed (init, data order, tuning)",
    "--lr": "peak learning rate", "--min-lr": "learning rate at the end of the decay",
    "--lr-warmup-iters": "linear warm-up iterations", "--lr-decay-style": "LR decay shape",
    "--weight-decay": "decoupled weight decay", "--adam-beta1": "Adam beta1",
    "--adam-beta2": "Adam beta2", "--adam-eps": "Adam epsilon",
    "--clip-grad": "global gradient-norm clip", "--mock-num-docs": "mock documents to draw",
    "--mock-length-scale": "multiply the sampled mock lengths by this",
    "--log-interval": "console line every this many iterations",
    "--tensorboard-dir": "TensorBoard scalars (needs tensorboard)",
}


def describe(p: argparse.ArgumentParser) -> None:
    """Give every Megatron flag without its own help its one-line meaning."""
    for a in p._actions:
        if not a.help and a.option_strings and a.option_strings[0] in MEANINGS:
            a.help = MEANINGS[a.option_strings[0]]


_VALUE_FLAGS = {"--fp8-format": str, "--moe-router-topk": int, "--num-experts": int}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The no-op and refused Megatron flags (help says which)."""
    g = p.add_argument_group("Megatron compatibility (no effect here, or refused)")
    for flag, why in NO_OPS.items():
        if flag == "--use-flash-attn":
            g.add_argument(flag, action="store_true",
                           help="Megatron's flag: same as --attention-backend flash")
        else:
            g.add_argument(flag, action="store_true", help=f"no effect: {why}")
    for flag, kind in _VALUE_FLAGS.items():
        g.add_argument(flag, type=kind, default=None, help=f"refused: {REFUSED[flag]}")
    for flag in ("--fp16", "--use-rope-scaling"):
        g.add_argument(flag, action="store_true", help=f"refused: {REFUSED[flag]}")
    g.add_argument("--transformer-impl", choices=["local", "transformer_engine"], default=None,
                   help="'local' (the only one here); transformer_engine is refused: "
                   f"{REFUSED['--transformer-impl transformer_engine']}")


def dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


#: destinations of these flags: consumed by :func:`resolve`, not part of the run's config
COMPAT_DESTS = {dest(f) for f in (*NO_OPS, *_VALUE_FLAGS, "--fp16", "--use-rope-scaling",
                                  "--transformer-impl")}


def resolve(args: argparse.Namespace) -> list[str]:
    """Apply the compatible flags to ``args`` in place; return the info lines of the no-ops given.

    Raises:
        ValueError: a refused flag was given (the message names it and says why).
    """
    for flag in (*_VALUE_FLAGS, "--fp16", "--use-rope-scaling"):
        value = getattr(args, dest(flag))
        if value not in (None, False):
            raise ValueError(f"{flag}: {REFUSED[flag]}")
    if args.transformer_impl == "transformer_engine":
        raise ValueError(f"--transformer-impl transformer_engine: "
                         f"{REFUSED['--transformer-impl transformer_engine']}")
    if args.use_flash_attn:
        if args.attention_backend not in ("auto", "flash"):
            raise ValueError(f"--use-flash-attn contradicts --attention-backend "
                             f"{args.attention_backend}")
        args.attention_backend = "flash"
    args.attention_backend = ATTENTION_BACKEND_ALIASES.get(args.attention_backend,
                                                           args.attention_backend)
    notes = [f"{flag}: no effect here ({why})" for flag, why in NO_OPS.items()
             if why and getattr(args, dest(flag))]
    if args.transformer_impl == "local":
        notes.append("--transformer-impl local: no effect here (the layers are always "
                     "megatron-core's local spec)")
    if args.use_flash_attn:
        notes.append("--use-flash-attn: attention backend 'flash' (flash-attn)")
    return notes
