"""WLB's typed view of a run's flags: one documented dataclass per concern.

Megatron-LM parses, defaults and validates its flags; ``wlb.megatron.arguments.wlb_run_config``
builds one :class:`RunConfig` from them for what WLB's side reads (documents, packer, cost model,
layout, the simulator's replay), instead of megatron's raw namespace, so that ``wlb/`` below
``wlb.megatron`` never imports megatron-core. Each field is named after its flag's argparse
destination (``--num-layers`` -> ``num_layers``), Megatron-LM's own, so the flag is the
documentation's key. The ``--wlb-*`` flags are :class:`wlb.config.WLBConfig`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from wlb.config import WLBConfig
from wlb.parallel import ParallelLayout


def _from_namespace(cls, ns: argparse.Namespace):
    return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})


@dataclass
class ModelConfig:
    """The GPT being trained (megatron-core ``TransformerConfig`` and ``GPTModel`` inputs).

    Attributes:
        num_layers, hidden_size, num_attention_heads: the decoder's shape.
        ffn_hidden_size: MLP width (4 x hidden when not given).
        num_query_groups: K/V heads for GQA (the heads when not given: MHA).
        seq_length: the context length in tokens; a stock micro-batch holds this many.
        max_position_embeddings: the largest position the model is built for (None: the
            WLB micro-batch cap); --seq-length and WLB micro-batches above it are refused.
        position_embedding_type: "rope" (per document, in WLB's attention) or "none".
        rotary_base: RoPE base.
        rotary_percent: fraction of each head's channels RoPE rotates.
        group_query_attention: use ``num_query_groups`` K/V heads (Megatron's switch; without
            it the flag is ignored and attention is MHA).
        normalization: "LayerNorm" or "RMSNorm".
        swiglu: gated SiLU MLP (else GeLU).
        disable_bias_linear: no biases in the linear layers.
        untie_embeddings_and_output_weights: a separate output layer.
        hidden_dropout, attention_dropout: dropout rates (attention dropout must be 0).
        init_method_std: std of the normal init (output projections scaled as Megatron's).
        make_vocab_size_divisible_by: pad the vocabulary to a multiple of this.
        vocab_size: vocabulary of --mock-data (indexed data reads its own).
        recompute_granularity: "full" activation recomputation, or None.
        bf16: bf16 parameters and the bf16 optimizer.
        attention_backend: attention kernel name (``wlb.cp.kernels.BACKENDS``).
    """

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int | None
    num_attention_heads: int
    num_query_groups: int | None
    seq_length: int
    max_position_embeddings: int | None
    position_embedding_type: str
    rotary_base: float
    rotary_percent: float
    group_query_attention: bool
    normalization: str
    swiglu: bool
    disable_bias_linear: bool
    untie_embeddings_and_output_weights: bool
    hidden_dropout: float
    attention_dropout: float
    init_method_std: float
    make_vocab_size_divisible_by: int
    vocab_size: int | None
    recompute_granularity: str | None
    bf16: bool
    attention_backend: str


@dataclass
class ParallelConfig:
    """How the run is split over processes (the layout's sizes; DP is what is left).

    Attributes:
        tensor_model_parallel_size, pipeline_model_parallel_size, context_parallel_size: TP, PP
            and CP sizes.
        num_layers_per_virtual_pipeline_stage: interleaved 1F1B chunk size, or None.
        vpp: virtual pipeline stages per PP rank, derived from the above (1: no interleaving).
        sequence_parallel: TP sequence parallelism.
        use_distributed_optimizer: shard optimizer state over DP (megatron's).
        overlap_grad_reduce: overlap the gradient reduce with the backward.
        distributed_backend: "nccl" or "gloo" (None: nccl with CUDA, else gloo).
    """

    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    num_layers_per_virtual_pipeline_stage: int | None
    vpp: int
    context_parallel_size: int
    sequence_parallel: bool
    use_distributed_optimizer: bool
    overlap_grad_reduce: bool
    distributed_backend: str | None


@dataclass
class TrainingConfig:
    """Batch, schedule and optimizer.

    Attributes:
        micro_batch_size: must be 1 (a micro-batch is one packed THD sequence).
        global_batch_size: micro-batches (packed sequences) per iteration over all DP ranks.
        train_iters: iterations to train.
        seed: every seed of the run (init, data order, packer tuning).
        lr, min_lr, lr_warmup_iters, lr_decay_iters, lr_decay_style: the LR schedule
            (megatron's ``OptimizerParamScheduler``; decay over train_iters when not given).
        lr_warmup_fraction: warm-up as a fraction of lr_decay_iters (then lr_warmup_iters is
            that fraction of the decay steps, as Megatron computes it), or None.
        exit_interval: save (with --save) and stop after an iteration divisible by this.
        exit_duration_in_mins: save (with --save) and stop once training has run this long.
        weight_decay, adam_beta1, adam_beta2, adam_eps, clip_grad: Adam and gradient clipping.
        override_opt_param_scheduler: on resume, this run's LR schedule wins (Megatron's flag).
        use_checkpoint_opt_param_scheduler: on resume, the checkpoint's LR schedule wins.
        threads: torch intra-op threads per process.
    """

    micro_batch_size: int
    global_batch_size: int
    train_iters: int
    seed: int
    lr: float
    min_lr: float
    lr_warmup_iters: float
    lr_warmup_fraction: float | None
    lr_decay_iters: int | None
    lr_decay_style: str
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    clip_grad: float
    override_opt_param_scheduler: bool
    use_checkpoint_opt_param_scheduler: bool
    exit_interval: int | None
    exit_duration_in_mins: float | None
    threads: int


@dataclass
class DataConfig:
    """Where the documents come from.

    Attributes:
        data_path: Megatron ``.bin/.idx`` prefixes, with or without blend weights
            (``W1 P1 W2 P2 ...``), or None with ``mock_data``.
        blend: ``data_path`` parsed: (prefixes, normalised weights or None).
        mock_data: synthetic documents with lengths drawn from ``mock_length_sample``.
        mock_length_sample: JSON list of document lengths (None: the shipped wlbllm sample).
        mock_num_docs, mock_length_scale: how many mock documents, and their length scale.
        split: Megatron's train,valid,test weights (as given).
        split_weights: ``split`` parsed (three numbers summing to 1).
        tokenizer_type, tokenizer_model, vocab_file, merge_file: the run's vocabulary
            (``wlb.preprocess.tokenizer``); None: the data's own.
    """

    data_path: list[str] | None
    blend: tuple[list[str], list[float] | None] | None
    mock_data: bool
    mock_length_sample: str | None
    mock_num_docs: int
    mock_length_scale: float
    split: str
    split_weights: list[float]
    tokenizer_type: str | None
    tokenizer_model: str | None
    vocab_file: str | None
    merge_file: str | None


@dataclass
class LoggingConfig:
    """What the run reports.

    Attributes:
        log_interval: console line, cost-model predictions and measured imbalance every this
            many iterations and after the last (``wlb.host.step.is_logged``); the other
            iterations' JSON rows hold loss, tokens and times only.
        log_json: append one JSON object per iteration to this file.
        log_plans: append each iteration's consumed/trained/pending pieces to this file.
        tensorboard_dir: TensorBoard scalars, or None.
        notes: info lines about accepted flags that change nothing here (printed once).
    """

    log_interval: int
    log_json: str | None
    log_plans: str | None
    tensorboard_dir: str | None
    notes: list[str]


@dataclass
class RunConfig:
    """Everything a training run was asked to do, one group per concern."""

    model: ModelConfig
    parallel: ParallelConfig
    training: TrainingConfig
    data: DataConfig
    logging: LoggingConfig
    wlb: WLBConfig

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> RunConfig:
        """Group a validated namespace (``wlb.megatron.arguments.wlb_run_config``'s)."""
        return cls(
            model=_from_namespace(ModelConfig, ns),
            parallel=_from_namespace(ParallelConfig, ns),
            training=_from_namespace(TrainingConfig, ns),
            data=_from_namespace(DataConfig, ns),
            logging=_from_namespace(LoggingConfig, ns),
            wlb=WLBConfig.from_args(ns),
        )

    def layout(self, world_size: int) -> ParallelLayout:
        """The validated layout these flags describe for ``world_size`` processes."""
        m, p = self.model, self.parallel
        return ParallelLayout(
            world_size=world_size, tp=p.tensor_model_parallel_size,
            pp=p.pipeline_model_parallel_size, cp=p.context_parallel_size, vpp=p.vpp,
            num_layers=m.num_layers, num_attention_heads=m.num_attention_heads,
            num_query_groups=m.num_query_groups,
            global_batch_size=self.training.global_batch_size, seq_length=m.seq_length,
            sequence_parallel=p.sequence_parallel,
        )
