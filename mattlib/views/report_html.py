"""Executed notebooks rendered to HTML pages that load nothing from outside the report folder.

nbconvert's ``lab`` template loads require.js, MathJax and (where a notebook holds widget state)
the ipywidgets HTML manager from public CDNs; offline each request fails, formulas stay raw TeX
and widgets stay blank. The report's pages instead use:

- ``plotly.min.js``: one copy in the report folder, shared by every page;
- ``mathjax/tex-svg-full.js``: MathJax 3 as shipped by the ``django-static-mathjax`` package
  (plain static files, no Django needed);
- no require.js (nothing on the pages needs it), no mermaid, and no widget manager: no offline build of the
  ipywidgets HTML manager ships with a Python package, so a widget is drawn as its last view
  (:mod:`mattlib.views.last_view`: its controls' last values and its figures, drawn statically).
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
from importlib import resources
from pathlib import Path

from mattlib.executors import JOBS
from mattlib.views import last_view

__all__ = ["PLOTLY_CONFIG", "SVG_EXPORT", "format_table", "write_assets", "render_notebook", "render_notebooks"]

PLOTLY_JS = "plotly.min.js"
MATHJAX_JS = "mathjax/tex-svg-full.js"
# plotly's "notebook" renderer inlines plotly.js (~4.8 MB) into an executed notebook's first figure
_INLINE_PLOTLY = re.compile(r"<script[^>]*>\s*/\*\*\s*\* plotly\.js v.*?</script>", re.S)

# the lab template without its CDN scripts; the report's shared plotly.js and MathJax 3 instead
# (tex-svg-full: every TeX extension and SVG glyphs in one file, so nothing else is fetched)
_TEMPLATE = (
    """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}<script charset="utf-8" src="../"""
    + PLOTLY_JS
    + """"></script>{%- endblock -%}
{%- block jupyter_widgets -%}{%- endblock -%}
{%- block html_head_js_mermaidjs -%}{%- endblock -%}
{%- block html_head_js_mathjax -%}
<script>window.MathJax = {tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], processEscapes: true,
  tags: "ams"}, options: {enableMenu: false}};</script>
<script src="../"""
    + MATHJAX_JS
    + """" id="MathJax-script"></script>
{%- endblock -%}
"""
)


#: plotly.js options of every figure the report writes: the toolbar's PNG export (drawn in the
#: browser, offline), no button that sends data to a website, no logo link.
PLOTLY_CONFIG = {"displaylogo": False, "showSendToCloud": False, "modeBarButtonsToRemove": ["sendDataToCloud"]}

#: A "save as SVG" link under every figure of a page (plotly's toolbar saves PNG only); drawn by the
#: shipped plotly.js, offline.
SVG_EXPORT = """<script>
document.querySelectorAll('.plotly-graph-div').forEach((figure, i) => {
  const link = document.createElement('a');
  link.href = '#'; link.className = 'svg-export'; link.textContent = 'save as SVG';
  link.style.fontSize = '12px';
  link.onclick = (event) => {
    event.preventDefault();
    Plotly.downloadImage(figure, {format: 'svg', filename: 'figure-' + (i + 1)});
  };
  const box = document.createElement('div');  // above the figure, clear of plotly's layers
  box.style.cssText = 'text-align:right;position:relative;z-index:10';
  box.appendChild(link);
  figure.parentNode.insertBefore(box, figure);
});
</script>"""


def format_table(table) -> str:
    """A pandas table as the report's HTML (no index, "–" for missing, two decimals)."""
    return table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.2f}", border=0, classes="table")


def write_assets(out_dir: str | Path) -> None:
    """Write the report's shared scripts into ``out_dir``: ``plotly.min.js`` and MathJax."""
    import plotly.offline

    out_dir = Path(out_dir)
    (out_dir / PLOTLY_JS).write_text(plotly.offline.get_plotlyjs())
    (out_dir / MATHJAX_JS).parent.mkdir(exist_ok=True)
    source = resources.files("mathjax") / "static" / "mathjax" / "es5" / Path(MATHJAX_JS).name
    shutil.copyfile(str(source), out_dir / MATHJAX_JS)


@functools.lru_cache(maxsize=1)
def _exporter():
    """One exporter for every page: its templates compile once (about 0.3 s per page otherwise)."""
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"mattlib_report.html.j2": _TEMPLATE})], template_file="mattlib_report.html.j2"
    )
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def _static(output: dict) -> dict:
    """``output`` as nbconvert draws it offline: a plotly figure becomes an HTML div drawn from its
    JSON by the shared plotly.js (plotly's own HTML loads MathJax 3 from a CDN)."""
    import plotly.io as pio

    figure = output.get("data", {}).get(last_view.PLOTLY_JSON)
    if figure is None:
        return output
    # validate=False: the JSON was written by plotly itself; validating it again costs ~0.1 s a figure
    html = pio.to_html(
        figure, full_html=False, include_plotlyjs=False, include_mathjax=False, validate=False, config=PLOTLY_CONFIG
    )
    return {**output, "data": {"text/html": html}}


def _offline(nb):
    """A copy of ``nb`` drawn without a kernel or a CDN: plotly figures from their JSON, and each
    widget replaced by its last view (carried by the notebook, or made here from its saved state)."""
    nb = copy.deepcopy(nb)
    last_view.carry_last_views(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [_static(o) for o in cell.outputs if last_view.WIDGET_VIEW not in o.get("data", {})]
    return nb


def render_notebook(nb_path: str | Path, target: str | Path) -> Path:
    """Render one executed notebook to ``target`` (a page inside the report's ``notebooks/``)."""
    import nbformat

    body, _ = _exporter().from_notebook_node(_offline(nbformat.read(nb_path, as_version=4)))
    target = Path(target)
    target.write_text(_INLINE_PLOTLY.sub("", body).replace("</body>", SVG_EXPORT + "</body>", 1))
    return target


def render_notebooks(run_dir: str | Path, out_dir: str | Path, *, jobs: int = JOBS) -> list[tuple[str, str, str]]:
    """Render every executed notebook of a run (only those newer than their page), ``jobs`` at a time.

    Returns
    -------
    list of (notebook, cell, relative html path)
    """
    links, todo = [], []
    for nb_path in sorted(Path(run_dir).glob("*/*/notebook.ipynb")):
        notebook, cell = nb_path.parent.parent.name, nb_path.parent.name
        target = Path(out_dir) / f"{notebook}__{cell}.html"
        if not target.exists() or target.stat().st_mtime < nb_path.stat().st_mtime:
            todo.append((nb_path, target))
        links.append((notebook, cell, f"notebooks/{target.name}"))
    if jobs > 1 and len(todo) > 1:
        from joblib import Parallel, delayed

        Parallel(n_jobs=min(jobs, len(todo)), backend="loky")(delayed(render_notebook)(*page) for page in todo)
    else:
        for page in todo:
            render_notebook(*page)
    return links
