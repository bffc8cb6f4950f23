"""Choosing the runtime's defaults on the yardstick, and the model card's lead table.

``python -m training.yardstick RUN_DIR DATA`` hears every corpus held out of a
``training.loco`` run through the engine, alone and as both calibrated protocols, under
each gate (``GATES``: which speech calibration learns the voice from) and second-opinion
weight (``WEIGHTS``; a clip's verdict at any weight is exactly ``A + w T``, tested). Each
corpus's row is chosen on the *other* corpora (``choose``); the shipped default on all of
them, which ``--install`` writes into ``models/``: the live default (a gate, or "off",
the sidecar's ``live_default`` false), the gate ``--calibrate`` uses (``choose_gate``)
and the second opinion's opt-in weight (``choose_opt_in``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from ser_live.second_opinion import DEFAULT_SECOND_OPINION
from training import log
from training.corpora import CORPORA, Utterance, find_utterances
from training.report import PROTOCOL_NAMES
from training.scoring import closed_set_scores, heard
from training.trainer import MODEL_NAME, ROOT

#: How each way of hearing is named in the reports (``training.scoring``'s protocols).
HEARINGS = ("alone", "mixed", "one-emotion")
#: What a voice's calibration may learn from: None, every speech window (until now);
#: a probability, windows (and phrases) the networks hear as neutral at least that surely;
#: "off", no calibration (a calibrated session is heard as each clip alone).
GATES: tuple[float | str | None, ...] = (None, 0.4, 0.6, "off")
#: The second opinion's share of the four emotions it has.
WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
#: The weights a default may have: none. The second opinion halves ``analyze``'s speed
#: (under the 200x floor) for under the 3 points that would pay for it, and with both
#: sides of a call the app would hold about 260 MB, over the 250 MB budget; it is opt-in
#: (``choose_opt_in``).
DEFAULT_WEIGHTS = (0.0,)
#: Today's default: calibration learns from all speech; no second opinion.
TODAY = (None, 0.0)
#: A second opinion that costs this much on any corpus and way of hearing is not a win.
MAX_LOSS = 0.03
#: One-emotion sessions may fall at most this far below each clip alone.
LASTING_SLACK = 0.01
#: The windows of no variety a voice's verdicts start from (``--variety``): about 10 s
#: of speech on the half-second grid.
VARIETY_PRIOR = 20.0


def fusion_terms(result) -> tuple[np.ndarray, np.ndarray] | None:
    """A clip's verdict as ``A + w T`` at the second opinion's four emotions (``A``
    elsewhere), for any weight ``w`` (``ser_live.second_opinion.fuse`` is linear in our
    probabilities); None for a clip with no verdict."""
    from ser_live.second_opinion import DUSHA_LABELS

    if result.error or not result.phrases:
        return None
    shared = [EMOTIONS.index(e) for e in DUSHA_LABELS]
    n = np.array([p.n_windows for p in result.phrases], dtype=np.float64)
    ours = np.array([p.ours for p in result.phrases], dtype=np.float64)
    a = (n[:, None] * ours).sum(axis=0) / n.sum()
    t = np.zeros(len(shared))
    for k, phrase in enumerate(result.phrases):
        if phrase.theirs is not None:
            mass = ours[k, shared].sum()
            t += n[k] * (mass * np.asarray(phrase.theirs, np.float64) - ours[k, shared])
    return a, t / n.sum()


@dataclass
class Heard:
    """Every clip of one corpus under one gate and way of hearing: ``A`` and ``T``."""

    a: np.ndarray  # (clips, 7); NaN rows: no verdict
    t: np.ndarray  # (clips, 4)

    def verdicts(self, weight: float) -> list[np.ndarray | None]:
        from ser_live.second_opinion import DUSHA_LABELS

        p = self.a.copy()
        p[:, [EMOTIONS.index(e) for e in DUSHA_LABELS]] += weight * self.t
        return [None if np.isnan(row).any() else row for row in p]


@dataclass(frozen=True)
class Variant:
    """A calibration heard under every gate: bounded (``max_shift``,
    ``ser_live.calibration``), trusted only as far as the voice's verdicts have varied
    (``variety``: ``ser_live.verdict_variety``'s full_at), or moving only the features
    whose ``training.identity_dims`` ratio is at least ``identity_dims`` (never
    installed). ``training.recipes`` chooses between runs of them."""

    max_shift: float | None = None
    identity_dims: float | None = None
    variety: float | None = None  # ``ser_live.verdict_variety``'s full_at

    @property
    def suffix(self) -> str:
        """How a run's reports and work folder are told apart from the plain ones."""
        return (
            (f"_shift{self.max_shift}" if self.max_shift else "")
            + (f"_identity{self.identity_dims}" if self.identity_dims is not None else "")
            + (f"_variety{self.variety}" if self.variety is not None else "")
        )

    @property
    def described(self) -> str:
        """The variant in words, for reports."""
        words = []
        if self.max_shift is not None:
            words.append(f"bounded at {self.max_shift}")
        if self.variety is not None:
            words.append(f"trusted fully at variety {self.variety}")
        if self.identity_dims is not None:
            words.append(f"features of identity ratio >= {self.identity_dims} only")
        return ", ".join(words)

    def apply(self, calibration: dict, model_dir: Path) -> None:
        """Set the variant in a sidecar's ``speaker_calibration`` (the model's folder
        holds its ``identity_dims.json``)."""
        if self.max_shift is not None:
            calibration["max_shift"] = self.max_shift
        if self.variety is not None:
            calibration["variety"] = {"full_at": self.variety, "prior_windows": VARIETY_PRIOR}
        if self.identity_dims is not None:
            from training.identity_dims import REPORT, dims_at

            ratio = json.loads((model_dir / REPORT).read_text())["ratio"]
            calibration["dims"] = dims_at(ratio, self.identity_dims)


def set_gate(
    sidecar: Path, gate: float | str | None, variant: Variant = Variant(), live: bool | None = None
) -> None:
    """A model sidecar's calibration set to learn from speech heard as neutral at
    ``gate`` (a probability), or from all speech; with a ``variant``; ``live``: whether
    ``listen`` and the app calibrate by default (None: as the runtime's default, on)."""
    spec = json.loads(sidecar.read_text())
    calibration = spec["normalisation"]["speaker_calibration"]
    for key in ("reference", "max_shift", "dims", "variety", "live_default"):
        calibration.pop(key, None)
    if isinstance(gate, float):
        calibration["reference"] = {"emotions": ["neutral"], "min_probability": gate}
    variant.apply(calibration, sidecar.parent)
    if live is not None:
        calibration["live_default"] = live
    sidecar.write_text(json.dumps(spec, indent=1) + "\n")


def gated_copy(
    model: Path,
    gate: float | str | None,
    out_dir: Path,
    member: Path | None = None,
    variant: Variant = Variant(),
) -> Path:
    """The held-out model with its reference gate and variant set (and ``member``, as the
    pair)."""
    ignore = shutil.ignore_patterns("*.keras")
    shutil.copytree(model.parent, out_dir, dirs_exist_ok=True, ignore=ignore)
    sidecar = out_dir / model.with_suffix(".json").name
    if member is not None:
        for source in (member, member.with_suffix(".json")):
            shutil.copy(source, out_dir / source.name)
        spec = json.loads(sidecar.read_text())
        spec["members"] = [member.name]
        sidecar.write_text(json.dumps(spec, indent=1) + "\n")
    set_gate(sidecar, gate, variant)
    return out_dir / model.name


def hear_corpus(
    model: Path,
    clips: list[Utterance],
    second_opinion: Path | None,
    work: Path,
    member: Path | None = None,
    variant: Variant = Variant(),
    gates: tuple = GATES,
) -> dict[tuple, Heard]:
    """Every clip under each of ``gates`` and way of hearing, kept in ``work/heard.npz``
    (heard again where those clips, gates or second opinion differ)."""
    out: dict[tuple, Heard] = {}
    kept = work / "heard.npz"
    heard_with = str(second_opinion or "")
    if kept.is_file():
        with np.load(kept) as data:
            keys = [f"{gate}|{h}" for gate in gates for h in HEARINGS]
            if (
                list(data["paths"]) == [u.path for u in clips]
                and str(data.get("second_opinion", "?")) == heard_with
                and all(f"{key}|a" in data for key in keys)
            ):
                for gate in gates:
                    for h in HEARINGS:
                        key = f"{gate}|{h}"
                        out[(gate, h)] = Heard(data[f"{key}|a"], data[f"{key}|t"])
                return out

    def collect(results) -> Heard:
        terms = [fusion_terms(r) for r in results]
        a = np.array([np.full(len(EMOTIONS), np.nan) if x is None else x[0] for x in terms])
        t = np.array([np.zeros(4) if x is None else x[1] for x in terms])
        return Heard(a, t)

    model = gated_copy(model, None, work / "as-trained", member)
    alone = collect(heard(model, clips, "alone", second_opinion))
    for gate in gates:
        out[(gate, "alone")] = alone
        for protocol in HEARINGS[1:]:
            if gate == "off":
                out[(gate, protocol)] = alone
                continue
            gated = gated_copy(model, gate, work / f"gate-{gate}", member, variant)
            out[(gate, protocol)] = collect(heard(gated, clips, protocol, second_opinion))
    arrays = {f"{g}|{h}|{x}": getattr(v, x) for (g, h), v in out.items() for x in ("a", "t")}
    paths = np.array([u.path for u in clips])
    np.savez(kept, paths=paths, second_opinion=np.array(heard_with), **arrays)
    return out


def uars(
    heard_by: dict[str, dict[tuple, Heard]], of: dict[str, list[Utterance]], gate, weight
) -> dict[str, dict[str, float]]:
    """UAR per corpus and way of hearing at one setting."""
    return {
        corpus: {
            h: score(of[corpus], heard_by[corpus][(gate, h)].verdicts(weight))["uar"]
            for h in HEARINGS
        }
        for corpus in heard_by
    }


def score(clips: list[Utterance], verdicts: list[np.ndarray | None]) -> dict:
    labels = [e for e in EMOTIONS if any(u.emotion == e for u in clips)]
    return closed_set_scores([u.emotion for u in clips], verdicts, labels)


def choose(
    table: dict[tuple, dict[str, dict[str, float]]],
    corpora: list[str],
    also_kept: list[str] = (),
) -> tuple:
    """Among the settings a default may have (``DEFAULT_WEIGHTS``) that keep a lasting
    emotion on every corpus (one-emotion sessions at least alone less 0.01) and whose
    second opinion costs none 3 points, the best mean of the mixed sessions (then of all
    hearings) over ``corpora``. ``also_kept``: more columns of the table that must keep it
    too without counting in the mean (``training.recipes``: the shipped pair's corpora); a
    setting not heard there does not qualify.

    A setting is ``(gate, weight)``, or ``(*more, gate, weight)`` with more choices in
    front (``training.recipes``: the training recipe); "off" with no second opinion always
    qualifies.
    """
    best, best_mean = None, (-1.0, -1.0)
    for setting, by_corpus in table.items():
        if setting[-1] not in DEFAULT_WEIGHTS or any(c not in by_corpus for c in also_kept):
            continue
        alone = table[(*setting[:-1], 0.0)]
        ok = all(
            by_corpus[c]["one-emotion"] >= by_corpus[c]["alone"] - LASTING_SLACK
            and all(by_corpus[c][h] > alone[c][h] - MAX_LOSS for h in HEARINGS)
            for c in [*corpora, *also_kept]
        )
        mean = (
            float(np.mean([by_corpus[c]["mixed"] for c in corpora])),
            float(np.mean([by_corpus[c][h] for c in corpora for h in HEARINGS])),
        )
        if ok and mean > best_mean:
            best, best_mean = setting, mean
    assert best is not None, "no setting qualifies, not even calibration off"
    return best


def choose_calibration(table: dict[tuple, dict[str, dict[str, float]]], corpora: list[str]):
    """The calibration ``--calibrate`` (and the app's box) uses where the user asks for
    it: of the settings that calibrate, no second opinion, the one whose worst one-emotion
    loss against each clip alone is smallest (then the best mean of the mixed sessions).
    The whole setting, ``(*more, gate, 0.0)``, as ``choose`` gives one."""

    def merit(setting) -> tuple[float, float]:
        by_corpus = table[setting]
        worst = min(by_corpus[c]["one-emotion"] - by_corpus[c]["alone"] for c in corpora)
        return worst, float(np.mean([by_corpus[c]["mixed"] for c in corpora]))

    return max((s for s in table if s[-1] == 0.0 and s[-2] != "off"), key=merit)


def choose_gate(table: dict[tuple, dict[str, dict[str, float]]], corpora: list[str]):
    """``choose_calibration``'s gate on one run's table."""
    return choose_calibration(table, corpora)[-2]


def choose_opt_in(
    table: dict[tuple, dict[str, dict[str, float]]], corpora: list[str], live_gate="off"
) -> float:
    """The second opinion's weight for ``--second-opinion``: the best mean over ``corpora``
    of the ways the app hears with it, each clip alone (``analyze``) and, where the live
    default calibrates (``live_gate``, not "off"), its mixed and one-emotion sessions;
    among the weights that cost no corpus 3 points on any of them and, live, keep a
    lasting emotion. One weight serves both: the app has one second opinion."""

    def hearings(weight: float) -> np.ndarray:
        """One row per way of hearing, one column per corpus."""
        alone = [table[("off", weight)][c]["alone"] for c in corpora]
        if live_gate == "off":
            return np.array([alone])
        live = table[(live_gate, weight)]
        return np.array([alone, *([live[c][h] for c in corpora] for h in HEARINGS[1:])])

    def fine(weight: float) -> bool:
        got = hearings(weight)
        keeps = live_gate == "off" or bool(np.all(got[2] >= got[0] - LASTING_SLACK))
        return keeps and bool(np.all(got > hearings(0.0) - MAX_LOSS))

    return max((w for w in WEIGHTS if fine(w)), key=lambda w: (float(hearings(w).mean()), -w))


def settings_table(result: dict) -> dict[tuple, dict[str, dict[str, float]]]:
    """A result's UAR table keyed ``(gate, weight)``."""
    gates = result["settings_grid"]["gates"]
    return {(g, w): result["table"][describe((g, w))] for g in gates for w in WEIGHTS}


def heard_second_opinion(result: dict) -> bool:
    """Whether a run heard the second opinion (``--without-second-opinion`` scores every
    weight as none)."""
    table = settings_table(result)
    return any(cells != table[(g, 0.0)] for (g, w), cells in table.items() if w)


def choices(result: dict) -> dict:
    """The choices on a result's table: each row's, the shipped one, the opt-in weight."""
    corpora = result["corpora"]
    table = settings_table(result)
    nested = {c: choose(table, [o for o in corpora if o != c]) for c in corpora}
    opt_in = {
        c: choose_opt_in(table, [o for o in corpora if o != c], nested[c][0]) for c in corpora
    }
    shipped = choose(table, corpora)
    return {
        "calibrate_gate": choose_gate(table, corpora),
        "nested_choice": {c: describe(s) for c, s in nested.items()},
        "nested_settings": {c: list(s) for c, s in nested.items()},
        "shipped": list(shipped),
        "shipped_description": describe(shipped),
        "opt_in_weight": choose_opt_in(table, corpora, shipped[0]),
        "opt_in_rows": {
            c: {
                "weight": w,
                "alone": table[("off", w)][c]["alone"],
                **(
                    {h: table[(nested[c][0], w)][c][h] for h in HEARINGS[1:]}
                    if nested[c][0] != "off"
                    else {}
                ),
            }
            for c, w in opt_in.items()
        },
    }


def describe_calibration(gate) -> str:
    learn = {None: "learns from all speech", "off": "off"}.get(
        gate, f"learns from speech heard as neutral at p >= {gate}"
    )
    return f"calibration {learn}"


def describe(setting: tuple) -> str:
    gate, weight = setting
    return f"{describe_calibration(gate)}; second opinion {weight:.1f}"


def evaluate(
    run_dir: Path,
    data: list[Path],
    second_opinion: Path | None,
    member: Path | None = None,
    variant: Variant = Variant(),
    gates: tuple = GATES,
) -> dict:
    from ser_live.model import load_model

    utterances = find_utterances(data)
    heard_by_member = set() if member is None else set(load_model(member).spec.training["corpora"])
    corpora = [
        c
        for c in CORPORA
        if (run_dir / f"without-{c}" / MODEL_NAME).is_file() and c not in heard_by_member
    ]
    of = {c: [u for u in utterances if u.corpus == c] for c in corpora}
    heard_by = {}
    for corpus in corpora:
        log(f"hearing {corpus} under {len(gates)} calibration settings")
        heard_by[corpus] = hear_corpus(
            run_dir / f"without-{corpus}" / MODEL_NAME,
            of[corpus],
            second_opinion,
            run_dir / f"{stem(member, variant)}-work" / corpus,
            member,
            variant,
            gates,
        )
    table = {(g, w): uars(heard_by, of, g, w) for g in gates for w in WEIGHTS}
    result = {
        "corpora": corpora,
        "max_shift": variant.max_shift,
        "identity_dims": variant.identity_dims,
        "variety": variant.variety,
        "settings_grid": {"gates": list(gates), "weights": list(WEIGHTS)},
        "table": {describe(k): v for k, v in table.items()},
    }
    result.update(choices(result))
    nested = {c: tuple(s) for c, s in result["nested_settings"].items()}
    rows: dict[str, dict] = {"today": {}, "new": {}}
    for corpus in corpora:
        for name, setting in (("today", TODAY), ("new", nested[corpus])):
            rows[name][corpus] = {
                h: score(of[corpus], heard_by[corpus][(setting[0], h)].verdicts(setting[1]))
                for h in HEARINGS
            }
    result["rows"] = rows
    return result


def parse_gates(text: str) -> tuple:
    """``--gates``: today's (learn from all speech) and "off" always among them."""
    gates: list = [None]
    for word in text.split(","):
        word = word.strip()
        gate = None if word == "all" else "off" if word == "off" else float(word)
        if isinstance(gate, float) and not 0.0 <= gate <= 1.0:
            raise ValueError(word)
        if gate not in gates and gate != "off":
            gates.append(gate)
    return (*gates, "off")


def stem(member: Path | None, variant: Variant = Variant()) -> str:
    """The name of a run's reports (``.md``, ``.json``), and of its work folder."""
    return "yardstick" + ("_pair" if member else "") + variant.suffix


def markdown(result: dict) -> str:
    corpora = result["corpora"]
    variant = Variant(result.get("max_shift"), result.get("identity_dims"), result.get("variety"))
    today = "today's default" if variant == Variant() else f"all speech, {variant.described}"
    names = {"today": today, "new": "new default (chosen without the row's corpus)"}
    lines = [
        "# The yardstick: leave-one-corpus-out, three ways of hearing",
        "",
        "UAR over each held-out corpus's own labels, every clip counted. Today's default: "
        "calibration learns from all speech, no second opinion (in a run of a variant, "
        "that variant). New default: the setting "
        "chosen on the other corpora (below); the shipped one was chosen on all of them: "
        f"**{result['shipped_description']}**; `--calibrate`: "
        f"{describe((result['calibrate_gate'], 0.0)).split(';')[0]}.",
        "",
        "| default | how heard | " + " | ".join(corpora) + " | mean |",
        "| --- | --- | " + " | ".join("---" for _ in corpora) + " | --- |",
    ]
    suffix = {"alone": "", "mixed": "_calibrated", "one-emotion": "_one_emotion"}
    for row in ("today", "new"):
        for h in HEARINGS:
            values = [result["rows"][row][c][h]["uar"] for c in corpora]
            cells = " | ".join(f"{v:.3f}" for v in values)
            lines.append(
                f"| {names[row]} | {PROTOCOL_NAMES[suffix[h]]} | {cells} | {np.mean(values):.3f} |"
            )
    lines += ["", "Chosen for each row (on the other corpora):", ""]
    lines += [f"- {c}: {d}" for c, d in result["nested_choice"].items()]
    opt_in = result["opt_in_rows"]
    live = [h for h in HEARINGS[1:] if all(h in opt_in[c] for c in corpora)]
    lines += [
        "",
        f"## Opt-in: the second opinion (weight {result['opt_in_weight']})",
        "",
        "The weight for each row chosen on the other corpora: the best mean of each clip "
        "alone"
        + (" and the live default's sessions" if live else "")
        + ", no corpus losing 3 points"
        + (" and every one keeping a lasting emotion" if live else "")
        + ". Without it: the default.",
        "",
        "| | " + " | ".join(corpora) + " | mean |",
        "| --- | " + " | ".join("---" for _ in corpora) + " | --- |",
        "| weight | " + " | ".join(str(opt_in[c]["weight"]) for c in corpora) + " | |",
    ]
    for h in ("alone", *live):
        for label, values in (
            ("without", [result["rows"]["new"][c][h]["uar"] for c in corpora]),
            ("with", [opt_in[c][h] for c in corpora]),
        ):
            lines.append(
                f"| {PROTOCOL_NAMES[suffix[h]]}, {label} | "
                + " | ".join(f"{v:.3f}" for v in values)
                + f" | {np.mean(values):.3f} |"
            )
    lines += ["", f"## Per class: recall, {today} → new", ""]
    lines += ["| corpus | how heard | " + " | ".join(EMOTIONS) + " |"]
    lines += ["| --- | --- | " + " | ".join("---" for _ in EMOTIONS) + " |"]
    for c in corpora:
        for h in HEARINGS:
            today, new = (result["rows"][row][c][h]["recall"] for row in ("today", "new"))
            cells = [f"{today[e]:.2f} → {new[e]:.2f}" if e in today else "" for e in EMOTIONS]
            lines.append(f"| {c} | {PROTOCOL_NAMES[suffix[h]]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def install(
    setting: list,
    calibrate_gate,
    opt_in_weight: float,
    second_opinion: Path,
    variant: Variant = Variant(),
    models: Path = ROOT / "models",
) -> None:
    """The chosen calibration into the shipped model's sidecar: the live default's gate,
    or, where it is "off", ``live_default`` false and ``calibrate_gate`` for
    ``--calibrate``; its bound and trust (``variant``); the second opinion's weight (the
    default's where it has one, else the opt-in's) into its own."""
    if variant.identity_dims is not None:
        raise ValueError("calibrating only some features is never installed")
    gate, weight = setting
    if weight == 0.0:
        log("the default hears no second opinion; --second-opinion uses the opt-in weight")
        weight = opt_in_weight
    sidecar = models / Path(MODEL_NAME).with_suffix(".json")
    set_gate(sidecar, calibrate_gate if gate == "off" else gate, variant, live=gate != "off")
    sidecar = second_opinion.with_suffix(".json")
    spec = json.loads(sidecar.read_text())
    spec["weight"] = weight
    sidecar.write_text(json.dumps(spec, indent=1) + "\n")
    bounds = f" ({variant.described})" if variant.described else ""
    log(f"installed: {describe_calibration(gate)}{bounds}; the second opinion's weight {weight}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.yardstick", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path, help="a finished training.loco run folder")
    parser.add_argument("data", nargs="+", type=Path, help="the folders holding the corpora")
    parser.add_argument(
        "--second-opinion",
        type=Path,
        default=DEFAULT_SECOND_OPINION,
        help="the second opinion's ONNX file (default: models/dusha_ser.onnx)",
    )
    parser.add_argument(
        "--without-second-opinion",
        action="store_true",
        help="hear no second opinion (every weight then scores as 0): about half the time, "
        "for comparing calibrations; never installed",
    )
    parser.add_argument(
        "--member",
        type=Path,
        help="pair each held-out network with this model, as the shipped pair (corpora it "
        "heard are not held out, so not scored)",
    )
    parser.add_argument(
        "--max-shift",
        type=float,
        help="bound every calibrated setting's map to this many of the population's "
        "spreads (ser_live.calibration; reports yardstick_shiftB.*)",
    )
    parser.add_argument(
        "--identity-dims",
        type=float,
        metavar="T",
        help="calibrate only the features whose voice-to-emotion ratio is at least T "
        "(training.identity_dims, run first; an experiment: reports yardstick_identityT.*)",
    )
    parser.add_argument(
        "--variety",
        type=float,
        metavar="V",
        help="trust calibration only as far as the voice's verdicts have varied, fully at "
        "variety V (ser_live.verdict_variety; reports yardstick_varietyV.*)",
    )
    parser.add_argument(
        "--gates",
        type=parse_gates,
        default=GATES,
        help="the gates to hear, comma-separated: all (learn from all speech), a "
        "probability, off; all and off always included (default: all,0.4,0.6,off)",
    )
    parser.add_argument("--install", action="store_true", help="write the choice into models/")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="choose again on the table of an earlier run of this command (no hearing)",
    )
    args = parser.parse_args(argv)
    if not list(args.run_dir.glob(f"without-*/{MODEL_NAME}")):
        parser.error(f"not a finished leave-one-corpus-out run: {args.run_dir}")
    if args.max_shift is not None and (args.max_shift <= 0 or args.install):
        parser.error("--max-shift: a positive bound; install with training.recipes")
    if args.identity_dims is not None:
        from training.identity_dims import REPORT

        if args.install:
            parser.error("--identity-dims: never installed (an experiment)")
        if not all(
            (m.parent / REPORT).is_file() for m in args.run_dir.glob(f"without-*/{MODEL_NAME}")
        ):
            parser.error(f"--identity-dims: run python -m training.identity_dims {args.run_dir}")
    if args.variety is not None and (args.variety <= 0 or args.install):
        parser.error("--variety: a positive variety; install with training.recipes")
    variant = Variant(args.max_shift, args.identity_dims, args.variety)
    if args.without_second_opinion:
        if args.install:
            parser.error("--without-second-opinion: never installed (an experiment)")
        args.second_opinion = None
    name = stem(args.member, variant)
    if args.report_only:
        result = json.loads((args.run_dir / f"{name}.json").read_text())
        again = choices(result)
        if again["nested_settings"] != result["nested_settings"]:
            parser.error("the rows' choices changed: run it without --report-only")
        result.update(again)
    else:
        result = evaluate(
            args.run_dir, args.data, args.second_opinion, args.member, variant, args.gates
        )
    (args.run_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.run_dir / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    if args.install:
        install(
            result["shipped"],
            result["calibrate_gate"],
            result["opt_in_weight"],
            args.second_opinion,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
