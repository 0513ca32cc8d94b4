"""megatron-core's optimizer, LR schedule and gradient-sync hooks for a run."""

from __future__ import annotations

from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from wlb.megatron.transformer import TransformerConfig
from wlb.run_config import TrainingConfig

__all__ = ["MegatronOptimizer", "OptimizerParamScheduler", "attach_grad_sync",
           "build_optimizer", "build_scheduler", "leaf_optimizers"]


def attach_grad_sync(config: TransformerConfig, model: list[DistributedDataParallel]) -> None:
    """Let megatron's schedule finalize gradients (DP/CP reduce, tied and SP weights) and
    suspend the DP gradient reduce between micro-batches."""
    config.finalize_model_grads_func = finalize_model_grads
    no_sync = [m.no_sync for m in model]
    config.no_sync_func = no_sync if len(no_sync) > 1 else no_sync[0]


def build_optimizer(model: list[DistributedDataParallel], config: TransformerConfig,
                    training: TrainingConfig, *, use_distributed_optimizer: bool
                    ) -> MegatronOptimizer:
    """Adam with ``training``'s hyper-parameters (megatron's distributed optimizer if asked)."""
    opt_cfg = OptimizerConfig(
        optimizer="adam", lr=training.lr, min_lr=training.min_lr,
        weight_decay=training.weight_decay, adam_beta1=training.adam_beta1,
        adam_beta2=training.adam_beta2, adam_eps=training.adam_eps,
        clip_grad=training.clip_grad, bf16=config.bf16, params_dtype=config.params_dtype,
        use_distributed_optimizer=use_distributed_optimizer,
    )
    return get_megatron_optimizer(opt_cfg, model)


def build_scheduler(optimizer: MegatronOptimizer, training: TrainingConfig
                    ) -> OptimizerParamScheduler:
    """Megatron's LR (warm-up, then decay to min_lr) and constant weight-decay schedule."""
    t = training
    return OptimizerParamScheduler(
        optimizer, init_lr=0.0 if t.lr_warmup_iters else t.lr, max_lr=t.lr,
        min_lr=t.min_lr, lr_warmup_steps=t.lr_warmup_iters,
        lr_decay_steps=t.lr_decay_iters, lr_decay_style=t.lr_decay_style,
        # constant weight decay; its (unused) ramp length is the LR decay's, so that a resume
        # with a longer --train-iters and the same schedule passes megatron's checkpoint check
        start_wd=t.weight_decay, end_wd=t.weight_decay, wd_incr_steps=t.lr_decay_iters,
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=t.use_checkpoint_opt_param_scheduler,
        override_opt_param_scheduler=t.override_opt_param_scheduler,
    )


def leaf_optimizers(optimizer: MegatronOptimizer) -> list[MegatronOptimizer]:
    """The optimizers that hold state: a ``ChainedOptimizer``'s members, else ``optimizer``."""
    return list(getattr(optimizer, "chained_optimizers", None) or [optimizer])
