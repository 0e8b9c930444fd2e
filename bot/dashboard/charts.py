"""Charts drawn on the server as SVG: a page loads no script and no chart library, and a chart is as readable
printed or on a phone (the SVG scales to its box) as on a desktop.

Colours come from SVG attributes, not CSS, so the page's Content-Security-Policy (no inline styles) holds. Every
chart has a <title> and an aria-label, and its numbers are also in the table beside it and in its CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 28, 14, 34
COLOURS = ("#2f6fde", "#e07a1f", "#1f9e6e", "#b03ab0", "#888f99")


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"


def _open(title: str, height: int = HEIGHT) -> str:
    label = escape(title)
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>')


def line_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Lines over a shared x axis (days): each series a name and one value a label."""
    top = max([value for _name, values in series for value in values] + [1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(labels) - 1, 1)

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * value / top

    parts = [_open(title)]
    for fraction in (0, 0.5, 1):
        at = y(top * fraction)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at:.1f}" y2="{at:.1f}" stroke="#d5d9e0" '
                     'stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end" font-size="11" fill="#596170">'
                     f"{_number(top * fraction)}</text>")
    for index in sorted({0, len(labels) // 2, len(labels) - 1}) if labels else ():
        label = labels[index][5:] if len(labels[index]) == 10 else labels[index]  # a day without its year
        anchor = "start" if index == 0 else "end" if index == len(labels) - 1 else "middle"
        parts.append(f'<text x="{LEFT + step * index:.1f}" y="{HEIGHT - 14}" text-anchor="{anchor}" font-size="12" '
                     f'fill="#596170">{escape(label)}</text>')
    for number, (name, values) in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        points = " ".join(f"{LEFT + step * i:.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5" '
                     'stroke-linejoin="round"/>')
        parts.append(f'<rect x="{LEFT + 8 + number * 150}" y="{HEIGHT - 10}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{LEFT + 22 + number * 150}" y="{HEIGHT - 1}" font-size="11" '
                     f'fill="#1f2430">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, items: Sequence[tuple[str, float]]) -> str:
    """Horizontal bars, one a row, labelled with their value: a funnel, a distribution, a ranking."""
    row, gap, label_w = 28, 6, 230
    height = TOP + len(items) * (row + gap) + 4
    top = max([value for _label, value in items] + [1])
    plot_w = WIDTH - label_w - 70
    parts = [_open(title, height)]
    for index, (label, value) in enumerate(items):
        y = TOP + index * (row + gap)
        width = max(plot_w * value / top, 1 if value else 0)
        shown = label if len(label) <= 30 else label[:29] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + row / 2 + 5:.1f}" text-anchor="end" font-size="15" '
                     f'fill="#1f2430">{escape(shown)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{row}" rx="3" fill="{COLOURS[0]}"/>')
        parts.append(f'<text x="{label_w + width + 6:.1f}" y="{y + row / 2 + 5:.1f}" font-size="15" '
                     f'fill="#1f2430">{_number(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)
