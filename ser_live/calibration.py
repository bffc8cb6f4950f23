"""Speaker calibration: each voice heard relative to its own range, as the stream goes.

The model was trained on features standardised with the statistics of its training
speakers. A new voice sits elsewhere: higher or lower, livelier or flatter, through another
microphone. Calibration keeps running statistics of this stream's speech (every feature's
mean and spread over the frames of its classified windows) and maps each window so that
this voice's statistics land on the training population's before the model hears it:
``(x - speaker mean) / speaker std * training std + training mean``. The model then
judges how the voice moves relative to itself.

The statistics start from the training population's, worth ``prior_frames`` frames, so
the first seconds of a stream are heard almost as without calibration and the voice takes
over as it speaks (2000 frames: about ten 2 s windows, five seconds of speech). Speech
only: silence never enters them. Calibration assumes one voice per stream (one side of a
call, one speaker's recording); a stream that mixes voices calibrates to the mix.

A network trained on **speaker-normalised** windows (each training speaker's features
z-scored with that speaker's own statistics; sidecar ``speaker_calibration.speaker_normalised``)
needs this map, not as an option: its input is defined relative to the voice. Its target
is zero mean and unit spread, the prior is its training population's statistics before
that normalisation (the sidecar's ``population``), and with calibration off the map stays
at the prior (the population heard as one voice) rather than learning this stream's.

A sidecar may bound the map (``speaker_calibration.max_shift``): the voice's statistics
then count only up to that many of the population's spreads away from it, so a voice that
keeps one emotion cannot drag the map further; the utterance head's statistics of the
voice's phrases are held by the same bound (the yardstick's ``--max-shift`` measures
it; docs/experiments.md). It may also name the only features calibration moves
(``speaker_calibration.dims``: those that tell voices apart more than emotions,
``training.identity_dims``); the others are heard against the population, as without
calibration, so an emotion that moves them stays visible however long it lasts. And it may
trust the voice's statistics only as far as its speech has varied
(``speaker_calibration.variety``, ``ser_live.verdict_variety``): the map then follows a
voice heard in several emotions and stays near the population for one heard in a single
emotion.

Measured on the three corpora the shipped model never heard, one session per speaker
(models/README.md): see the model card's leave-one-corpus-out section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ser_live.errors import ModelError
from ser_live.running_stats import PriorWeightedStats
from ser_live.verdict_variety import variety_problem

if TYPE_CHECKING:
    from ser_live.model import ModelSpec

#: The training population's weight, in frames, in a stream's running statistics.
PRIOR_FRAMES = 2000


class SpeakerCalibration:
    """Running per-feature statistics of one voice, and the map that calibrates to them."""

    def __init__(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        prior_frames: float,
        target_mean: np.ndarray | None = None,
        target_std: np.ndarray | None = None,
        max_shift: float | None = None,
        dims: list[int] | None = None,
    ) -> None:
        """``mean``, ``std``: the training population's statistics, the prior; the map
        sends the voice's statistics onto ``target_mean``, ``target_std`` (by default the
        population's own). ``max_shift``: how far the voice's statistics may stray from
        the prior's in the map, in units of the prior's spread (the mean by at most that
        many spreads, the spread by at most a factor ``1 + max_shift``); None: no bound.
        ``dims``: the only features whose map follows the voice (the others keep the
        prior's); None: all of them."""
        self._voice = PriorWeightedStats(mean, std, prior_frames)
        self.max_shift = max_shift
        self._follows = None
        if dims is not None:
            self._follows = np.zeros(len(self._voice.prior_mean), dtype=bool)
            self._follows[list(dims)] = True
        self._target_mean = np.asarray(mean if target_mean is None else target_mean, np.float64)
        self._target_std = np.asarray(std if target_std is None else target_std, np.float64)
        self.prior_frames = self._voice.prior_weight
        # How far the map may follow the voice's statistics, set by the engine from the
        # variety of the voice's speech (``ser_live.verdict_variety``); 1: all the way.
        self.trust = 1.0

    def reset(self) -> None:
        """Forget the voice: back to the training population's statistics."""
        self._voice.reset()

    def update(self, window: np.ndarray) -> None:
        """Add the frames of one speech window (``(n_frames, n_features)``)."""
        self._voice.add(window)

    @property
    def frames_heard(self) -> int:
        return self._voice.count

    @property
    def mean(self) -> np.ndarray:
        return self._voice.mean

    @property
    def std(self) -> np.ndarray:
        return self._voice.std

    def map(self, window: np.ndarray, trust: float | None = None) -> np.ndarray:
        """The window as the training population's average voice would have given it (or,
        with a target of zero mean and unit spread, z-scored by this voice); ``trust``:
        instead of ``self.trust`` (0: as the population would hear it)."""
        mean, std = self.mean, self.std
        mean, std = self._voice.bounded(mean, std, self.max_shift)
        mean, std = self._voice.shrunk(mean, std, self.trust if trust is None else trust)
        if self._follows is not None:
            mean = np.where(self._follows, mean, self._voice.prior_mean)
            std = np.where(self._follows, std, self._voice.prior_std)
        scale = self._target_std / std
        out = (np.asarray(window, dtype=np.float64) - mean) * scale + self._target_mean
        return out.astype(np.float32)


@dataclass(frozen=True)
class ReferenceGate:
    """Which speech a voice's statistics learn from: only windows (and phrases) the model
    hears as one of the ``reference`` emotions with at least ``min_probability``.

    A voice's baseline should be its calm speech (neutral-reference normalisation, Busso
    et al., ICASSP 2011). Learnt from everything, a caller who is angry for the whole call
    makes anger the baseline and fades to neutral on the screen; learnt only from speech
    heard as calm, that caller's statistics stay at the population prior, and the anger
    stays visible."""

    indices: tuple[int, ...]
    min_probability: float

    @classmethod
    def from_sidecar(cls, setup: dict, labels: list[str]) -> ReferenceGate | None:
        reference = setup.get("reference")
        if not reference:
            return None
        return cls(
            tuple(labels.index(e) for e in reference["emotions"]),
            float(reference["min_probability"]),
        )

    def admits(self, probabilities: np.ndarray) -> bool:
        return float(np.asarray(probabilities)[list(self.indices)].sum()) >= self.min_probability


def reference_problem(setup: dict, labels: list[str], n_features: int) -> str | None:
    """Why a sidecar's ``speaker_calibration.reference``, ``max_shift``, ``dims``,
    ``variety`` or ``live_default`` is unusable; None if they are."""
    if problem := variety_problem(setup):
        return problem
    if not isinstance(setup.get("live_default", True), bool):
        return "speaker_calibration.live_default needs true or false"
    dims = setup.get("dims")
    if dims is not None and not (
        isinstance(dims, list)
        and all(isinstance(d, int) and not isinstance(d, bool) for d in dims)
        and len(set(dims)) == len(dims)
        and all(0 <= d < n_features for d in dims)
    ):
        return "speaker_calibration.dims needs distinct feature indices"
    bound = setup.get("max_shift")
    if bound is not None and not (
        isinstance(bound, int | float) and not isinstance(bound, bool) and bound > 0
    ):
        return "speaker_calibration.max_shift needs a positive number"
    reference = setup.get("reference")
    if reference is None:
        return None
    try:
        emotions, threshold = list(reference["emotions"]), float(reference["min_probability"])
    except (KeyError, TypeError, ValueError):
        return "speaker_calibration.reference needs emotions and min_probability"
    if not emotions or any(e not in labels for e in emotions) or not 0.0 <= threshold <= 1.0:
        return "speaker_calibration.reference needs known emotions and a probability in [0, 1]"
    return None


def network_calibration(
    spec: ModelSpec, calibrate: bool, max_shift: float | None
) -> SpeakerCalibration | None:
    """The calibration one network of a model needs, from its sidecar: always one for a
    network trained on speaker-normalised windows; otherwise one when ``calibrate``, None
    when not (the window is heard as it is). ``max_shift``: the model's bound, which holds
    each of its networks (a member's sidecar was written for it alone)."""
    setup = spec.normalisation.get("speaker_calibration") or {}
    if setup.get("speaker_normalised"):
        n_features = spec.input_shape[1]
        return SpeakerCalibration(
            setup["population"]["mean"],
            setup["population"]["std"],
            setup["prior_frames"],
            target_mean=np.zeros(n_features),
            target_std=np.ones(n_features),
            max_shift=max_shift,
            dims=setup.get("dims"),
        )
    if not calibrate:
        return None
    if "prior_frames" not in setup:
        raise ModelError(
            "this model was not measured with speaker calibration (its sidecar has none): "
            "drop --calibrate"
        )
    population = spec.standardiser
    return SpeakerCalibration(
        population.mean,
        population.std,
        setup["prior_frames"],
        max_shift=max_shift,
        dims=setup.get("dims"),
    )
