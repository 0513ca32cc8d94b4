"""The optimizer's part of a ``torch_dist`` checkpoint, with the distributed optimizer on or off.

megatron-core saves the two optimizers' states under different structures (from a checkpoint of
the tiny model; ``K`` is a parameter's key, e.g. ``decoder.layers.mlp.linear_fc1.weight``)::

                    distributed (fully_reshardable)         plain (FP32 / Float16 optimizer)
    sharded         optimizer.state.{param,exp_avg,         optimizer.state.{exp_avg,exp_avg_sq}.K
                    exp_avg_sq}.K  (param: fp32 main)       + optimizer.state.fp32_param.K (bf16)
    common.pt       {optimizer: {param_groups (+ step)},    {param_groups, state: {common_step}}
                     param_state_sharding_type}             (bf16: nested under 'optimizer')

Every tensor is per parameter in both, so switching the distributed optimizer on or off across a
resume is a renaming (:func:`retarget`: ``param`` <-> ``fp32_param``; an fp32 model's plain
optimizer has no main copy, its fp32 weights are read as the main parameters) and a rebuilt common
part (:func:`convert`: the hyper-parameters of each parameter group, matched by megatron's group
identifiers, and the step count).
"""

from __future__ import annotations

import torch
from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory
from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

from wlb.megatron.optim import leaf_optimizers

#: the distributed optimizer's state gathered into one tensor per model parameter (Megatron-LM's
#: --dist-ckpt-optim-fully-reshardable): reshards over TP, PP and DP, where megatron's default
#: (dp_reshardable: its flat buffers) reshards over DP only
DISTRIB_OPTIM_SHARDING = "fully_reshardable"
_MAIN = ("param", "fp32_param")  # the fp32 main parameter: distributed, plain bf16 name


def is_distributed(optimizer) -> bool:
    """Whether ``optimizer`` (megatron's, possibly chained) is the distributed optimizer."""
    return any(isinstance(o, DistributedOptimizer) for o in leaf_optimizers(optimizer))


def sharded_optimizer(optimizer, model_state: dict, loading: bool) -> dict:
    """megatron's sharded state dict of ``optimizer`` (``loading``: a template to load into)."""
    if loading:
        for leaf in leaf_optimizers(optimizer):  # megatron's template needs the state to exist
            init = getattr(leaf, "_init_optimizer_states_with_dummy_values", None)
            if init is not None and not leaf.optimizer.state:
                init()  # (Megatron-LM: a zero-gradient step; the load replaces it)
    return optimizer.sharded_state_dict(
        model_state, is_loading=loading,
        metadata={"distrib_optim_sharding_type": DISTRIB_OPTIM_SHARDING})


def retarget(template: dict, saved: set[str]) -> dict[tuple, ShardedTensor]:
    """Rename (in place) the optimizer template's tensors that the checkpoint, whose tensor keys
    are ``saved``, holds under the other optimizer's name.

    A plain fp32 optimizer saves no main parameters: its fp32 weights are them. The distributed
    optimizer's main parameters are then taken out of the template and returned, keyed by their
    path in it (``None`` there) and pointed at the weights' own keys, to be read at full
    precision in a second load (:func:`load_main`): a bf16 model's template would round them.
    (A plain bf16 optimizer keeps its main parameters in another structure: such a load is
    refused, ``checkpoint_io``.)
    """
    mains: dict[tuple, ShardedTensor] = {}

    def walk(node, path):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in list(items):
            if isinstance(v, (dict, list)):
                walk(v, (*path, k))
            elif isinstance(v, (ShardedTensor, ShardedTensorFactory)) and v.key not in saved:
                kind, _, rest = v.key.removeprefix("optimizer.state.").partition(".")
                if kind in _MAIN:
                    other = f"optimizer.state.{_MAIN[1 - _MAIN.index(kind)]}.{rest}"
                    if other in saved:
                        v.key = other
                    elif kind == "param" and rest in saved:  # the fp32 weights
                        v.key = rest
                        mains[(*path, k)], node[k] = v, None

    walk(template, ())
    return mains


def load_main(loaded: dict, mains: dict[tuple, ShardedTensor], read) -> None:
    """Read the main parameters :func:`retarget` took out (``read``: a template -> loaded
    dict, ``dist_ckpt.load`` of the same checkpoint) and put them where the template had them
    in ``loaded`` (the optimizer's part of the first load, from which dist_checkpointing
    dropped the ``None`` leaves, and a list that held only those)."""
    if not mains:
        return
    got = read({"main": list(mains.values())})["main"]
    for path, tensor in zip(mains, got, strict=True):
        node = loaded
        for k, below in zip(path[:-1], path[1:]):  # (containers dropped with them: made again)
            if _get(node, k) is None:
                _put(node, k, [] if isinstance(below, int) else {})
            node = node[k]
        _put(node, path[-1], tensor)


def _get(node: dict | list, key):
    """``node[key]``, or None where it is missing."""
    return node.get(key) if isinstance(node, dict) else (node[key] if key < len(node) else None)


def _put(node: dict | list, key, value) -> None:
    """``node[key] = value`` (a list grows to hold it)."""
    if isinstance(node, list):
        node.extend([None] * (key + 1 - len(node)))
    node[key] = value


def _saved_groups(loaded: dict, saved_distributed: bool) -> tuple[list[dict], float]:
    """The checkpoint's parameter groups (hyper-parameters only) and its Adam step."""
    if saved_distributed:
        groups = loaded["optimizer"]["param_groups"]
        step = groups[0]["step"]
    else:
        inner = loaded if "param_groups" in loaded else loaded["optimizer"]  # (bf16: nested)
        groups, step = inner["param_groups"], inner["state"]["common_step"]
    keep = [{k: v for k, v in g.items() if k not in ("params", "step")} for g in groups]
    return keep, float(step)


def convert(optimizer, loaded: dict, saved_distributed: bool) -> dict:
    """``loaded`` (the optimizer part of a checkpoint saved by the other kind of optimizer, read
    through :func:`retarget`'s template) as ``optimizer.load_state_dict`` expects it."""
    (leaf,) = leaf_optimizers(optimizer)
    groups, step = _saved_groups(loaded, saved_distributed)
    if isinstance(leaf, DistributedOptimizer):
        return {"optimizer": {"param_groups": [g | {"step": step} for g in groups]},
                "param_state": loaded["param_state"],
                "param_state_sharding_type": DISTRIB_OPTIM_SHARDING}
    # megatron pairs the i-th group's params with the saved group of the same identifiers
    ids = [g["params"] for g in leaf.optimizer.state_dict()["param_groups"]]
    nested = "fp32_from_fp16_params" in loaded
    state = (loaded["optimizer"] if nested else loaded)["state"]
    inner = {"state": {k: v for k, v in state.items() if isinstance(k, int)}
             | {"common_step": torch.tensor(step)},
             "param_groups": [g | {"params": p} for g, p in zip(groups, ids, strict=True)]}
    if nested:
        return {"optimizer": inner, "fp32_from_fp16_params": loaded["fp32_from_fp16_params"]}
    return inner


def load(optimizer, loaded: dict, saved_distributed: bool) -> None:
    """Load the optimizer part of a loaded checkpoint, saved with the distributed optimizer
    (``saved_distributed``) or without.

    megatron-core's ``DistributedOptimizer.load_state_dict`` (0.16 to 0.19) gives every
    parameter's torch Adam state one shared ``step`` tensor, which Adam then increments once per
    parameter each step, so the bias correction after a resume would be wrong: each parameter
    gets its own.
    """
    switched = saved_distributed != is_distributed(optimizer)
    if switched:
        if len(leaf_optimizers(optimizer)) != 1:
            raise ValueError("switching the distributed optimizer on or off is supported for "
                             "one optimizer, not a chain of them")
        loaded = convert(optimizer, loaded, saved_distributed)
    optimizer.load_state_dict(loaded)
    for leaf in leaf_optimizers(optimizer):
        for s in leaf.optimizer.state.values():
            if torch.is_tensor(s.get("step")):
                s["step"] = s["step"].clone()


def _keep_step(set_states):
    """megatron-core's ``DistributedOptimizer._set_main_param_and_optimizer_states`` (0.16-0.19)
    copies every state key of a parameter from the loaded ``fully_reshardable`` tensors, which never
    hold torch Adam's per-parameter ``step`` (loaded separately, from the param groups), so a
    load without Apex / TransformerEngine's fused Adam fails with ``KeyError: 'step'``. Pass
    the step already in place through."""

    def inner(self, model_param, tensors):
        group, order = self.model_param_group_index_map[model_param]
        main = self.optimizer.param_groups[group]["params"][order]
        step = self.optimizer.state.get(main, {}).get("step")
        tensors = ({"step": step} if step is not None else {}) | tensors
        return set_states(self, model_param, tensors)

    inner.wlb_keeps_step = True
    return inner


if not getattr(DistributedOptimizer._set_main_param_and_optimizer_states, "wlb_keeps_step",
               False):
    DistributedOptimizer._set_main_param_and_optimizer_states = _keep_step(
        DistributedOptimizer._set_main_param_and_optimizer_states)
