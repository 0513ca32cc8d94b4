"""Default-corpus helpers."""

from __future__ import annotations

from wlb.preprocess.corpus import default_corpus_files, iter_texts, split_definitions


def test_split_definitions_docstring_example():
    text = "import x\ndef f():\n    pass\nclass C:\n    def m(self): ..."
    assert split_definitions(text) == ["import x\n", "def f():\n    pass\n", "class C:\n",
                                       "    def m(self): ..."]
    assert "".join(split_definitions(text)) == text


def test_default_corpus_is_the_stdlib_cut_into_definitions():
    files = default_corpus_files()
    assert files == default_corpus_files() and all(f.endswith(".py") for f in files)
    assert not any("/test/" in f or "site-packages" in f for f in files)
    first = []
    for i, doc in enumerate(iter_texts("default")):
        first.append(doc)
        if i == 200:
            break
    assert len(first) == 201 and all(doc.strip() for doc in first)
