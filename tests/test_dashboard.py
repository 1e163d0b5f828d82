"""The ``/dasksvm`` dashboard page in a real headless Chromium while a fit runs, and the
embedded cluster of ``get_client()`` bound to 127.0.0.1 only.

Chromium is Debian's ``chromium`` (installed here with apt-get when missing), driven by
playwright with ``executable_path`` (no browser download). Screenshots go to the test's
tmp path and, when ``$DASKSVM_ARTIFACTS`` is set, to that folder too.
"""

import os
import shutil
import subprocess
import threading
import urllib.request
from urllib.parse import urlparse

import psutil
import pytest
from distributed import Client, default_client

from dasksvm import LinearSVC
from dasksvm.dashboard import PLUGIN_NAME, DaskSVMPage, FitTracker, install, page_url, table_html
from dasksvm.parallel import close_embedded_cluster, get_client
from dasksvm.parallel.engine import PROGRESS_TOPIC

from ._reference import load_xz

#: generous bounds for a page or a fit to get somewhere (they end a broken test, they never
#: decide a passing one)
WAIT_MS = 90_000

# the fit's line: name, number of points, the points' relative gaps
CURVES_JS = """() => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return null;
  const out = [];
  for (const m of Bokeh.documents[0].all_models) {
    if (typeof m.name === "string" && m.name.startsWith("dasksvm-curve-") && m.data)
      out.push({fit: m.name.slice("dasksvm-curve-".length), gaps: Array.from(m.data.rel_gap),
                rounds: Array.from(m.data.round)});
  }
  return out.length && out.every(c => c.gaps.length >= MIN) ? out : null;
}"""

# the task names (``key_split`` of the keys) in the task stream's rectangles
TASK_NAMES_JS = """() => {
  if (!window.Bokeh || Bokeh.documents.length === 0) return null;
  const names = new Set();
  for (const m of Bokeh.documents[0].all_models)
    if (m.data && m.data.name && m.data.start) for (const n of m.data.name) names.add(n);
  const out = Array.from(names);
  return out.some(n => n === "cocoa-local") ? out : null;
}"""


def _install_chromium():
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if r.returncode:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
            pytest.skip(f"Chromium is not installed and `{' '.join(cmd)}` failed "
                        f"(exit {r.returncode}): {tail[0]}")


@pytest.fixture(scope="module")
def chromium():
    """The path of Debian's Chromium, installed with apt-get when missing."""
    path = shutil.which("chromium")
    if path is None:
        if os.geteuid() != 0:
            pytest.skip(f"Chromium is not installed and installing it with apt-get needs "
                        f"root (this is uid {os.geteuid()})")
        if shutil.which("apt-get") is None:
            pytest.skip("Chromium is not installed and this machine has no apt-get")
        _install_chromium()
        path = shutil.which("chromium")
        assert path is not None, "apt-get installed chromium but it is not on PATH"
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install playwright: a test dependency; "
               "it drives the system Chromium, no browser download)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def artifacts(tmp_path):
    """``save(page, name)``: a full-page screenshot in tmp_path (and $DASKSVM_ARTIFACTS)."""
    extra = os.environ.get("DASKSVM_ARTIFACTS")

    def save(page, name):
        path = tmp_path / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        if extra:
            os.makedirs(extra, exist_ok=True)
            shutil.copy(path, os.path.join(extra, name))
        return path

    return save


class _Fit:
    """A LinearSVC fit (tol=0: it never converges by itself) in a background thread that
    its callback stops once the test calls :meth:`stop`."""

    def __init__(self, client, X, y):
        self.model = LinearSVC(C=0.01, solver="cocoa", tol=0.0, max_iter=100_000,
                               random_state=0, client=client, callback=self._callback)
        self.rounds = 0
        self.started = threading.Event()
        self._stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(X, y), daemon=True)

    def _callback(self, rec):
        self.rounds += 1
        if self.rounds >= 3:
            self.started.set()
        return not self._stop.is_set()

    def _run(self, X, y):
        try:
            self.model.fit(X, y)
        except Exception as e:  # noqa: BLE001 - handed to the test thread
            self.error = e
        finally:
            self.started.set()

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(WAIT_MS / 1000)
        assert not self.thread.is_alive(), "the fit did not stop"
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(WAIT_MS / 1000)


def test_page_follows_a_running_fit(process_client, browser, data_dir, artifacts):
    url = install(process_client)
    assert install(process_client) == url  # idempotent
    parsed = urlparse(url)
    assert parsed.hostname == "127.0.0.1" and parsed.path == "/dasksvm"
    base = url[: -len("/dasksvm")]

    # another client follows the fit through the scheduler's events, as docs/monitoring.md says
    events = []
    watcher = Client(process_client.scheduler.address, set_as_default=False)
    watcher.subscribe_topic(PROGRESS_TOPIC, lambda event: events.append(event[1]))

    X, y = load_xz(data_dir / "a9a.xz")
    X, y = X[:6000], y[:6000]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    stream = browser.new_page(viewport={"width": 1280, "height": 500})
    try:
        with _Fit(process_client, X, y) as fit:
            assert fit.started.wait(WAIT_MS / 1000) and fit.error is None
            page.goto(url)
            curves = page.wait_for_function(CURVES_JS.replace("MIN", "2"),
                                            timeout=WAIT_MS).json_value()
            assert len(curves) == 1
            token = curves[0]["fit"]
            n0 = len(curves[0]["gaps"])
            assert all(g > 0 for g in curves[0]["gaps"])
            assert curves[0]["rounds"] == list(range(n0))

            row = page.locator(f"table.dasksvm-fits tr[data-fit='{token}']")
            assert row.locator("td[data-col=solver]").inner_text() == "cocoa"
            prefixes = row.locator("td[data-col=prefixes]").inner_text().split(", ")
            assert {"cocoa-init", "cocoa-local"} <= set(prefixes)
            assert all(p.startswith("cocoa-") for p in prefixes)
            assert row.locator("td[data-col=status]").inner_text() == "running"

            # live: the line grows while the page stays open (pushed by the periodic callback)
            page.wait_for_function(CURVES_JS.replace("MIN", str(n0 + 3)), timeout=WAIT_MS)
            artifacts(page, "dasksvm-page.png")

            # distributed's own task stream shows the fit's tasks under the same prefixes
            stream.goto(base + "/individual-task-stream")
            names = stream.wait_for_function(TASK_NAMES_JS, timeout=WAIT_MS).json_value()
            assert "cocoa-local" in names
            artifacts(stream, "task-stream.png")
            fit.stop()

        history = fit.model.history_
        assert fit.model.n_iter_ >= n0 + 3 and not fit.model.converged_
        # the page's points are the fit's certified rounds, in order
        final = page.wait_for_function(CURVES_JS.replace("MIN", str(len(history))),
                                       timeout=WAIT_MS).json_value()[0]
        assert final["fit"] == token
        assert final["rounds"] == [r["round"] for r in history]
        assert final["gaps"] == pytest.approx([max(r["rel_gap"], 1e-16) for r in history], rel=1e-12)
        # the row follows the end of the fit: stopped by its callback, not converged
        from playwright.sync_api import expect

        expect(row.locator("td[data-col=status]")).to_have_text("ended", timeout=WAIT_MS)
        expect(row.locator("td[data-col=rounds]")).to_have_text(str(len(history)))
        artifacts(page, "dasksvm-page-ended.png")
    finally:
        page.close()
        stream.close()
        watcher.close()

    mine = [e for e in events if e.get("fit") == token]
    assert mine and mine[0]["event"] == "start" and mine[0]["solver"] == "cocoa"
    assert sum(e["event"] == "round" for e in mine) >= n0


def _listening(pid):
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN}


def test_embedded_cluster_listens_on_loopback_only():
    try:
        left = default_client()
    except ValueError:
        left = None
    assert left is None, f"an earlier test left a default client ({left}): get_client() " \
                         "would return it instead of starting the embedded cluster"
    before = _listening(os.getpid())
    client = get_client()
    try:
        cluster = client.cluster
        opened = _listening(os.getpid()) - before  # scheduler, dashboard, nannies
        assert opened and {ip for ip, _ in opened} == {"127.0.0.1"}
        ports = {port for _, port in opened}
        assert urlparse(client.scheduler.address).port in ports
        dashboard = urlparse(client.dashboard_link)
        assert dashboard.hostname == "127.0.0.1" and dashboard.port in ports
        assert urlparse(cluster.scheduler_address).hostname == "127.0.0.1"

        workers = client.run(os.getpid)  # address -> pid of each worker process
        # the one-machine shape: one worker process whose threads are the cores
        assert list(client.nthreads().values()) == [os.cpu_count() or 1]
        assert len(workers) == 1
        for address, pid in workers.items():
            assert urlparse(address).hostname == "127.0.0.1"
            held = _listening(pid)  # the worker's comm and its own HTTP server
            assert held and {ip for ip, _ in held} == {"127.0.0.1"}
            assert urlparse(address).port in {port for _, port in held}

        # the page is there by default
        assert client.run_on_scheduler(
            lambda dask_scheduler: PLUGIN_NAME in dask_scheduler.plugins)
        with urllib.request.urlopen(page_url(client), timeout=30) as r:
            assert r.status == 200 and b"dasksvm" in r.read()
    finally:
        close_embedded_cluster()


def _round(fit, r, rel_gap, nbytes=100, solver="cocoa"):
    return {"fit": fit, "solver": solver, "event": "round", "round": r, "primal": 2.0,
            "dual": 1.0, "rel_gap": rel_gap, "time": 0.5 * r, "bytes": nbytes}


def test_tracker_follows_fits_prefixes_and_the_oldest_finished_goes_first():
    t = FitTracker(max_fits=2, max_points=3)
    # keys seen before the fit's first event (the engine builds states before "start")
    t.note_keys(["cocoa-init-w0-aaaaaaa1", ("from-array-0123", 0), "cocoa-init-w1-aaaaaaa1"])
    t.add({"fit": "aaaaaaa1", "solver": "cocoa", "event": "start", "round": 0})
    for r, (gap, nb) in enumerate([(0.5, 100), (-1e-18, 300), (1e-3, 200), (1e-4, 200)]):
        t.add(_round("aaaaaaa1", r, gap, nb))
    t.note_keys(["cocoa-local-r3-w0-aaaaaaa1", "other-key-0123456789abcdef"])
    a = t.fits["aaaaaaa1"]
    assert a.prefixes == {"cocoa-init", "cocoa-local"}
    assert [p[2] for p in a.points] == [1, 2, 3] and a.n_points == 4  # the last max_points
    assert a.points[0][1] == 1e-16  # a rounding-negative gap is drawn at the floor
    row = a.row()
    assert row["rounds"] == 4 and row["rel_gap"] == 1e-4 and row["bytes_per_round"] == 200
    assert row["prefixes"] == "cocoa-init, cocoa-local" and row["status"] == "running"

    t.add({"fit": "bbbbbbb2", "solver": "sgd", "event": "start", "round": 0})
    t.add({"fit": "bbbbbbb2", "solver": "sgd", "event": "end", "round": 9, "converged": True})
    t.add({"fit": "ccccccc3", "solver": "ww", "event": "start", "round": 0})
    assert list(t.fits) == ["aaaaaaa1", "ccccccc3"]  # the finished sgd fit went, not the oldest
    t.add({"fit": "aaaaaaa1", "event": "end", "converged": False})
    assert t.fits["aaaaaaa1"].status == "ended"
    t.add("not an event")
    t.add({"event": "round"})
    assert list(t.fits) == ["aaaaaaa1", "ccccccc3"]


def test_table_html_escapes_and_formats():
    t = FitTracker()
    t.add(_round("<b>x</b>", 0, 0.25, solver="co&coa"))
    text = table_html(t.rows())
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text and "co&amp;coa" in text
    assert ">2.500e-01<" in text
    assert "no dasksvm fit has reported yet" in table_html([])


@pytest.mark.parametrize("kwargs, match", [
    ({"max_fits": 0}, "max_fits must be an integer >= 1"),
    ({"max_points": 2.5}, "max_points must be an integer >= 1"),
    ({"interval": 50}, "interval must be >= 100 milliseconds"),
    ({"interval": True}, "interval must be an integer >= 1"),
])
def test_page_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DaskSVMPage(**kwargs)


def test_view_streams_new_rounds_and_drops_fits_the_tracker_dropped():
    from dasksvm.dashboard import _FitsView

    t = FitTracker(max_fits=1, max_points=4)
    view = _FitsView(t)
    for r in range(3):
        t.add(_round("aaaaaaa1", r, 10.0 ** -r))
    view.update()
    source = view.lines["aaaaaaa1"][0]
    assert source.name == "dasksvm-curve-aaaaaaa1"
    assert source.data["rel_gap"] == [1.0, 0.1, 0.01] and source.data["round"] == [0, 1, 2]
    for r in range(3, 9):  # more new rounds than max_points between two updates
        t.add(_round("aaaaaaa1", r, 10.0 ** -r))
    view.update()
    assert list(source.data["round"]) == [5, 6, 7, 8]  # the last max_points, in order
    assert 'data-fit="aaaaaaa1"' in view.table.text and ">9<" in view.table.text

    t.add({"fit": "aaaaaaa1", "event": "end", "converged": True})
    t.add(_round("bbbbbbb2", 0, 0.5, solver="sgd"))  # max_fits=1: the first fit goes
    view.update()
    assert list(view.lines) == ["bbbbbbb2"]
    drawn = {r.data_source.name for r in view.figure.renderers}
    assert drawn == {"dasksvm-curve-bbbbbbb2"}
    [legend] = view.figure.legend
    assert [item.label.value for item in legend.items] == ["bbbbbbb2 sgd"]
    assert 'data-fit="aaaaaaa1"' not in view.table.text
