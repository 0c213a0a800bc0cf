"""_ext/iclr22_book.py: author-year bibliography labels and one copy of each page script."""

from __future__ import annotations

import sys
from pathlib import Path

from pybtex.database import parse_string

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "_ext"))

import iclr22_book  # noqa: E402

BIB = """
@inproceedings{a1, author = {Zheng, Wenqing and Huang, Edward and Rao, Nikhil}, year = {2022}}
@inproceedings{b1, author = {Miller, George A.}, year = {1995}}
@inproceedings{c1, author = {Kipf, Thomas and Welling, Max}, year = {2017}}
@inproceedings{d1, author = {Zheng, Yu and Zhang, Zhi and Yan, Shen}, year = {2022}}
"""


def test_labels_read_like_the_author_year_citations_and_are_unique():
    entries = list(parse_string(BIB, "bibtex").entries.values())
    labels = iclr22_book.unique_labels(entries)
    assert labels == {"a1": "Zheng et al., 2022a", "b1": "Miller, 1995",
                      "c1": "Kipf and Welling, 2017", "d1": "Zheng et al., 2022b"}


def test_book_bibliography_labels_are_unique():
    entries = list(parse_string((ROOT / "references.bib").read_text(), "bibtex")
                   .entries.values())
    labels = iclr22_book.unique_labels(entries)
    assert len(set(labels.values())) == len(labels)
    assert not any("+" in label for label in labels.values())  # no alpha labels like CCH+22


def test_repeated_inline_scripts_are_dropped():
    from sphinx.builders.html._assets import _JavaScript

    body = 'const THEBE_JS_URL = "x"'
    scripts = [_JavaScript(None, body=body), _JavaScript("a.js"), _JavaScript("", body=body),
               _JavaScript("a.js", defer="defer")]
    context = {"script_files": scripts}
    iclr22_book.dedupe_scripts(None, "page", "page.html", context, None)
    assert [(s.filename, s.attributes) for s in context["script_files"]] == [
        (None, {"body": body}), ("a.js", {}), ("a.js", {"defer": "defer"})]
