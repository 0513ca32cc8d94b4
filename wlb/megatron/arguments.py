"""Megatron-LM's command line with WLB's flags: parsed, checked and validated before any work.

Every Megatron-LM flag is parsed, defaulted and validated by Megatron-LM itself
(``megatron.training.arguments``); WLB adds its ``--wlb-*`` group (:class:`wlb.config.WLBConfig`)
as the ``extra_args_provider``. The order is: Megatron-LM's parser, WLB's checks, Megatron-LM's
validation (``validate_args``), its globals (``set_global_variables``). A bad value anywhere is
one line (:class:`ArgumentError`), also where megatron says it with an ``assert``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import traceback

from megatron.training.arguments import parse_args, validate_args
from megatron.training.global_vars import set_global_variables

from wlb.config import ConfigError, WLBConfig
from wlb.data.blend import parse_blend
from wlb.data.split import parse_split
from wlb.megatron.combinations import refusal
from wlb.megatron.indexed import tokenizer_from_sidecar
from wlb.run_config import RunConfig

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


class ArgumentError(ValueError):
    """A command line that cannot run (the message names the flag and the value)."""


def add_wlb_arguments(parser):
    """Megatron-LM's ``extra_args_provider``: WLB's ``--wlb-*`` flags and its own few."""
    WLBConfig.add_arguments(parser)
    g = parser.add_argument_group("WLB's documents (--mock-data with WLB's packing)")
    g.add_argument("--mock-length-sample", default=None,
                   help="JSON list of document lengths WLB's mock documents are drawn from "
                   "(default: data/doc_lengths/doc_lengths_wlbllm.json)")
    g.add_argument("--mock-num-docs", type=int, default=20000,
                   help="how many mock documents (--mock-data)")
    g.add_argument("--mock-length-scale", type=float, default=1.0 / 16,
                   help="the sampled lengths times this (long-context samples on a small run)")
    g.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    g.add_argument("--preflight-only", action="store_true",
                   help="check the flags (Megatron-LM's validation included), the layout for "
                   "$WORLD_SIZE processes and the data files, then exit without building "
                   "anything (a launcher runs it once before torchrun)")
    g.add_argument("--log-plans", default=None,
                   help="WLB's packing: append each iteration's consumed, trained and pending "
                   "pieces (JSON lines; global rank 0)")
    g.add_argument("--wlb-convert-optimizer-save", default=None, metavar="DIR",
                   help="convert --load's optimizer state to the kind these flags name "
                   "(--use-distributed-optimizer or not), save it in DIR and exit "
                   "(wlb.megatron.convert; TP x PP processes)")
    g.add_argument("--log-json", default=None,
                   help="WLB's packing: append one JSON object per iteration (megatron's loss, "
                   "learning rate, grad norm; WLB's predicted and measured imbalance, host times)")
    return parser


def _parse(argv: list[str] | None):
    """Megatron-LM's ``parse_args`` with WLB's flags; argparse's usage block (hundreds of
    Megatron-LM flags) is dropped from an error, which stays one line."""
    saved, sys.argv = sys.argv, [sys.argv[0], *argv] if argv is not None else sys.argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parse_args(add_wlb_arguments)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        raise ArgumentError(lines[-1].split("error: ", 1)[-1] if lines else str(e)) from None
    finally:
        sys.argv = saved


def parse_and_validate(argv: list[str] | None = None, args_defaults: dict | None = None):
    """The run's arguments (megatron's namespace, WLB's flags in it), validated and set as
    megatron's globals. Raises :class:`ArgumentError` before anything is built.

    The loss is per token in every run (``calculate_per_token_loss``), so micro-batches of
    different lengths weigh by their tokens (for Megatron's fixed-length samples it is the
    same objective as the default).
    """
    args = _parse(argv)
    try:
        wlb = WLBConfig.from_args(args)
    except ConfigError as e:
        raise ArgumentError(str(e)) from None
    if (why := refusal(args, wlb)) is not None:
        raise ArgumentError(why)
    tokenizer_from_sidecar(args)
    args.calculate_per_token_loss = True
    if args.eval_interval is None and not args.full_validation:
        raise ArgumentError("--eval-interval is needed, also with --eval-iters 0: Megatron-LM "
                            "sizes its validation samples from it")
    if args.use_checkpoint_args:
        from megatron.training.checkpointing import load_args_from_checkpoint

        if args.load is None:
            raise ArgumentError("--use-checkpoint-args needs --load")
        load_args_from_checkpoint(args)
    try:
        validate_args(args, args_defaults or {})
    except AssertionError as e:  # (without a message: the assert's own line says which)
        why = str(e) or traceback.extract_tb(e.__traceback__)[-1].line
        raise ArgumentError(f"Megatron-LM refused the flags: {why}") from None
    if args.wlb_convert_optimizer_save:
        from wlb.megatron.convert import check

        if (why := check(args)) is not None:
            raise ArgumentError(why)
    if args.mock_data:  # both arms read WLB's mock documents, written once as .bin/.idx
        from wlb.megatron.mock_corpus import MockCorpusError, materialize

        try:
            args.data_path = [materialize(args)]
        except (MockCorpusError, OSError, ValueError) as e:
            raise ArgumentError(str(e)) from None
        args.mock_data, args.split = False, args.split or "100,0,0"
    # the run's notes (RunConfig.logging.notes: said once at start-up, wlb_log.say_notes)
    args.wlb_notes = wlb.no_effect_warnings(args.context_parallel_size)
    if (not wlb.is_baseline and args.data_parallel_size > 1 and args.hidden_dropout
            and not args.data_parallel_random_init):
        # WLB's micro-batches advance each DP rank's RNG differently, and megatron checkpoints
        # the RNG of DP rank 0 only, unless --data-parallel-random-init (then every DP rank's)
        args.data_parallel_random_init = True
        args.wlb_notes.append("--data-parallel-random-init on: with dropout at DP > 1 each DP "
                              "rank's RNG state is checkpointed (an exact resume; per-rank "
                              "dropout seeds)")
    _preflight(args, wlb)
    args.wlb_stock = wlb.is_baseline  # stock Megatron's data path, else WLB's
    if not args.wlb_stock:
        args.dataloader_type = "external"  # wlb.megatron.wlb_data's iterator, used as is
    set_global_variables(args)
    return args


#: megatron's ``--attention-backend`` -> the kernel of WLB's attention (wlb.cp.kernels)
_KERNEL = {"flash": "flash", "fused": "te", "unfused": "torch", "local": "torch", "auto": "auto"}


def wlb_run_config(args) -> RunConfig:
    """WLB's typed view (:class:`wlb.run_config.RunConfig`) of Megatron-LM's validated flags:
    what WLB's data path reads (documents, packer, cost model, layout). Its fields are named
    after the flags' destinations, Megatron-LM's own; the few that differ are derived here.
    """
    ns = argparse.Namespace(**vars(args))
    ns.disable_bias_linear = not args.add_bias_linear
    ns.vpp = args.virtual_pipeline_model_parallel_size or 1
    ns.num_layers_per_virtual_pipeline_stage = args.num_layers_per_virtual_pipeline_stage
    ns.num_query_groups = (args.num_query_groups if args.group_query_attention
                           else args.num_attention_heads)
    ns.attention_backend = _KERNEL.get(args.attention_backend.name, "auto")
    ns.split = args.split or "100,0,0"
    ns.split_weights = parse_split(ns.split)
    ns.blend = parse_blend(args.data_path) if args.data_path else None
    if args.tokenizer_type == "NullTokenizer" and args.vocab_size:
        # megatron-core 0.19's NullTokenizer(V): ids below V - 1, EOD V - 1, vocabulary V;
        # WLB's (Megatron-LM's legacy one) takes the ids' count and adds EOD after them
        ns.vocab_size = args.vocab_size - 1
    if args.train_iters is None and args.train_samples:
        # (as megatron's update_train_iters, which pretrain() runs later, for a constant batch)
        ns.train_iters = args.train_samples // args.global_batch_size
    ns.notes = list(args.wlb_notes)
    return RunConfig.from_namespace(ns)


def _has_checkpoint(args) -> bool:
    """Whether megatron's ``load_checkpoint`` finds one under ``--load``: its tracker file, or
    the iteration directory of ``--ckpt-step``."""
    if args.ckpt_step is not None:
        return os.path.isdir(os.path.join(args.load, f"iter_{args.ckpt_step:07d}"))
    return os.path.isfile(os.path.join(args.load, "latest_checkpointed_iteration.txt"))


def moe_cost_args(args) -> dict:
    """The model's routed experts as the cost model takes them (``CostModel.from_flops``'s
    ``num_experts``, ``moe_router_topk``, ``moe_ffn_hidden_size``); {} for a dense model."""
    if not args.num_experts:
        return {}
    return dict(num_experts=args.num_experts, moe_router_topk=args.moe_router_topk,
                moe_ffn_hidden_size=args.moe_ffn_hidden_size)


def _preflight(args, wlb: WLBConfig) -> None:
    """What would stop the run later and needs the world size or the files, one line each: the
    data files (both arms); WLB's layout, cost model, kernel table and documents (the tokenizer
    flags against a dataset's sidecar, the split) for WLB's packing."""
    from wlb.cost_model import CostModel, CostModelError
    from wlb.cp.selector import KernelTable
    from wlb.host.documents import DocumentsError, build_documents
    from wlb.megatron.indexed import IndexedDataError, IndexedDocuments
    from wlb.packing.stream import DataError
    from wlb.parallel import LayoutError

    if args.load and args.exit_on_missing_checkpoint and not _has_checkpoint(args):
        # (megatron would build everything, then exit with status 0, nothing trained)
        raise ArgumentError(f"--load {args.load}: no checkpoint there"
                            + (f" for --ckpt-step {args.ckpt_step}" if args.ckpt_step else "")
                            + " (--exit-on-missing-checkpoint)")
    prefixes = parse_blend(args.data_path)[0] if args.data_path else []
    for prefix in prefixes:
        for ext in (".bin", ".idx"):
            if not os.path.isfile(prefix + ext):
                raise ArgumentError(f"--data-path {prefix}: no {prefix + ext}")
    if wlb.is_baseline:
        return
    if wlb.kernel_table:
        try:
            KernelTable.from_json(wlb.kernel_table)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArgumentError(f"--wlb-kernel-table {wlb.kernel_table}: {e}") from None
    try:
        cfg = wlb_run_config(args)
        layout = cfg.layout(args.world_size)
        if wlb.elastic_cp and layout.dp * layout.cp == 1:
            raise ArgumentError(f"--wlb-elastic-cp needs DP x CP > 1 ranks per pipeline stage "
                                f"to regroup; this layout has DP={layout.dp} x CP={layout.cp}")
        if wlb.cost_model:
            CostModel.from_json(wlb.cost_model)
        build_documents(cfg.data, cfg.model, cfg.training.seed, open_dataset=IndexedDocuments)
    except (ConfigError, LayoutError, CostModelError, IndexedDataError, DocumentsError,
            DataError, OSError, ValueError) as e:  # (ValueError: the tokenizer's flags)
        raise ArgumentError(str(e)) from None
    except SystemExit as e:  # (an unreadable --mock-length-sample)
        raise ArgumentError(str(e.code)) from None
