"""Megatron-style command line (megatron's own flag names and meanings) plus the --wlb-* group.

:func:`parse` turns a command line into the run's typed :class:`wlb.run_config.RunConfig`, once.
"""

from __future__ import annotations

import argparse
import os
import sys

from wlb.config import WLBConfig
from wlb.cp.kernels import BACKENDS
from wlb.packing.base import default_max_tokens
from wlb.run_config import RunConfig


class ArgumentError(ValueError):
    """A flag combination that cannot run (the message names the flags and values)."""


#: seconds the other local ranks wait before exiting on an error, so that torchrun, which stops
#: every worker at the first exit, does not stop local rank 0 before it has said why
QUIET_RANK_EXIT_DELAY_S = 3.0


def say_once(line: str) -> None:
    """Print one error line from local rank 0 only (every rank fails the same way); the other
    ranks wait a moment instead, so that rank 0 gets to print it under torchrun."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)
    else:
        import time

        time.sleep(QUIET_RANK_EXIT_DELAY_S)


class _OneLineParser(argparse.ArgumentParser):
    """An unknown flag or bad choice is one line (no usage block) from local rank 0, exit 2."""

    def error(self, message: str):
        say_once(f"{self.prog}: error: {message}")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        description="Train a GPT with megatron-core and WLB-LLM workload balancing.",
        allow_abbrev=False,
    )
    g = p.add_argument_group("model")
    g.add_argument("--num-layers", type=int, default=4)
    g.add_argument("--hidden-size", type=int, default=128)
    g.add_argument("--ffn-hidden-size", type=int, default=None, help="default 4 x hidden")
    g.add_argument("--num-attention-heads", type=int, default=4)
    g.add_argument("--num-query-groups", type=int, default=None, help="GQA groups (default: MHA)")
    g.add_argument("--seq-length", type=int, default=2048, help="context length (tokens)")
    g.add_argument("--max-position-embeddings", type=int, default=None,
                   help="largest position the model is built for; --seq-length and WLB "
                   "micro-batches (--wlb-max-tokens) above it are refused")
    g.add_argument("--position-embedding-type", choices=["rope", "none"], default="rope")
    g.add_argument("--rotary-base", type=float, default=10000.0)
    g.add_argument("--normalization", choices=["LayerNorm", "RMSNorm"], default="RMSNorm")
    g.add_argument("--swiglu", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--disable-bias-linear", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--untie-embeddings-and-output-weights", action="store_true")
    g.add_argument("--hidden-dropout", type=float, default=0.0)
    g.add_argument("--attention-dropout", type=float, default=0.0)
    g.add_argument("--init-method-std", type=float, default=0.02)
    g.add_argument("--make-vocab-size-divisible-by", type=int, default=128)
    g.add_argument("--vocab-size", type=int, default=None,
                   help="with --mock-data (default 256); indexed data reads its .meta.json")
    g.add_argument("--recompute-granularity", choices=["full"], default=None)
    g.add_argument("--bf16", action="store_true")
    g.add_argument("--attention-backend", choices=BACKENDS, default="auto",
                   help="attention kernel of CP attention: 'torch' (SDPA per document segment; "
                   "CPU/GPU), 'varlen' (PyTorch's FlashAttention-2 varlen), 'flash' (flash-attn "
                   ">= 2.1), 'te' (TransformerEngine); 'auto' (default): the first installed of "
                   "flash, te, varlen on GPU with --bf16, else torch")

    g = p.add_argument_group("parallelism")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1)
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    g.add_argument("--num-layers-per-virtual-pipeline-stage", type=int, default=None)
    g.add_argument("--context-parallel-size", type=int, default=1)
    g.add_argument("--sequence-parallel", action="store_true")
    g.add_argument("--use-distributed-optimizer", action="store_true")
    g.add_argument("--overlap-grad-reduce", action="store_true")
    g.add_argument("--distributed-backend", choices=["nccl", "gloo"], default=None,
                   help="default: nccl with CUDA, else gloo")

    g = p.add_argument_group("training")
    g.add_argument("--micro-batch-size", type=int, default=1,
                   help="must be 1: a micro-batch is one packed (THD) sequence")
    g.add_argument("--global-batch-size", type=int, default=8,
                   help="micro-batches (packed sequences) per iteration over all DP ranks")
    g.add_argument("--train-iters", type=int, default=10)
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--lr", type=float, default=3e-4)
    g.add_argument("--min-lr", type=float, default=3e-5)
    g.add_argument("--lr-warmup-iters", type=int, default=0)
    g.add_argument("--lr-decay-iters", type=int, default=None, help="default --train-iters")
    g.add_argument("--lr-decay-style", default="cosine",
                   choices=["constant", "linear", "cosine", "inverse-square-root"])
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--adam-beta1", type=float, default=0.9)
    g.add_argument("--adam-beta2", type=float, default=0.95)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--clip-grad", type=float, default=1.0)
    g.add_argument("--override-opt-param-scheduler", action="store_true",
                   help="on --load, use this run's LR schedule flags, not the checkpoint's")
    g.add_argument("--use-checkpoint-opt-param-scheduler", action="store_true",
                   help="on --load, use the checkpoint's LR schedule, not this run's flags")

    g = p.add_argument_group("data")
    g.add_argument("--data-path", default=None, help="prefix of a .bin/.idx dataset")
    g.add_argument("--mock-data", action="store_true",
                   help="synthetic documents with lengths drawn from --mock-length-sample")
    g.add_argument("--mock-length-sample", default=None,
                   help="JSON list of document lengths (default: data/doc_lengths/"
                        "doc_lengths_wlbllm.json)")
    g.add_argument("--mock-num-docs", type=int, default=20000)
    g.add_argument("--mock-length-scale", type=float, default=1.0 / 16)
    g.add_argument("--split", default="100,0,0",
                   help="train,valid,test document split (only the train part is used yet)")

    g = p.add_argument_group("checkpointing and logging")
    g.add_argument("--save", default=None)
    g.add_argument("--load", default=None)
    g.add_argument("--save-interval", type=int, default=None)
    g.add_argument("--log-interval", type=int, default=1)
    g.add_argument("--log-json", default=None, help="append one JSON object per iteration")
    g.add_argument("--log-plans", default=None,
                   help="append each iteration's consumed/trained/pending pieces (JSON lines)")
    g.add_argument("--tensorboard-dir", default=None)
    g.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    g.add_argument("--preflight-only", action="store_true",
                   help="check flags, layout (for $WORLD_SIZE processes), data files and the "
                   "--load checkpoint, then exit without building anything (the launcher runs "
                   "this before torchrun)")
    WLBConfig.add_arguments(p)
    return p


def validate(args: argparse.Namespace) -> None:
    """Reject combinations megatron would mis-run; fills derived defaults in place."""
    if args.micro_batch_size != 1:
        raise ArgumentError(
            f"--micro-batch-size={args.micro_batch_size}: WLB trains packed THD micro-batches, "
            "one packed sequence each; set --micro-batch-size 1 and size them with --seq-length"
        )
    if (args.data_path is None) == (not args.mock_data):
        raise ArgumentError("give exactly one of --data-path PREFIX and --mock-data")
    for name in ("train_iters", "num_layers", "hidden_size", "seq_length", "global_batch_size"):
        if getattr(args, name) <= 0:
            raise ArgumentError(f"--{name.replace('_', '-')}={getattr(args, name)} must be > 0")
    if args.hidden_size % args.num_attention_heads:
        raise ArgumentError(f"--hidden-size={args.hidden_size} is not divisible by "
                            f"--num-attention-heads={args.num_attention_heads}")
    if args.save_interval is not None and args.save_interval <= 0:
        raise ArgumentError(f"--save-interval={args.save_interval} must be > 0")
    if args.save_interval and not args.save:
        raise ArgumentError("--save-interval needs --save DIR")
    if args.attention_dropout:
        raise ArgumentError(f"--attention-dropout={args.attention_dropout}: WLB CP attention "
                            "has no dropout; use 0")
    try:
        split = [float(x) for x in args.split.split(",")]
    except ValueError:
        raise ArgumentError(f"--split={args.split!r}: expected numbers like 969,30,1") from None
    if len(split) != 3 or min(split) < 0 or split[0] <= 0:
        raise ArgumentError(f"--split={args.split!r}: need 3 non-negative weights, train > 0")
    args.split_weights = split
    mpe = args.max_position_embeddings
    if mpe is not None and mpe <= 0:
        raise ArgumentError(f"--max-position-embeddings={mpe} must be > 0")
    if mpe is not None and args.seq_length > mpe:
        raise ArgumentError(f"--seq-length={args.seq_length} is above "
                            f"--max-position-embeddings={mpe}")
    if args.wlb_packing.startswith("wlb"):
        cap = args.wlb_max_tokens or default_max_tokens(args.seq_length)
        if cap < args.seq_length:
            raise ArgumentError(f"--wlb-max-tokens={cap} is below --seq-length="
                                f"{args.seq_length}: a WLB micro-batch must hold a stock one")
        if mpe is not None and cap > mpe:
            raise ArgumentError(
                f"WLB micro-batches of up to {cap} tokens (--wlb-max-tokens, default 1.25 x "
                f"--seq-length) exceed --max-position-embeddings={mpe}; lower --wlb-max-tokens"
            )
    if args.override_opt_param_scheduler and args.use_checkpoint_opt_param_scheduler:
        raise ArgumentError("give at most one of --override-opt-param-scheduler and "
                            "--use-checkpoint-opt-param-scheduler")
    args.ffn_hidden_size = args.ffn_hidden_size or 4 * args.hidden_size
    args.num_query_groups = args.num_query_groups or args.num_attention_heads
    args.lr_decay_iters = args.lr_decay_iters or args.train_iters
    vpp_layers = args.num_layers_per_virtual_pipeline_stage
    pp = args.pipeline_model_parallel_size
    if vpp_layers is None:
        args.vpp = 1
    else:
        if vpp_layers <= 0 or args.num_layers % (vpp_layers * pp):
            raise ArgumentError(
                f"--num-layers-per-virtual-pipeline-stage={vpp_layers}: --num-layers="
                f"{args.num_layers} must be a multiple of it times --pipeline-model-parallel-size="
                f"{pp}"
            )
        args.vpp = args.num_layers // (vpp_layers * pp)


def run_config(args: argparse.Namespace) -> RunConfig:
    """Validate ``args`` (in place) and group them into the run's typed configuration."""
    validate(args)
    return RunConfig.from_namespace(args)


def parse(argv: list[str] | None = None) -> RunConfig:
    """Parse and validate a command line into a :class:`wlb.run_config.RunConfig`."""
    return run_config(build_parser().parse_args(argv))
