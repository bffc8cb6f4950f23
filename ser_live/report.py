"""A session report: one self-contained HTML file (inline SVG plots, no scripts, no
external files) with each side's summary, timeline and strongest moments, and the markers.

Everything taken from the log (speaker names, notes, file names) is HTML-escaped: a marker
note is text a user typed and must never become markup in the reviewer's browser.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import numpy as np

from ser_live import __version__
from ser_live.errors import SerLiveError
from ser_live.review import (
    PEAK_EMOTIONS,
    SessionRecord,
    SideSummary,
    Track,
    cues_text,
    dominant,
    summarise_all,
)

#: One colour per emotion everywhere (app, review, report): the Okabe-Ito palette, which
#: stays apart for the common colour-vision deficiencies; neutral is grey.
EMOTION_COLOURS = {
    "neutral": "#999999",
    "happy": "#E69F00",  # orange
    "sad": "#0072B2",  # blue
    "angry": "#D55E00",  # vermillion
    "fearful": "#CC79A7",  # reddish purple
    "disgust": "#009E73",  # bluish green
    "surprised": "#56B4E9",  # sky blue
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { padding: 0.2em 0.8em; text-align: left; border-bottom: 1px solid #eee; }
th { background: #f4f4f4; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }
.note { color: #666; font-size: 0.9em; }
"""


def clock(seconds: float) -> str:
    """Session time as m:ss (h:mm:ss past an hour)."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def duration(seconds: float) -> str:
    """A length of time: seconds under a minute, else as ``clock``."""
    return f"{seconds:.1f} s" if seconds < 60 else clock(seconds)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def timeline_svg(
    track: Track, labels: list[str], duration_s: float, marker_times: list[float]
) -> str:
    """The side's emotion probabilities over the session, gaps where there was no speech."""
    width, height, left, bottom, top = 900, 200, 40, 24, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    span = max(duration_s, 1.0)

    def x(t: float) -> float:
        return left + plot_w * t / span

    def y(p: float) -> float:
        return top + plot_h * (1 - p)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#ccc"/>',
    ]
    for p in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{left - 4}" y="{y(p) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{p:.1f}</text>"
        )
    step = next(s for s in (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 1e9) if span / s <= 10)
    for t in np.arange(0.0, span + 1e-9, step):
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
            f"{clock(t)}</text>"
        )
    for at in marker_times:
        parts.append(
            f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{top}" y2="{top + plot_h}" '
            'stroke="#444" stroke-dasharray="4 3"/>'
        )
    for i, label in enumerate(labels):
        p = track.probabilities[:, i]
        segments: list[list[str]] = [[]]
        for t, v, speech in zip(track.end_s, p, track.speech, strict=True):
            if np.isnan(v) or not speech:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(f"{x(t):.1f},{y(v):.1f}")
        colour = EMOTION_COLOURS.get(label, "#000")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{colour}"/>')
            elif seg:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{" ".join(seg)}"/>'
                )
    parts.append("</svg>")
    return "".join(parts)


def shares_svg(summary: SideSummary) -> str:
    """The side's speech time split by emotion, as one stacked bar."""
    width, height = 900, 22
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    x = 0.0
    for label, share in summary.shares.items():
        if share <= 0:
            continue
        w = share * width
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" '
            f'fill="{EMOTION_COLOURS.get(label, "#000")}"><title>{_esc(label)} '
            f"{share:.0%}</title></rect>"
        )
        x += w
    parts.append("</svg>")
    return "".join(parts)


def side_html(record: SessionRecord, summary: SideSummary) -> str:
    track = record.tracks[summary.speaker]
    labels = record.labels
    mine = [n for n in record.markers if n.speaker in ("", summary.speaker)]
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{EMOTION_COLOURS.get(label, "#000")}">'
        f'</span>{_esc(label)}</td><td class="num">{summary.shares[label]:.0%}</td>'
        f'<td class="num">{summary.mean_probabilities[label]:.2f}</td></tr>'
        for label in labels
    )
    peaks = "".join(
        f'<tr><td>{_esc(p.emotion)}</td><td class="num">{clock(p.start_s)}–{clock(p.end_s)}</td>'
        f'<td class="num">{p.probability:.2f}</td></tr>'
        for found in summary.peaks.values()
        for p in found
    )
    top = dominant(summary)
    cues = cues_text(record.cues.get(summary.speaker, {}))
    cue_html = f"<h3>Call cues</h3><p>{_esc(' · '.join(cues))}</p>" if cues else ""
    return f"""
<h2>{_esc(summary.speaker)}</h2>
<p class="note">source: {_esc(track.source)}</p>
<table>
<tr><th>time in speech</th><td class="num">{duration(summary.speech_s)}</td></tr>
<tr><th>most of the speech</th><td>{_esc(top) if top else "no speech heard"}</td></tr>
</table>
{shares_svg(summary)}
<table><tr><th>emotion</th><th>share of speech</th><th>mean probability</th></tr>{rows}</table>
{cue_html}
<h3>Timeline</h3>
{timeline_svg(track, labels, record.duration_s, [n.at_s for n in mine])}
<h3>Strongest moments</h3>
{
        f"<table><tr><th>emotion</th><th>when</th><th>probability</th></tr>{peaks}</table>"
        if peaks
        else '<p class="note">no speech windows</p>'
    }
"""


def render(record: SessionRecord) -> str:
    """The whole report as one HTML document."""
    summaries = summarise_all(record)
    markers = "".join(
        f'<tr><td class="num">{clock(n.at_s)}</td><td>{_esc(n.speaker or "session")}</td>'
        f"<td>{_esc(n.text)}</td></tr>"
        for n in sorted(record.markers, key=lambda n: n.at_s)
    )
    legend = " ".join(
        f'<span class="swatch" style="background:{EMOTION_COLOURS.get(label, "#000")}"></span>'
        f"{_esc(label)}"
        for label in record.labels
    )
    overview = "".join(
        f'<tr><td>{_esc(s.speaker)}</td><td class="num">{clock(s.speech_s)}</td>'
        f"<td>{_esc(dominant(s) or '–')}</td>"
        + "".join(
            f'<td class="num">{found[0].probability:.2f} at {clock(found[0].start_s)}</td>'
            if found
            else "<td>–</td>"
            for found in s.peaks.values()
        )
        + "</tr>"
        for s in summaries
    )
    peak_heads = "".join(f"<th>strongest {_esc(e)}</th>" for e in PEAK_EMOTIONS)
    generated = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>ser-live report: {_esc(record.path.name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Session report</h1>
<table>
<tr><th>log</th><td>{_esc(record.path.name)}</td></tr>
<tr><th>started</th><td>{_esc(record.started or "unknown")}</td></tr>
<tr><th>length</th><td>{duration(record.duration_s)}</td></tr>
<tr><th>sides</th><td>{_esc(", ".join(record.tracks) or "none")}</td></tr>
</table>
<table><tr><th>side</th><th>time in speech</th><th>most of the speech</th>{peak_heads}</tr>
{overview}</table>
<p>{legend}</p>
{"".join(side_html(record, s) for s in summaries)}
<h2>Markers</h2>
{
        f"<table><tr><th>when</th><th>side</th><th>note</th></tr>{markers}</table>"
        if markers
        else '<p class="note">none</p>'
    }
<p class="note">Generated {generated} by ser-live {_esc(__version__)}. The emotions are
estimates of how the speech sounds, from a model trained on acted corpora; they are not a
measure of what anyone feels. See the model card for its accuracy on unseen voices.</p>
</body></html>
"""


def write_report(record: SessionRecord, out: str | Path) -> Path:
    out = Path(out)
    try:
        out.write_text(render(record), encoding="utf-8")
    except OSError as exc:
        raise SerLiveError(f"cannot write {out}: {exc.strerror}") from None
    return out
