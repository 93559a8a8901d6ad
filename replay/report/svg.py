"""Small inline-SVG charts for the reports: no JavaScript, no CDN, no dependency.

Every chart is an ``<svg class="plot" data-plot="NAME">`` element with a title, axes
with ticks, one ``<path class="series">`` (lines) or ``<rect class="bar">`` (bars) per
data series and a legend, so a test (or a reader with a screen reader) can find it.

>>> svg = line_chart("pr", "PR", [Series("m", [0, 1], [1, 0])], "recall", "precision")
>>> svg.startswith('<svg class="plot" data-plot="pr"') and 'class="series"' in svg
True
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Series", "line_chart", "bar_chart", "histogram_chart", "PALETTE"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#17becf", "#bcbd22")
W, H = 440, 280
ML, MR, MT, MB = 56, 14, 30, 44  # margins


@dataclass
class Series:
    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str | None = None
    dash: str | None = None


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10_000:
        return f"{v / 1000:,.0f}k"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


class _Frame:
    def __init__(self, xlo: float, xhi: float, ylo: float, yhi: float, log_y: bool = False):
        self.log_y = log_y
        if log_y:
            ylo, yhi = math.log10(max(ylo, 0.5)), math.log10(max(yhi, 1.0))
        if xhi <= xlo:
            xhi = xlo + 1
        if yhi <= ylo:
            yhi = ylo + 1
        self.xlo, self.xhi, self.ylo, self.yhi = xlo, xhi, ylo, yhi

    def px(self, x: float) -> float:
        return ML + (x - self.xlo) / (self.xhi - self.xlo) * (W - ML - MR)

    def py(self, y: float) -> float:
        if self.log_y:
            y = math.log10(max(y, 0.5))
        return H - MB - (y - self.ylo) / (self.yhi - self.ylo) * (H - MT - MB)


def _axes(f: _Frame, xlabel: str, ylabel: str, title: str) -> list[str]:
    parts = [f'<text class="title" x="{W / 2}" y="18" text-anchor="middle">{_esc(title)}</text>',
             f'<line class="axis" x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}"/>',
             f'<line class="axis" x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}"/>']
    for t in _ticks(f.xlo, f.xhi):
        x = f.px(t)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{MT}" x2="{x:.1f}" y2="{H - MB}"/>'
                     f'<text class="tick" x="{x:.1f}" y="{H - MB + 14}" '
                     f'text-anchor="middle">{_fmt(t)}</text>')
    yticks = ([10 ** e for e in range(int(f.ylo), int(math.ceil(f.yhi)) + 1)] if f.log_y
              else _ticks(f.ylo, f.yhi))
    for t in yticks:
        y = f.py(t)
        if MT - 1 <= y <= H - MB + 1:
            parts.append(f'<line class="grid" x1="{ML}" y1="{y:.1f}" x2="{W - MR}" '
                         f'y2="{y:.1f}"/><text class="tick" x="{ML - 5}" y="{y + 4:.1f}" '
                         f'text-anchor="end">{_fmt(t)}</text>')
    parts.append(f'<text class="label" x="{(ML + W - MR) / 2}" y="{H - 8}" '
                 f'text-anchor="middle">{_esc(xlabel)}</text>')
    parts.append(f'<text class="label" transform="translate(14,{(MT + H - MB) / 2}) '
                 f'rotate(-90)" text-anchor="middle">{_esc(ylabel)}</text>')
    return parts


def _legend(names: Sequence[tuple[str, str, str | None]], where: str = "top") -> list[str]:
    parts = []
    for i, (name, color, dash) in enumerate(names):
        y = (MT + 6 + 14 * i) if where == "top" else (H - MB - 8 - 14 * (len(names) - 1 - i))
        d = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{W - MR - 150}" y1="{y}" x2="{W - MR - 132}" y2="{y}" '
                     f'stroke="{color}" stroke-width="2.5"{d}/>'
                     f'<text class="legend" x="{W - MR - 128}" y="{y + 4}">'
                     f'{_esc(name[:26])}</text>')
    return parts


def _svg(name: str, title: str, body: list[str]) -> str:
    return (f'<svg class="plot" data-plot="{_esc(name)}" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{_esc(title)}">' + "".join(body) + "</svg>")


def line_chart(name: str, title: str, series: Sequence[Series], xlabel: str, ylabel: str, *,
               x_range: tuple[float, float] | None = None,
               y_range: tuple[float, float] | None = None, log_y: bool = False,
               legend: str = "top") -> str:
    """Lines (one ``path.series`` each) over shared axes; ``legend`` "top" or "bottom"
    (right-hand corner either way)."""
    xs = [v for s in series for v in s.x] or [0.0, 1.0]
    ys = [v for s in series for v in s.y] or [0.0, 1.0]
    xlo, xhi = x_range or (min(xs), max(xs))
    ylo, yhi = y_range or (min(0.0, min(ys)), max(ys))
    f = _Frame(xlo, xhi, ylo, yhi, log_y)
    body = _axes(f, xlabel, ylabel, title)
    legend_at = legend
    entries: list[tuple[str, str, str | None]] = []
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        points = [(f.px(x), f.py(y)) for x, y in zip(s.x, s.y, strict=True)
                  if y is not None and not math.isnan(y)]
        if not points:
            continue
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        kind = "marker" if s.dash else "series"  # dashed: a reference line, not data
        body.append(f'<path class="{kind}" data-series="{_esc(s.name)}" d="{d}" fill="none" '
                    f'stroke="{color}" stroke-width="2"{dash}/>')
        entries.append((s.name, color, s.dash))
    return _svg(name, title, body + _legend(entries, where=legend_at))


def bar_chart(name: str, title: str, groups: Sequence[str], series: Sequence[Series],
              ylabel: str, *, y_max: float | None = None) -> str:
    """Grouped bars: for each group (x position), one bar per series (``y[i]``)."""
    top = y_max if y_max is not None else max([v for s in series for v in s.y] + [1e-9])
    f = _Frame(0, len(groups), 0, top * (1.1 + 0.1 * len(series)))  # room for the legend
    body = _axes(f, "", ylabel, title)
    # the x ticks of _axes are numeric: replace them with the group names
    body = [p for p in body if 'class="tick"' not in p or "text-anchor=\"end\"" in p]
    width = (W - ML - MR) / max(len(groups), 1)
    bw = width * 0.8 / max(len(series), 1)
    legend = []
    for j, s in enumerate(series):
        color = s.color or PALETTE[j % len(PALETTE)]
        legend.append((s.name, color, None))
        for i, v in enumerate(s.y):
            x = ML + i * width + width * 0.1 + j * bw
            y = f.py(v)
            body.append(f'<rect class="bar" data-series="{_esc(s.name)}" x="{x:.1f}" '
                        f'y="{y:.1f}" width="{bw - 1:.1f}" height="{H - MB - y:.1f}" '
                        f'fill="{color}"><title>{_esc(s.name)} {_esc(groups[i])}: '
                        f'{v:.4g}</title></rect>')
    for i, g in enumerate(groups):
        body.append(f'<text class="tick" x="{ML + (i + 0.5) * width:.1f}" y="{H - MB + 14}" '
                    f'text-anchor="middle">{_esc(g if len(g) <= 18 else "…" + g[-17:])}</text>')
    return _svg(name, title, body + _legend(legend))


def histogram_chart(name: str, title: str, edges: Sequence[float],
                    series: Sequence[Series], xlabel: str, *, log_y: bool = True) -> str:
    """Step outlines of counts per bin (``series.y`` = counts, ``edges`` = bin edges)."""
    steps = []
    for s in series:
        xs, ys = [], []
        for i, c in enumerate(s.y):
            xs += [edges[i], edges[i + 1]]
            ys += [max(c, 0.5) if log_y else c] * 2
        steps.append(Series(s.name, xs, ys, s.color, s.dash))
    top = max([v for s in steps for v in s.y] + [1.0])
    return line_chart(name, title, steps, xlabel, "transactions" + (" (log)" if log_y else ""),
                      x_range=(edges[0], edges[-1]), y_range=(0.5 if log_y else 0, top),
                      log_y=log_y)
