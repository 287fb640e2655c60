"""Observations: when, which star, under which conditions.

:class:`ObservationPlanner` maps a spectrum index ``i`` to an
:class:`Observation` in O(1) memory, using only ``(seed, i)`` and the star
catalogue, so spectra can be made in any order by any worker.

Scheduling
    A seeded bijection places the indices on distinct (night, slot) pairs:
    public spectra on nights from HARPS_START to ``today`` - 366 days,
    ``round(fraction * n)`` proprietary ones in the last year before
    ``today``.  Within a night a time is drawn in the dark window (Sun
    below -12 deg) and a star is chosen among those above airmass 2 at
    that time, with probability proportional to its (heavy-tailed)
    priority.  The slot number (< 1000) becomes the millisecond field of
    DATE-OBS, which makes every DATE-OBS (and so every file name) unique.
Exposure
    The exposure time aims at S/N ~ 100 (log-normal goal) for the star's V
    magnitude, rounded to usual values (15 s to 1 h); the achieved median
    S/N per 0.01 A pixel then follows from photon counts (seeing losses
    at the 1" fibre, extinction, transparency) and read noise.
Conditions
    Airmass at start and end from the hour angle; precipitable water
    vapour log-normal (median 3.5 mm, 0.5-15 mm); BERV and BJD at
    mid-exposure (:mod:`harps_synth.astro`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterator

import numpy as np

from harps_data import harps
from harps_synth import astro
from harps_synth import rng as rngmod
from harps_synth.catalogue import Catalogue, Star, make_catalogue
from harps_synth.config import HARPS_START, SLOTS_PER_NIGHT, SynthConfig
from harps_synth.exposure import SpectrumParams

MAX_AIRMASS = 2.0
#: Photo-electrons per second per 0.01 A pixel for V = 0 at 5500 A (airmass
#: 1, seeing 0.9"); a V = 10.9 star gives S/N ~ 23 in 300 s, like the real
#: 2014 ADP of IC 4651 No 9122.
RATE_V0 = 4.2e4
EXPTIME_MENU = (15, 30, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1500, 1800, 2400, 3600)
#: Nights before this date were archived in ESO's 2014 bulk reprocessing.
BULK_CUTOFF = dt.date(2014, 9, 1)
BULK_START = dt.datetime(2014, 9, 16)
#: The DRS generation used for the products of a given observing date.
DRS_SWITCH = dt.date(2011, 1, 1)


@dataclasses.dataclass(frozen=True)
class Observation:
    """One synthetic exposure; everything the files and labels need.

    Times are MJD (UTC) unless named ``*_ms`` (integer milliseconds since
    MJD 0); velocities km/s; angles degrees; ``pwv_*`` mm; ``snr`` is the
    median S/N per 0.01 A pixel.
    """

    index: int
    seed: int
    star: Star
    night: int
    start_ms: int
    exptime: float
    berv: float
    berv_max: float
    bjd: float
    rv: float
    airmass_start: float
    airmass_end: float
    alt_start: float
    az_start: float
    parang_start: float
    parang_end: float
    pwv_start: float
    pwv_end: float
    seeing_start: float
    seeing_end: float
    snr: float
    prog_id: str
    ob_id: int
    dpr_type: str
    drs_version: str
    arc_ms: int
    today: dt.date

    @property
    def mjd_obs(self) -> float:
        return self.start_ms / 86_400_000.0

    @property
    def mjd_end(self) -> float:
        return self.mjd_obs + self.exptime / 86400.0

    @property
    def date_obs(self) -> str:
        """DATE-OBS, ``'YYYY-MM-DDThh:mm:ss.sss'``."""
        return astro.iso_ms(self.start_ms)

    @property
    def arcfile(self) -> str:
        """Archive file name, ``'ADP.<timestamp>.fits'`` (unique)."""
        return f"ADP.{astro.iso_ms(self.arc_ms)}.fits"

    @property
    def airmass(self) -> float:
        """Mean airmass of the exposure (as ``harps_data.fitsio`` reports it)."""
        return round(0.5 * (self.airmass_start + self.airmass_end), 4)

    @property
    def pwv(self) -> float:
        """Mean precipitable water vapour, mm."""
        return round(0.5 * (self.pwv_start + self.pwv_end), 3)

    @property
    def release_date(self) -> dt.date:
        """End of the proprietary period: observation date + one year."""
        return (dt.date.fromisoformat(self.date_obs[:10])
                + dt.timedelta(days=harps.PROPRIETARY_PERIOD_DAYS))

    @property
    def is_proprietary(self) -> bool:
        return self.release_date > self.today

    @property
    def params(self) -> SpectrumParams:
        """Physical parameters for :func:`harps_synth.spectrum.render`."""
        s = self.star
        return SpectrumParams(s.teff, s.logg, s.feh, s.vsini, self.rv, self.berv,
                              self.airmass, self.pwv)

    def noise_rng(self) -> np.random.Generator:
        """The random stream of this spectrum's photon and read noise."""
        return rngmod.stream(self.seed, rngmod.NOISE, self.index)


def _spectral_mask(teff: float) -> str:
    """DRS cross-correlation mask (third part of DPR TYPE) for a temperature."""
    if teff >= 5200.0:
        return "G2"
    if teff >= 3900.0:
        return "K5"
    return "M2" if teff >= 3300.0 else "M4"


def _fibre_fraction(seeing: float) -> float:
    """Fraction of a Gaussian seeing disc (FWHM, arcsec) inside the 1" fibre."""
    sigma = seeing / 2.3548
    return 1.0 - math.exp(-0.125 / sigma ** 2)


class ObservationPlanner:
    """Index-addressable plan of a synthetic archive.

    Parameters
    ----------
    catalogue : Catalogue
    n_spectra : int
        Number of observations.
    seed : int
        Master seed.
    today : datetime.date
        Reference date (observations end the night before).
    proprietary_fraction : float
        Fraction of spectra observed within the year before ``today``.

    Raises
    ------
    harps_synth.config.ConfigError
        When a window has fewer slots than spectra (1000 per night).
    """

    def __init__(self, catalogue: Catalogue, n_spectra: int, *, seed: int, today: dt.date,
                 proprietary_fraction: float) -> None:
        self.catalogue, self.n, self.seed, self.today = catalogue, n_spectra, seed, today
        # validates the windows (raises ConfigError naming the option)
        self._groups = SynthConfig(n_spectra=n_spectra, seed=seed, n_stars=len(catalogue),
                                   today=today,
                                   proprietary_fraction=proprietary_fraction).windows()
        self.n_prop = self._groups[0][2]
        self._order = rngmod.IndexPermutation(n_spectra, rngmod.key64(seed, rngmod.PERMUTATION, 0))
        self._slots = tuple(
            rngmod.IndexPermutation(max(nights, 1) * SLOTS_PER_NIGHT,
                                    rngmod.key64(seed, rngmod.PERMUTATION, g + 1))
            for g, (_, nights, _) in enumerate(self._groups))
        dec = np.radians(catalogue.dec)
        phi = math.radians(harps.SITE_LAT_DEG)
        self._sin_term = math.sin(phi) * np.sin(dec)
        self._cos_term = math.cos(phi) * np.cos(dec)
        self._cum_weight = np.cumsum(catalogue.weight)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Observation:
        return self.plan(i)

    def __iter__(self):
        return (self.plan(i) for i in range(self.n))

    def night_slot(self, i: int) -> tuple[int, int]:
        """Night (MJD of its UTC start date) and slot (0-999) of spectrum ``i``."""
        p = self._order(i)
        group = 0 if p < self.n_prop else 1
        start = self._groups[group][0]
        slot = self._slots[group](p if group == 0 else p - self.n_prop)
        return start + slot // SLOTS_PER_NIGHT, slot % SLOTS_PER_NIGHT

    def _choose(self, weights_cum: np.ndarray, u: float) -> int:
        return int(np.searchsorted(weights_cum, u * weights_cum[-1], side="right"))

    def _schedule(self, night: int, rng: np.random.Generator) -> tuple[int, float]:
        """A star above airmass 2 and a start time in the dark part of the night."""
        t0, t1 = astro.dark_window(night)
        ra = self.catalogue.ra
        for _ in range(8):
            t = rng.uniform(t0, t1 - 0.01)
            sin_alt = self._sin_term + self._cos_term * np.cos(np.radians(astro.lst_deg(t) - ra))
            up = sin_alt >= 1.0 / MAX_AIRMASS
            if up.any():
                return self._choose(np.cumsum(np.where(up, self.catalogue.weight, 0.0)),
                                    rng.random()), t
        # tiny catalogues: observe a star at its transit nearest to midnight
        k = self._choose(self._cum_weight, rng.random())
        mid = 0.5 * (t0 + t1)
        return k, mid - astro.hour_angle_deg(mid, float(ra[k])) / 360.98564736629

    def _exposure(self, star: Star, rng: np.random.Generator) -> float:
        goal = float(np.clip(rng.lognormal(math.log(100.0), 0.5), 20.0, 400.0))
        need = goal ** 2 / (RATE_V0 * 10 ** (-0.4 * star.vmag))
        menu = np.array(EXPTIME_MENU, dtype=float)
        nominal = menu[np.argmin(np.abs(np.log(menu / need)))]
        return round(nominal + rng.uniform(0.0, 2.6), 4)

    def _snr(self, star: Star, exptime: float, airmass: float, seeing: float,
             rng: np.random.Generator) -> float:
        throughput = (_fibre_fraction(seeing) / _fibre_fraction(0.9)
                      * 10 ** (-0.4 * 0.15 * (airmass - 1.0)) * rng.uniform(0.75, 1.0))
        electrons = RATE_V0 * 10 ** (-0.4 * star.vmag) * exptime * throughput
        snr = electrons / math.sqrt(electrons + 10.0 ** 2)
        return round(float(np.clip(snr, 2.0, 1000.0)), 2)

    def _archive_ms(self, night: int, slot: int, rng: np.random.Generator) -> int:
        """ARCFILE time: unique by construction (see module docstring of archive times)."""
        night_date = astro.mjd_to_datetime(night).date()
        if night_date < BULK_CUTOFF:  # ESO's 2014 bulk reprocessing: 86 nights per day
            per_day = 86400 // SLOTS_PER_NIGHT
            b = night - astro.date_to_mjd(HARPS_START)
            day = astro.date_to_mjd(BULK_START.date()) + b // per_day
            second = (b % per_day) * SLOTS_PER_NIGHT + slot
            milli = 2 * int(rng.integers(0, 500)) + 1
        else:  # archived the morning after the night, one slot per 43 s
            day, second, milli = night + 1, 36000 + 43 * slot, 2 * int(rng.integers(0, 500))
        return (day * 86400 + second) * 1000 + milli

    def plan(self, i: int) -> Observation:
        """The observation of spectrum ``i`` (deterministic in ``(seed, i)``)."""
        night, slot = self.night_slot(i)
        rng = rngmod.stream(self.seed, rngmod.OBSERVATION, i)
        k, t = self._schedule(night, rng)
        star = self.catalogue.star(k)
        exptime = self._exposure(star, rng)
        start_ms = int(t * 86_400_000) // 1000 * 1000 + slot
        mjd_obs = start_ms / 86_400_000
        mjd_end = mjd_obs + exptime / 86400.0
        mid = 0.5 * (mjd_obs + mjd_end)
        ha0, ha1 = (astro.hour_angle_deg(m, star.ra) for m in (mjd_obs, mjd_end))
        alt0, alt1 = (float(astro.altitude_deg(h, star.dec)) for h in (ha0, ha1))
        az0, par0 = astro.azimuth_parang(ha0, star.dec)
        seeing0 = float(np.clip(rng.lognormal(math.log(0.9), 0.3), 0.4, 3.0))
        seeing1 = float(np.clip(seeing0 * rng.lognormal(0.0, 0.1), 0.4, 3.0))
        pwv0 = float(np.clip(rng.lognormal(math.log(3.5), 0.6), 0.5, 15.0))
        pwv1 = float(np.clip(pwv0 * rng.lognormal(0.0, 0.05), 0.5, 15.0))
        x0, x1 = float(astro.airmass(alt0)), float(astro.airmass(alt1))
        programme = self.catalogue.programmes[star.programme]
        old = astro.mjd_to_datetime(mjd_obs).date() < DRS_SWITCH
        return Observation(
            index=i, seed=self.seed, star=star, night=night, start_ms=start_ms, exptime=exptime,
            berv=astro.berv(mid, star.ra, star.dec), berv_max=astro.berv_max(star.ra, star.dec),
            bjd=astro.bjd(mid, star.ra, star.dec), rv=star.rv_at(mid),
            airmass_start=round(x0, 3), airmass_end=round(x1, 3), alt_start=alt0, az_start=az0,
            parang_start=par0, parang_end=astro.azimuth_parang(ha1, star.dec)[1],
            pwv_start=round(pwv0, 2), pwv_end=round(pwv1, 2),
            seeing_start=round(seeing0, 2), seeing_end=round(seeing1, 2),
            snr=self._snr(star, exptime, 0.5 * (x0 + x1), 0.5 * (seeing0 + seeing1), rng),
            prog_id=programme.prog_id(astro.eso_period(mjd_obs)),
            ob_id=int(rng.integers(1, 99_999) if old else rng.integers(200_000_000, 1_100_000_000)),
            dpr_type=f"STAR,{'WAVE' if rng.random() < 0.35 else 'DARK'},"
                     f"{_spectral_mask(star.teff)}",
            drs_version="HARPS_3.5" if old else "HARPS_3.8",
            arc_ms=self._archive_ms(night, slot, rng), today=self.today)


def planner_for(config: SynthConfig) -> ObservationPlanner:
    """The planner of a :class:`harps_synth.config.SynthConfig` (catalogue included)."""
    cat = make_catalogue(config.stars, config.seed)
    return ObservationPlanner(cat, config.n_spectra, seed=config.seed, today=config.today,
                              proprietary_fraction=config.proprietary_fraction)


def iter_observations(n_spectra: int, *, seed: int = 1, n_stars: int | None = None,
                      today: dt.date | None = None, proprietary_fraction: float = 0.1,
                      start: int = 0, stop: int | None = None) -> Iterator[Observation]:
    """Observations of a run, one at a time (for rendering without files).

    Parameters
    ----------
    n_spectra : int
        Size of the run (fixes the schedule).
    seed, n_stars, today, proprietary_fraction
        As in :class:`harps_synth.config.SynthConfig`; the same values give the
        same observations as the archive written with them.
    start, stop : int
        Index range to yield (default: all).

    Yields
    ------
    Observation
    """
    extra = {} if today is None else {"today": today}
    config = SynthConfig(n_spectra=n_spectra, seed=seed, n_stars=n_stars,
                         proprietary_fraction=proprietary_fraction, **extra)
    planner = planner_for(config)
    for i in range(start, n_spectra if stop is None else min(stop, n_spectra)):
        yield planner.plan(i)
