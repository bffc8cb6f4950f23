"""The leave-one-corpus-out report as Markdown: the yardstick table and per-class recall."""

from __future__ import annotations

from training.corpora import LANGUAGES

#: The report's rows: each clip alone (as ``analyze --summary``), and with ``--calibrated``
#: the calibrated protocols (``training.scoring.PROTOCOLS``).
ROWS = (
    "baseline",
    "baseline_calibrated",
    "baseline_one_emotion",
    "loco",
    "loco_calibrated",
    "loco_one_emotion",
)
#: How each row hears the clips, after the model's name.
PROTOCOL_NAMES = {
    "": "each clip alone",
    "_calibrated": "calibrated, mixed sessions",
    "_one_emotion": "calibrated, one-emotion sessions",
}


def row_name(report: dict, row: str) -> str:
    """A row's model (``baseline`` or ``loco``) and how it heard the clips."""
    model, _, protocol = row.partition("_")
    suffix = f"_{protocol}" if protocol else ""
    return f"{report.get(f'{model}_name', model)}, {PROTOCOL_NAMES[suffix]}"


def markdown(report: dict) -> str:
    lines = [
        "# Leave-one-corpus-out",
        "",
        "Closed-set UAR over each held-out corpus's own labels, every clip counted "
        "(a clip with no verdict is wrong); clips scored by the engine as "
        "`ser-live analyze --summary` scores them. Calibrated, mixed sessions: each "
        "speaker's clips as one calibrated session, as `analyze --summary "
        "--voice-per-folder` hears a folder of one speaker's recordings. Calibrated, "
        "one-emotion sessions: each speaker's clips of one emotion as one session, a voice "
        "that keeps one emotion throughout. A clip of no known speaker (EmoSpeech's "
        '"unknown user") is heard alone in both.',
        "",
    ]
    rows = [r for r in ROWS if r in report]
    if not rows:
        return "\n".join(lines + folds_markdown(report)) + "\n"
    lines.append("The mean is over the corpora each model did not train on.")
    lines.append("")
    head = "| model | " + " | ".join(report["corpora"]) + " | mean |"
    lines += [head, "| --- " * (len(report["corpora"]) + 2) + "|"]
    for row in rows:
        cells = []
        for corpus in report["corpora"]:
            entry = report[row].get(corpus)
            if entry is None:
                cells.append("–")
                continue
            seen = " (trained on it)" if entry.get("seen") else ""
            cells.append(f"{entry['uar']:.3f}{seen}")
        mean = report.get(f"{row}_mean_held_out", report[f"{row}_mean"])
        lines.append(f"| {row_name(report, row)} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += [
        "",
        "| corpus | language | labels | clips | chance |",
        "| --- | --- | --- | --- | --- |",
    ]
    any_row = report[rows[0]]
    for corpus in report["corpora"]:
        entry = any_row.get(corpus)
        if entry:
            lines.append(
                f"| {corpus} | {LANGUAGES[corpus]} | {', '.join(entry['labels'])} | "
                f"{entry['clips']} | {entry['chance']:.3f} |"
            )
    for row in rows:
        lines += ["", f"## Per-class recall: {row_name(report, row)}", ""]
        for corpus in report["corpora"]:
            entry = report[row].get(corpus)
            if entry:
                recalls = ", ".join(f"{k} {v:.2f}" for k, v in entry["recall"].items())
                lines.append(f"- {corpus}: {recalls} (no verdict: {entry['no_verdict']})")
    return "\n".join(lines + folds_markdown(report)) + "\n"


def folds_markdown(report: dict) -> list[str]:
    folds = report.get("folds")
    if not folds:
        return []
    recalls = ", ".join(f"{k} {v:.2f}" for k, v in folds["recall"].items())
    return [
        "",
        f"## Second figure: {folds['corpus']} speakers held out ({folds['folds']} folds)",
        "",
        f"Each fold trained on every training corpus except 1/{folds['folds']} of "
        f"{folds['corpus']}'s speakers, and scored on those speakers' clips.",
        "",
        f"- UAR {folds['uar_mean']:.3f} ± {folds['uar_std']:.3f} "
        f"(folds: {', '.join(f'{u:.3f}' for u in folds['uar_per_fold'])}; chance "
        f"{folds['chance']:.3f}; {folds['clips']} clips)",
        f"- recall: {recalls}",
    ]
