"""The documentation site: one strict build, its API page, its links, its tables.

The site is built once per module with ``mkdocs build --strict`` into a temporary
folder (warnings are errors: broken internal links and anchors, pages missing from
the nav, docstring problems). The tests then read the built HTML: the API page
documents the estimators and every parameter of their constructors, no link leaves
the repository except to public web pages, the benchmarks page holds every table of
``benchmarks/results/*.md``, and every tutorial has its page.
"""

from __future__ import annotations

import importlib.util
import inspect
import ipaddress
import itertools
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TUTORIALS = REPO / "tutorials"
RESULTS = REPO / "benchmarks" / "results"

# the docs tools are in the test extra of pyproject.toml
DOCS_TOOLS = {"mkdocs": "mkdocs", "material": "mkdocs-material",
              "mkdocstrings": "mkdocstrings", "mkdocstrings_handlers": "mkdocstrings-python"}


def _missing_tools():
    return [pkg for mod, pkg in DOCS_TOOLS.items() if importlib.util.find_spec(mod) is None]


def _tutorial_scripts():
    return sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = _missing_tools()
    if missing:
        pytest.skip(f"docs tools not installed: {', '.join(missing)} "
                    "(pip install -e '.[test]' installs them)")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert "WARNING" not in log, log[-6000:]
    return out


class _Page(HTMLParser):
    """Collects a page's ids, its links (href / src), and per top-level API object
    (a heading whose id is a dotted name) the text of its <code> elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = set(), []
        self.codes = {}           # heading id -> [code texts until the next heading of its level]
        self._section = None
        self._level = None
        self._in_code = 0
        self._buf = []
        self.tables = []          # per <table>: its header cells
        self._in_th = False
        self._th = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.links.append(a[key])
        if re.fullmatch(r"h[1-6]", tag):
            level = int(tag[1])
            hid = a.get("id", "")
            if "." in hid and hid.startswith("dasksvm"):
                if self._level is None or level <= self._level:
                    self._section, self._level = hid, level
                    self.codes.setdefault(hid, [])
            elif self._level is not None and level <= self._level:
                self._section = self._level = None
        if tag == "code":
            self._in_code += 1
            self._buf = []
        if tag == "table":
            self.tables.append([])
        if tag == "th":
            self._in_th, self._th = True, []

    def handle_endtag(self, tag):
        if tag == "code" and self._in_code:
            self._in_code -= 1
            if self._section is not None:
                self.codes[self._section].append("".join(self._buf).strip())
        if tag == "th" and self._in_th:
            self._in_th = False
            if self.tables:
                self.tables[-1].append(" ".join("".join(self._th).split()))

    def handle_data(self, data):
        if self._in_code:
            self._buf.append(data)
        if self._in_th:
            self._th.append(data)


def _parse(path):
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_site_builds_with_the_expected_pages(site):
    for page in ["index.html", "choosing.html", "api.html", "benchmarks.html", "tutorials.html",
                 "design.html", "linear.html", "newton.html", "multiclass.html", "ww.html",
                 "kernels.html", "cascade.html", "monitoring.html"]:
        assert (site / page).is_file(), page


@pytest.mark.parametrize("name, path", [
    ("LinearSVC", "dasksvm.LinearSVC"),
    ("MulticlassSVC", "dasksvm.estimators.multiclass.MulticlassSVC"),
    ("CascadeSVC", "dasksvm.CascadeSVC"),
    ("RandomFourierFeatures", "dasksvm.RandomFourierFeatures"),
    ("OrthogonalRandomFeatures", "dasksvm.OrthogonalRandomFeatures"),
    ("Nystroem", "dasksvm.Nystroem"),
])
def test_api_page_documents_every_parameter(site, name, path):
    import dasksvm

    page = _parse(site / "api.html")
    assert path in page.ids, f"no API entry for {path}"
    codes = set(page.codes[path])
    params = [p for p in inspect.signature(getattr(dasksvm, name)).parameters
              if p not in ("self", "args", "kwargs")]
    assert params
    missing = [p for p in params if p not in codes]
    assert not missing, f"{name}: parameters not in its API entry: {missing}"
    assert f"{path}.fit" in page.ids or name.endswith(("Features", "Nystroem")), page.ids


def test_api_page_lists_the_public_names(site):
    import dasksvm
    import dasksvm.datasets

    text = (site / "api.html").read_text(encoding="utf-8")
    page = _parse(site / "api.html")
    for name in dasksvm.__all__:
        if name.startswith("__"):
            continue
        assert f"dasksvm.{name}" in text, name
    for name in dasksvm.datasets.__all__:
        assert any(i.startswith("dasksvm.datasets") and i.endswith("." + name) for i in page.ids), name


def _is_public_host(host):
    if not host or host == "localhost" or host.endswith(".local"):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return ip.is_global


def test_links_stay_inside_the_repository_or_go_to_public_pages(site):
    """Every href and src of every page: http(s) links go to public hosts; nothing points
    to ``../shared`` or the file system; relative links resolve to a file of the site
    (and, for a page, to an id on it)."""
    site = site.resolve()
    pages = {p: _parse(p) for p in site.rglob("*.html")}
    problems = []
    for page, parsed in pages.items():
        if page.name == "404.html":  # served for any missing path, so its links are absolute
            continue
        where = page.relative_to(site)
        for link in parsed.links:
            parts = urlsplit(link)
            if "shared/" in link or "/work/" in link:
                problems.append(f"{where}: {link} (outside the repository)")
                continue
            if parts.scheme in ("http", "https"):
                if not _is_public_host(parts.hostname):
                    problems.append(f"{where}: {link} (not a public page)")
                continue
            if parts.scheme in ("data", "mailto"):
                continue
            if parts.scheme or parts.netloc or link.startswith("/"):
                problems.append(f"{where}: {link} (absolute or other scheme)")
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if site not in target.parents and target != site:
                problems.append(f"{where}: {link} (leaves the site)")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{where}: {link} (no such file)")
                continue
            if (parts.fragment and target.suffix == ".html" and target in pages
                    and unquote(parts.fragment) not in pages[target].ids):
                problems.append(f"{where}: {link} (no such anchor)")
    assert not problems, "\n".join(problems)


MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")


def _markdown_of(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":  # the markdown cells of a percent-format script
        text = "\n".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)   # fenced code
    return re.sub(r"`[^`\n]*`", "", text)               # inline code


def test_markdown_sources_do_not_link_outside_the_repository():
    """The same rule on the sources (all of docs/ and the tutorials): relative links
    resolve inside the repository, and none points to ../shared."""
    problems = []
    sources = sorted(DOCS.rglob("*.md")) + _tutorial_scripts()
    for src in sources:
        text = _markdown_of(src)
        for target in MD_LINK.findall(text) + HTML_LINK.findall(text):
            parts = urlsplit(target)
            if parts.scheme in ("http", "https"):
                if not _is_public_host(parts.hostname):
                    problems.append(f"{src.relative_to(REPO)}: {target} (not a public page)")
                continue
            if parts.scheme or "shared/" in target:
                problems.append(f"{src.relative_to(REPO)}: {target}")
                continue
            if parts.path:
                resolved = (src.parent / unquote(parts.path)).resolve()
                if REPO not in resolved.parents:
                    problems.append(f"{src.relative_to(REPO)}: {target} (outside the repository)")
    assert not problems, "\n".join(problems)


def _table_headers(md_text):
    """(header cells, number of separator cells) of every table in a markdown text: a
    ``|`` row followed by a ``| --- |`` row. Cells are whitespace-normalized, with code
    and bold markup dropped as the rendering drops it."""
    headers = []
    lines = md_text.splitlines()
    for line, below in itertools.pairwise(lines):
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", below.strip()):
            row = line.strip()[1:].rstrip()
            row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)]
            n_sep = below.strip().strip("|").count("|") + 1
            headers.append(([" ".join(re.sub(r"`|\*\*", "", c).split()) for c in cells], n_sep))
    return headers


def test_benchmarks_page_holds_every_results_table(site):
    tables = _parse(site / "benchmarks.html").tables
    included = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    problems = []
    for md in sorted(RESULTS.glob("*.md")):
        if f'"benchmarks/results/{md.name}' not in included:
            problems.append(f"{md.name} is not included: add a heading and "
                            f"'--8<-- \"benchmarks/results/{md.name}:2\"' to docs/benchmarks.md")
            continue
        for header, n_sep in _table_headers(md.read_text(encoding="utf-8")):
            if header in tables:
                continue
            if len(header) != n_sep:
                problems.append(f"{md.name}: a table is not valid markdown, its header has "
                                f"{len(header)} cells and its separator row {n_sep} (write a "
                                f"'|' inside a cell as '\\|'): {header}")
            else:
                problems.append(f"{md.name}: table {header} not on the benchmarks page")
    assert not problems, "\n".join(problems)


def test_every_tutorial_has_its_page(site):
    scripts = _tutorial_scripts()
    assert len(scripts) >= 4
    for script in scripts:
        page = site / "tutorials" / f"{script.stem}.html"
        assert page.is_file(), f"no page for {script.name}"
        html = page.read_text(encoding="utf-8")
        title = next(line[4:] for line in script.read_text().splitlines()
                     if line.startswith("# # "))
        assert title.split(":")[0] in html
        # the code cells, highlighted, with the cluster the tutorial starts
        assert ("LocalCluster" in html or "slurm_cluster" in html) and "highlight" in html


def test_choosing_page_names_every_solver_and_quotes_existing_results():
    from dasksvm.solvers import SOLVERS

    text = (DOCS / "choosing.md").read_text(encoding="utf-8")
    for name, entry in SOLVERS.items():
        if entry.family == "binary":
            assert f'solver="{name}"' in text, name
        elif entry.family == "multiclass":
            assert f"**{name.upper()}" in text, name
    assert "CascadeSVC" in text and "RandomFourierFeatures" in text
    quoted = set(re.findall(r"`(?:benchmarks/results/)?(\w+)\.md`", text))
    assert quoted
    for stem in quoted:
        assert (RESULTS / f"{stem}.md").is_file() or (DOCS / f"{stem}.md").is_file(), stem


def _load_render():
    spec = importlib.util.spec_from_file_location("tutorial_render", TUTORIALS / "_render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_percent_format_to_markdown():
    render = _load_render()
    script = ("# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n# %%\nx = 1\n\n\n"
              "# %%\n\n# %% [markdown]\n# More.\n")
    md = render.percent_to_markdown(script, source="tutorials/00_x.py")
    assert md.startswith("# Title\n\nSome *text*.\n\n```python\nx = 1\n```\n\nMore.\n\n")
    assert "`tutorials/00_x.py`" in md
    with pytest.raises(ValueError, match="not a '# ' comment"):
        render.percent_to_markdown("# %% [markdown]\nx = 1\n")
    assert [p.name for p in render.tutorial_scripts()] == [p.name for p in _tutorial_scripts()]
