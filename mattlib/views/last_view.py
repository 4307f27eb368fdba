"""A saved widget's last view as plain notebook outputs, for readers without a kernel.

JupyterLab 4 (``@jupyter-widgets/jupyterlab-manager`` 5.0, from jupyterlab_widgets 3.0) draws a
widget only through its widget manager, and that manager reads a notebook's saved widget state
only after asking a running kernel for its widgets: with no kernel the request fails first, the
saved state is never read, and the output stays at "Loading widget...". In a notebook JupyterLab
does not trust (an executed notebook nobody signed), it never tries the widget and shows the
widget's text repr instead. So an executed notebook carries, after each widget output that shows
figures, that widget's last view: its controls as disabled HTML holding their last values, and
its figures as plotly JSON, which JupyterLab's plotly renderer draws with no kernel and no trust.
The HTML report draws the same outputs.
"""

from __future__ import annotations

import copy
import html
import re

__all__ = ["LAST_VIEW", "widget_last_view", "carry_last_views"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY_JSON = "application/vnd.plotly.v1+json"
LAST_VIEW = "mattlib_last_view"  # output metadata: the model id whose last view the output shows
NOTE = (
    "<p><i>The interactive widget's last view, saved when the notebook ran "
    "(run the notebook in JupyterLab to use the widget):</i></p>"
)
_ROW = '<div style="margin: 4px 0">{}</div>'
_ITEM = '<span style="display: inline-block; margin-right: 16px">{}</span>'
_LABEL = '<label style="display: inline-block; min-width: 70px; text-align: right; margin-right: 6px">{}</label>'
_PRESSED = "font-weight: bold; background-color: #d0d0d0; border: 1px solid #888"


def _text(value: object) -> str:
    """Escaped plain text of a widget's (possibly HTML) value."""
    return html.escape(html.unescape(re.sub(r"<[^>]*>", "", str(value))).strip())


def _control(name: str, values: dict) -> str:
    """A control as disabled HTML showing its last value ("" for widgets with nothing to show)."""
    label = _LABEL.format(_text(values["description"])) if values.get("description") else ""
    labels, index = values.get("_options_labels", []), values.get("index")
    chosen = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
    if name in ("DropdownModel", "SelectModel"):
        return f"{label}<select disabled><option selected>{_text(chosen)}</option></select>"
    if name == "ToggleButtonsModel":
        buttons = "".join(
            f'<button disabled style="{_PRESSED if i == index else ""}">{_text(t)}</button>'
            for i, t in enumerate(labels)
        )
        return label + buttons
    if name == "ButtonModel":
        return f"<button disabled>{_text(values.get('description', ''))}</button>"
    if name in ("HTMLModel", "LabelModel") and _text(values.get("value", "")):
        return label + _text(values["value"])
    return ""


def _parts(model_id: str, state: dict) -> list[tuple[str, object]]:
    """``("html", str)`` and ``("output", dict)`` parts of a widget, in layout order."""
    model = state.get(model_id)
    if model is None:
        return []
    values = model.get("state", {})
    if model.get("model_name") == "OutputModel":
        return [("output", copy.deepcopy(o)) for o in values.get("outputs", [])]
    if "_widget_data" in values:  # a plotly FigureWidget
        figure = {"data": values["_widget_data"], "layout": values.get("_widget_layout", {})}
        return [("output", {"output_type": "display_data", "data": {PLOTLY_JSON: figure}, "metadata": {}})]
    if "children" in values:
        parts = [p for c in values["children"] for p in _parts(str(c).removeprefix("IPY_MODEL_"), state)]
        if model.get("model_name") == "HBoxModel" and all(kind == "html" for kind, _ in parts) and parts:
            return [("html", "".join(_ITEM.format(h) for _, h in parts))]  # one row
        return parts
    control = _control(model.get("model_name", ""), values)
    return [("html", control)] if control else []


def widget_last_view(model_id: str, state: dict) -> list[dict]:
    """The outputs a saved widget showed, as nbformat outputs: its controls (disabled HTML), its
    ``Output`` widgets' outputs and its plotly ``FigureWidget`` figures, in layout order, after a
    note saying what they are; ``[]`` when it shows no figure or output (a progress bar).

    ``state`` is ``notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]``.
    """
    parts = _parts(model_id, state)
    if not any(kind == "output" for kind, _ in parts):
        return []
    outputs, rows = [], [NOTE]
    for kind, part in [*parts, ("output", None)]:
        if kind == "html":
            rows.append(_ROW.format(part))
            continue
        if rows:
            html_out = {"output_type": "display_data", "data": {"text/html": "".join(rows)}, "metadata": {}}
            outputs.append(html_out)
            rows = []
        if part is not None:
            outputs.append(part)
    for output in outputs:
        output["metadata"] = {**output.get("metadata", {}), LAST_VIEW: model_id}
    return outputs


def carry_last_views(nb) -> int:
    """Insert, after each widget output of ``nb`` (an executed notebook, changed in place), the
    widget's last view from the notebook's saved widget state; returns how many were inserted.
    Widgets whose last view is already there are left alone."""
    import nbformat

    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    carried = 0
    for cell in nb.get("cells", []):
        if "outputs" not in cell:
            continue
        outputs = []
        for i, output in enumerate(cell["outputs"]):
            outputs.append(output)
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            after = cell["outputs"][i + 1] if i + 1 < len(cell["outputs"]) else {}
            if after.get("metadata", {}).get(LAST_VIEW) == view["model_id"]:
                continue
            shown = widget_last_view(view["model_id"], state)
            outputs += [nbformat.from_dict(o) for o in shown]
            carried += bool(shown)
        cell["outputs"] = outputs
    return carried
