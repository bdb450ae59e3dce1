"""Interactive figures that also leave a static figure in the rendered book.

In JupyterLab or Colab, :func:`interactive_figure` shows sliders (ipywidgets) that redraw a
figure. While the book is built (``AIGC_BOOK=1``, set by ``make book``), or when ipywidgets
cannot be imported, it instead draws the same figure for a few chosen values side by side, so
the HTML page shows a real figure rather than an empty widget area.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt

from aigc_course.runtime import in_book_build


def static_panels(draw: Callable, name: str, values: Sequence, fixed: dict | None = None,
                  panel_size: tuple[float, float] = (3.2, 3.0), title_fmt: str = "{name} = {value}"):
    """Draw ``draw(ax, **{name: v}, **fixed)`` for each v in ``values`` on one row of panels."""
    fixed = fixed or {}
    fig, axes = plt.subplots(1, len(values), figsize=(panel_size[0] * len(values), panel_size[1]), squeeze=False)
    for ax, v in zip(axes[0], values):
        draw(ax, **{name: v}, **fixed)
        ax.set_title(title_fmt.format(name=name, value=v))
    fig.tight_layout()
    return fig


def interactive_figure(draw: Callable, name: str, values: Sequence, fixed: dict | None = None,
                       static_values: Sequence | None = None, **panel_kw):
    """A slider over ``values`` that redraws ``draw(ax, **{name: value})``.

    Args:
        draw: function ``draw(ax, **kwargs)`` that draws one figure on ``ax``.
        name: the keyword argument the slider sets.
        values: the values the slider walks through (any sequence: ints, floats, strings).
        static_values: the values drawn side by side in the static fallback (default: first,
            middle, last).
    Returns the widget, or the static figure when widgets are off.
    """
    values = list(values)
    if not values:
        raise ValueError("interactive_figure needs at least one value.")
    if static_values is None:
        static_values = [values[0], values[len(values) // 2], values[-1]] if len(values) > 2 else values
    try:
        if in_book_build():
            raise ImportError
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        return static_panels(draw, name, static_values, fixed, **panel_kw)

    out = w.Output()
    slider = w.SelectionSlider(options=values, value=values[0], description=name, continuous_update=False)

    def redraw(change=None):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=panel_kw.get("panel_size", (4.5, 4.0)))
            draw(ax, **{name: slider.value}, **(fixed or {}))
            plt.show()

    slider.observe(redraw, names="value")
    redraw()
    box = w.VBox([slider, out])
    display(box)
    return box
