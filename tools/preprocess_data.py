#!/usr/bin/env python3
"""Turn JSONL, a directory of text files, or the default corpus into Megatron .bin/.idx.

Examples:
    python -m tools.preprocess_data --input default --output-prefix data/corpus/stdlib
    python -m tools.preprocess_data --input docs.jsonl --json-key text \\
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model tokenizer.json \\
        --output-prefix data/mycorpus
    python -m tools.preprocess_data --input docs.jsonl --tokenizer-type GPT2BPETokenizer \\
        --vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt --output-prefix data/gpt2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from wlb.preprocess.corpus import iter_texts
from wlb.preprocess.tokenizer import TOKENIZER_TYPES, build_tokenizer, tokenizer_from_flags


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--input", required=True,
                   help="JSONL file, directory of text files, or 'default' (Python stdlib sources)")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin/.idx/.meta.json")
    p.add_argument("--tokenizer", default="byte",
                   help="'byte' (default) or a tokenizers JSON (without --tokenizer-type)")
    p.add_argument("--tokenizer-type", default=None, choices=TOKENIZER_TYPES,
                   help="Megatron's tokenizer flags, read offline from local files")
    p.add_argument("--tokenizer-model", default=None,
                   help="HuggingFaceTokenizer: tokenizer.json or a directory with one")
    p.add_argument("--vocab-file", default=None, help="GPT2BPETokenizer: vocab.json")
    p.add_argument("--merge-file", default=None, help="GPT2BPETokenizer: merges.txt")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="NullTokenizer: ids below it (the text is space-separated ids)")
    p.add_argument("--json-key", default="text", help="JSONL field holding the text")
    p.add_argument("--pattern", default="*", help="file glob inside a directory input")
    p.add_argument("--split-definitions", action="store_true",
                   help="one document per Python def/class (always on for --input default)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    try:
        if a.tokenizer_type:
            tok = tokenizer_from_flags(a.tokenizer_type, vocab_size=a.vocab_size,
                                       tokenizer_model=a.tokenizer_model,
                                       vocab_file=a.vocab_file, merge_file=a.merge_file)
        else:
            tok = build_tokenizer(a.tokenizer)
    except ValueError as e:
        print(f"preprocess_data: {e}", file=sys.stderr)
        return 2
    name = a.tokenizer_type or a.tokenizer
    out_dir = os.path.dirname(os.path.abspath(a.output_prefix))
    os.makedirs(out_dir, exist_ok=True)
    from wlb.megatron.indexed import write_documents

    t0 = time.time()
    try:
        docs = (tok.encode(t) for t in iter_texts(a.input, json_key=a.json_key,
                                                  pattern=a.pattern,
                                                  split_defs=a.split_definitions))
        meta = write_documents(a.output_prefix, docs, vocab_size=tok.vocab_size, eod=tok.eod,
                               tokenizer=name)
    except (OSError, ValueError) as e:
        print(f"preprocess_data: {e}", file=sys.stderr)
        return 2
    print(f"[preprocess] {meta['documents']} documents, {meta['tokens']} tokens "
          f"(vocab {meta['vocab_size']}, eod {meta['eod']}) -> {a.output_prefix}.bin/.idx "
          f"in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
