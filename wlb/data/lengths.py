"""Document-length samples: the shipped files, read and checked in one place.

The packing simulator, the cluster simulator, the packer soak and ``--mock-data`` all draw their
documents from a JSON list of lengths; :data:`DEFAULT_LENGTHS` is the shipped wlbllm sample.
"""

from __future__ import annotations

import json
import os

import numpy as np

from wlb.packing.stream import DataError, validate_lengths

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: the shipped document-length sample (drawn from 128K-context training data)
DEFAULT_LENGTHS = os.path.join(ROOT, "data", "doc_lengths", "doc_lengths_wlbllm.json")
#: context of the data the shipped samples were drawn from (max 124,913 tokens)
SAMPLE_CONTEXT = 131072


def read_lengths(path: str, flag: str = "--doc-lengths") -> np.ndarray:
    """The JSON list of positive integer lengths in ``path`` (DataError naming ``flag``, the file
    and the bad value otherwise)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{flag} file {path!r} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{flag} file {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise DataError(f"{flag} file {path!r} must hold a JSON list of integers")
    return validate_lengths(data, f"{flag} {path}")


def scaled_lengths(path: str, context: int, scale: float | None = None) -> np.ndarray:
    """Lengths for a ``context``-token window: the sample scaled by context / 128K unless
    ``scale`` is given, rounded and clipped to at least 1 token.

    Example: a 100,000-token document of the 128K sample is 50,000 tokens at a 64K context
    (``scaled_lengths(path, 65536)``).
    """
    raw = read_lengths(path).astype(np.float64)
    s = context / SAMPLE_CONTEXT if scale is None else scale
    return np.maximum(1, np.round(raw * s)).astype(np.int64)
