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


def chat_box(respond: Callable[[list[dict]], str], examples: Sequence[str] = (), static: bool | None = None,
             title: str = "Chat with the assistant", width: int = 90):
    """An ipywidgets chat box: a transcript, a text input and a Send button (chapter 5.14).

    Args:
        respond: ``respond(history) -> str``, where ``history`` is the conversation so far as a
            list of ``{"role": "user" | "assistant", "content": str}`` dicts ending with the
            user's new message; it returns the assistant's reply.
        examples: user messages answered first, so the transcript does not start empty.
        static: True prints the transcript of ``examples`` instead of showing a widget; None
            (default) does so while the book is built (``AIGC_BOOK=1``) or when ipywidgets
            cannot be imported, so the HTML page shows a real conversation produced by the same
            ``respond``.
        width: characters per transcript line in the static transcript.
    Returns the widget (its ``history`` attribute holds the conversation), or the history list
    in the static case.
    """
    if not callable(respond):
        raise TypeError(f"chat_box needs a function respond(history) -> str, got {type(respond).__name__}.")
    if isinstance(examples, str):
        raise TypeError("examples must be a list of user messages, not one string: wrap it as [message].")
    history: list[dict] = []

    def send(message: str) -> str:
        history.append({"role": "user", "content": message})
        answer = respond([dict(m) for m in history])  # a copy: respond cannot rewrite the record
        if not isinstance(answer, str):
            raise TypeError(f"respond(history) must return a str, got {type(answer).__name__}.")
        history.append({"role": "assistant", "content": answer})
        return answer

    for message in examples:
        send(message)
    try:
        if static or (static is None and in_book_build()):
            raise ImportError
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        import textwrap
        print(title)
        for m in history:
            who = "user      " if m["role"] == "user" else "assistant "
            lines = textwrap.wrap(m["content"], width) or [""]
            print(who + "> " + lines[0], *("            " + line for line in lines[1:]), sep="\n")
        return history

    import html
    transcript = w.HTML()
    text = w.Text(placeholder="Type a message and press Send", layout=w.Layout(width="70%"))
    button, clear = w.Button(description="Send", button_style="primary"), w.Button(description="Clear")

    def render() -> None:
        rows = [f"<b>{'You' if m['role'] == 'user' else 'Assistant'}:</b> {html.escape(m['content'])}"
                for m in history]
        transcript.value = "<br>".join(rows) or "<i>(empty)</i>"

    def on_send(_=None) -> None:
        if text.value.strip():
            message, text.value = text.value.strip(), ""
            send(message)
            render()

    def on_clear(_=None) -> None:
        history.clear()
        render()

    button.on_click(on_send)
    clear.on_click(on_clear)
    render()
    box = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), transcript, w.HBox([text, button, clear])])
    box.history, box.text, box.send_button = history, text, button
    display(box)
    return box
