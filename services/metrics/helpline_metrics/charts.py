"""Server-side SVG charts for the dashboard: no script, no external resource.

Every chart is an `<svg role="img">` with a `<title>` and a `<desc>` that states its data in
words, so a screen reader (or a text browser) gets the figures; the dashboard also gives
each chart's data as a table. Values are drawn to scale from zero; labels are escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#1f5f99", "#d9822b", "#2e8540", "#b0303b", "#6b4c9a", "#5f6b73", "#8c6d1f")
ROW_H, LABEL_W, BAR_W, WIDTH = 26, 130, 330, 560


def _svg(title: str, desc: str, height: int, body: str, width: int = WIDTH) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower())
    return (
        f'<svg role="img" aria-labelledby="{slug}-t {slug}-d" viewBox="0 0 {width} {height}"'
        f' width="100%" style="max-width:{width}px" xmlns="http://www.w3.org/2000/svg"'
        f' font-family="system-ui, sans-serif" font-size="13">'
        f'<title id="{slug}-t">{escape(title)}</title><desc id="{slug}-d">{escape(desc)}</desc>'
        f"{body}</svg>"
    )


def _empty(title: str) -> str:
    return _svg(
        title,
        "No data yet.",
        40,
        '<text x="8" y="24" fill="#444">No data yet.</text>',
    )


def _label(label: str, y: int) -> str:
    return f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'


def hbars(title: str, rows: Sequence[tuple[str, float, str]], unit: str = "") -> str:
    """One horizontal bar per row `(label, value, shown text)`, scaled to the largest."""
    if not rows:
        return _empty(title)
    top = max(v for _, v, _ in rows) or 1.0
    body = []
    for i, (label, value, shown) in enumerate(rows):
        y = 8 + i * ROW_H
        w = max(1.0, BAR_W * value / top) if value else 0.0
        body.append(
            _label(label, y)
            + f'<rect x="{LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 8}"'
            f' fill="{PALETTE[0]}"/>'
            f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 15}">{escape(shown)}</text>'
        )
    desc = "; ".join(f"{label}: {shown}{unit}" for label, _, shown in rows)
    return _svg(title, desc, 16 + len(rows) * ROW_H, "".join(body))


def stacked(title: str, rows: Sequence[tuple[str, dict[str, int]]]) -> str:
    """One horizontal bar per row, split into its parts (a legend names each colour)."""
    if not rows:
        return _empty(title)
    parts = sorted({k for _, d in rows for k in d})
    colour = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(parts)}
    top = max(sum(d.values()) for _, d in rows) or 1
    body = []
    for i, (label, d) in enumerate(rows):
        y = 8 + i * ROW_H
        x = float(LABEL_W)
        body.append(
            f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
        )
        for k in parts:
            if d.get(k):
                w = BAR_W * d[k] / top
                body.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{ROW_H - 8}"'
                    f' fill="{colour[k]}"><title>{escape(f"{k}: {d[k]}")}</title></rect>'
                )
                x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{sum(d.values()):,}</text>')
    legend_y = 16 + len(rows) * ROW_H
    for j, k in enumerate(parts):
        lx, ly = 8 + (j % 4) * 135, legend_y + (j // 4) * 20
        body.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour[k]}"/>'
            f'<text x="{lx + 17}" y="{ly + 11}">{escape(k.replace("_", " "))}</text>'
        )
    desc = "; ".join(
        f"{label}: " + ", ".join(f"{k} {n}" for k, n in sorted(d.items())) for label, d in rows
    )
    height = legend_y + ((len(parts) + 3) // 4) * 20 + 4
    return _svg(title, desc, height, "".join(body))


def vbars(title: str, rows: Sequence[tuple[str, int]]) -> str:
    """One vertical bar per row `(label, count)`, in the order given (e.g. months)."""
    if not rows:
        return _empty(title)
    plot_h, step = 150, min(60, max(18, (WIDTH - 40) // len(rows)))
    top = max(n for _, n in rows) or 1
    body = [f'<line x1="30" y1="{plot_h + 20}" x2="{WIDTH - 4}" y2="{plot_h + 20}" stroke="#888"/>']
    for i, (label, n) in enumerate(rows):
        x = 34 + i * step
        h = plot_h * n / top
        body.append(
            f'<rect x="{x}" y="{plot_h + 20 - h:.1f}" width="{step - 6}" height="{h:.1f}"'
            f' fill="{PALETTE[0]}"/>'
            f'<text x="{x + (step - 6) / 2:.1f}" y="{plot_h + 14 - h:.1f}"'
            f' text-anchor="middle">{n:,}</text>'
            f'<text x="{x + (step - 6) / 2:.1f}" y="{plot_h + 36}" text-anchor="middle"'
            f' font-size="11">{escape(label)}</text>'
        )
    desc = "; ".join(f"{label}: {n}" for label, n in rows)
    return _svg(title, desc, plot_h + 46, "".join(body), width=max(WIDTH, 40 + len(rows) * step))
