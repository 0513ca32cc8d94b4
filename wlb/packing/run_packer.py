"""The packer a run asks for: a registry packer with its outlier thresholds resolved.

One function resolves the ``auto`` / ``none`` / explicit threshold spelling for training, the
packing and cluster simulators and the packer soak (:func:`resolve_outliers`);
:func:`build_run_packer` builds a training run's packer (its options come from
``wlb.config.WLBConfig.packer_options()``; this package does not import the config).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
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
#: tokens the 'auto' simulation draws per candidate: 150 global batches of the paper's 7B-128K
#: shape (4 x 128K tokens); a larger global batch gets fewer batches, at least AUTO_MIN_BATCHES
AUTO_TOKENS = 150 * 4 * 131072
AUTO_MIN_BATCHES = 40


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


def tune_cache_path(prefix: str, lengths: np.ndarray, **settings) -> str:
    """Where 'auto' keeps its result beside a dataset: ``<prefix>.wlb-auto-<digest>.json``, the
    digest over the documents' lengths and every setting the tuning depends on.

    Example: ``/data/corpus_text_document.wlb-auto-3f2a9c0d1e4b5a67.json``.
    """
    h = hashlib.sha256(np.ascontiguousarray(lengths, dtype=np.int64).tobytes())
    h.update(json.dumps({**settings, "fraction": AUTO_SAMPLE_FRACTION, "tokens": AUTO_TOKENS,
                         "min_batches": AUTO_MIN_BATCHES}, sort_keys=True, default=str).encode())
    return f"{prefix}.wlb-auto-{h.hexdigest()[:16]}.json"


def _read_tuned(path: str) -> TunedOutliers | None:
    try:
        with open(path) as f:
            return TunedOutliers(**json.load(f))
    except (OSError, ValueError, TypeError):  # absent, unreadable or not ours: tune again
        return None


def _write_tuned(path: str, tuned: TunedOutliers) -> None:
    tmp = f"{path}.tmp{os.getpid()}"  # every rank may write: each its own file, then a rename
    try:
        with open(tmp, "w") as f:
            json.dump(dataclasses.asdict(tuned), f)
        os.replace(tmp, path)
    except OSError:  # a read-only dataset directory: tune at every start, as without a cache
        with contextlib.suppress(OSError):
            os.remove(tmp)


def resolve_outliers(
    spec: str | Sequence[int], lengths: np.ndarray, *, num_microbatches: int, seq_length: int,
    cost_model: CostModel, max_tokens: int | None, release: str, delay_budget: float, seed: int,
    name: str = "outlier thresholds", cache_prefix: str | None = None,
) -> OutlierSettings:
    """Thresholds for ``spec``: 'auto', 'none', ``"L1,L2,..."`` or a sequence of ints.

    'auto' simulates candidate settings on a seeded sample of ``lengths``
    (:func:`wlb.packing.autotune.auto_tune_outliers`) for the packer described by the other
    arguments: ``AUTO_SAMPLE_FRACTION`` of the documents, at most twice the tokens that the
    simulation draws (150 global batches, fewer for a global batch above ``AUTO_TOKENS`` / 150
    tokens, at least ``AUTO_MIN_BATCHES``), so a 1M-document index starts as fast as a small one.
    With ``cache_prefix`` (a dataset's path prefix) the result is kept beside the dataset
    (:func:`tune_cache_path`) and later starts with the same lengths and settings read it.
    Explicit thresholds must be positive and increasing (ValueError naming ``name`` otherwise).
    """
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "none":
            return OutlierSettings([], "none")
        if text == "auto":
            path = None
            if cache_prefix:  # tuned before on these lengths with these settings: reuse it
                path = tune_cache_path(
                    cache_prefix, lengths, num_microbatches=num_microbatches,
                    seq_length=seq_length, cost_model=cost_model.to_dict(),
                    max_tokens=max_tokens, release=release, delay_budget=delay_budget, seed=seed)
                cached = _read_tuned(path)
                if cached is not None:
                    return OutlierSettings(cached.thresholds, "auto", cached)
            rng = np.random.default_rng(seed + 1)
            n = max(1, int(AUTO_SAMPLE_FRACTION * len(lengths)))
            sample = rng.choice(lengths, n, replace=False)  # (in random order)
            batch = num_microbatches * seq_length
            batches = min(150, max(AUTO_MIN_BATCHES, AUTO_TOKENS // batch))
            # a large index: only the part of the sample the simulation can draw (twice the
            # tokens of its batches), so that start-up does not grow with the index
            enough = np.searchsorted(np.cumsum(sample), 2 * batches * batch) + 1
            sample = sample[:enough]
            tuned = auto_tune_outliers(
                sample, num_microbatches=num_microbatches, seq_length=seq_length,
                cost_model=cost_model, max_tokens=max_tokens, release=release,
                delay_budget=delay_budget, num_batches=batches, seed=seed,
            )
            if path:
                _write_tuned(path, tuned)
            return OutlierSettings(tuned.thresholds, "auto", tuned)
        spec = [int(x) for x in text.split(",")]
    return OutlierSettings(validate_thresholds(list(spec), name), "given")


def build_run_packer(
    lengths: np.ndarray, num_microbatches: int, seq_length: int, cost: CostModel, seed: int, *,
    packing: str, max_tokens: int | None, thresholds: str | Sequence[int], max_wait: int,
    delay_budget: float, thresholds_label: str, cache_prefix: str | None = None,
) -> tuple[Packer, dict]:
    """The packer ``packing`` with 'auto' outlier thresholds tuned on ``lengths``.

    Training's rules: the paper's count release, and of the tuned options only ``max_wait``
    (capped by ``max_wait``, i.e. ``--wlb-max-wait``).

    Args:
        lengths, num_microbatches, seq_length, cost, seed: the documents and the batch.
        packing, max_tokens, thresholds, max_wait, delay_budget: the ``--wlb-*`` options.
        thresholds_label: how the thresholds were spelled, for ``info`` when not tuned.
        cache_prefix: keep 'auto''s result beside this dataset prefix (None: no cache).

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
                               release="count", delay_budget=delay_budget, seed=seed,
                               cache_prefix=cache_prefix)
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
