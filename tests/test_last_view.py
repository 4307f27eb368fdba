"""A saved widget's last view, carried by the executed notebook (no kernel, no browser here)."""

import nbformat
import numpy as np
from ipywidgets import HBox, IntProgress
from ipywidgets.embed import dependency_state
from test_widgets import DATA

from mattlib.views import last_view, report_html, widgets

PLOTLY = last_view.PLOTLY_JSON


def executed(*shown) -> nbformat.NotebookNode:
    """A notebook whose one cell displayed ``shown`` (widgets, explorers), with their state saved
    as papermill saves it."""
    nb = nbformat.v4.new_notebook()
    state = {}
    outputs = []
    for obj in shown:
        state |= dependency_state(getattr(obj, "widget", obj), drop_defaults=False)
        outputs.append(nbformat.v4.new_output("display_data", data=obj._repr_mimebundle_()))
    nb.cells.append(nbformat.v4.new_code_cell("explorer", outputs=outputs))
    nb.metadata.widgets = {last_view.WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": state}}
    return nb


def test_an_executed_notebook_carries_the_explorers_last_view():
    explorer = widgets.AttentionExplorer(DATA, mel_lookup=lambda t: np.full((4, 5), float(t)))
    explorer.outcome.value = "wrong"
    progress = HBox([IntProgress(value=3, max=3)])  # a tqdm bar: no figure, nothing to carry
    nb = executed(explorer, progress)
    assert nb.cells[0].outputs[0].data["text/plain"] == "Attention explorer (interactive widget)"

    assert last_view.carry_last_views(nb) == 1
    nbformat.validate(nb)
    outputs = nb.cells[0].outputs
    assert last_view.WIDGET_VIEW in outputs[0].data and last_view.WIDGET_VIEW in outputs[-1].data
    carried = outputs[1:-1]
    assert [next(iter(o.data)) for o in carried] == ["text/html", PLOTLY, "text/html", PLOTLY]
    assert {o.metadata[last_view.LAST_VIEW] for o in carried} == {explorer.widget.model_id}
    controls = carried[0].data["text/html"]
    assert (
        "last view" in controls
        and "<select disabled><option selected>b · 2 tracks · Pop → Jazz · entropy 0.00 · margin -0.70</option>"
        in controls
    )
    assert '#d0d0d0; border: 1px solid #888">wrong</button>' in controls  # the pressed toggle
    assert carried[1].data[PLOTLY]["layout"]["title"]["text"].startswith("bag b:")
    assert "<option selected>200</option>" in carried[2].data["text/html"]
    assert carried[3].data[PLOTLY]["layout"]["title"]["text"] == "log-mel of track 200"

    assert last_view.carry_last_views(nb) == 0  # already carried
    assert len(nb.cells[0].outputs) == 6


def test_the_report_draws_each_widget_once_as_its_last_view():
    explorer = widgets.AttentionExplorer(DATA)
    fresh = executed(explorer)
    carried = executed(explorer)
    last_view.carry_last_views(carried)
    for nb in (fresh, carried):  # notebooks executed before they carried last views, and after
        outputs = report_html._offline(nb).cells[0].outputs
        assert [next(iter(o["data"])) for o in outputs] == ["text/html", "text/html", "text/html"]
        assert sum("last view" in o["data"]["text/html"] for o in outputs) == 1
        assert "bag a:" in outputs[1]["data"]["text/html"]  # the chart, as an HTML div
