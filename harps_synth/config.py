"""Settings of one synthetic-archive run: a frozen, validated record.

:class:`SynthConfig` together with the code version fixes every byte of an
archive: the same config gives the same files, labels and catalogue on any
machine and with any number of worker processes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from harps_data import harps

#: Command-line flag of each field, for error messages that name the option.
FLAGS = {
    "n_spectra": "-n/--n-spectra", "seed": "--seed", "n_stars": "--n-stars",
    "step": "--step", "fmt": "--format", "err": "--err", "today": "--today",
    "proprietary_fraction": "--proprietary-fraction", "workers": "--workers",
    "truth": "--truth",
}
FORMATS = ("adp", "s1d", "both")
ERR_MODES = ("nan", "real")
#: First night of HARPS science operations used by the generator.
HARPS_START = dt.date(2003, 12, 1)
#: Coarsest sampling the generator accepts, Angstrom.
MAX_STEP = 10.0
#: Observations per night at most: the slot number is the millisecond field
#: of DATE-OBS, which makes every DATE-OBS unique.
SLOTS_PER_NIGHT = 1000


class ConfigError(ValueError):
    """An invalid setting; the message starts with the option's name.

    Parameters
    ----------
    field : str
        Field of :class:`SynthConfig` (mapped to its command-line flag).
    message : str
        What is wrong and what is accepted.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.flag = FLAGS.get(field, field)
        super().__init__(f"{self.flag}: {message}")


def default_n_stars(n_spectra: int) -> int:
    """Catalogue size for ``n_spectra`` when none is given: about 20 spectra per star."""
    return max(1, min(n_spectra, max(10, round(n_spectra / 20))))


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic archive.

    Attributes
    ----------
    n_spectra : int
        Number of observations (spectra) to generate.
    seed : int
        Master seed (>= 0); every random number derives from it.
    n_stars : int or None
        Size of the star catalogue; None derives it from ``n_spectra``.
    step : float
        Output sampling in Angstrom: 0.01 is the HARPS product grid
        (313,201 points), 1.0 gives 3,133-point files for header-heavy
        benchmarks.
    fmt : str
        ``"adp"`` (ESO Phase 3 files), ``"s1d"`` (DRS files) or ``"both"``.
    err : str
        ``"nan"``: ERR all NaN as in real ADPs; ``"real"``: the 1-sigma noise.
    today : datetime.date
        Reference date: observations run up to the day before, and the
        proprietary status is relative to it.
    proprietary_fraction : float
        Fraction of spectra observed within the year before ``today``.
    workers : int
        Worker processes (output does not depend on it).
    truth : bool
        Also write a ``.truth.npz`` sidecar per FITS file: the noiseless
        stellar flux and the telluric transmission (:mod:`harps_synth.truth`).
        The FITS files are the same either way.
    """

    n_spectra: int = 100
    seed: int = 1
    n_stars: int | None = None
    step: float = harps.WAVE_STEP
    fmt: str = "adp"
    err: str = "nan"
    today: dt.date = dataclasses.field(default_factory=dt.date.today)
    proprietary_fraction: float = 0.1
    workers: int = 1
    truth: bool = False  # ground-truth sidecars for stellar/telluric separation

    def __post_init__(self) -> None:
        self._check_counts()
        if not (isinstance(self.step, (int, float)) and math.isfinite(self.step)
                and harps.WAVE_STEP <= self.step <= MAX_STEP):
            raise ConfigError("step", f"must be between {harps.WAVE_STEP} and {MAX_STEP} "
                              f"Angstrom, got {self.step!r}")
        if self.fmt not in FORMATS:
            raise ConfigError("fmt", f"must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.fmt != "adp" and self.step >= 1.0:
            raise ConfigError("fmt", f"{self.fmt!r} needs --step below 1 Angstrom "
                              "(harps_data.fitsio reads s1d files only with CDELT1 < 1), "
                              f"got --step {self.step}")
        if self.err not in ERR_MODES:
            raise ConfigError("err", f"must be one of {', '.join(ERR_MODES)}, got {self.err!r}")
        if not isinstance(self.today, dt.date) or self.today < HARPS_START + dt.timedelta(800):
            raise ConfigError("today", f"must be a date after {HARPS_START + dt.timedelta(800)}"
                              f" (HARPS began on {HARPS_START}), got {self.today!r}")
        if not isinstance(self.truth, bool):
            raise ConfigError("truth", f"must be True or False, got {self.truth!r}")
        if not 0.0 <= self.proprietary_fraction <= 1.0:
            raise ConfigError("proprietary_fraction",
                              f"must be between 0 and 1, got {self.proprietary_fraction!r}")
        self._check_capacity()

    def _check_counts(self) -> None:
        for name in ("n_spectra", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", f"must be a non-negative integer, got {self.seed!r}")
        if self.n_stars is not None and (not isinstance(self.n_stars, int) or self.n_stars < 1):
            raise ConfigError("n_stars", f"must be a positive integer, got {self.n_stars!r}")

    def windows(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(first night MJD, number of nights, spectra) of the proprietary and public windows.

        Public nights end early enough that the release date (UT date of
        DATE-OBS + 365 days) has passed by ``today``, proprietary nights
        (the year before ``today``) late enough that it has not; DATE-OBS
        may fall on the UT day after the night's date.
        """
        today = (self.today - harps.MJD_EPOCH.date()).days
        first = (HARPS_START - harps.MJD_EPOCH.date()).days
        n_prop = int(round(self.proprietary_fraction * self.n_spectra))
        return ((today - 364, 363, n_prop),
                (first, today - 366 - first + 1, self.n_spectra - n_prop))

    def _check_capacity(self) -> None:
        for start, nights, count in self.windows():
            if count > max(nights, 0) * SLOTS_PER_NIGHT:
                day = harps.MJD_EPOCH.date() + dt.timedelta(days=start)
                raise ConfigError("n_spectra", f"{count} spectra do not fit in {max(nights, 0)} "
                                  f"nights from {day} (at most {SLOTS_PER_NIGHT} per night); "
                                  "lower it, the proprietary fraction, or move --today")

    @property
    def stars(self) -> int:
        """Catalogue size actually used."""
        return self.n_stars if self.n_stars is not None else default_n_stars(self.n_spectra)

    def as_dict(self) -> dict:
        """JSON-ready settings (``today`` as an ISO date)."""
        out = dataclasses.asdict(self)
        out["today"] = self.today.isoformat()
        out["n_stars"] = self.stars
        return out
