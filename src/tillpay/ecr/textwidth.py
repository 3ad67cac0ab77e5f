"""Text laid out by display width, not by characters: a CJK character takes two columns on a receipt
printer and in a terminal (Unicode East Asian Width, as the ``wcwidth`` package measures it).

``len("门店 STORE-1")`` is 10 but it prints 12 columns wide; a 42-column rule is only a rule if every
line under it is measured the same way.
"""

from __future__ import annotations

from wcwidth import wcswidth
from wcwidth import wcwidth as _char_width

#: After these a long id may break: where a reader expects the next part to start.
_BREAK_AFTER = "-_/:.,;"


def width(text: str) -> int:
    """Columns ``text`` takes on paper or screen (control characters take none)."""
    n = wcswidth(text)
    if n >= 0:
        return int(n)
    return sum(max(0, _char_width(c)) for c in text)


def crop(text: str, cols: int) -> str:
    """The longest start of ``text`` that fits in ``cols`` columns."""
    out, used = [], 0
    for c in text:
        w = max(0, _char_width(c))
        if used + w > cols:
            break
        out.append(c)
        used += w
    return "".join(out)


def rjust(text: str, cols: int) -> str:
    """``text`` right-aligned in ``cols`` columns."""
    return " " * max(0, cols - width(text)) + text


def center(text: str, cols: int) -> str:
    """``text`` centred in ``cols`` columns (no trailing spaces)."""
    return " " * max(0, (cols - width(text)) // 2) + text


def _split(word: str, room: int) -> tuple[str, str]:
    """Break a word too wide for ``room`` columns: after the last ``-``/``_``/``/``… or wide (CJK)
    character that fits, else at the column."""
    head = crop(word, max(1, room))
    if not head:  # a single character wider than the room: it goes alone
        head = word[0]
    cut = len(head)
    if cut < len(word):
        for i in range(len(head), 0, -1):
            c = head[i - 1]
            if c in _BREAK_AFTER or _char_width(c) == 2:
                cut = i
                break
    return word[:cut], word[cut:]


def wrap(text: str, cols: int, indent: str = "") -> list[str]:
    """``text`` as lines of at most ``cols`` columns: a line that fits is kept as it is, a longer one is
    broken at spaces, a long id after a separator,
    CJK text between characters; continuation lines start with ``indent``."""
    lines: list[str] = []
    for para in text.split("\n"):
        if width(para) <= cols:
            lines.append(para)  # as it is: a line that fits keeps its spacing (the report's columns)
            continue
        line = ""
        for word in para.split(" "):
            if not word:
                continue
            joined = f"{line} {word}" if line.strip() else line + word
            if width(joined) <= cols:
                line = joined
                continue
            if line.strip():
                lines.append(line)
                line = indent
            while width(line + word) > cols:
                head, word = _split(word, cols - width(line))
                lines.append(line + head)
                line = indent
            line += word
        lines.append(line)
    return lines


def row(left: str, right: str, cols: int) -> list[str]:
    """A label and a value on one line, the value flush right; when both do not fit, the label on its
    line and the value right-aligned under it (wrapped if it is wider than the paper)."""
    if width(left) + 1 + width(right) <= cols:
        return [left + " " * (cols - width(left) - width(right)) + right]
    out = wrap(left, cols) if left else []
    out += [rjust(part, cols) for part in wrap(right, cols)]
    return out
