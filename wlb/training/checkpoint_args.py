"""Megatron-LM's checkpoint flags (``--save``, ``--load``, formats, what a load restores)."""

from __future__ import annotations

import argparse

from wlb.training.checkpoint import FORMATS


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
                              "exit_on_missing_checkpoint", "ckpt_convert_format")
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
