"""Bar charts drawn on the server as SVG: no script, no third-party asset, nothing but markup.

Every text in the SVG is escaped; presentation is in SVG attributes and the console's stylesheet
(classes), never in ``style`` attributes, which the Content-Security-Policy forbids.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from tillpay.domain.money import format_amount

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 220, 70, 24, 12


def _bar_chart(points: list[tuple[str, int]], currency: str, title: str, chart_id: str) -> Markup:
    top = max((v for _, v in points), default=0)
    n = max(len(points), 1)
    inner_w = WIDTH - PAD_LEFT - 8
    inner_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    step = inner_w / n  # float-ok: pixel geometry, not money
    out = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-t" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-t">{escape(title)} ({escape(currency)})</title>',
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + inner_h}" x2="{WIDTH - 8}" y2="{PAD_TOP + inner_h}"/>',
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + 10}" text-anchor="end">'
        f"{escape(format_amount(top, currency))}</text>",
        f'<text class="tick" x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end">0</text>',
    ]
    for i, (label, value) in enumerate(points):
        h = round(inner_h * value / top) if top else 0
        x = PAD_LEFT + i * step + step * 0.15
        w = step * 0.7
        y = PAD_TOP + inner_h - h
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}">'
            f"<title>{escape(label)}: {escape(format_amount(value, currency))} {escape(currency)}</title></rect>"
        )
        if n <= 31 and (n <= 12 or i % 2 == 0):
            out.append(
                f'<text class="tick" x="{x + w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every interpolated text above is escaped


def bars(series: list[tuple[str, dict[str, int]]], *, title: str, chart_id: str) -> list[tuple[str, Markup]]:
    """One bar chart per currency present in ``series`` (label → {currency: minor units})."""
    currencies = sorted({c for _, values in series for c in values})
    return [
        (c, _bar_chart([(label, values.get(c, 0)) for label, values in series], c, title, f"{chart_id}-{c}"))
        for c in currencies
    ]
