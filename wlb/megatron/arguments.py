"""Megatron-LM's command line with WLB's flags: parsed, checked and validated before any work.

Every Megatron-LM flag is parsed, defaulted and validated by Megatron-LM itself
(``megatron.training.arguments``); WLB adds its ``--wlb-*`` group (:class:`wlb.config.WLBConfig`)
as the ``extra_args_provider``. The order is: Megatron-LM's parser, WLB's checks, Megatron-LM's
validation (``validate_args``), its globals (``set_global_variables``). A bad value anywhere is
one line (:class:`ArgumentError`), also where megatron says it with an ``assert``.
"""

from __future__ import annotations

import contextlib
import io
import sys

from megatron.training.arguments import parse_args, validate_args
from megatron.training.global_vars import set_global_variables

from wlb.config import ConfigError, WLBConfig


class ArgumentError(ValueError):
    """A command line that cannot run (the message names the flag and the value)."""


def add_wlb_arguments(parser):
    """Megatron-LM's ``extra_args_provider``: WLB's ``--wlb-*`` flags."""
    WLBConfig.add_arguments(parser)
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
    if wlb.packing != "megatron":
        raise ArgumentError(
            f"--wlb-packing={wlb.packing!r}: this entry runs stock Megatron only for now "
            "(--wlb-packing megatron); WLB's packing runs in pretrain_gpt_wlb.py")
    _refuse_combinations(args)
    args.calculate_per_token_loss = True
    if args.use_checkpoint_args:
        from megatron.training.checkpointing import load_args_from_checkpoint

        if args.load is None:
            raise ArgumentError("--use-checkpoint-args needs --load")
        load_args_from_checkpoint(args)
    try:
        validate_args(args, args_defaults or {})
    except AssertionError as e:
        raise ArgumentError(f"Megatron-LM refused the flags: {e}") from None
    set_global_variables(args)
    return args


def _refuse_combinations(args) -> None:
    """Megatron-LM flags that cannot combine with how this entry runs them, in one line."""
    from megatron.core.transformer.enums import AttnBackend

    from wlb.megatron.gpt import needs_wlb_core_attention

    if args.transformer_impl == "local" and args.context_parallel_size > 1:
        raise ArgumentError(f"--context-parallel-size {args.context_parallel_size} with "
                            "--transformer-impl local: CP in Megatron-LM's loop on the local "
                            "layers comes with WLB's batches (issue #36, next step); "
                            "pretrain_gpt_wlb.py runs it")
    if needs_wlb_core_attention(args) and args.attention_backend == AttnBackend.local:
        why = ("--dataloader-inter-document-masking" if args.dataloader_inter_document_masking
               else f"--context-parallel-size {args.context_parallel_size}")
        raise ArgumentError(f"--attention-backend local with {why}: megatron's local attention "
                            "takes neither THD micro-batches nor CP (WLB's attention runs them "
                            "with --transformer-impl local and another --attention-backend)")
