"""Megatron-LM's checkpoint flags (``--save``, ``--load``, formats, what a load restores)."""

from __future__ import annotations

import argparse

from wlb.training.checkpoint import FORMATS, CheckpointError, locate, read_common

#: the model-shape flags --use-checkpoint-args takes from a checkpoint's ``args`` (Megatron-LM's
#: list): these unless given on the command line ...
UNLESS_GIVEN = ("num_layers", "hidden_size", "ffn_hidden_size", "seq_length",
                "num_attention_heads", "max_position_embeddings")
#: ... and these always (Megatron-LM's ``force=True``)
FORCED = ("group_query_attention", "num_query_groups", "position_embedding_type", "rotary_base",
          "rotary_percent", "swiglu", "untie_embeddings_and_output_weights", "normalization",
          "disable_bias_linear")
_CHOICES = {"position_embedding_type": ("rope", "none"),
            "normalization": ("LayerNorm", "RMSNorm")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpointing (Megatron-LM's flags; docs/training.md)")
    g.add_argument("--save", default=None, help="checkpoint directory to save into")
    g.add_argument("--load", default=None,
                   help="checkpoint directory to resume from; with nothing saved there yet, "
                   "the run starts from scratch (so --load = --save restarts a run)")
    g.add_argument("--save-interval", type=int, default=None,
                   help="save every this many iterations (and at the end)")
    g.add_argument("--ckpt-format", choices=FORMATS, default="torch_dist",
                   help="torch_dist: megatron-core dist_checkpointing, loads under any layout "
                   "(Megatron-LM's default); torch: WLB's per-rank files, the same layout only")
    g.add_argument("--finetune", action="store_true",
                   help="load the model weights only and start at iteration 0 (no optimizer, "
                   "LR schedule, RNG or data state)")
    g.add_argument("--no-load-optim", action="store_true",
                   help="do not load the optimizer and LR schedule")
    g.add_argument("--no-load-rng", action="store_true", help="do not load the RNG states")
    g.add_argument("--ckpt-step", type=int, default=None,
                   help="load this iteration's checkpoint, not the latest")
    g.add_argument("--exit-on-missing-checkpoint", action="store_true",
                   help="with --load and no checkpoint there, stop instead of starting fresh")
    g.add_argument("--use-checkpoint-args", action="store_true",
                   help="take the model's shape from the --load checkpoint's args (Megatron-LM's "
                   "list; not the parallel layout, which a torch_dist checkpoint reshards)")
    g.add_argument("--ckpt-convert-format", choices=FORMATS, default=None,
                   help="load the --load checkpoint, write it in this format into "
                   "--ckpt-convert-save, and exit")
    g.add_argument("--ckpt-convert-save", default=None,
                   help="directory of the converted checkpoint (--ckpt-convert-format)")


def validate(args: argparse.Namespace) -> list[str]:
    """Raise ValueError (one line) for a combination that cannot run; returns notes."""
    notes = []
    if args.save_interval is not None and args.save_interval <= 0:
        raise ValueError(f"--save-interval={args.save_interval} must be > 0")
    if args.ckpt_step is not None and args.ckpt_step < 0:
        raise ValueError(f"--ckpt-step={args.ckpt_step} must be >= 0")
    needs_load = [f for f in ("finetune", "no_load_optim", "no_load_rng", "ckpt_step",
                              "exit_on_missing_checkpoint", "ckpt_convert_format",
                              "use_checkpoint_args")
                  if getattr(args, f) not in (None, False)]
    if needs_load and not args.load:
        raise ValueError(f"--{needs_load[0].replace('_', '-')} needs --load DIR")
    if (args.ckpt_convert_format is None) != (args.ckpt_convert_save is None):
        raise ValueError("give both --ckpt-convert-format and --ckpt-convert-save, or neither")
    if args.ckpt_convert_save and args.load and (
            args.ckpt_convert_save.rstrip("/") == args.load.rstrip("/")):
        raise ValueError(f"--ckpt-convert-save {args.ckpt_convert_save} is the --load "
                         "directory; convert into another one")
    if args.save_interval and not args.save:  # Megatron saves nothing then, and says nothing
        notes.append(f"--save-interval {args.save_interval}: nothing is saved without "
                     "--save DIR")
    return notes


def model_args_of(saved: argparse.Namespace, given: set[str]) -> dict:
    """The flags (dest -> value) that ``saved``, a checkpoint's ``args`` (ours or Megatron-LM's),
    sets under --use-checkpoint-args, when the command line gave the dests in ``given``.

    Raises ValueError for a model this project cannot build (e.g. learned absolute positions).
    """
    values = dict(vars(saved))
    if "disable_bias_linear" not in values and "add_bias_linear" in values:  # Megatron-LM's
        values["disable_bias_linear"] = not values["add_bias_linear"]
    if not values.get("group_query_attention"):
        values["num_query_groups"] = None  # (Megatron-LM stores 1 then)
    out = {}
    for name in UNLESS_GIVEN + FORCED:
        value = values.get(name)
        if name in given and name in UNLESS_GIVEN:
            continue  # the command line's
        if value is None and name != "num_query_groups":
            continue  # not in this checkpoint's args
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ValueError(f"its {name} is {value!r}; this project builds "
                             f"{' or '.join(_CHOICES[name])}")
        out[name] = float(value) if name in ("rotary_base", "rotary_percent") else value
    return out


def apply_checkpoint_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                          argv: list[str] | None) -> list[str]:
    """--use-checkpoint-args: set ``args``' model shape (``parser``'s parse of ``argv``) from
    the --load checkpoint, in place; returns the notes to log. Without the flag (or --load),
    nothing; no checkpoint there yet: the command line's values (Megatron-LM's behaviour)."""
    if not (args.use_checkpoint_args and args.load):
        return []
    for action in parser._actions:  # parse again, defaults left out: the flags given
        action.default = argparse.SUPPRESS
    given = set(vars(parser.parse_known_args(argv)[0]))
    found = locate(args.load, args.ckpt_step)
    if found is None:
        return [f"--use-checkpoint-args: no checkpoint in {args.load} yet; using the command "
                "line's model flags"]
    path = found[1]
    try:
        saved = read_common(path).get("args")
    except Exception as e:  # noqa: BLE001 -- an unreadable common.pt (or a torch-format one)
        raise CheckpointError(f"--use-checkpoint-args: cannot read {path}/common.pt "
                              f"({type(e).__name__}); it reads a torch_dist checkpoint") from None
    if not isinstance(saved, argparse.Namespace):
        raise CheckpointError(f"--use-checkpoint-args: {path}/common.pt holds no args")
    try:
        values = model_args_of(saved, given)
    except ValueError as e:
        raise CheckpointError(f"--use-checkpoint-args: {path}: {e}") from None
    for name, value in values.items():
        setattr(args, name, value)
    shown = ", ".join(f"{k}={v}" for k, v in values.items())
    return [f"--use-checkpoint-args: from {path}: {shown}"]
