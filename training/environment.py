"""The libraries a model was trained with, and the pins that let ``make loco`` use them again.

The same recipe on a fresh install gave networks 8 points apart on one held-out corpus
(docs/experiments.md, 2026-12-07): a new release of an augmentation or resampling library
changes every augmented copy, and TensorFlow's kernels change the fit. So every sidecar
records the versions of the ``[train]`` extra's libraries and everything they need
(``training_libraries``), and ``training/constraints.txt`` pins them for ``make train`` and
``make loco`` (``python -m training.environment > training/constraints.txt`` writes it
from the environment that produced the model card).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: This project's distribution, whose ``[train]`` extra is pinned.
PROJECT = "ser-live"
#: Installers, not part of what a fit computes; pinned, they would bind pip's build of
#: the project itself.
TOOLING = {"pip", "setuptools", "wheel"}
CONSTRAINTS = Path(__file__).resolve().parent / "constraints.txt"


def _wanted(requirement: Requirement, extra: str) -> bool:
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({**default_environment(), "extra": extra})


def training_libraries(extra: str = "train") -> dict[str, str]:
    """Installed version of every distribution ``ser-live[extra]`` needs, directly or
    through others, by canonical name (ser-live itself left out)."""
    top = distribution(PROJECT)
    pending = [Requirement(r) for r in top.requires or []]
    pending = [r for r in pending if _wanted(r, extra)]
    versions: dict[str, str] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in versions or name == PROJECT or name in TOOLING:
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue  # an optional dependency not installed here: not part of the fit
        versions[name] = dist.version
        for sub in dist.requires or []:
            child = Requirement(sub)
            wanted_extras = requirement.extras or {""}
            if any(_wanted(child, e) for e in wanted_extras):
                pending.append(child)
    return dict(sorted(versions.items()))


def differences(pinned: dict[str, str], installed: dict[str, str]) -> list[str]:
    """``name pinned -> installed`` for each pinned library installed at another version."""
    return [
        f"{name} {pinned[name]} -> {installed.get(name, 'missing')}"
        for name in sorted(pinned)
        if installed.get(name) != pinned[name]
    ]


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """The ``name==version`` lines of a constraints file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def check_pinned(path: Path = CONSTRAINTS) -> list[str]:
    """How this environment differs from the pins (empty: it is the pinned one)."""
    return differences(read_constraints(path), training_libraries())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.environment", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="compare this environment with the pins instead"
    )
    args = parser.parse_args(argv)
    if args.check:
        changed = check_pinned()
        for line in changed:
            print(line)
        return 1 if changed else 0
    print(
        "# ser-live[train] and everything it needs, as installed where the model card's\n"
        "# networks were trained (python -m training.environment). make train and make loco\n"
        f"# install with these pins. Python {sys.version.split()[0]}."
    )
    for name, version in training_libraries().items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
