"""Executed notebooks rendered to HTML pages that load nothing from outside the report folder.

nbconvert's ``lab`` template loads require.js, MathJax and (where a notebook holds widget state)
the ipywidgets HTML manager from public CDNs; offline each request fails, formulas stay raw TeX
and widgets stay blank. The report's pages instead use:

- ``plotly.min.js``: one copy in the report folder, shared by every page;
- ``mathjax/tex-svg-full.js``: MathJax 3 as shipped by the ``django-static-mathjax`` package
  (plain static files, no Django needed);
- no require.js (nothing on the pages needs it), no mermaid, and no widget manager: no offline build of the
  ipywidgets HTML manager ships with a Python package, so a widget's last view (the figures its
  ``Output`` widgets held when the notebook was saved) is drawn as static plotly figures.
"""

from __future__ import annotations

import copy
import re
import shutil
from importlib import resources
from pathlib import Path

__all__ = ["write_assets", "render_notebook", "render_notebooks", "widget_last_view"]

PLOTLY_JS = "plotly.min.js"
MATHJAX_JS = "mathjax/tex-svg-full.js"
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_PLOTLY_JSON = "application/vnd.plotly.v1+json"
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


def write_assets(out_dir: str | Path) -> None:
    """Write the report's shared scripts into ``out_dir``: ``plotly.min.js`` and MathJax."""
    import plotly.offline

    out_dir = Path(out_dir)
    (out_dir / PLOTLY_JS).write_text(plotly.offline.get_plotlyjs())
    (out_dir / MATHJAX_JS).parent.mkdir(exist_ok=True)
    source = resources.files("mathjax") / "static" / "mathjax" / "es5" / Path(MATHJAX_JS).name
    shutil.copyfile(str(source), out_dir / MATHJAX_JS)


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"mattlib_report.html.j2": _TEMPLATE})], template_file="mattlib_report.html.j2"
    )
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def widget_last_view(model_id: str, state: dict) -> list[dict]:
    """The outputs a saved widget showed: those of every ``Output`` widget and plotly
    ``FigureWidget`` under ``model_id``.

    Parameters
    ----------
    model_id : str
        The widget view's model id (from a ``widget-view+json`` output).
    state : dict
        ``notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]``.

    Returns
    -------
    list of dict
        nbformat outputs, in the order the widget lays them out.
    """
    model = state.get(model_id)
    if model is None:
        return []
    values = model.get("state", {})
    outputs = list(values.get("outputs", [])) if model.get("model_name") == "OutputModel" else []
    if "_widget_data" in values:  # a plotly FigureWidget
        figure = {"data": values["_widget_data"], "layout": values.get("_widget_layout", {})}
        outputs.append({"output_type": "display_data", "data": {_PLOTLY_JSON: figure}, "metadata": {}})
    for child in values.get("children", []):
        outputs += widget_last_view(str(child).removeprefix("IPY_MODEL_"), state)
    return outputs


def _static(output: dict) -> dict:
    """``output`` as nbconvert draws it offline: a plotly figure becomes an HTML div drawn from its
    JSON by the shared plotly.js (plotly's own HTML loads MathJax 3 from a CDN)."""
    import plotly.graph_objects as go

    figure = output.get("data", {}).get(_PLOTLY_JSON)
    if figure is None:
        return output
    html = go.Figure(figure, skip_invalid=True).to_html(full_html=False, include_plotlyjs=False, include_mathjax=False)
    return {**output, "data": {"text/html": html}}


def _offline(nb):
    """A copy of ``nb`` drawn without a kernel or a CDN: plotly figures from their JSON, and each
    widget view replaced by its saved last view."""
    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    note = {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "text/html": "<p><i>The interactive widget's last view (open the notebook in JupyterLab to use it):</i></p>"
        },
    }
    for cell in nb.cells:
        if "outputs" not in cell:
            continue
        outputs = []
        for output in cell.outputs:
            view = output.get("data", {}).get(_WIDGET_VIEW)
            shown = [] if view is None else widget_last_view(view["model_id"], state)
            if view is None:
                outputs.append(output)
            elif shown:
                outputs += [note, *shown]
        cell.outputs = [_static(o) for o in outputs]
    return nb


def render_notebook(nb_path: str | Path, target: str | Path) -> Path:
    """Render one executed notebook to ``target`` (a page inside the report's ``notebooks/``)."""
    import nbformat

    body, _ = _exporter().from_notebook_node(_offline(nbformat.read(nb_path, as_version=4)))
    target = Path(target)
    target.write_text(_INLINE_PLOTLY.sub("", body))
    return target


def render_notebooks(run_dir: str | Path, out_dir: str | Path) -> list[tuple[str, str, str]]:
    """Render every executed notebook of a run (only those newer than their page).

    Returns
    -------
    list of (notebook, cell, relative html path)
    """
    links = []
    for nb_path in sorted(Path(run_dir).glob("*/*/notebook.ipynb")):
        notebook, cell = nb_path.parent.parent.name, nb_path.parent.name
        target = Path(out_dir) / f"{notebook}__{cell}.html"
        if not target.exists() or target.stat().st_mtime < nb_path.stat().st_mtime:
            render_notebook(nb_path, target)
        links.append((notebook, cell, f"notebooks/{target.name}"))
    return links
