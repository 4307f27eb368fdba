"""The attention explorer and the report in a real browser: JupyterLab from the project's venv,
Debian's Chromium driven headless by Playwright, a tiny demo study. Screenshots go to
``outputs/browser/``. Repeat with ``make test-browser``."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from mattlib import runner
from mattlib.views import report

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # slow: a real JupyterLab and Chromium

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "outputs" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    _MISSING = (
        "chromium not found: install it with `sudo apt-get install chromium` (`make test` does "
        "so where apt-get is available)"
    )
    if os.environ.get("CI"):  # CI must run the browser tests, not skip them
        raise RuntimeError(_MISSING)
    pytest.skip(_MISSING, allow_module_level=True)

TINY = {
    "epochs": 3,
    "patience": 3,
    "hidden": [32],
    "batch_size": 8,
    "feature_set": "all",
    "model": "mlp",
    "pooling": "matt",
}
EXPLORER = ".widget-vbox:has(.widget-toggle-buttons)"


@pytest.fixture(scope="module")
def params(tiny_study) -> dict:
    mel = tiny_study["mel"]
    return {
        "data_root": str(tiny_study["data_root"]),
        "cache_dir": str(tiny_study["cache_dir"]),
        "mel_sr": mel["sr"],
        "mel_seconds": mel["seconds"],
        "mel_n_mels": mel["n_mels"],
        "mel_hop_length": mel["hop_length"],
        "mel_n_fft": mel["n_fft"],
        **TINY,
    }


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 (free port, token) serving a temporary folder; stopped afterwards."""
    root = tmp_path_factory.mktemp("lab")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    settings = root.parent / f"{root.name}-settings"
    # no news toast over the screenshots (and no request to a website for it)
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={settings}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root.parent / f"{root.name}-lab.log").open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.5)
    yield {"base": base, "token": token, "root": root}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def with_parameters(source: Path, target: Path, params: dict) -> None:
    """A copy of a notebook whose ``parameters`` cell holds ``params`` (as a user would edit it)."""
    nb = nbformat.read(source, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    # the kernel `make venv` installs for the project (JupyterLab would otherwise ask which one)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (mattlib)", "language": "python"}
    nbformat.write(nb, target)


def plot_state(page, index: int, within: str = EXPLORER) -> dict:
    """Title, bar heights (as plotly.js holds them) and drawn marks of the ``index``-th plotly
    figure in ``within`` (the explorer)."""
    return page.evaluate(
        """([sel, i]) => { const el = document.querySelectorAll(sel + ' .js-plotly-plot')[i];
        return {title: el.layout.title.text, y: el._fullData.map(t => Array.from(t.y || [])),
                heatmaps: el.querySelectorAll('.heatmaplayer image').length,
                bars: el.querySelectorAll('.barlayer .point').length}; }""",
        [within, index],
    )


def selected(select) -> str:
    return select.evaluate("s => s.options[s.selectedIndex].text")


def wait_title(page, index: int, old: str) -> None:
    """Wait until the ``index``-th explorer figure shows a title other than ``old``."""
    page.wait_for_function(
        "([sel, i, t]) => { const el = document.querySelectorAll(sel + ' .js-plotly-plot')[i];"
        " return el && el.layout && el.layout.title.text != t; }",
        arg=[EXPLORER, index, old],
        timeout=20_000,
    )


def open_lab(browser, lab, name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    dialog = page.locator(".jp-Dialog")
    try:  # JupyterLab may ask which kernel to start: the notebook's own
        dialog.wait_for(timeout=5_000)
    except PlaywrightTimeout:
        return page
    dialog.locator("select").select_option(value="python3")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    return page


def test_explorer_in_jupyterlab_responds_to_filters_bags_and_bar_clicks(browser, lab, params):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with_parameters(
        ROOT / "notebooks" / "05_matt.ipynb",
        lab["root"] / "05_matt.ipynb",
        {**params, "output_dir": str(lab["root"] / "run")},
    )
    page = open_lab(browser, lab, "05_matt.ipynb")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    # the last cell prints where the results went; then the explorer is scrolled into view (cells
    # out of view may be left undrawn by JupyterLab)
    page.get_by_text("metrics.json").wait_for(timeout=120_000)
    page.locator(EXPLORER).first.scroll_into_view_if_needed()
    page.wait_for_selector(f"{EXPLORER} .js-plotly-plot .barlayer .point", timeout=30_000)
    page.wait_for_function(
        "sel => document.querySelectorAll(sel + ' .js-plotly-plot').length == 2", arg=EXPLORER, timeout=30_000
    )
    page.screenshot(path=str(SHOTS / "explorer_first.png"))
    first, first_mel = plot_state(page, 0), plot_state(page, 1)
    assert first["bars"] > 0 and first["title"].startswith("bag ")
    assert first_mel["title"].startswith("log-mel of track") and first_mel["heatmaps"] == 1, first_mel

    # the weights toggle: raw scores, then min-max of them, then back to the softmax weights
    views = {}
    for view, suffix in (("raw", "raw scores e_k (centred)"), ("min-max", "min–max of raw scores"), ("softmax", "")):
        shown = plot_state(page, 0)["title"]
        page.locator(f"{EXPLORER} .widget-toggle-buttons button", has_text=view).click()
        wait_title(page, 0, shown)
        views[view] = plot_state(page, 0)
        assert views[view]["title"] == first["title"] + (f" · {suffix}" if suffix else "")
    assert views["softmax"]["y"] == first["y"]
    for softmax, raw, scaled in zip(*(views[v]["y"][:-1] for v in ("softmax", "raw", "min-max"))):
        assert abs(sum(softmax) - 1) < 1e-4 and abs(sum(raw)) < 1e-4  # saved to 5 decimals; raw: centred
        span = max(raw) - min(raw)
        expected = [(r - min(raw)) / span if span > 1e-9 else 0.5 for r in raw]
        assert max(abs(a - b) for a, b in zip(scaled, expected)) < 1e-4, (raw, scaled)
    track = page.locator(f"{EXPLORER} .widget-dropdown:has(label:text-is('track')) select")
    bag = page.locator(f"{EXPLORER} .widget-dropdown:has(label:text-is('bag')) select")

    # another outcome filter: only wrong bags are listed, and the chart follows
    page.locator(f"{EXPLORER} .widget-toggle-buttons button", has_text="wrong").click()
    # bag options read "<bag id> · <n> tracks · <true genre> → <predicted genre>"
    page.wait_for_function(
        "s => s.options.length > 0 && Array.from(s.options).every(o => {"
        " const [t, p] = o.text.split('·')[2].split('→').map(x => x.trim()); return t != p; })",
        arg=bag.element_handle(),
        timeout=20_000,
    )
    page.wait_for_function(
        "sel => document.querySelector(sel + ' .js-plotly-plot').layout.title.text.endsWith('(wrong)')",
        arg=EXPLORER,
        timeout=20_000,
    )
    options = bag.locator("option").all_inner_texts()

    # another bag: the largest wrong one other than the first shown, so that it has bars to click
    sizes = [int(o.split("·")[1].split()[0]) for o in options]
    largest = max(range(len(options)), key=lambda i: (sizes[i], options[i].split("·")[0].strip() not in first["title"]))
    shown = plot_state(page, 0)["title"]
    if options[largest] != selected(bag):
        bag.select_option(index=largest)
        wait_title(page, 0, shown)
    chart = plot_state(page, 0)
    assert f"bag {options[largest].split('·')[0].strip()}:" in chart["title"] and chart["title"] != first["title"]
    assert len(chart["y"][0]) == sizes[largest] and chart["y"] != first["y"]
    assert plot_state(page, 1)["title"] == f"log-mel of track {int(selected(track))}"

    # a click on the last track's attention bar selects that track: its log-mel follows
    assert sizes[largest] > 1, "the tiny demo should hold a wrong bag of two tracks or more"
    before_track, before_mel = selected(track), plot_state(page, 1)["title"]
    bars = page.locator(f"{EXPLORER} .js-plotly-plot").first.locator(".barlayer .trace").first.locator(".point")
    box = bars.last.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] - 2
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    wait_title(page, 1, before_mel)
    assert selected(track) != before_track
    assert selected(track) == track.locator("option").last.inner_text()
    assert plot_state(page, 1)["title"] == f"log-mel of track {int(selected(track))}"
    page.screenshot(path=str(SHOTS / "explorer_after_click.png"))
    page.close()


@pytest.fixture(scope="module")
def executed_run(params, tmp_path_factory) -> Path:
    """05_matt run by the grid (papermill in its own process, as `matt run` does), and its report."""
    base = tmp_path_factory.mktemp("browser_run")
    spec = {
        "run": "browser",
        "output_root": str(base),
        "defaults": {k: v for k, v in params.items() if k not in ("feature_set", "model", "pooling")},
        "notebooks": [
            {"notebook": "05_matt", "params": {k: params[k] for k in ("feature_set", "model", "pooling")}},
            {"notebook": "04_mil", "params": {"feature_set": "all", "model": "mlp", "pooling": "mean"}},
        ],
    }
    (base / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    summary = runner.run_grid(base / "grid.yaml", jobs=1, progress=False, timeout=300)
    assert summary.ok, summary.describe()
    report.build_report(base / "browser")
    return base / "browser"


def test_report_pages_draw_every_figure_and_formula_offline(browser, executed_run):
    nb = nbformat.read(executed_run / "05_matt" / "all-mlp-matt" / "notebook.ipynb", as_version=4)
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata["widgets"]  # saved by papermill
    out = executed_run / "report"
    pages = [out / "index.html", *sorted((out / "notebooks").glob("*.html"))]
    assert len(pages) == 3
    for path in pages:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors, outside = [], []
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on(
            "request",
            lambda r, outside=outside: None if r.url.startswith(("file:", "data:", "blob:")) else outside.append(r.url),
        )
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        n_figures = page.locator(".plotly-graph-div").count()
        assert n_figures >= (1 if path.name.startswith("04_mil") else 2), path.name
        # every figure drawn: plotly.js has filled its SVG with traces
        page.wait_for_function(
            "n => Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".filter(d => d.querySelectorAll('svg.main-svg *').length > 0).length == n",
            arg=n_figures,
            timeout=30_000,
        )
        if path.name == "index.html":
            attention_across_poolings(page)
        if path.name.startswith("05_matt"):
            # the formulas of 05's introduction typeset by the shipped MathJax (no raw TeX left)
            page.wait_for_selector("mjx-container svg", timeout=30_000)
            assert "$$" not in page.locator(".jp-RenderedMarkdown").first.inner_text()
            assert page.get_by_text("last view").count() == 1  # the explorer, drawn statically
        page.screenshot(path=str(SHOTS / f"report_{path.stem}.png"), full_page=True)
        assert outside == [], outside
        assert errors == [], errors
        page.close()


def attention_across_poolings(page) -> None:
    """The report's side-by-side view holds both poolings' bars for one bag, its entropy plot
    drew its points, and plotly's toolbar saves a figure as PNG offline."""
    figures = page.evaluate(
        """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
            title: d.layout.title.text || '', types: d._fullData.map(t => t.type),
            y: d._fullData.map(t => Array.from(t.y || [])),
            points: d.querySelectorAll('.scatterlayer .point').length,
            bars: d.querySelectorAll('.barlayer .point').length}))"""
    )
    side = [f for f in figures if "every pooling's softmax weights" in f["title"]]
    assert len(side) == 1 and side[0]["bars"] > 0, [f["title"] for f in figures]
    weights = side[0]["y"]
    assert len(weights) in (2, 3)  # mean pooling's weights; MATT's true (and predicted) genre's query
    assert all(abs(sum(w) - 1) < 1e-4 for w in weights) and len(set(map(len, weights))) == 1
    assert any(len(set(w)) == 1 for w in weights)  # mean pooling: uniform
    entropy = [f for f in figures if f["title"].startswith("Attention entropy")]
    assert len(entropy) == 1 and entropy[0]["points"] > 0 and set(entropy[0]["types"]) == {"scatter"}
    chart = page.locator(".plotly-graph-div").filter(has_text="Attention entropy").first
    chart.scroll_into_view_if_needed()
    chart.hover()
    with page.expect_download(timeout=20_000) as download:
        chart.locator(".modebar-btn[data-title='Download plot as a PNG']").click()
    saved = Path(download.value.path())
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and saved.stat().st_size > 5_000
    index = [f["title"] for f in figures].index(entropy[0]["title"])
    with page.expect_download(timeout=20_000) as download:
        page.locator("a.svg-export").nth(index).click()  # one link per figure, in page order
    assert Path(download.value.path()).read_text()[:200].lstrip().startswith("<svg")
    titles = page.evaluate("() => Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.dataset.title)")
    assert "Download plot as a PNG" in titles and not [t for t in titles if "Share" in t or "Cloud" in t]


def test_executed_notebook_reopened_without_a_kernel_shows_the_explorers_last_view(browser, lab, executed_run):
    nb = nbformat.read(executed_run / "05_matt" / "all-mlp-matt" / "notebook.ipynb", as_version=4)
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    saved = {m["state"]["description"]: m["state"] for m in state.values() if m["model_name"] == "DropdownModel"}
    # without its kernelspec JupyterLab asks which kernel to start: "No Kernel"
    del nb.metadata["kernelspec"]
    nbformat.write(nb, lab["root"] / "executed_05_matt.ipynb")
    page = browser.new_page(viewport={"width": 1400, "height": 1150})
    page.goto(f"{lab['base']}/lab/tree/executed_05_matt.ipynb?reset&token={lab['token']}")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=60_000)
    dialog.locator("select").select_option(label="No Kernel")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()

    # the explorer's cell: its widget output, then the last view the grid added
    # (mattlib.views.last_view: JupyterLab's widget manager draws no widget without a kernel)
    view = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell:has(.jp-OutputArea-output select)"
    cell = page.locator(view)
    cell.wait_for(timeout=60_000)
    cell.scroll_into_view_if_needed()
    page.wait_for_function(
        "sel => Array.from(document.querySelectorAll(sel + ' .js-plotly-plot'))"
        ".filter(p => p.querySelectorAll('.barlayer .point, .heatmaplayer image').length).length == 2",
        arg=view,
        timeout=30_000,
    )
    cell.locator(".jp-OutputArea").evaluate("e => e.scrollIntoView({block: 'start'})")  # the whole view
    page.screenshot(path=str(SHOTS / "reopened_without_kernel.png"))
    text = cell.locator(".jp-OutputArea").inner_text()
    assert not any(t in text for t in ("Error displaying widget", "model not found", "Loading widget"))
    assert "Attention explorer (interactive widget)" in text  # the widget output (untrusted: its text)
    assert "interactive widget's last view, saved when the notebook ran" in text

    # the controls hold the values they had when the notebook was saved, disabled
    controls = cell.locator("select").evaluate_all(
        "ss => ss.map(s => [s.disabled, s.parentElement.querySelector('label').textContent, s.value])"
    )
    assert controls == [
        [True, name, saved[name]["_options_labels"][saved[name]["index"]]]
        for name in ("split", "true", "predicted", "order", "bag", "track")
    ]
    pressed = cell.locator("button[disabled][style*='bold']")
    assert pressed.all_inner_texts() == ["(all)", "softmax"] and cell.locator("button", has_text="wrong").is_disabled()

    # its figures drew: the chosen bag's attention and scores, the chosen track's log-mel
    chart, mel = plot_state(page, 0, view), plot_state(page, 1, view)
    bag = saved["bag"]["_options_labels"][saved["bag"]["index"]].split("·")[0].strip()
    assert chart["title"].startswith(f"bag {bag}:") and chart["bars"] > 0, chart
    assert mel["title"] == f"log-mel of track {controls[-1][2]}" and mel["heatmaps"] == 1, mel
    sessions = json.load(urllib.request.urlopen(f"{lab['base']}/api/sessions?token={lab['token']}"))
    assert not [s for s in sessions if s["path"].endswith("executed_05_matt.ipynb")]  # no kernel was started
    page.close()
