"""``--mock-data`` as one corpus both arms read: WLB's mock documents written as ``.bin/.idx``.

Megatron-LM's ``--mock-data`` (``MockGPTDataset``) makes samples of its own, which WLB's packing
cannot see as documents; WLB's mock documents (lengths drawn from ``--mock-length-sample``, scaled
by ``--mock-length-scale``; ``wlb.data.sources.MockDocuments``) have lengths that look like a real
corpus'. So that stock Megatron and WLB train on the same documents, the documents are written
once as a megatron ``.bin/.idx`` corpus (with this project's sidecar) and both arms read it as
``--data-path``: stock Megatron through its own ``GPTDataset``, WLB through its packer.

The corpus lies under ``--data-cache-path`` (default: the system's temporary directory), named
by a digest of what makes it: the same flags find the same files. The first process to get the
lock writes it (atomically: ``write_documents`` renames at the end); every other process, and
every later run, reads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile

from wlb.host.documents import DEFAULT_LENGTHS


class MockCorpusError(ValueError):
    """Mock documents that cannot be made (the message names the flag)."""


def mock_prefix(args) -> str:
    """Where the corpus of these flags lies (``<dir>/wlb_mock/mock_<digest>``)."""
    sample = args.mock_length_sample or DEFAULT_LENGTHS
    try:
        with open(sample, "rb") as f:
            sample_digest = hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError as e:
        raise MockCorpusError(f"--mock-length-sample {sample}: {e}") from None
    key = json.dumps([sample_digest, args.mock_num_docs, args.mock_length_scale, args.seed,
                      args.vocab_size, 1])  # (1: this format)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = args.data_cache_path or tempfile.gettempdir()
    return os.path.join(root, "wlb_mock", f"mock_{digest}")


def materialize(args) -> str:
    """Write (once) and return the ``.bin/.idx`` prefix of ``args``' mock documents.

    Raises:
        MockCorpusError: a tokenizer other than ``NullTokenizer`` (the documents' ids are
            below ``--vocab-size`` - 1, EOD is ``--vocab-size`` - 1), or an unreadable sample.
    """
    import numpy as np

    from wlb.data.sources import MockDocuments
    from wlb.megatron.indexed import write_documents

    if args.tokenizer_type != "NullTokenizer" or not args.vocab_size:
        raise MockCorpusError(f"--mock-data with --tokenizer-type {args.tokenizer_type}: WLB's "
                              "mock documents are token ids; give --tokenizer-type NullTokenizer "
                              "--vocab-size V")
    prefix = mock_prefix(args)
    if os.path.exists(prefix + ".idx"):
        return prefix
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with open(prefix + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer; the others wait, then read
        if not os.path.exists(prefix + ".idx"):
            with open(args.mock_length_sample or DEFAULT_LENGTHS) as f:
                sample = json.load(f)
            docs = MockDocuments(sample, args.mock_num_docs, vocab_size=args.vocab_size,
                                 seed=args.seed, scale=args.mock_length_scale)
            # (each document ends with EOD already; write_documents appends it)
            write_documents(prefix, (np.asarray(docs.tokens(i, 0, int(n))[:-1])
                                     for i, n in enumerate(docs.lengths)),
                            vocab_size=args.vocab_size, eod=args.vocab_size - 1,
                            tokenizer="NullTokenizer")
    return prefix
