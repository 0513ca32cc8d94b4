"""The packer a run asks for: a registry packer with its outlier thresholds resolved.

One function resolves the ``auto`` / ``none`` / explicit threshold spelling for training, the
packing and cluster simulators and the packer soak (:func:`resolve_outliers`);
:func:`build_run_packer` builds a training run's packer (its options come from
``wlb.config.WLBConfig.packer_options()``; this package does not import the config).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wlb.cost_model import CostModel
from wlb.packing.autotune import TunedOutliers, auto_tune_outliers
from wlb.packing.base import Packer, build_packer
from wlb.packing.queues import validate_thresholds

#: 'auto' tunes on this fraction of the documents, drawn with seed + 1 (the paper tunes offline on
#: a sample of the training documents)
AUTO_SAMPLE_FRACTION = 0.3


@dataclass(frozen=True)
class OutlierSettings:
    """Outlier-queue thresholds and where they came from.

    Attributes:
        thresholds: ascending queue thresholds in tokens ([] = no outlier delay).
        source: "auto" (tuned), "none" or "given".
        tuned: the tuning result (its max_wait and balance_tol too) when ``source == "auto"``.
    """

    thresholds: list[int]
    source: str
    tuned: TunedOutliers | None = None


def resolve_outliers(
    spec: str | Sequence[int], lengths: np.ndarray, *, num_microbatches: int, seq_length: int,
    cost_model: CostModel, max_tokens: int | None, release: str, delay_budget: float, seed: int,
    name: str = "outlier thresholds",
) -> OutlierSettings:
    """Thresholds for ``spec``: 'auto', 'none', ``"L1,L2,..."`` or a sequence of ints.

    'auto' simulates candidate settings on a seeded sample of ``lengths``
    (:func:`wlb.packing.autotune.auto_tune_outliers`) for the packer described by the other
    arguments. Explicit thresholds must be positive and increasing (ValueError naming ``name``
    otherwise).
    """
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "none":
            return OutlierSettings([], "none")
        if text == "auto":
            rng = np.random.default_rng(seed + 1)
            n = max(1, int(AUTO_SAMPLE_FRACTION * len(lengths)))
            sample = rng.choice(lengths, n, replace=False)
            tuned = auto_tune_outliers(
                sample, num_microbatches=num_microbatches, seq_length=seq_length,
                cost_model=cost_model, max_tokens=max_tokens, release=release,
                delay_budget=delay_budget, seed=seed,
            )
            return OutlierSettings(tuned.thresholds, "auto", tuned)
        spec = [int(x) for x in text.split(",")]
    return OutlierSettings(validate_thresholds(list(spec), name), "given")


def build_run_packer(
    lengths: np.ndarray, num_microbatches: int, seq_length: int, cost: CostModel, seed: int, *,
    packing: str, max_tokens: int | None, thresholds: str | Sequence[int], max_wait: int,
    delay_budget: float, thresholds_label: str,
) -> tuple[Packer, dict]:
    """The packer ``packing`` with 'auto' outlier thresholds tuned on ``lengths``.

    Training's rules: the paper's count release, and of the tuned options only ``max_wait``
    (capped by ``max_wait``, i.e. ``--wlb-max-wait``).

    Args:
        lengths, num_microbatches, seq_length, cost, seed: the documents and the batch.
        packing, max_tokens, thresholds, max_wait, delay_budget: the ``--wlb-*`` options.
        thresholds_label: how the thresholds were spelled, for ``info`` when not tuned.

    Returns:
        (packer, info) where info records the thresholds used and where they came from.
    """
    kw: dict = {"num_microbatches": num_microbatches, "seq_length": seq_length,
                "cost_model": cost}
    info: dict = {"packer": packing}
    if packing.startswith("wlb"):
        kw["max_tokens"] = max_tokens
        spec = thresholds if isinstance(thresholds, str) else list(thresholds)
        out = resolve_outliers(spec, lengths, num_microbatches=num_microbatches,
                               seq_length=seq_length, cost_model=cost, max_tokens=max_tokens,
                               release="count", delay_budget=delay_budget, seed=seed)
        kw["outlier_thresholds"] = out.thresholds
        if out.tuned is not None:
            if packing == "wlb":
                kw["max_wait"] = min(out.tuned.max_wait, max_wait)
            info.update(thresholds=out.thresholds, thresholds_from="auto",
                        sim_imbalance=out.tuned.imbalance_mean,
                        sim_delay=out.tuned.delay_iters_mean)
        else:
            if packing == "wlb":
                kw["max_wait"] = max_wait
            info.update(thresholds=out.thresholds, thresholds_from=thresholds_label)
    return build_packer(packing, **kw), info
