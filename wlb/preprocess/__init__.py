"""Offline preprocessing for ``tools/preprocess_data.py``: text corpora and tokenizers.

Modules: ``corpus`` (the embedded default corpus and text inputs) and ``tokenizer`` (byte-level
and trained BPE tokenizers). Training never imports these: it reads the ``.bin/.idx`` files.
"""
