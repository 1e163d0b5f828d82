"""The tutorials as pages of the docs site: a MkDocs hook (``hooks:`` in mkdocs.yml).

Each ``tutorials/NN_name.py`` is a jupytext percent-format script: cells start at a
``# %%`` line, and a ``# %% [markdown]`` cell holds markdown as ``# ``-prefixed comment
lines. :func:`percent_to_markdown` turns such a script into a markdown page (markdown
cells as prose, code cells as fenced python blocks), and the ``on_files`` hook adds one
generated page ``tutorials/NN_name.md`` per script to the site. Nothing is executed: the
tests run the scripts (``tests/test_tutorials.py``), the docs only show them.

The same scripts open as notebooks with ``jupytext --to notebook tutorials/NN_name.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parent
CELL = re.compile(r"^# %%(?P<rest>.*)$")


def tutorial_scripts(folder=TUTORIALS):
    """The tutorial scripts, in order: ``NN_*.py`` (files starting with ``_`` are helpers)."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.py"))


def _cells(text):
    """(kind, lines) for each cell; kind is "markdown" or "code"; a leading header before
    the first ``# %%`` (a jupytext YAML block, a shebang) is dropped."""
    cells, kind, lines = [], None, []
    for line in text.splitlines():
        m = CELL.match(line)
        if m:
            if kind is not None:
                cells.append((kind, lines))
            kind = "markdown" if "[markdown]" in m.group("rest") else "code"
            lines = []
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        cells.append((kind, lines))
    return cells


def _strip_blank(lines):
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def percent_to_markdown(text, source=None):
    """A percent-format script as markdown: prose for the markdown cells, ```` ```python ````
    blocks for the code cells, and a closing line naming ``source`` (the script's path)."""
    out = []
    for kind, lines in _cells(text):
        lines = _strip_blank(lines)
        if not lines:
            continue
        if kind == "markdown":
            prose = []
            for line in lines:
                if line == "#":
                    prose.append("")
                elif line.startswith("# "):
                    prose.append(line[2:])
                else:
                    raise ValueError(f"{source}: markdown cell line is not a '# ' comment: {line!r}")
            out.append("\n".join(prose))
        else:
            out.append("```python\n" + "\n".join(lines) + "\n```")
    if source is not None:
        out.append(f"*This page is the script `{source}` (jupytext percent format); run it with "
                   f"`python {source}`, or open it as a notebook with "
                   f"`jupytext --to notebook {source}`.*")
    return "\n\n".join(out) + "\n"


def on_files(files, config):
    """MkDocs hook: add ``tutorials/NN_name.md`` generated from each script."""
    from mkdocs.structure.files import File

    root = Path(config["config_file_path"]).resolve().parent
    for script in tutorial_scripts(root / "tutorials"):
        rel = script.relative_to(root).as_posix()
        page = percent_to_markdown(script.read_text(encoding="utf-8"), source=rel)
        files.append(File.generated(config, f"tutorials/{script.stem}.md", content=page))
    return files
