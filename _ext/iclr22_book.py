"""Sphinx extension for the book's pages (listed in ``_config.yml`` under local_extensions).

- **One copy of each script.** sphinx-thebe (always loaded by Jupyter Book 1) registers its
  inline ``const THEBE_JS_URL = ...`` script once per read of the environment, so a page can
  carry it twice and the browser reports "Identifier 'THEBE_JS_URL' has already been
  declared". Identical script entries are dropped from every page.
- **Bibliography labels that match the citations.** The text cites author-year
  (``Xu et al. [2022]``); the bibliography style ``authoryear`` labels its entries the same
  way (``[Xu et al., 2022]``, with ``a``/``b`` after the year when two entries would read
  alike) instead of alpha labels such as ``[XHL+22]``, and sorts them by author and year.
- **A colour mode** for the theme (``html_context["default_mode"] = "auto"``), whose script
  otherwise logs "Got invalid theme mode" on every page.
- **Offline widget and maths JavaScript.** ``_static_widgets/`` (packed by
  ``tools/pack_widgets_js.py``) joins ``html_static_path`` here, after Jupyter Book has read
  ``_config.yml``: Jupyter Book adds every ``.js`` of the static paths it sees to every page.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pybtex.database import parse_file
from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle

LABEL_STYLE = "iclr22_authoryear"
FORMATTING_STYLE = "authoryear"
WIDGETS_FOLDER = "_static_widgets"


def _last_names(entry: Any) -> list[str]:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = []
    for person in people:
        last = " ".join(person.prelast_names + person.last_names)
        names.append(last.replace("{", "").replace("}", ""))
    return names


def author_year(entry: Any) -> str:
    """``Miller, 1995``, ``Xu and Wang, 2022`` or ``Xu et al., 2022`` (as the text cites)."""
    names = _last_names(entry)
    if not names:
        who = entry.fields.get("key", entry.key)
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


#: key -> label over the whole bibliography (labels must be unique across all pages).
LABELS: dict[str, str] = {}


def unique_labels(entries: list[Any]) -> dict[str, str]:
    """Author-year label of each entry; entries that would read alike get a, b, ... after
    the year, in the order of the .bib file."""
    labels = {entry.key: author_year(entry) for entry in entries}
    counts, seen = Counter(labels.values()), Counter()
    for entry in entries:
        label = labels[entry.key]
        if counts[label] > 1:
            seen[label] += 1
            labels[entry.key] = label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
    return labels


class AuthorYearLabelStyle(BaseLabelStyle):
    """Author-year labels, unique over the whole bibliography (see :func:`unique_labels`)."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield LABELS.get(entry.key) or author_year(entry)


class AuthorYearStyle(UnsrtStyle):
    """pybtex's unsrt entry formatting, sorted by author and year, author-year labels."""

    default_sorting_style = "author_year_title"
    default_label_style = LABEL_STYLE


def dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict,
                   doctree: Any) -> None:
    """Drop repeated identical entries from the page's script list."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        # an inline script is registered once with filename None, once with "" (env reload)
        filename = str(getattr(script, "filename", script) or "")
        key = (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def configure(app: Any, config: Any) -> None:
    """Copy ``_static_widgets/`` (the packed JavaScript) into the build's ``_static/``, and
    give the theme a colour mode (pydata's default ``""`` makes its script log
    "Got invalid theme mode" on every page)."""
    folder = Path(app.srcdir) / WIDGETS_FOLDER
    if folder.is_dir() and str(folder) not in map(str, config.html_static_path):
        config.html_static_path.append(str(folder))
    config.html_context.setdefault("default_mode", "auto")
    entries = []
    for bibfile in getattr(config, "bibtex_bibfiles", []) or []:
        entries += parse_file(str(Path(app.srcdir) / bibfile), "bibtex").entries.values()
    LABELS.update(unique_labels(entries))


def setup(app: Any) -> dict:
    register_plugin("pybtex.style.labels", LABEL_STYLE, AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", FORMATTING_STYLE, AuthorYearStyle)
    app.connect("config-inited", configure)
    # html-page-context is emitted "first result wins": run before any handler that returns.
    app.connect("html-page-context", dedupe_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
