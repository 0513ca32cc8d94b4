"""The run's documents: the datasets of ``--data-path`` (or mock ones), blended and split.

``--split`` applies to each dataset's own documents (Megatron's rule, ``wlb.data.split``); a
weighted ``--data-path`` blends each split in tokens (``wlb.data.blend``). Training packs the
train view, validation reads the valid view; a view's document ids are its own (0..n-1).

The datasets are opened by the reader the caller hands in (``open_dataset``: megatron's
``.bin/.idx`` reader, ``wlb.megatron.indexed.IndexedDocuments``), so this module needs nothing
of megatron-core.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from wlb.data.blend import BlendError, blend_split
from wlb.data.lengths import DEFAULT_LENGTHS
from wlb.data.sources import ConcatDocuments, DocumentSource, DocumentView, MockDocuments
from wlb.run_config import DataConfig, ModelConfig


class DocumentsError(ValueError):
    """Datasets that cannot be used together, or a tokenizer that disagrees with them."""


#: opens one ``--data-path`` prefix with the run's tokenizer (or None): a document source
OpenDataset = Callable[[str, object], DocumentSource]


@dataclass
class RunDocuments:
    """Attributes:
        source: every document of every dataset (ids run through the datasets in order).
        train: the train split (blended), packed by the run's packer.
        valid: the valid split (blended), or None when its weight is 0.
        train_blend: for stock Megatron over a weighted blend: (document lengths of each
            dataset's train split, weights), ``train`` then being those splits one after another
            (the stock schedule blends samples, as megatron-core's ``BlendedDataset``); else None.
    """

    source: DocumentSource
    train: DocumentView
    valid: DocumentView | None
    train_blend: tuple[list, list[float]] | None = None


def _tokenizer(data: DataConfig, model: ModelConfig):
    """The --tokenizer-type's tokenizer (None: none given)."""
    if data.tokenizer_type is None:
        return None
    from wlb.preprocess.tokenizer import tokenizer_from_flags

    return tokenizer_from_flags(data.tokenizer_type, vocab_size=model.vocab_size,
                                tokenizer_model=data.tokenizer_model, vocab_file=data.vocab_file,
                                merge_file=data.merge_file)


def build_source(data: DataConfig, model: ModelConfig, seed: int,
                 open_dataset: OpenDataset | None = None) -> DocumentSource:
    """Every document: the mock ones, or the datasets of ``--data-path`` one after another,
    each opened by ``open_dataset`` (their vocabulary from ``--tokenizer-type`` or from their
    sidecars)."""
    tokenizer = _tokenizer(data, model)
    if data.mock_data:
        path = data.mock_length_sample or DEFAULT_LENGTHS
        try:
            with open(path) as f:
                sample = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--mock-length-sample {path}: {e}") from None
        vocab = tokenizer.vocab_size if tokenizer else None
        return MockDocuments(sample, data.mock_num_docs, vocab_size=vocab or model.vocab_size
                             or 256, seed=seed, scale=data.mock_length_scale)
    if open_dataset is None:
        raise TypeError("build_source: a --data-path run needs open_dataset (its reader)")
    prefixes = data.blend[0]
    sources = [open_dataset(p, tokenizer) for p in prefixes]
    if len(sources) == 1:
        return sources[0]
    try:
        return ConcatDocuments(sources, [f"--data-path {p}" for p in prefixes])
    except ValueError as e:
        raise DocumentsError(str(e)) from None


def split_documents(source: DocumentSource, data: DataConfig, seed: int,
                    stock_blend: bool = False) -> RunDocuments:
    """The train and valid views of ``source`` under ``--split`` and the blend weights.

    ``stock_blend``: the train view of a weighted blend is the datasets' train splits, each once
    (stock Megatron blends their samples; see :class:`RunDocuments`)."""
    if isinstance(source, ConcatDocuments):
        sizes = [s.lengths for s in source.sources]
        weights = data.blend[1]
    else:
        sizes, weights = [source.lengths], None
    try:
        views = [blend_split(sizes, weights, data.split_weights, k, seed) for k in (0, 1)]
    except BlendError as e:
        raise DocumentsError(str(e)) from None
    if len(views[0]) == 0:
        raise DocumentsError(f"--split={data.split!r} leaves no train documents "
                             f"({len(source.lengths)} in all)")
    valid = DocumentView(source, views[1]) if len(views[1]) else None
    if stock_blend and weights is not None:
        parts = [blend_split([s], None, data.split_weights, 0, seed) for s in sizes]
        train = blend_split(sizes, None, data.split_weights, 0, seed)
        return RunDocuments(source, DocumentView(source, train), valid,
                            ([sz[p] for sz, p in zip(sizes, parts)], list(weights)))
    return RunDocuments(source, DocumentView(source, views[0]), valid)


def build_documents(data: DataConfig, model: ModelConfig, seed: int, stock_blend: bool = False,
                    open_dataset: OpenDataset | None = None) -> RunDocuments:
    """Open (and check) the run's datasets with ``open_dataset`` and split them
    (``stock_blend``: see :func:`split_documents`)."""
    return split_documents(build_source(data, model, seed, open_dataset), data, seed,
                           stock_blend)
