"""A checkpoint's optimizer state from megatron's distributed optimizer to its plain one, or back.

What megatron lacks: its two optimizers save their state under different layouts (the
distributed one in buckets of its gradient buffers, by default, or per parameter with the main
weights and its own param groups; the plain one per parameter with param groups it matches by
keys the other does not write), and megatron-core 0.19 loads each only into its own kind: a run
that turns ``--use-distributed-optimizer`` on or off cannot resume (``--no-load-optim`` loses
Adam's moments). This is the conversion step, Megatron-LM's ``--ckpt-convert-format`` for the
optimizer::

    torchrun --nproc_per_node TPxPP pretrain_gpt_wlb.py <the run's model flags> \\
        --load OLD --wlb-convert-optimizer-save NEW [--use-distributed-optimizer]

It builds the checkpoint's kind and loads it with megatron's ``load_checkpoint``, builds the
other kind (the one the flags name), hands each parameter's main weight, Adam moments and step
from the one to the other, and saves with megatron's ``save_checkpoint`` under ``NEW``
(iteration, scheduler, RNG and the model as loaded); a run resumes from it with the flags'
optimizer. It runs at data- and context-parallel size 1 (every rank holds its parameters'
whole state, so nothing is exchanged), at the tensor- and pipeline-parallel sizes the checkpoint
was saved with when its distributed optimizer used the default ``dp_reshardable`` layout.
"""

from __future__ import annotations

import torch

#: megatron's content metadata key a distributed optimizer's checkpoint has (its layout)
SHARDING_KEY = "distrib_optim_sharding_type"


def saved_with_distributed_optimizer(load: str, ckpt_step: int | None = None) -> bool:
    """Whether megatron's checkpoint under ``load`` holds a distributed optimizer's state."""
    from megatron.core import dist_checkpointing
    from megatron.training.checkpointing import (
        get_checkpoint_name,
        get_checkpoint_tracker_filename,
        read_metadata,
    )

    iteration, release = (ckpt_step, False) if ckpt_step is not None else read_metadata(
        get_checkpoint_tracker_filename(load))
    directory = get_checkpoint_name(load, iteration, release, return_base_dir=True)
    return SHARDING_KEY in (dist_checkpointing.load_content_metadata(directory) or {})


def check(args) -> str | None:
    """Why ``--wlb-convert-optimizer-save`` cannot run with ``args`` (one line), else None."""
    if args.load is None:
        return "--wlb-convert-optimizer-save needs --load (the checkpoint to convert)"
    if args.optimizer != "adam":
        return (f"--wlb-convert-optimizer-save converts Adam's state, not --optimizer "
                f"{args.optimizer}")
    if args.data_parallel_size * args.context_parallel_size != 1:
        return (f"--wlb-convert-optimizer-save runs at data- and context-parallel size 1 (got "
                f"DP={args.data_parallel_size}, CP={args.context_parallel_size}): launch "
                "TP x PP processes")
    try:
        saved = saved_with_distributed_optimizer(args.load, args.ckpt_step)
    except (OSError, ValueError, RuntimeError) as e:
        return f"--load {args.load}: no megatron torch_dist checkpoint to convert ({e})"
    if saved == args.use_distributed_optimizer:
        kind = "the distributed optimizer" if saved else "the plain optimizer"
        return (f"--load {args.load} already holds {kind}'s state: nothing to convert (give "
                "--use-distributed-optimizer for the kind to convert to)")
    return None


def _parts(optimizer) -> list:
    """megatron's optimizers behind ``optimizer`` (a ``ChainedOptimizer`` holds several)."""
    return list(getattr(optimizer, "chained_optimizers", [optimizer]))


def _plain_mains(opt):
    """(model parameter, main parameter) of megatron's plain optimizer: its fp32 copy of a
    16-bit parameter (``Float16OptimizerWithFloat16Params``), else the parameter itself."""
    if hasattr(opt, "float16_groups"):
        for model_group, main_group in zip(opt.float16_groups, opt.fp32_from_float16_groups):
            yield from zip(model_group, main_group)
        for group in opt.fp32_from_fp32_groups:
            yield from ((p, p) for p in group)
    else:
        for group in opt.optimizer.param_groups:
            yield from ((p, p) for p in group["params"])


def _is_distributed(opt) -> bool:
    return hasattr(opt, "model_param_group_index_map")


def _step(inner: torch.optim.Optimizer) -> float:
    """Adam's step: torch's keeps it per parameter, TE's and apex's fused Adam per group."""
    for state in inner.state.values():
        if "step" in state:
            return float(state["step"])
    return float(next((g["step"] for g in inner.param_groups if "step" in g), 0))


def _set_step(inner: torch.optim.Optimizer, step: float) -> None:
    if type(inner).__module__.startswith("torch.optim"):
        for group in inner.param_groups:
            for p in group["params"]:
                inner.state[p]["step"] = torch.tensor(step, dtype=torch.float32)
    else:
        for group in inner.param_groups:
            group["step"] = int(step)


def parameter_states(optimizer, names: dict) -> tuple[dict, float]:
    """({parameter name: {"param": main weight, "exp_avg": ..., "exp_avg_sq": ...}} with
    every tensor flattened, Adam's step) of ``optimizer``; ``names`` maps a model parameter to
    its name. Raises ValueError where a distributed optimizer holds part of a parameter (DP >
    1)."""
    states, step = {}, 0.0
    for opt in _parts(optimizer):
        step = max(step, _step(opt.optimizer))
        if _is_distributed(opt):
            for param in opt.model_param_group_index_map:
                tensors = opt._get_main_param_and_optimizer_states(param)
                if tensors["param"].numel() != param.numel():
                    raise ValueError(f"{names[param]}: this rank holds {tensors['param'].numel()}"
                                     f" of its {param.numel()} elements (DP > 1)")
                states[names[param]] = {k: v.reshape(-1) for k, v in tensors.items()
                                        if k != "step" and torch.is_tensor(v)}
        else:
            for param, main in _plain_mains(opt):
                state = opt.optimizer.state[main]
                states[names[param]] = {"param": main.reshape(-1),
                                        **{k: v.reshape(-1) for k, v in state.items()
                                           if k != "step" and torch.is_tensor(v)}}
    return states, step


@torch.no_grad()
def set_parameter_states(optimizer, names: dict, states: dict, step: float) -> None:
    """Give ``optimizer`` (freshly built) the states :func:`parameter_states` read."""
    for opt in _parts(optimizer):
        opt.init_state_fn(opt.optimizer, opt.config)  # (Adam's moments allocated, zero)
        if _is_distributed(opt):
            for param in opt.model_param_group_index_map:
                shape = opt._get_main_param_and_optimizer_states(param)
                opt._set_main_param_and_optimizer_states(
                    param, {k: None if k == "step" or not torch.is_tensor(v)
                            else states[names[param]][k].view_as(v) for k, v in shape.items()})
        else:
            for param, main in _plain_mains(opt):
                saved = states[names[param]]
                main.copy_(saved["param"].view_as(main))
                for k, v in opt.optimizer.state[main].items():
                    if torch.is_tensor(v) and k != "step":
                        v.copy_(saved[k].view_as(v))
        _set_step(opt.optimizer, step)


def _named(model) -> dict:
    """{model parameter: (chunk, name)} of megatron's model chunks."""
    from megatron.core.utils import unwrap_model

    return {p: (i, n) for i, chunk in enumerate(unwrap_model(model))
            for n, p in chunk.named_parameters()}


def convert_optimizer(args) -> None:
    """Load ``args.load`` with the optimizer kind it was saved with, save it under
    ``args.wlb_convert_optimizer_save`` with the one ``args`` names (:mod:`module docs
    <wlb.megatron.convert>`)."""
    from megatron.training import training
    from megatron.training.checkpointing import save_checkpoint
    from megatron.training.utils import print_rank_0

    from wlb.megatron.replica import setup_model_and_optimizer

    training.initialize_megatron()  # (without CUDA: wlb.megatron.cpu_loop's, as pretrain())
    target, load = args.use_distributed_optimizer, args.load
    # the target first: its random initialisation draws from the RNG, which the load restores
    args.load = None
    model, optimizer, scheduler = setup_model_and_optimizer(args)
    args.load, args.use_distributed_optimizer = load, not target
    saved_model, saved_optimizer, saved_scheduler = setup_model_and_optimizer(args)
    args.use_distributed_optimizer = target
    names, saved_names = _named(model), _named(saved_model)
    loaded = {name: p for p, name in saved_names.items()}
    with torch.no_grad():
        for p, name in names.items():
            p.copy_(loaded[name])
    states, step = parameter_states(saved_optimizer, saved_names)
    set_parameter_states(optimizer, names, states, step)
    scheduler.load_state_dict(saved_scheduler.state_dict())  # (sets the groups' rates too)
    args.save = args.wlb_convert_optimizer_save
    save_checkpoint(args.iteration, model, optimizer, scheduler,
                    args.num_floating_point_operations_so_far)
    kinds = ("the plain optimizer", "the distributed optimizer")
    print_rank_0(f"> WLB: converted {load} (iteration {args.iteration}) from {kinds[not target]}"
                 f" to {kinds[target]}: {args.save}")
