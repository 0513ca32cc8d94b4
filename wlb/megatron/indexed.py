"""Megatron ``.bin/.idx`` documents: written with megatron's builder, read with its reader.

We write each document as one sequence ending with the EOD token, with a small sidecar
``<prefix>.meta.json`` recording the tokenizer, ``vocab_size`` and ``eod``. We read those and
the files Megatron-LM's own preprocessing writes (no sidecar; the tokenizer comes from the
run's flags; documents of several sequences; EOD or not).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable

import numpy as np
import torch
from megatron.core.datasets.indexed_dataset import (
    _INDEX_HEADER,
    IndexedDataset,
    IndexedDatasetBuilder,
)


class IndexedDataError(ValueError):
    """A missing or inconsistent dataset file (the message names it)."""


def meta_path(prefix: str) -> str:
    return prefix + ".meta.json"


def write_documents(prefix: str, docs: Iterable[np.ndarray], *, vocab_size: int, eod: int,
                    tokenizer: str) -> dict:
    """Write token documents (EOD appended) to ``prefix.bin/.idx`` atomically.

    The files are built under temporary names and renamed at the end, so an interrupted run never
    leaves a half-written dataset under the final name.

    Returns:
        the metadata dict (also written to ``prefix.meta.json``).
    """
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max else np.int32
    tmp = f"{prefix}.tmp{os.getpid()}"
    builder = IndexedDatasetBuilder(tmp + ".bin", dtype=dtype)
    n_docs = n_tokens = 0
    for doc in docs:
        arr = np.append(np.asarray(doc, dtype=np.int64), eod)
        builder.add_document(torch.from_numpy(arr), [len(arr)])
        n_docs += 1
        n_tokens += len(arr)
    if n_docs == 0:
        builder.data_file.close()
        os.remove(tmp + ".bin")
        raise IndexedDataError(f"{prefix}: no documents to write")
    builder.finalize(tmp + ".idx")
    meta = {"tokenizer": tokenizer, "vocab_size": int(vocab_size), "eod": int(eod),
            "documents": n_docs, "tokens": n_tokens}
    with open(tmp + ".meta.json", "w") as f:
        json.dump(meta, f, indent=1)
    for ext in (".bin", ".idx", ".meta.json"):
        os.replace(tmp + ext, prefix + ext)
    return meta


def _check_index_size(prefix: str) -> None:
    """The ``.idx`` holds what its header announces: version (u64), dtype code (u8), S sequences
    and D documents (u64 each), then S int32 lengths, S int64 pointers and D int64 document
    indices. Example: 3 documents -> 9 + 8 + 1 + 8 + 8 + 3 * 4 + 3 * 8 + 4 * 8 = 102 bytes."""
    path = prefix + ".idx"
    size = os.path.getsize(path)
    fixed = len(_INDEX_HEADER) + 8 + 1 + 8 + 8
    with open(path, "rb") as f:
        f.seek(len(_INDEX_HEADER))
        head = f.read(fixed - len(_INDEX_HEADER))
    if len(head) < fixed - len(_INDEX_HEADER):
        raise IndexedDataError(f"--data-path {prefix}: {path} is truncated ({size} bytes, a "
                               f"header alone is {fixed}); rebuild it with "
                               "tools/preprocess_data.py")
    _, _, n_seq, n_doc = struct.unpack("<QBQQ", head)
    want = fixed + 12 * n_seq + 8 * n_doc
    if size != want:
        raise IndexedDataError(f"--data-path {prefix}: {path} has {size} bytes, its header "
                               f"announces {want} ({n_seq} sequences); truncated or corrupt, "
                               "rebuild it with tools/preprocess_data.py")


class IndexedDocuments:
    """A :class:`wlb.data.DocumentSource` over a megatron indexed dataset.

    A document is one of the index's documents (``document_indices``): its sequences (one each,
    or one per sentence with Megatron-LM's ``--split-sentences``) read together, as they lie
    one after another in the ``.bin``. Whether its last token is EOD depends on how it was made
    (Megatron-LM's ``--append-eod``; ours always appends it); nothing here assumes it.

    Args:
        prefix: the dataset's path without ``.bin`` / ``.idx``.
        tokenizer: the run's tokenizer (``vocab_size``, ``eod``), from ``--tokenizer-type`` and
            its files; None: the sidecar ``<prefix>.meta.json`` written by our preprocessing.
            A file made by Megatron-LM's ``tools/preprocess_data.py`` has no sidecar and needs
            the tokenizer; with both, they must agree.
    """

    def __init__(self, prefix: str, tokenizer=None) -> None:
        for ext in (".bin", ".idx"):
            if not os.path.exists(prefix + ext):
                raise IndexedDataError(
                    f"--data-path {prefix}: {prefix + ext} not found (a dataset is a .bin/.idx "
                    "pair from tools/preprocess_data.py, ours or Megatron-LM's)")
        meta = None
        if os.path.exists(meta_path(prefix)):
            try:
                with open(meta_path(prefix)) as f:
                    raw = json.load(f)
                meta = int(raw["vocab_size"]), int(raw["eod"])
            except (ValueError, KeyError, TypeError) as e:
                raise IndexedDataError(f"{meta_path(prefix)}: bad metadata ({e})") from None
        if tokenizer is not None:
            flags = int(tokenizer.vocab_size), int(tokenizer.eod)
            if meta is not None and meta != flags:
                raise IndexedDataError(
                    f"--data-path {prefix} has vocab_size={meta[0]}, eod={meta[1]} (its "
                    f".meta.json) but the --tokenizer-type flags give vocab_size={flags[0]}, "
                    f"eod={flags[1]}; preprocess it with the same tokenizer")
            meta = flags
        if meta is None:
            raise IndexedDataError(
                f"--data-path {prefix}: no {meta_path(prefix)} (a file from Megatron-LM's "
                "preprocessing): give the tokenizer it was made with, --tokenizer-type and its "
                "--vocab-size / --tokenizer-model / --vocab-file --merge-file")
        self.vocab_size, self.eod = meta
        if os.path.getsize(prefix + ".bin") == 0:
            raise IndexedDataError(f"--data-path {prefix}: the dataset has no documents "
                                   f"({prefix}.bin is empty)")
        with open(prefix + ".idx", "rb") as f:
            header = f.read(len(_INDEX_HEADER))
        if header != _INDEX_HEADER:  # checked first: megatron's reader asserts, then its
            # __del__ prints a second traceback for the half-built object
            raise IndexedDataError(
                f"--data-path {prefix}: cannot read {prefix}.idx (not a megatron index: header "
                f"{header!r}); rebuild it with tools/preprocess_data.py"
            )
        _check_index_size(prefix)  # before megatron's reader, whose __del__ prints a traceback
        try:
            self.dataset = IndexedDataset(prefix, mmap=True)
        except Exception as e:  # megatron's reader asserts / struct errors on a corrupt index
            raise IndexedDataError(
                f"--data-path {prefix}: cannot read {prefix}.idx ({type(e).__name__}: {e}); "
                "rebuild it with tools/preprocess_data.py"
            ) from None
        index = self.dataset.index
        seq = np.asarray(self.dataset.sequence_lengths, dtype=np.int64)  # [S]
        docs = np.asarray(self.dataset.document_indices, dtype=np.int64)  # [D + 1]: first seqs
        if len(seq) == 0 or len(docs) < 2:
            raise IndexedDataError(f"--data-path {prefix}: the dataset has no documents")
        if (np.diff(docs) <= 0).any() or docs[0] != 0 or docs[-1] != len(seq):
            raise IndexedDataError(f"--data-path {prefix}: {prefix}.idx has inconsistent "
                                   "document indices; rebuild it")
        itemsize = index.dtype_size
        pointers = np.asarray(index.sequence_pointers, dtype=np.int64)
        if (pointers[1:] != pointers[:-1] + seq[:-1] * itemsize).any():
            raise IndexedDataError(f"--data-path {prefix}: {prefix}.idx describes sequences "
                                   "that do not lie one after another in the .bin")
        want = int(pointers[-1]) + int(seq[-1]) * itemsize
        have = os.path.getsize(prefix + ".bin")
        if have != want:
            raise IndexedDataError(
                f"--data-path {prefix}: {prefix}.bin has {have} bytes, its index describes "
                f"{want} (truncated or from another dataset)"
            )
        # [D]: tokens per document (its sequences together) and where it starts in the .bin
        self.lengths = np.add.reduceat(seq, docs[:-1])
        self._start = pointers[docs[:-1]] // itemsize
        if (self.lengths <= 0).any():
            bad = int(np.flatnonzero(self.lengths <= 0)[0])
            raise IndexedDataError(f"--data-path {prefix}: document {bad} has length "
                                   f"{int(self.lengths[bad])}")
        self._tokens = np.memmap(prefix + ".bin", dtype=index.dtype, mode="r")
        self.prefix = prefix

    def tokens(self, doc_id: int, start: int, stop: int) -> np.ndarray:
        a = int(self._start[doc_id])
        return self._tokens[a + int(start):a + int(stop)].astype(np.int64)


def tokenizer_from_sidecar(args) -> None:
    """No ``--tokenizer-type``: a ``--data-path`` written by this project's
    ``tools/preprocess_data.py`` with its byte tokenizer (``<prefix>.meta.json`` says so) is read
    with megatron's ``NullTokenizer`` of the sidecar's vocabulary (ids below V - 1, EOD V - 1:
    the byte corpus' 256 bytes and EOD 256). Anything else keeps Megatron-LM's default."""
    from wlb.data.blend import parse_blend

    if args.tokenizer_type is not None or not args.data_path:
        return
    metas = []
    for prefix in parse_blend(args.data_path)[0]:
        try:
            with open(meta_path(prefix), encoding="utf-8") as f:
                metas.append(json.load(f))
        except (OSError, ValueError):
            return
    kinds = {(m.get("tokenizer"), m.get("vocab_size"), m.get("eod")) for m in metas}
    if len(kinds) == 1:
        tok, vocab, eod = kinds.pop()
        if tok == "byte" and eod == vocab - 1 and args.vocab_size in (None, vocab):
            args.tokenizer_type, args.vocab_size = "NullTokenizer", vocab
