"""Does a Textual screen fit its terminal? The checks the screen-size tests make on every screen."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from textual.app import App
from textual.containers import ScrollableContainer
from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.widgets import Button, DataTable, Digits, Footer, Input, Static
from textual.widgets._footer import FooterKey

#: What a cashier or customer must see whole: keys, totals, buttons, prompts, input lines.
IMPORTANT = (Button, Digits, Input, Footer, FooterKey, DataTable, Static)


def _shown(w: Widget) -> bool:
    node: Any = w
    while isinstance(node, Widget):
        if not node.display or not node.visible:
            return False
        node = node.parent
    return True


def _scrolls(w: Widget) -> bool:
    return isinstance(w, (ScrollableContainer, ScrollView)) and not isinstance(w, Footer)


def problems(app: App[Any]) -> list[str]:
    """Everything on the current screen that is cut: outside the terminal, squeezed to nothing, clipped
    by its container, a label wider than its button, text taller than its box, a horizontal scrollbar,
    a footer key off the footer. What sits in a scrolling box only has to fit across."""
    width, height = app.size
    screen = app.screen
    out: list[str] = []
    for w in [screen, *screen.walk_children()]:
        if not isinstance(w, Widget) or not _shown(w):
            continue
        name = f"{type(w).__name__}#{w.id}" if w.id else type(w).__name__
        r = w.region
        if _scrolls(w) and w.show_horizontal_scrollbar:
            out.append(f"{name} has a horizontal scrollbar")
        if not isinstance(w, IMPORTANT):
            continue
        if isinstance(w, Static) and not str(w.render()).strip():
            continue  # an empty line (a message not yet shown) has nothing to cut
        if r.width <= 0 or r.height <= 0:
            out.append(f"{name} is squeezed to {r.width}x{r.height}")
            continue
        inside_scroll = False
        for anc in w.ancestors:
            if not isinstance(anc, Widget) or anc is screen:
                break
            if _scrolls(anc) or isinstance(anc, Footer):
                inside_scroll = True
                if isinstance(anc, Footer) and not anc.region.contains_region(r):
                    out.append(f"{name} at {r} is off the footer {anc.region}")
                break
            if not anc.region.contains_region(r):
                out.append(f"{name} at {r} is clipped by {type(anc).__name__}#{anc.id} at {anc.region}")
                break
        if not inside_scroll and (r.x < 0 or r.y < 0 or r.right > width or r.bottom > height):
            out.append(f"{name} at {r} is outside the {width}x{height} screen")
        if isinstance(w, Button) and cell_len(str(w.label)) > w.content_region.width:
            out.append(f"{name}: label {str(w.label)!r} is wider than the button ({w.content_region.width})")
        if isinstance(w, Static) and not isinstance(w, (Button, Digits)) and not inside_scroll:
            cr = w.content_region
            need = w.get_content_height(cr.size, app.size, cr.width)
            if need > cr.height:
                out.append(f"{name}: {need} lines of text in {cr.height} rows")
    return out


def assert_fits(app: App[Any], where: str) -> None:
    """Fail with every cut widget named."""
    found = problems(app)
    assert not found, f"{where} at {app.size.width}x{app.size.height}:\n  " + "\n  ".join(found)
