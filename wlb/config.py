"""WLBConfig: every WLB knob of a training run, validated, and its ``--wlb-*`` argparse group.

``--wlb-packing megatron --wlb-cp-sharding per-seq`` is stock Megatron (the baseline); the
defaults are WLB's. Each field's ``metadata["help"]`` is both its documentation and its flag help.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields

from wlb.cp.strategy import ALL_STRATEGIES, PAPER_STRATEGIES, Strategy
from wlb.packing import available_packers

#: ``--wlb-cp-sharding`` spelling -> the strategies the per-micro-batch chooser picks from (the
#: one place the flag's spelling meets the CP level's vocabulary, :mod:`wlb.cp.strategy`)
CP_SHARDING: dict[str, tuple[Strategy, ...]] = {
    "per-seq": ("per_seq",),
    "per-doc": ("per_doc",),
    "mixed": ("mixed",),
    "adaptive": ALL_STRATEGIES,
    "adaptive-paper": PAPER_STRATEGIES,
}
CP_SHARDINGS = tuple(CP_SHARDING)
#: ``--wlb-global-batch``: what a WLB packer packs each iteration
GLOBAL_BATCHES = ("documents", "megatron")


def cp_candidates(cp_sharding: str) -> tuple[Strategy, ...]:
    """The strategies ``--wlb-cp-sharding cp_sharding`` chooses among.

    Example: ``cp_candidates("per-doc") == ("per_doc",)``; ``cp_candidates("adaptive")`` is all
    three, ``"adaptive-paper"`` the paper's two.
    """
    if cp_sharding not in CP_SHARDING:
        raise ConfigError(f"--wlb-cp-sharding={cp_sharding!r}; choose from {CP_SHARDINGS}")
    return CP_SHARDING[cp_sharding]


class ConfigError(ValueError):
    """A WLB option with a bad value (the message names the flag and the value)."""


def _parse_thresholds(text: str) -> str | tuple[int, ...]:
    text = text.strip().lower()
    if text in ("auto", "none", ""):
        return text or "none"
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--wlb-outlier-thresholds={text!r}: expected 'auto', 'none' or L1,L2,... (ints)"
        ) from None
    if any(v <= 0 for v in values) or list(values) != sorted(set(values)):
        raise ConfigError(f"--wlb-outlier-thresholds={text!r}: need increasing positive ints")
    return values


@dataclass
class WLBConfig:
    """Workload-balancing options (one ``--wlb-<name>`` flag per field)."""

    packing: str = field(
        default="wlb",
        metadata={"help": "Packer for the micro-batches of each global batch: 'megatron' (stock, "
                  "fixed seq-length samples), 'fixed-greedy', 'wlb-paper' or 'wlb' (default)."},
    )
    cp_sharding: str | None = field(
        default=None,
        metadata={"help": "How each packed micro-batch is split over CP ranks: 'per-seq' "
                  "(stock Megatron), 'per-doc' (WLB), 'mixed' (long documents per-doc, runs of "
                  "short ones per-seq), 'adaptive' (per micro-batch, the fastest of the three by "
                  "the kernel table) or 'adaptive-paper' (the paper's choice of per-seq/per-doc)."
                  " Default: per-seq with --wlb-packing megatron (stock Megatron is that one "
                  "flag), else adaptive."},
    )
    max_tokens: int | None = field(
        default=None,
        metadata={"help": "Largest WLB micro-batch in tokens (S_max); default 1.25 x "
                  "--seq-length."},
    )
    outlier_thresholds: str = field(
        default="auto",
        metadata={"help": "Outlier queue thresholds: 'auto' (tuned by simulation on the "
                  "dataset's lengths), 'none' (no delay) or L1,L2,... in tokens."},
    )
    max_wait: int = field(
        default=32,
        metadata={"help": "Iterations an outlier may wait in a queue before it is forced "
                  "into a batch (bounds delay)."},
    )
    delay_budget: float = field(
        default=0.5,
        metadata={"help": "'auto' thresholds keep the mean token delay (iterations) below this."},
    )
    cost_model: str | None = field(
        default=None,
        metadata={"help": "Cost-model JSON (tools/calibrate output); default: analytic FLOPs "
                  "of the model being trained."},
    )
    kernel_table: str | None = field(
        default=None,
        metadata={"help": "Attention throughput table JSON for the adaptive CP selector; "
                  "default: the table inside --wlb-cost-model when it has one (written by "
                  "tools/calibrate_cost_model.py), else the shipped CPU torch-SDPA table."},
    )
    elastic_cp: bool = field(
        default=False,
        metadata={"help": "Elastic context parallelism (experimental): each micro-batch slot "
                  "regroups the DP x CP ranks of a pipeline stage, so a heavy document borrows "
                  "ranks from other DP replicas (wlb.elastic.planner); needs DP x CP > 1."},
    )
    elastic_comm_coef: float | None = field(
        default=None,
        metadata={"help": "Elastic CP's price of the K/V all-gather, in the cost model's units "
                  "per token gathered over a group (0: free); default: the --wlb-cost-model "
                  "file's 'elastic_comm_coef' (tools/calibrate_comm.py writes it), else 0."},
    )
    global_batch: str = field(
        default="documents",
        metadata={"help": "What a WLB packer packs each iteration: 'documents' (its own seeded "
                  "document stream, whole documents up to --wlb-max-tokens, as the paper) or "
                  "'megatron' (stock Megatron's own global batch: the pieces of its GPTDataset "
                  "samples, repacked, so every iteration trains the baseline's tokens)."},
    )
    shuffle: bool = field(
        default=True,
        metadata={"help": "Seeded order per epoch (--seed) of the documents, a long document's "
                 "--wlb-max-tokens pieces as separate items; off: file order."},
    )
    host_prefetch: bool = field(
        default=True,
        metadata={"help": "Draw the next iteration's plan and make this rank's micro-batches "
                  "(CP strategies, collation, CP shards) in a background thread while the "
                  "current iteration trains (wlb.host.prefetch); off: before each step, on "
                  "the critical path. Plans, losses and checkpoints are the same either way."},
    )

    def __post_init__(self) -> None:
        self.cp_sharding_given = self.cp_sharding is not None
        if self.cp_sharding is None:
            self.cp_sharding = "per-seq" if self.packing == "megatron" else "adaptive"
        if self.packing not in available_packers():
            raise ConfigError(
                f"--wlb-packing={self.packing!r}; choose from {available_packers()}"
            )
        if self.cp_sharding not in CP_SHARDINGS:
            raise ConfigError(f"--wlb-cp-sharding={self.cp_sharding!r}; choose from {CP_SHARDINGS}")
        if self.global_batch not in GLOBAL_BATCHES:
            raise ConfigError(f"--wlb-global-batch={self.global_batch!r}; choose from "
                              f"{GLOBAL_BATCHES}")
        if self.global_batch == "megatron" and not self.shuffle:
            raise ConfigError("--wlb-global-batch megatron repacks Megatron's shuffled samples; "
                              "it cannot be combined with --no-wlb-shuffle")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ConfigError(f"--wlb-max-tokens={self.max_tokens} must be > 0")
        if self.max_wait < 1:
            raise ConfigError(f"--wlb-max-wait={self.max_wait} must be >= 1")
        if self.delay_budget < 0:
            raise ConfigError(f"--wlb-delay-budget={self.delay_budget} must be >= 0")
        if self.elastic_comm_coef is not None and not 0 <= self.elastic_comm_coef < float("inf"):
            raise ConfigError(f"--wlb-elastic-comm-coef={self.elastic_comm_coef} must be a "
                              "finite number >= 0")
        self.thresholds = _parse_thresholds(str(self.outlier_thresholds))

    def no_effect_warnings(self, cp_size: int) -> list[str]:
        """Options set away from their default that do nothing in this mode (warned once)."""
        out = []
        defaults = {f.name: f.default for f in fields(self)}
        changed = {k for k, v in defaults.items() if getattr(self, k) != v}
        if not self.packing.startswith("wlb"):
            for k in ("outlier_thresholds", "max_wait", "delay_budget", "max_tokens",
                      "global_batch"):
                if k in changed:
                    out.append(f"--wlb-{k.replace('_', '-')} has no effect with --wlb-packing "
                               f"{self.packing}")
        elif self.thresholds != "auto" and "delay_budget" in changed:
            out.append("--wlb-delay-budget only applies to --wlb-outlier-thresholds auto")
        if "elastic_comm_coef" in changed and not self.elastic_cp:
            out.append("--wlb-elastic-comm-coef only applies with --wlb-elastic-cp")
        changed.discard("cp_sharding")
        if self.cp_sharding_given:
            changed.add("cp_sharding")
        if cp_size == 1 and not self.elastic_cp and "cp_sharding" in changed:
            out.append(f"--wlb-cp-sharding {self.cp_sharding} has no effect with "
                       "--context-parallel-size 1")
        if "kernel_table" in changed and ((cp_size == 1 and not self.elastic_cp) or
                                          not self.cp_sharding.startswith("adaptive")):
            out.append("--wlb-kernel-table only applies to --wlb-cp-sharding adaptive with CP > 1")
        return out

    def packer_options(self) -> dict:
        """Keyword arguments of ``wlb.packing.run_packer.build_run_packer`` for these options."""
        return {"packing": self.packing, "max_tokens": self.max_tokens,
                "thresholds": self.thresholds, "max_wait": self.max_wait,
                "delay_budget": self.delay_budget,
                "thresholds_label": str(self.outlier_thresholds)}

    @property
    def is_baseline(self) -> bool:
        """Stock Megatron: its packing and its CP sharding (``--wlb-packing megatron``)."""
        return self.packing == "megatron" and self.cp_sharding == "per-seq"

    # ---- argparse ---------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("WLB", "workload-balanced packing and CP sharding")
        for f in fields(cls):
            flag = "--wlb-" + f.name.replace("_", "-")
            help_ = f.metadata["help"] + (f" (default: {f.default})" if f.default else "")
            if f.type in ("bool", bool):
                group.add_argument(flag, action=argparse.BooleanOptionalAction,
                                   default=f.default, help=help_)
                continue
            kind = {"int | None": int, "int": int, "float": float,
                    "float | None": float}.get(str(f.type), str)
            choices = None
            if f.name == "packing":
                choices = available_packers()
            elif f.name == "cp_sharding":
                choices = list(CP_SHARDINGS)
            elif f.name == "global_batch":
                choices = list(GLOBAL_BATCHES)
            default = None if f.default is MISSING else f.default
            group.add_argument(flag, type=kind, default=default, choices=choices, help=help_,
                               dest="wlb_" + f.name)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WLBConfig:
        return cls(**{f.name: getattr(args, "wlb_" + f.name) for f in fields(cls)})
