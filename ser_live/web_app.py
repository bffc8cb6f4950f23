"""The web page (``ser-live web``): upload recordings, see and download their analysis.

A Streamlit script, a thin layer on ``ser_live.uploads``: Streamlit runs it once per
browser tab and interaction, each tab on a thread of its own with its own
``st.session_state``. A tab's results live only in its session state; the uploads only in
Streamlit's memory for that tab and, during a run, in a temporary folder that the run
deletes. Nothing is shared between tabs.
"""

from __future__ import annotations

import os

import numpy as np
import streamlit as st

from ser_live import EMOTIONS
from ser_live.analysis import EngineOptions
from ser_live.report import EMOTION_COLOURS, clock
from ser_live.uploads import (
    DEFAULT_MAX_UPLOAD_MB,
    MAX_UPLOAD_ENV,
    SideResult,
    Upload,
    UploadRun,
    analyze_uploads,
)


def max_upload_mb() -> int:
    try:
        return max(1, int(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB)))
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB


def timeline_chart(side: SideResult, labels: list[str]):
    """The side's timeline in the app's colours: the dominant-emotion band (opacity by
    confidence) over each emotion's probability; hovering shows every probability at
    that moment."""
    import altair as alt
    import pandas as pd

    track = side.track
    wide = pd.DataFrame(track.probabilities, columns=labels)
    wide.insert(0, "time_s", track.end_s)
    long = wide.melt("time_s", var_name="emotion", value_name="probability")
    colours = alt.Scale(domain=labels, range=[EMOTION_COLOURS.get(e, "#000") for e in labels])
    x = alt.X("time_s:Q", title="time (s)")
    heard = track.heard
    band = pd.DataFrame(
        {
            "from_s": (track.end_s - track.hop_s)[heard],
            "time_s": track.end_s[heard],
            "emotion": np.asarray(track.emotion, dtype=object)[heard],
            "confidence": np.nanmax(track.probabilities[heard], axis=1, initial=0.0),
        }
    )
    top = (
        alt.Chart(band)
        .mark_rect()
        .encode(
            x=alt.X("time_s:Q", axis=None),
            x2="from_s:Q",
            color=alt.Color("emotion:N", scale=colours, sort=labels, legend=None),
            opacity=alt.Opacity("confidence:Q", scale=alt.Scale(domain=[0, 1]), legend=None),
            tooltip=["emotion:N", alt.Tooltip("confidence:Q", format=".2f")],
        )
        .properties(height=28)
    )
    nearest = alt.selection_point(
        nearest=True, on="pointerover", fields=["time_s"], empty=False, clear="pointerout"
    )
    lines = (
        alt.Chart(long)
        .mark_line(point=len(track.end_s) <= 20)  # a short clip's few windows as dots
        .encode(
            x=x,
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("emotion:N", scale=colours, sort=labels),
        )
    )
    rule = (
        alt.Chart(wide)
        .mark_rule(color="#555")
        .encode(
            x="time_s:Q",
            opacity=alt.condition(nearest, alt.value(0.6), alt.value(0.0)),
            tooltip=[alt.Tooltip("time_s:Q", title="time (s)", format=".1f")]
            + [alt.Tooltip(f"{e}:Q", format=".2f") for e in labels],
        )
        .add_params(nearest)
    )
    return alt.vconcat(top, (lines + rule).properties(height=200)).resolve_scale(x="shared")


def show_side(side: SideResult, labels: list[str], two_sides: bool) -> None:
    from ser_live.review import cues_text, emotion_shares

    summary = side.summary
    if two_sides:
        st.markdown(f"**{side.label}**")
    verdict = summary.get("emotion") or "no speech"
    st.markdown(
        f"Overall: **{verdict}** "
        f"(confidence {float(summary.get('confidence') or 0):.2f}) · "
        f"speech {float(summary.get('speech_s') or 0):.1f} s of "
        f"{float(summary.get('duration_s') or 0):.1f} s"
    )
    share = emotion_shares(side.track, labels)
    st.markdown(
        " · ".join(
            f'<span style="color:{EMOTION_COLOURS.get(e, "#000")}">■</span> {e} {share[e]:.0%}'
            for e in labels
        )
        + " <small>(share of speech)</small>",
        unsafe_allow_html=True,  # only the app's own labels and numbers
    )
    if side.cues:
        st.caption("Call cues: " + ", ".join(cues_text(side.cues)))
    st.altair_chart(timeline_chart(side, labels), width="stretch")


def show_run(run: UploadRun) -> None:
    labels = list(EMOTIONS)
    for result in run.files:
        st.subheader(result.name)
        if result.error:
            st.error(result.error)
        if result.alerts:
            st.warning(
                "Alerts: "
                + "; ".join(
                    f"{clock(a.at_s)} {a.rule.name}"
                    + (f" (channel {a.side})" if a.side and a.side != "mix" else "")
                    for a in result.alerts
                ),
                icon="🔔",
            )
        for side in result.sides:
            show_side(side, labels, len(result.sides) > 1)
        if result.report_html:
            st.download_button(
                "HTML report",
                result.report_html,
                file_name=f"report-{(len(run.files) > 1 and result.name) or 'recording'}.html",
                mime="text/html",
                key=f"report-{result.name}",
            )
    st.divider()
    cols = st.columns(4)
    cols[0].download_button("Timeline CSV", run.timeline_csv, "timeline.csv", "text/csv")
    cols[1].download_button("Summary CSV", run.summary_csv, "summary.csv", "text/csv")
    cols[2].download_button("Alerts CSV", run.alerts_csv, "alerts.csv", "text/csv")
    if run.cues_csv is not None:
        cols[3].download_button("Cues CSV", run.cues_csv, "cues.csv", "text/csv")
    st.caption(
        "Alerts: the app's default rules, sustained anger (0.6 or more for 5 s) on any "
        "side and a silence over 10 s, as `analyze --alert-log` checks them."
    )


def main() -> None:
    st.set_page_config(page_title="ser-live: emotion in recordings", layout="wide")
    st.title("Emotion in recordings")
    limit = max_upload_mb()
    st.caption(
        "Recordings are analysed on this computer by ser-live's engine, as "
        "`ser-live analyze` does. An upload is written to a temporary file only while it "
        "is analysed and deleted straight after; nothing is kept once you close this tab. "
        "The emotions are estimates of how speech sounds, not of what anyone feels."
    )
    files = st.file_uploader(
        f"Recordings (WAV, FLAC, OGG, Opus, MP3; up to {limit} MB each)",
        accept_multiple_files=True,
        key="uploads",
    )
    split = st.checkbox("Stereo call: one side per channel", key="split")
    calibrate = st.checkbox(
        "Calibrate to each voice (as `analyze --calibrate`)",
        key="calibrate",
        help="Hear each file (each channel, with the option above) relative to its own "
        "voice once enough speech has been heard.",
    )
    if st.button("Analyse", type="primary", disabled=not files, key="analyse"):
        progress = st.progress(0.0, text="Starting…")

        def on_progress(fraction: float, name: str) -> None:
            progress.progress(fraction, text=f"Analysing {name}…" if name else "Done")

        uploads = [Upload(f.name, f.getvalue()) for f in files or []]
        try:
            st.session_state["run"] = analyze_uploads(
                uploads,
                EngineOptions(calibrate=calibrate),
                split=split,
                max_bytes=limit * 1_000_000,
                on_progress=on_progress,
            )
        except Exception as exc:  # the page stays up, with one line that says why
            st.session_state.pop("run", None)
            st.error(f"The analysis failed: {exc}")
        progress.empty()
    run = st.session_state.get("run")
    if run is not None:
        show_run(run)


main()
