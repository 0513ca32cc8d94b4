"""Megatron-LM's set-up without its loop, on one process, for offline tools: a run's validated
flags for a job of any size (:func:`run_config_for`: ``tools/bench_data_path.py``,
``tools/simulate_cluster.py validate``), and one model replica built by Megatron-LM's own
set-up (``tools/calibrate_cost_model.py`` times its forward, backward and optimizer step).

What megatron lacks: ``pretrain()`` builds and trains in one call; a tool that times the model
on packed micro-batches needs the model and optimizer ``pretrain()`` would build, without its
loop.
"""

from __future__ import annotations

import os
import socket

import torch

#: one process, one micro-batch at a time: the calibration times a single model replica
_ALONE = ["--tensor-model-parallel-size", "1", "--pipeline-model-parallel-size", "1",
          "--context-parallel-size", "1", "--global-batch-size", "1", "--micro-batch-size", "1",
          "--wlb-outlier-thresholds", "none"]
#: what Megatron-LM needs to build a run that is never trained (given flags win)
_DEFAULTS = ["--train-iters", "1", "--lr", "1e-4", "--eval-interval", "1000", "--eval-iters", "0",
             "--attention-dropout", "0", "--transformer-impl", "local"]
#: megatron's local layers with gloo and its CUDA fusions off: the CPU's flags, defined here
#: once (scripts/_megatron.sh's DEVICE=cpu group is the shell's copy; a test keeps them equal)
CPU_FLAGS = ["--transformer-impl", "local", "--distributed-backend", "gloo",
             "--no-persist-layer-norm", "--no-gradient-accumulation-fusion",
             "--no-masked-softmax-fusion", "--no-bias-gelu-fusion", "--no-bias-swiglu-fusion",
             "--no-bias-dropout-fusion", "--no-rope-fusion"]


def replica_args(flags: list[str]):
    """megatron's validated args of ``flags`` for one replica on one process (CPU flags without
    CUDA; WLB's mock documents unless a ``--data-path`` is given), set as megatron's globals."""
    from wlb.megatron import cpu_loop

    cpu_loop.apply()
    from wlb.megatron.arguments import parse_and_validate

    if "MASTER_PORT" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
    for k, v in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"),
                 ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)
    device = [] if torch.cuda.is_available() else CPU_FLAGS
    if "--data-path" not in flags and "--mock-data" not in flags:
        flags = ["--mock-data", *flags]
    return parse_and_validate([*device, *_DEFAULTS, *offline_defaults(flags), *_ALONE])


def offline_defaults(flags: list[str], vocab_size: int = 257) -> list[str]:
    """``flags`` with what a run's command line may leave to its launcher and an offline parse
    needs: megatron-core's NullTokenizer of ``vocab_size`` for WLB's mock documents (token ids),
    ``--max-position-embeddings`` = ``--seq-length``."""
    extra = []
    if "--mock-data" in flags and "--tokenizer-type" not in flags:
        extra += ["--tokenizer-type", "NullTokenizer", "--vocab-size", str(vocab_size)]
    if "--seq-length" in flags and "--max-position-embeddings" not in flags:
        extra += ["--max-position-embeddings", flags[flags.index("--seq-length") + 1]]
    return [*extra, *flags]


def build_replica(flags: list[str]):
    """(megatron's args, model chunk, optimizer) of ``flags``, built by Megatron-LM as
    ``pretrain()`` builds them (its ``initialize_megatron`` and ``setup_model_and_optimizer``
    with ``wlb.megatron.gpt``'s model config), on one process."""
    args = replica_args(flags)
    from megatron.training import training

    training.initialize_megatron()  # (without CUDA: wlb.megatron.cpu_loop's, as pretrain())
    model, optimizer, _ = setup_model_and_optimizer(args)
    return args, model[0], optimizer


def setup_model_and_optimizer(args):
    """(model chunks, optimizer, LR scheduler) of ``args`` as ``pretrain()`` builds them:
    megatron's ``setup_model_and_optimizer`` with ``wlb.megatron.gpt``'s model config (and its
    ``load_checkpoint`` of ``args.load``, if set), megatron already initialised."""
    from megatron.core.enums import ModelType
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.training import training
    from megatron.training.argument_utils import pretrain_cfg_container_from_args

    from wlb.megatron import gpt

    return training.setup_model_and_optimizer(
        ModelType.encoder_or_decoder,
        cfg_container=pretrain_cfg_container_from_args(args, gpt.model_config(args)),
        pg_collection=ProcessGroupCollection.use_mpu_process_groups())


def run_config_for(argv: list[str], world_size: int):
    """WLB's :class:`RunConfig` of a Megatron-LM command line for a job of ``world_size``
    processes, parsed and validated as :func:`parse_and_validate` does, without starting
    anything: for tools that time or plan a job offline (``tools/bench_data_path.py``).
    Megatron's globals of an earlier call are cleared first. Raises :class:`ArgumentError`."""
    from megatron.core.num_microbatches_calculator import destroy_num_microbatches_calculator
    from megatron.training.global_vars import unset_global_variables

    from wlb.megatron.arguments import parse_and_validate, wlb_run_config

    unset_global_variables()
    destroy_num_microbatches_calculator()
    saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    os.environ.update(WORLD_SIZE=str(world_size), RANK="0", LOCAL_RANK="0")
    try:
        return wlb_run_config(parse_and_validate(argv))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
