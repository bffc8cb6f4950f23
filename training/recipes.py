"""Choosing between training recipes on the yardstick, each row without its corpus.

``python -m training.recipes BASE.json NEW.json ...`` reads the ``yardstick.json`` of
several ``training.loco`` runs (one per recipe, scored by ``training.yardstick``) and
treats the recipe as one more choice beside the runtime's settings: each corpus's row is
the recipe and setting that ``training.yardstick.choose`` picks on the *other* corpora,
with the same rules. It prints that nested table, each recipe's own nested rows, and what
the choice on all corpora changes on each corpus against the baseline's own default, so
that a gain on the mean that costs one corpus 3 points shows.

Where the runs are one network set heard under other calibrations (``training.yardstick
--max-shift``, ``--variety``: the same each-clip-alone rows), ``--install`` writes the
choice made on all corpora into ``models/`` as ``training.yardstick --install`` does, with
the bound and trust of the run it came from; the opt-in second opinion's weight is chosen
on that run where it was heard with the second opinion (so that the weight is heard with
the live default's calibration), else the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ser_live.second_opinion import DEFAULT_SECOND_OPINION
from training import log
from training.yardstick import (
    HEARINGS,
    MAX_LOSS,
    Variant,
    choose,
    choose_calibration,
    choose_opt_in,
    describe,
    heard_second_opinion,
    install,
    settings_table,
)

#: How the shipped pair's corpora are told apart from the held-out network's in a table.
PAIR = "pair:"


def variant_of(result: dict) -> tuple:
    """Which calibration a run heard (``training.yardstick.Variant``'s fields)."""
    return tuple(result.get(k) for k in ("max_shift", "identity_dims", "variety"))


def combined_table(
    results: dict[str, dict], pairs: list[dict] = ()
) -> dict[tuple, dict[str, dict[str, float]]]:
    """Every recipe's UAR table, keyed ``(recipe, gate, weight)``, over the gates each
    was heard under; with the columns (``pair:CORPUS``, no second opinion) of the run in
    ``pairs`` that heard the shipped pair under the same calibration, where there is one."""
    table = {
        (name, *setting): dict(cells)
        for name, result in results.items()
        for setting, cells in settings_table(result).items()
    }
    by_variant = {variant_of(p): p for p in pairs}
    for name, result in results.items():
        pair = by_variant.get(variant_of(result))
        if pair is None:
            continue
        for g in pair["settings_grid"]["gates"]:
            if (name, g, 0.0) in table:
                cells = pair["table"][describe((g, 0.0))]
                table[(name, g, 0.0)].update({PAIR + c: v for c, v in cells.items()})
    return table


def pair_columns(pairs: list[dict]) -> list[str]:
    return [PAIR + c for c in pairs[0]["corpora"]] if pairs else []


def nested_rows(
    results: dict[str, dict], pairs: list[dict] = ()
) -> dict[str, tuple[tuple, dict[str, float]]]:
    """Each corpus's choice made on the other corpora (and the pair's, but that one),
    and its UAR per way of hearing."""
    corpora = next(iter(results.values()))["corpora"]
    table = combined_table(results, pairs)
    out = {}
    for corpus in corpora:
        kept = [c for c in pair_columns(pairs) if c != PAIR + corpus]
        setting = choose(table, [c for c in corpora if c != corpus], kept)
        out[corpus] = (setting, table[setting][corpus])
    return out


def calibration_choice(results: dict[str, dict], pairs: list[dict] = ()) -> dict:
    """The default and ``--calibrate``'s calibration chosen on all corpora across runs of
    one network set (a default must keep a lasting emotion on the shipped pair's corpora
    too, where ``pairs`` heard it): ``setting`` (gate, weight) and ``calibrate_gate`` as
    ``training.yardstick.install`` takes them, and the chosen run's ``max_shift`` and
    ``variety`` (its ``Variant``)."""
    corpora = next(iter(results.values()))["corpora"]
    table = combined_table(results, pairs)
    shipped = choose(table, corpora, pair_columns(pairs))
    calibrate = choose_calibration(table, corpora)
    run = shipped[0] if shipped[-2] != "off" else calibrate[0]
    return {
        "run": run,
        "setting": list(shipped[1:]),
        "calibrate_gate": calibrate[-2],
        "max_shift": results[run].get("max_shift"),
        "variety": results[run].get("variety"),
    }


def opt_in_weight(results: dict[str, dict], choice: dict) -> float:
    """The second opinion's weight beside the chosen calibration: chosen on the chosen
    run's table with the live default's gate (``choose_opt_in``), where that run heard the
    second opinion; else the baseline's, chosen on each clip alone."""
    chosen = results[choice["run"]]
    if not heard_second_opinion(chosen):
        log(f"{choice['run']} was heard without the second opinion: the baseline's weight")
        return next(iter(results.values()))["opt_in_weight"]
    return choose_opt_in(settings_table(chosen), chosen["corpora"], choice["setting"][0])


def same_networks(results: dict[str, dict]) -> bool:
    """Whether the runs heard one network set: the same each-clip-alone verdicts' UAR."""
    alone = [
        {c: r["rows"]["today"][c]["alone"]["uar"] for c in r["corpora"]} for r in results.values()
    ]
    return all(a == alone[0] for a in alone)


def markdown(results: dict[str, dict], pairs: list[dict] = ()) -> str:
    names = list(results)
    corpora = results[names[0]]["corpora"]
    header = ["| recipe | how heard | " + " | ".join(corpora) + " | mean |"]
    header.append("| --- | --- | " + " | ".join("---" for _ in corpora) + " | --- |")

    def row(label: str, hearing: str, values: list[float]) -> str:
        cells = " | ".join(f"{v:.3f}" for v in values)
        return f"| {label} | {hearing} | {cells} | {np.mean(values):.3f} |"

    lines = ["# Recipes on the yardstick: " + " against ".join(names), ""]
    lines += ["Each recipe alone, its settings chosen without the row's corpus:", "", *header]
    for name, result in results.items():
        for h in HEARINGS:
            lines.append(row(name, h, [result["rows"]["new"][c][h]["uar"] for c in corpora]))
    nested = nested_rows(results, pairs)
    lines += ["", "The recipe chosen with the settings, without the row's corpus:", "", *header]
    for h in HEARINGS:
        lines.append(row("chosen", h, [nested[c][1][h] for c in corpora]))
    lines += [""]
    lines += [f"- {c}: {s[0]}, {describe(s[1:])}" for c, (s, _) in nested.items()]
    if pairs:
        lines += pair_lines(results, pairs)
    base = names[0]
    table = combined_table(results, pairs)
    chosen = choose(table, corpora, pair_columns(pairs))
    before = (base, *results[base]["shipped"])
    lines += [
        "",
        f"Chosen on all corpora ({chosen[0]}, {describe(chosen[1:])}) against {base}'s own "
        f"default ({describe(before[1:])}), points:",
        "",
        "| how heard | " + " | ".join(corpora) + " | mean |",
        "| --- | " + " | ".join("---" for _ in corpora) + " | --- |",
    ]
    worst = 0.0
    for h in HEARINGS:
        delta = [100 * (table[chosen][c][h] - table[before][c][h]) for c in corpora]
        worst = min(worst, *delta)
        cells = " | ".join(f"{d:+.1f}" for d in delta)
        lines.append(f"| {h} | {cells} | {np.mean(delta):+.1f} |")
    lines += [
        "",
        f"Largest loss on one corpus: {worst:+.1f} points"
        + (" (3 or more: not a win)" if worst <= -100 * MAX_LOSS else ""),
    ]
    return "\n".join(lines) + "\n"


def pair_lines(results: dict[str, dict], pairs: list[dict]) -> list[str]:
    """The shipped pair's one-emotion sessions less each clip alone under each recipe's
    calibrating settings it was heard under, and the choice made on all corpora."""
    table = combined_table(results, pairs)
    columns = pair_columns(pairs)
    choice = calibration_choice(results, pairs)
    lines = [
        "",
        "A default must keep a lasting emotion on the shipped pair's corpora too (one-emotion "
        "sessions less each clip alone, points; a setting the pair was not heard under does "
        "not qualify):",
        "",
        "| recipe | setting | " + " | ".join(c.removeprefix(PAIR) for c in columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for (name, gate, weight), cells in table.items():
        if weight != 0.0 or gate == "off" or columns[0] not in cells:
            continue
        losses = [100 * (cells[c]["one-emotion"] - cells[c]["alone"]) for c in columns]
        lines.append(
            f"| {name} | {describe((gate, weight)).split(';')[0]} | "
            + " | ".join(f"{v:+.1f}" for v in losses)
            + " |"
        )
    lines += ["", f"Chosen on all corpora: {choice['run']}, {describe(tuple(choice['setting']))}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.recipes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "results", nargs="+", type=Path, help="yardstick.json files, the baseline first"
    )
    parser.add_argument(
        "--names",
        help="comma-separated names of the recipes, in order (default: their folders' "
        "names, or their files' where they share a folder)",
    )
    parser.add_argument(
        "--pair",
        nargs="+",
        type=Path,
        default=[],
        help="yardstick_pair*.json files: the shipped pair heard under the recipes' "
        "calibrations; a default must keep a lasting emotion there too",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="write the calibration chosen on all corpora into models/ (runs of one "
        "network set under other calibrations only)",
    )
    args = parser.parse_args(argv)
    # By default a run's folder names it, or, for runs of one folder, its file.
    folders = [p.parent.name for p in args.results]
    names = (
        args.names.split(",")
        if args.names
        else folders
        if len(set(folders)) == len(folders)
        else [p.stem for p in args.results]
    )
    if len(names) != len(args.results) or len(set(names)) != len(names):
        parser.error("--names: one distinct name per file")
    results = {}
    for name, path in zip(names, args.results, strict=True):
        try:
            results[name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: {exc}")
    if len({tuple(r["corpora"]) for r in results.values()}) != 1:
        parser.error("the runs held out different corpora")
    pairs = []
    for path in args.pair:
        try:
            pairs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: {exc}")
    print(markdown(results, pairs), end="")
    if args.install:
        if not same_networks(results):
            parser.error("--install: the runs heard different networks (recipes, not calibrations)")
        choice = calibration_choice(results, pairs)
        install(
            choice["setting"],
            choice["calibrate_gate"],
            opt_in_weight(results, choice),
            DEFAULT_SECOND_OPINION,
            Variant(choice["max_shift"], variety=choice["variety"]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
