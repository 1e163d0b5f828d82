"""The ``/dasksvm`` page of the Dask dashboard: every fit's relative duality gap, live.

The round engine logs one event per round on the scheduler's topic
``"dasksvm-progress"`` (:data:`~dasksvm.parallel.engine.PROGRESS_TOPIC`), and
one when a fit starts, recovers from a lost worker and ends. :class:`DaskSVMPage`
is a scheduler plugin that keeps the recent fits from those events and serves a
Bokeh document at ``/dasksvm`` on the scheduler's own dashboard, beside
``/status`` and the task stream, the way distributed adds its own pages:

- a line per fit (``<fit id> <solver>``): the relative gap ``(P - D) / |P|`` of
  each certified round, on a log axis, against the seconds since the fit
  started;
- a table: fit id, solver, status, rounds, current relative gap, primal value,
  mean bytes moved per round, seconds, and the task prefixes the fit's tasks
  use (:func:`dask.utils.key_split` of their keys, e.g. ``cocoa-local``: the
  names the task stream and the progress bars show).

One line turns it on (the embedded cluster of
:func:`dasksvm.parallel.get_client` has it already)::

    dasksvm.dashboard.install(client)          # returns the page's URL

which is ``client.register_plugin(DaskSVMPage())``. The scheduler must be able
to import dasksvm, and it serves the page only where it runs the Bokeh
dashboard (``bokeh`` installed, a dashboard address); elsewhere the plugin
logs a warning and keeps the fits for :meth:`DaskSVMPage.snapshot`.
"""

from __future__ import annotations

import html
import itertools
import logging
import math
import numbers
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from dask.utils import key_split
from distributed.diagnostics.plugin import SchedulerPlugin

from .parallel.engine import PROGRESS_TOPIC

__all__ = [
    "PAGE_ROUTE",
    "PLUGIN_NAME",
    "DaskSVMPage",
    "FitTrace",
    "FitTracker",
    "install",
    "page_url",
    "table_html",
]

logger = logging.getLogger(__name__)

#: the page's path on the scheduler's dashboard
PAGE_ROUTE = "/dasksvm"
#: the name the plugin is registered under on the scheduler
PLUGIN_NAME = "dasksvm-dashboard"
#: the fit token that ends every task key of a fit (:func:`dasksvm.parallel.keys.new_token`)
_TOKEN = re.compile(r"-([0-9a-f]{8})$")
#: the smallest relative gap drawn (a log axis cannot show 0 or a rounding-negative gap)
_GAP_FLOOR = 1e-16


def _positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------
# the fits, from the events (no bokeh here)
# ---------------------------------------------------------------------------------------


@dataclass
class FitTrace:
    """What the page shows of one fit.

    Attributes
    ----------
    fit : str
        The fit's token (the last word of its task keys).
    solver : str
        The solver's task-key prefix (``cocoa``, ``sgd``, ``ww``, ...).
    status : str
        ``running``, ``converged`` or ``ended`` (stopped by its callback or by
        ``max_iter`` short of ``tol``).
    points : deque of (float, float, int)
        ``(seconds since the fit started, relative gap, round)`` per round,
        the most recent ``max_points``.
    n_points : int
        Rounds received in all (``points`` may hold fewer).
    prefixes : set of str
        ``key_split`` of the fit's task keys seen by the scheduler.
    """

    fit: str
    solver: str
    status: str = "running"
    points: deque = field(default_factory=deque)
    n_points: int = 0
    round: int = -1
    rel_gap: float = float("nan")
    primal: float = float("nan")
    time: float = 0.0
    bytes_total: int = 0
    recoveries: int = 0
    prefixes: set = field(default_factory=set)

    @property
    def rounds(self):
        """Rounds certified so far: the last record's round + 1 (0 before the first)."""
        return self.round + 1

    @property
    def bytes_per_round(self):
        """Mean bytes moved per round over the rounds received (0 before the first)."""
        return self.bytes_total / self.n_points if self.n_points else 0.0

    def row(self):
        """The fit's row of the page's table (a dict of plain values)."""
        return {
            "fit": self.fit,
            "solver": self.solver,
            "status": self.status,
            "rounds": self.rounds,
            "rel_gap": self.rel_gap,
            "primal": self.primal,
            "bytes_per_round": self.bytes_per_round,
            "time": self.time,
            "prefixes": ", ".join(sorted(self.prefixes)),
        }


class FitTracker:
    """The recent fits, fed with the ``"dasksvm-progress"`` events and the task keys.

    Parameters
    ----------
    max_fits : int >= 1
        Fits kept; past that the oldest finished fit (else the oldest) is
        dropped.
    max_points : int >= 1
        Rounds kept per fit (the most recent).

    Attributes
    ----------
    fits : OrderedDict of str to FitTrace
        In order of arrival.
    version : int
        Grows with every change (the page redraws its table when it moves).
    """

    #: fit tokens whose task prefixes are kept before their fit's first event
    max_pending = 256

    def __init__(self, max_fits=20, max_points=10_000):
        self.max_fits = _positive_int("max_fits", max_fits)
        self.max_points = _positive_int("max_points", max_points)
        self.fits = OrderedDict()
        self.version = 0
        self._pending = OrderedDict()  # token -> prefixes of keys seen before the fit's events

    def add(self, msg):
        """Take one event (a dict with ``fit``, ``solver``, ``event`` and the record)."""
        if not isinstance(msg, dict) or "fit" not in msg or "event" not in msg:
            return
        token = str(msg["fit"])
        trace = self.fits.get(token)
        if trace is None:
            trace = FitTrace(token, str(msg.get("solver", "")),
                             points=deque(maxlen=self.max_points),
                             prefixes=self._pending.pop(token, set()))
            self.fits[token] = trace
            self._trim()
        kind = msg["event"]
        if kind == "start":
            trace.status = "running"
        elif kind == "round":
            self._round(trace, msg)
        elif kind == "recover":
            trace.recoveries += 1
        elif kind == "end":
            trace.status = "converged" if msg.get("converged") else "ended"
        self.version += 1

    def _round(self, trace, rec):
        rel_gap = float(rec.get("rel_gap", float("nan")))
        t = float(rec.get("time", 0.0))
        trace.round = int(rec.get("round", trace.round + 1))
        trace.rel_gap = rel_gap
        trace.primal = float(rec.get("primal", float("nan")))
        trace.time = t
        trace.bytes_total += int(rec.get("bytes", 0))
        trace.recoveries = int(rec.get("recoveries", trace.recoveries))
        trace.points.append((t, max(rel_gap, _GAP_FLOOR), trace.round))
        trace.n_points += 1

    def note_keys(self, keys):
        """Record the task prefixes of keys that end in a fit token (strings only)."""
        changed = False
        for key in keys:
            if not isinstance(key, str):
                continue
            m = _TOKEN.search(key)
            if m is None:
                continue
            token = m.group(1)
            trace = self.fits.get(token)
            if trace is not None:
                prefixes = trace.prefixes
            else:
                prefixes = self._pending.get(token)
                if prefixes is None:
                    prefixes = self._pending[token] = set()
                    while len(self._pending) > self.max_pending:
                        self._pending.popitem(last=False)
            prefix = key_split(key)
            if prefix not in prefixes:
                prefixes.add(prefix)
                changed = True
        if changed:
            self.version += 1

    def _trim(self):
        while len(self.fits) > self.max_fits:
            done = next((k for k, f in self.fits.items() if f.status != "running"), None)
            self.fits.pop(done if done is not None else next(iter(self.fits)))

    def rows(self):
        """The table's rows, one dict per fit, in order of arrival."""
        return [f.row() for f in self.fits.values()]


# ---------------------------------------------------------------------------------------
# the scheduler plugin
# ---------------------------------------------------------------------------------------


class DaskSVMPage(SchedulerPlugin):
    """Scheduler plugin: tracks dasksvm fits and serves them at ``/dasksvm``.

    Register it with ``client.register_plugin(DaskSVMPage())`` (or
    :func:`install`). Registering it again is a no-op (``idempotent``). On
    start it takes the ``"dasksvm-progress"`` events already in the
    scheduler's log, then each new one as it is logged; it reads the task keys
    of every graph the scheduler receives to list each fit's task prefixes.

    Parameters
    ----------
    max_fits : int >= 1, default=20
        Fits the page keeps (the oldest finished ones go first).
    max_points : int >= 1, default=10000
        Rounds kept per fit (the most recent).
    interval : int >= 100, default=500
        Milliseconds between two updates of an open page.
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, max_fits=20, max_points=10_000, interval=500):
        self.max_fits = _positive_int("max_fits", max_fits)
        self.max_points = _positive_int("max_points", max_points)
        interval = _positive_int("interval", interval)
        if interval < 100:
            raise ValueError(f"interval must be >= 100 milliseconds, got {interval!r}")
        self.interval = interval
        self.tracker = None
        self.scheduler = None

    def __getstate__(self):
        return {"max_fits": self.max_fits, "max_points": self.max_points,
                "interval": self.interval, "tracker": None, "scheduler": None}

    async def start(self, scheduler):
        self.scheduler = scheduler
        self.tracker = FitTracker(self.max_fits, self.max_points)
        for _, msg in scheduler.get_events(PROGRESS_TOPIC):
            self.tracker.add(msg)
        self.tracker.note_keys(list(scheduler.tasks))
        try:
            served = _serve_page(scheduler)
        except Exception:  # the fits are still tracked: the page is a courtesy
            logger.warning("dasksvm: could not add %s to the dashboard", PAGE_ROUTE,
                           exc_info=True)
            return
        if not served:
            logger.warning("dasksvm: the scheduler runs no Bokeh dashboard: %s is not served "
                           "(install bokeh and give the scheduler a dashboard address)",
                           PAGE_ROUTE)

    def log_event(self, topic, msg):
        if topic == PROGRESS_TOPIC and self.tracker is not None:
            self.tracker.add(msg)

    def update_graph(self, scheduler, *, keys=(), tasks=None, **kwargs):
        if self.tracker is not None:
            self.tracker.note_keys(tasks if tasks is not None else keys)

    def snapshot(self):
        """The table's rows and each fit's ``(time, rel_gap, round)`` points, as plain data.

        Call it on the scheduler, e.g. ``client.run_on_scheduler(lambda dask_scheduler:
        dask_scheduler.plugins["dasksvm-dashboard"].snapshot())``.
        """
        if self.tracker is None:
            return {"fits": [], "points": {}}
        return {"fits": self.tracker.rows(),
                "points": {k: list(f.points) for k, f in self.tracker.fits.items()}}


def _dashboard_app(scheduler):
    """distributed's own Bokeh application on the scheduler's HTTP server, or None."""
    from bokeh.server.server import BokehTornado

    http = getattr(scheduler, "http_application", None)
    for app in getattr(http, "applications", ()):
        if isinstance(app, BokehTornado) and "/status" in app.app_paths:
            return app
    return None


def _serve_page(scheduler):
    """Add ``/dasksvm`` to the scheduler's dashboard as distributed adds its pages (a Bokeh
    application on the scheduler's HTTP server); True when it is served."""
    try:
        from distributed.dashboard.core import BokehApplication
        from distributed.dashboard.scheduler import template_variables
    except ImportError:
        return False
    main = _dashboard_app(scheduler)
    if main is None:
        return False
    http = scheduler.http_application
    if any(PAGE_ROUTE in getattr(app, "app_paths", ()) for app in http.applications):
        return True  # registered before (by an earlier plugin on this scheduler)
    from tornado.ioloop import IOLoop

    variables = template_variables(scheduler)
    pages = variables.get("pages")
    if isinstance(pages, list) and PAGE_ROUTE.strip("/") not in pages:
        pages.append(PAGE_ROUTE.strip("/"))  # the link in the dashboard's navigation bar
    app = BokehApplication({PAGE_ROUTE: _page_doc}, scheduler, prefix=main.prefix,
                           template_variables=variables)
    http.add_application(app)
    app.initialize(IOLoop.current())
    app.start()
    return True


# ---------------------------------------------------------------------------------------
# the Bokeh document
# ---------------------------------------------------------------------------------------


def _page_doc(scheduler, extra, doc):
    """Build the page's document for one browser session (run by the Bokeh server)."""
    from bokeh.layouts import column
    from bokeh.models import Div
    from distributed.dashboard.components.scheduler import BOKEH_THEME, env

    plugin = scheduler.plugins.get(PLUGIN_NAME)
    doc.title = "Dask: dasksvm fits"
    if plugin is None or plugin.tracker is None:
        doc.add_root(Div(text="<p>The dasksvm plugin is not registered on this scheduler: "
                              "run <code>dasksvm.dashboard.install(client)</code>.</p>"))
    else:
        view = _FitsView(plugin.tracker)
        view.update()
        doc.add_root(column(view.header, view.figure, view.table, sizing_mode="stretch_width"))
        doc.add_periodic_callback(view.update, plugin.interval)
    doc.template = env.get_template("simple.html")
    doc.template_variables.update(extra)
    doc.theme = BOKEH_THEME


#: the table's columns: (row key, heading, format)
_COLUMNS = (
    ("fit", "fit", "{}"),
    ("solver", "solver", "{}"),
    ("status", "status", "{}"),
    ("rounds", "rounds", "{:d}"),
    ("rel_gap", "rel gap", "{:.3e}"),
    ("primal", "primal", "{:.6g}"),
    ("bytes_per_round", "bytes / round", "{:,.0f}"),
    ("time", "seconds", "{:.1f}"),
    ("prefixes", "task prefixes", "{}"),
)

_TABLE_CSS = """
table.dasksvm-fits { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
table.dasksvm-fits th, table.dasksvm-fits td { padding: 3px 10px; text-align: left;
  border-bottom: 1px solid #ddd; white-space: nowrap; }
table.dasksvm-fits th { font-weight: 600; }
table.dasksvm-fits td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def table_html(rows):
    """The page's table of fits as HTML (one ``<tr data-fit=...>`` per fit).

    A Bokeh ``DataTable`` is not used: with Bokeh 3.9.2 its view did not redraw
    when its source's data was replaced by data of the same length (one row
    per fit: the rows' values changed in the model, not on the page), so a live
    table of running fits froze. A ``Div`` redraws on every change of its text.
    """
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in _COLUMNS)
    body = []
    for row in rows:
        cells = []
        for key, _, fmt in _COLUMNS:
            value = row[key]
            numeric = isinstance(value, numbers.Real)
            if numeric and not math.isfinite(value):
                text = "-"
            else:
                text = fmt.format(value)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls} data-col=\"{key}\">{html.escape(text)}</td>")
        body.append(f'<tr data-fit="{html.escape(row["fit"])}">{"".join(cells)}</tr>')
    if not body:
        body.append(f'<tr><td colspan="{len(_COLUMNS)}">no dasksvm fit has reported yet on '
                    "this scheduler</td></tr>")
    return (f'<table class="dasksvm-fits"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


class _FitsView:
    """The figure (one line per fit, fed by ``stream``) and the table of one session."""

    def __init__(self, tracker):
        from bokeh.models import Div, HoverTool, InlineStyleSheet
        from bokeh.palettes import Category10_10
        from bokeh.plotting import figure

        self.tracker = tracker
        self.colors = itertools.cycle(Category10_10)
        self.lines = {}  # fit -> [source, renderers, points sent]
        self.version = None
        self.header = Div(text="<h3>dasksvm: relative duality gap of each fit</h3>",
                          name="dasksvm-header")
        self.figure = figure(
            height=380, sizing_mode="stretch_width", y_axis_type="log",
            x_axis_label="seconds since the fit started", y_axis_label="(P - D) / |P|",
            tools="pan,wheel_zoom,box_zoom,reset,save", name="dasksvm-gaps",
        )
        self.figure.add_tools(HoverTool(tooltips=[
            ("fit", "@fit"), ("round", "@round"), ("rel gap", "@rel_gap{0.000e}"),
            ("time", "@time{0.00} s"),
        ]))
        self.table = Div(text=table_html([]), name="dasksvm-table",
                         sizing_mode="stretch_width",
                         stylesheets=[InlineStyleSheet(css=_TABLE_CSS)])

    def _line(self, trace):
        from bokeh.models import ColumnDataSource

        source = ColumnDataSource({"time": [], "rel_gap": [], "round": [], "fit": []},
                                  name=f"dasksvm-curve-{trace.fit}")
        color = next(self.colors)
        label = f"{trace.fit} {trace.solver}"
        renderers = [
            self.figure.line("time", "rel_gap", source=source, color=color, line_width=2,
                             legend_label=label),
            self.figure.scatter("time", "rel_gap", source=source, color=color, size=4,
                                legend_label=label),
        ]
        self.figure.legend.location = "top_right"
        self.figure.legend.click_policy = "hide"
        return [source, renderers, 0]

    def _drop_line(self, fit):
        _, renderers, _ = self.lines.pop(fit)
        self.figure.renderers = [r for r in self.figure.renderers if r not in renderers]
        for legend in self.figure.legend:
            legend.items = [i for i in legend.items
                            if not any(r in renderers for r in i.renderers)]

    def update(self):
        """Stream each fit's new rounds to its line; redraw the table when it changed."""
        fits = self.tracker.fits
        for fit in [f for f in self.lines if f not in fits]:
            self._drop_line(fit)
        for fit, trace in fits.items():
            line = self.lines.get(fit)
            if line is None:
                line = self.lines[fit] = self._line(trace)
            source, _, sent = line
            new = min(trace.n_points - sent, len(trace.points))
            if new > 0:
                pts = list(trace.points)[-new:]
                source.stream({"time": [p[0] for p in pts], "rel_gap": [p[1] for p in pts],
                               "round": [p[2] for p in pts], "fit": [fit] * new},
                              rollover=self.tracker.max_points)
                line[2] = trace.n_points
        if self.tracker.version != self.version:
            self.version = self.tracker.version
            text = table_html(self.tracker.rows())
            if text != self.table.text:
                self.table.text = text


# ---------------------------------------------------------------------------------------
# the client side
# ---------------------------------------------------------------------------------------


def page_url(client):
    """The URL of the page on ``client``'s scheduler dashboard, or None without one."""
    link = client.dashboard_link
    if not link:
        return None
    base = link[: -len("/status")] if link.endswith("/status") else link.rstrip("/")
    return base + PAGE_ROUTE


def install(client, **kwargs):
    """Register :class:`DaskSVMPage` on ``client``'s scheduler (a no-op when it is there).

    Parameters
    ----------
    client : distributed.Client
    **kwargs
        :class:`DaskSVMPage`'s parameters.

    Returns
    -------
    str or None
        The page's URL (:func:`page_url`).
    """
    client.register_plugin(DaskSVMPage(**kwargs))
    return page_url(client)
