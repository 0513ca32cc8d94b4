"""Megatron-style command line (megatron's own flag names and meanings) plus the --wlb-* group.

:func:`parse` turns a command line into the run's typed :class:`wlb.run_config.RunConfig`, once.
"""

from __future__ import annotations

import argparse

from wlb.config import WLBConfig
from wlb.cp.kernels import BACKENDS
from wlb.data.blend import BlendError, parse_blend
from wlb.data.split import SplitError, parse_split
from wlb.packing.base import default_max_tokens
from wlb.preprocess.tokenizer import TOKENIZER_TYPES, check_tokenizer_flags
from wlb.run_config import RunConfig
from wlb.training import checkpoint_args, megatron_flags
from wlb.training.checkpoint import CheckpointError
from wlb.training.one_line import OneLineParser


class ArgumentError(ValueError):
    """A flag combination that cannot run (the message names the flags and values)."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        description="Train a GPT with megatron-core and WLB-LLM workload balancing.",
        allow_abbrev=False,
    )
    g = p.add_argument_group("model")
    g.add_argument("--num-layers", type=int, default=4)
    g.add_argument("--hidden-size", type=int, default=128)
    g.add_argument("--ffn-hidden-size", type=int, default=None, help="default 4 x hidden")
    g.add_argument("--num-attention-heads", type=int, default=4)
    g.add_argument("--num-query-groups", type=int, default=None,
                   help="K/V head groups with --group-query-attention")
    g.add_argument("--seq-length", type=int, default=2048, help="context length (tokens)")
    g.add_argument("--max-position-embeddings", type=int, default=None,
                   help="largest position the model is built for; --seq-length and WLB "
                   "micro-batches (--wlb-max-tokens) above it are refused")
    g.add_argument("--position-embedding-type", choices=["rope", "none"], default="rope")
    g.add_argument("--rotary-base", type=float, default=10000.0)
    g.add_argument("--rotary-percent", type=float, default=1.0,
                   help="fraction of each head's channels RoPE rotates (the rest pass through)")
    g.add_argument("--group-query-attention", action="store_true",
                   help="use --num-query-groups K/V heads (without it: MHA, as in Megatron)")
    g.add_argument("--normalization", choices=["LayerNorm", "RMSNorm"], default="RMSNorm")
    g.add_argument("--swiglu", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--disable-bias-linear", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--untie-embeddings-and-output-weights", action="store_true")
    g.add_argument("--hidden-dropout", type=float, default=0.0)
    g.add_argument("--attention-dropout", type=float, default=0.0)
    g.add_argument("--init-method-std", type=float, default=0.02)
    g.add_argument("--make-vocab-size-divisible-by", type=int, default=128)
    g.add_argument("--vocab-size", type=int, default=None,
                   help="--mock-data's (default 256) or NullTokenizer's ids")
    g.add_argument("--recompute-granularity", choices=["full"], default=None)
    g.add_argument("--bf16", action="store_true")
    g.add_argument("--attention-backend", default="auto",
                   choices=[*BACKENDS, *megatron_flags.ATTENTION_BACKEND_ALIASES],
                   help="attention kernel of CP attention: 'torch' (SDPA per document segment; "
                   "CPU/GPU), 'varlen' (PyTorch's FlashAttention-2 varlen), 'flash' (flash-attn "
                   ">= 2.1), 'te' (TransformerEngine); 'auto' (default): the first installed of "
                   "flash, te, varlen on GPU with --bf16, else torch. Megatron's 'fused' means "
                   "te, 'unfused' and 'local' mean torch")

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
    g.add_argument("--lr-warmup-fraction", type=float, default=None,
                   help="warm up over this fraction of --lr-decay-iters (instead of "
                   "--lr-warmup-iters)")
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
    g.add_argument("--exit-interval", type=int, default=None,
                   help="save (with --save) and exit after an iteration divisible by this")
    g.add_argument("--exit-duration-in-mins", type=float, default=None,
                   help="save (with --save) and exit once the run has trained this long")

    g = p.add_argument_group("validation")
    g.add_argument("--eval-interval", type=int, default=1000,
                   help="validation loss every this many iterations (and after the last)")
    g.add_argument("--eval-iters", type=int, default=100,
                   help="global batches of the valid split per evaluation (0: no validation)")

    g = p.add_argument_group("data")
    g.add_argument("--data-path", nargs="+", default=None,
                   help="prefix of a .bin/.idx dataset, or Megatron's blend: 'W1 P1 W2 P2 ...' "
                   "(weights in tokens) or 'P1 P2 ...' (concatenated)")
    g.add_argument("--mock-data", action="store_true",
                   help="synthetic documents with lengths drawn from --mock-length-sample")
    g.add_argument("--mock-length-sample", default=None,
                   help="JSON list of document lengths (default: data/doc_lengths/"
                        "doc_lengths_wlbllm.json)")
    g.add_argument("--mock-num-docs", type=int, default=20000)
    g.add_argument("--mock-length-scale", type=float, default=1.0 / 16)
    g.add_argument("--split", default="100,0,0",
                   help="train,valid,test weights over each dataset's documents (Megatron's "
                   "rule); the valid part gives the validation loss")
    g.add_argument("--tokenizer-type", default=None,
                   help=f"one of {', '.join(TOKENIZER_TYPES)} (default: the data's .meta.json; "
                   "needed for Megatron-LM's .bin/.idx, which have none)")
    g.add_argument("--tokenizer-model", default=None,
                   help="HuggingFaceTokenizer: a local tokenizer.json, or a directory with one")
    g.add_argument("--vocab-file", default=None, help="GPT2BPETokenizer: vocab.json")
    g.add_argument("--merge-file", default=None, help="GPT2BPETokenizer: merges.txt")

    checkpoint_args.add_arguments(p)
    g = p.add_argument_group("logging")
    g.add_argument("--log-interval", type=int, default=1,
                   help="console line, cost-model predictions and measured imbalance every this "
                        "many iterations (and after the last); a large run: 10-100")
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
    megatron_flags.add_arguments(p)
    megatron_flags.describe(p)
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
    try:
        notes = checkpoint_args.validate(args)
    except ValueError as e:
        raise ArgumentError(str(e)) from None
    if args.attention_dropout:
        raise ArgumentError(f"--attention-dropout={args.attention_dropout}: WLB CP attention "
                            "has no dropout; use 0")
    try:
        args.split_weights = parse_split(args.split)
        args.blend = parse_blend(args.data_path) if args.data_path else None
        args.notes = megatron_flags.resolve(args)
    except (SplitError, BlendError, ValueError) as e:
        raise ArgumentError(str(e)) from None
    if args.split_weights[0] <= 0:
        raise ArgumentError(f"--split={args.split!r}: the train weight must be > 0")
    _validate_schedule(args)
    args.notes += notes + getattr(args, "checkpoint_notes", [])
    try:
        check_tokenizer_flags(args.tokenizer_type, vocab_size=args.vocab_size,
                              tokenizer_model=args.tokenizer_model, vocab_file=args.vocab_file,
                              merge_file=args.merge_file)
    except ValueError as e:
        raise ArgumentError(str(e)) from None
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
    if not args.group_query_attention and args.num_query_groups not in (
            None, args.num_attention_heads):
        args.notes.append(f"--num-query-groups {args.num_query_groups}: no effect without "
                          "--group-query-attention (as in Megatron); training MHA")
        args.num_query_groups = None
    args.num_query_groups = args.num_query_groups or args.num_attention_heads
    args.lr_decay_iters = args.lr_decay_iters or args.train_iters
    if args.lr_warmup_fraction is not None:  # Megatron: a fraction of the decay steps
        args.lr_warmup_iters = args.lr_warmup_fraction * args.lr_decay_iters
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


def _validate_schedule(args: argparse.Namespace) -> None:
    """LR warm-up, exit and validation flags (Megatron's meanings)."""
    if args.lr_warmup_fraction is not None:
        if args.lr_warmup_iters:
            raise ArgumentError(f"give one of --lr-warmup-fraction={args.lr_warmup_fraction} "
                                f"and --lr-warmup-iters={args.lr_warmup_iters}")
        if not 0 <= args.lr_warmup_fraction <= 1:
            raise ArgumentError(f"--lr-warmup-fraction={args.lr_warmup_fraction} must be in "
                                "[0, 1]")
    for name in ("exit_interval", "exit_duration_in_mins", "eval_interval"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ArgumentError(f"--{name.replace('_', '-')}={value} must be > 0")
    if args.eval_iters < 0:
        raise ArgumentError(f"--eval-iters={args.eval_iters} must be >= 0")
    rot = int(args.hidden_size // args.num_attention_heads * args.rotary_percent)
    if not 0 < args.rotary_percent <= 1 or rot % 2 or rot == 0:
        raise ArgumentError(f"--rotary-percent={args.rotary_percent}: must be in (0, 1] and "
                            f"rotate an even number of each head's "
                            f"{args.hidden_size // args.num_attention_heads} channels")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a Namespace (with --use-checkpoint-args, the model's shape taken
    from the --load checkpoint)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.checkpoint_notes = checkpoint_args.apply_checkpoint_args(args, parser, argv)
    except CheckpointError as e:
        raise ArgumentError(str(e)) from None
    return args


def run_config(args: argparse.Namespace) -> RunConfig:
    """Validate ``args`` (in place) and group them into the run's typed configuration."""
    validate(args)
    return RunConfig.from_namespace(args)


def parse(argv: list[str] | None = None) -> RunConfig:
    """Parse and validate a command line into a :class:`wlb.run_config.RunConfig`."""
    return run_config(parse_args(argv))
