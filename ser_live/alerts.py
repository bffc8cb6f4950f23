"""Alert rules: what a supervisor wants to be told during a call, read from a small TOML
file, and checked against each side's updates and the conversation cues.

A rule fires once when its condition starts to hold (for as long as it asks) and not
again until the condition has cleared. Plain Python; ``AlertMonitor`` belongs to the one
thread that feeds it (the UI thread in the app, the main thread of ``listen``).

    [[rule]]                          # the other side angry at 0.6 or more for 5 s
    name = "caller angry"
    side = "other"
    emotion = "angry"
    min_probability = 0.6
    for_s = 5

    [[rule]]
    name = "long silence"
    silence_longer_than_s = 10

    [[rule]]
    name = "agent talks too much"
    side = "you"
    talk_share_above = 0.7
    over_s = 120

    [[rule]]
    name = "crosstalk"
    overlaps_per_minute_above = 4
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ser_live import EMOTIONS
from ser_live.errors import SerLiveError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: What each kind of rule needs, besides ``name`` (and ``side`` where it says so).
KINDS = {
    "emotion": {"emotion", "min_probability", "for_s"},
    "silence": {"silence_longer_than_s"},
    "talk_share": {"talk_share_above", "over_s"},
    "overlaps": {"overlaps_per_minute_above"},
}
ALLOWED = {"name", "side"} | set().union(*KINDS.values())


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    side: str | None = None  # a side's name; None: any side (emotion), the call (others)
    emotion: str | None = None
    threshold: float = 0.0
    duration_s: float = 0.0

    def describe(self) -> str:
        who = self.side or "any side"
        if self.kind == "emotion":
            return f"{who} {self.emotion} >= {self.threshold:g} for {self.duration_s:g} s"
        if self.kind == "silence":
            return f"silence longer than {self.threshold:g} s"
        if self.kind == "talk_share":
            return f"{who}'s talk share above {self.threshold:g} over {self.duration_s:g} s"
        return f"more than {self.threshold:g} overlaps a minute"


#: What ships when no file is given: sustained anger on the other side, a long silence.
DEFAULT_RULES = (
    Rule("sustained anger", "emotion", "other", "angry", 0.6, 5.0),
    Rule("long silence", "silence", threshold=10.0),
)
#: The defaults for a recording (``analyze``, the web page): a recording does not say
#: which side is the other party, so the anger rule holds for any side.
FILE_RULES = tuple(replace(r, side=None) for r in DEFAULT_RULES)


@dataclass(frozen=True)
class Alert:
    rule: Rule
    at_s: float  # on the session clock
    side: str | None  # the side it is about, if any

    @property
    def note(self) -> str:
        return f"alert: {self.rule.name}"


def load_rules(path: str | Path, sides: list[str]) -> list[Rule]:
    """The rules of a TOML file; a bad file is a ``SerLiveError`` naming its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SerLiveError(f"cannot read alert rules {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SerLiveError(f"{path}: {exc}") from None
    lines = text.splitlines()
    headers = [i + 1 for i, line in enumerate(lines) if re.match(r"\s*\[\[\s*rule\s*\]\]", line)]
    unknown_tables = set(data) - {"rule"}
    if unknown_tables:
        raise SerLiveError(f"{path}: unknown table '{sorted(unknown_tables)[0]}' (use [[rule]])")
    rules = []
    for n, entry in enumerate(data.get("rule", [])):
        header = headers[n] if n < len(headers) else 1

        def fail(message: str, key: str | None = None, header: int = header) -> SerLiveError:
            line = header
            if key is not None:
                for i in range(header, len(lines)):
                    if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
                        line = i + 1
                        break
            return SerLiveError(f"{path}: line {line}: {message}")

        rules.append(_rule(entry, sides, fail))
    return rules


def _rule(entry: dict, sides: list[str], fail) -> Rule:
    for key in entry:
        if key not in ALLOWED:
            raise fail(f"unknown setting '{key}'", key)
    kinds = [kind for kind, keys in KINDS.items() if keys & set(entry)]
    if len(kinds) != 1:
        raise fail("a rule needs one condition: " + ", ".join(sorted(KINDS)))
    kind = kinds[0]
    missing = KINDS[kind] - set(entry)
    if missing:
        raise fail(f"this {kind} rule needs '{sorted(missing)[0]}'")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("a rule needs a name", "name")
    side = entry.get("side")
    if side is not None and side not in sides:
        raise fail(f"unknown side '{side}' (the sides are {', '.join(sides)})", "side")
    if kind in ("silence", "overlaps") and side is not None:
        raise fail(f"a {kind} rule is about the whole call: drop 'side'", "side")

    def number(key: str, low: float, high: float | None = None) -> float:
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"'{key}' must be a number", key)
        if value < low or (high is not None and value > high):
            bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise fail(f"'{key}' must be {bound}", key)
        return float(value)

    if kind == "emotion":
        if entry["emotion"] not in EMOTIONS:
            raise fail(f"unknown emotion '{entry['emotion']}'", "emotion")
        return Rule(
            name,
            kind,
            side,
            entry["emotion"],
            number("min_probability", 0.0, 1.0),
            number("for_s", 0.0),
        )
    if kind == "silence":
        return Rule(name, kind, threshold=number("silence_longer_than_s", 0.0))
    if kind == "talk_share":
        return Rule(
            name,
            kind,
            side,
            threshold=number("talk_share_above", 0.0, 1.0),
            duration_s=number("over_s", 1.0),
        )
    return Rule(name, kind, threshold=number("overlaps_per_minute_above", 0.0))


class AlertMonitor:
    """Checks the rules; each fires once per episode (see the module docstring)."""

    def __init__(self, rules: list[Rule] | tuple[Rule, ...]) -> None:
        self.rules = list(rules)
        self._active: set[tuple[str, str | None]] = set()  # (rule name, side) now holding
        self._since: dict[tuple[str, str | None], float] = {}  # emotion rules: held since

    def _episode(self, rule: Rule, side: str | None, holds: bool, at_s: float) -> list[Alert]:
        key = (rule.name, side)
        if not holds:
            self._active.discard(key)
            return []
        if key in self._active:
            return []
        self._active.add(key)
        return [Alert(rule, at_s, side)]

    @property
    def spans_s(self) -> set[float]:
        """The rolling spans ``on_cues`` needs cues over."""
        return {60.0} | {r.duration_s for r in self.rules if r.kind == "talk_share"}

    def on_update(self, side: str, end_s: float, probabilities) -> list[Alert]:
        """A side's window: its smoothed probabilities (None in silence, which neither
        holds nor clears an emotion: the angry caller who pauses is still angry)."""
        alerts = []
        for rule in self.rules:
            if rule.kind != "emotion" or rule.side not in (None, side) or probabilities is None:
                continue
            key = (rule.name, side)
            p = float(probabilities[EMOTIONS.index(rule.emotion)])
            if p < rule.threshold:
                self._since.pop(key, None)
                alerts += self._episode(rule, side, False, end_s)
                continue
            since = self._since.setdefault(key, end_s)
            if end_s - since >= rule.duration_s:
                alerts += self._episode(rule, side, True, end_s)
        return alerts

    def on_cues(
        self, at_s: float, rolling: dict, silence_s: float, session_s: float
    ) -> list[Alert]:
        """The conversation at ``at_s``: each side's cues over the rolling window (for
        talk-share rules, their own span), how long everyone has been quiet, and how long
        the session has run."""
        alerts = []
        for rule in self.rules:
            if rule.kind == "silence":
                alerts += self._episode(rule, None, silence_s > rule.threshold, at_s)
            elif rule.kind == "overlaps":  # more than K in the last minute
                overlaps = max((c.overlaps for c in rolling.get(60.0, {}).values()), default=0)
                alerts += self._episode(rule, None, overlaps > rule.threshold, at_s)
            elif rule.kind == "talk_share":
                cues = rolling.get(rule.duration_s, {})
                for side, c in cues.items():
                    if rule.side not in (None, side):
                        continue
                    holds = (
                        session_s >= rule.duration_s
                        and c.talk_share is not None
                        and c.talk_share > rule.threshold
                    )
                    alerts += self._episode(rule, side, holds, at_s)
        return alerts
