"""The DRS ``HIERARCH ESO DRS`` keywords of a HARPS product.

About 2300 of the ~3000 cards of a real ADP primary header are the DRS
record: order localisation (``CAL LOC``), flat field (``CAL FLAT``), the
ThAr wavelength solution (``CAL TH``, in the DRS's hashed order), the
S/N and cosmic counts per order (``SPE EXT SN0..71``, ``SPE NBCOS0..71``),
``BERV``, ``BJD`` and ``BERVMX``.  Names, comments and the compact DRS
layout follow the real 2014 ADP; values are synthetic.  The calibration
records belong to a night: they come from the night's variant (see
:func:`harps_synth.eso_instrument.variant`) and are cached as bytes.
"""

from __future__ import annotations

import functools

import numpy as np

from harps_data import harps
from harps_synth import astro
from harps_synth import rng as rngmod
from harps_synth.eso_instrument import N_VARIANTS, order_centres, variant
from harps_synth.fitswrite import hcard
from harps_synth.observations import Observation


def _drs(key: str, value: object, comment: str) -> str:
    return hcard(f"ESO DRS {key}", value, comment, align=False)


@functools.lru_cache(maxsize=2 * N_VARIANTS)
def cal_loc(seed: int, var: int) -> bytes:
    """DRS order localisation record (1307 cards) of a night variant."""
    rng = rngmod.stream(seed, rngmod.CALIBRATION, var, 1)
    o = np.arange(72)
    ctr = np.column_stack([-0.5 + 34.6 * o + 0.004 * o ** 2, 0.0234 - 2e-6 * o,
                           np.full(72, -5.15e-6), np.full(72, -9e-11), np.full(72, 7e-15)])
    ctr *= 1.0 + rng.normal(0.0, 0.002, ctr.shape)
    fwhm = np.array([3.2, -1.4e-3, 1.2e-6, -1.0e-9, 6e-13, -2e-16, 3.5e-20, -2e-24, -3e-29])
    fwhm = fwhm * (1.0 + rng.normal(0.0, 0.2, (72, 9)))
    err = np.array([0.0055, 1.02e-5, -3.3e-9, 2.2e-13]) * (1.0 + rng.normal(0.0, 0.2, (72, 4)))
    cards = [_drs("CAL LOC BCKGRD", rng.normal(0.0, 0.05), "mean background [%]"),
             _drs("CAL LOC NBO", 72, "nb orders localised"),
             _drs("CAL LOC DEG CTR", 4, "degree fit ctr ord"),
             _drs("CAL LOC DEG FWHM", 8, "degree fit width ord"),
             _drs("CAL LOC DEG ERROR", 3, "degree fit profile error"),
             _drs("CAL LOC PROFIL DELTA", 1.1, "param model 3gau")]
    cards += [_drs(f"CAL LOC CTR{i}", v, f"Coeff center order{i // 5}")
              for i, v in enumerate(ctr.ravel())]
    cards += [_drs(f"CAL LOC FWHM{i}", v, f"Coeff fwhm order{i // 9}")
              for i, v in enumerate(fwhm.ravel())]
    cards += [_drs(f"CAL LOC ERROR{i}", v, f"Coeff profile error order{i // 4}")
              for i, v in enumerate(err.ravel())]
    cards += [_drs("CAL LOC FLX MAX", rng.uniform(4e4, 6e4), "max flux in order [ADU]"),
              _drs("CAL LOC PTS CTR MAX", float(rng.integers(5, 20)), "max rm pts ctr"),
              _drs("CAL LOC PTS WID MAX", float(rng.integers(5, 20)), "max rm pts width"),
              _drs("CAL LOC RMS CTR", rng.uniform(5, 15), "max rms ctr"),
              _drs("CAL LOC RMS WID", rng.uniform(10, 25), "max rms width")]
    return "".join(cards).encode("ascii")


@functools.lru_cache(maxsize=2 * N_VARIANTS)
def cal_flat(seed: int, var: int) -> bytes:
    """DRS flat-field record (74 cards) of a night variant."""
    rng = rngmod.stream(seed, rngmod.CALIBRATION, var, 2)
    cards = [_drs("CAL FLAT NBFILES", 5, "Nb of Flat files used"),
             _drs("CAL FLAT WIN", 120, "half size blaze window")]
    cards += [_drs(f"CAL FLAT RMS{i}", v, f"FF RMS order{i}")
              for i, v in enumerate(rng.uniform(0.009, 0.019, 72))]
    return "".join(cards).encode("ascii")


def _th_misc(rng: np.random.Generator) -> list[str]:
    lit = [(f"CAL TH LITTROW {n} {k}", v, "Littrow  (m/s)") for n in ("ONE", "TWO", "THREE")
           for k, v in (("MEAN", rng.normal(0, 0.5)), ("RMS", rng.uniform(8, 12)),
                        ("MINDEV", rng.uniform(-25, -15)), ("MAXDEV", rng.uniform(20, 40)))]
    rows = lit + [
        ("CAL TH FLUX RATIO", rng.uniform(0.8, 1.3), "flux ratio relative to reference"),
        ("CAL TH GUESS LINES", "none", "filename  guess lines"),
        ("CAL TH GUESS ORDER", 36, "# guess order"),
        ("CAL TH NBR LINES", int(rng.integers(9000, 11000)), "nr lines used"),
        ("CAL TH ORDER NBLUE", 46, "nb blue orders"), ("CAL TH ORDER NBR", harps.N_ORDERS,
                                                        "nb orders in total"),
        ("CAL TH ORDER NGAP", 1, "nb orders in the gap"),
        ("CAL TH ORDER NRED", 26, "nb red orders"),
        ("CAL TH ORDER START", harps.ORDER_BLUEST, "num first blue order"),
        ("CAL TH DEG LL", 3, "degre polyn fit ll(x,order)"),
        ("CAL TH DEG X", 3, "degre polyn fit x(ll,order)"),
        ("CAL TH FIT MEAN", 0.0, "mean value  res (mpix)"),
        ("CAL TH FIT RMS", rng.uniform(8, 12), "rms value  res (mpix)"),
        ("CAL TH ERROR", rng.uniform(0.1, 0.3), "estim err on wave sol(m/s)"),
        ("CAL TH ABSOLUTE DV", rng.normal(0, 50), "absolute shift (m/s)"),
        ("CAL TH FILE LINES", "line_list_HARPS_A.dat", "file name cal lines")]
    return [_drs(k, v, c) for k, v, c in rows]


@functools.lru_cache(maxsize=2 * N_VARIANTS)
def cal_th(seed: int, var: int) -> bytes:
    """DRS ThAr wavelength-solution record (~800 cards, in the DRS's hashed order)."""
    rng = rngmod.stream(seed, rngmod.CALIBRATION, var, 3)
    centre = order_centres()
    scale = centre / centre[0]
    ll = np.column_stack([centre - 0.01205 * scale * 2048 + 4.1e-7 * scale * 2048 ** 2,
                          0.01205 * scale, -4.1e-7 * scale, np.full(72, -6e-13)])
    ll *= 1.0 + rng.normal(0.0, 1e-6, ll.shape)
    body = [_drs(f"CAL TH COEFF LL{i}", v, "coeff ll(x,order)") for i, v in enumerate(ll.ravel())]
    body += [_drs(f"CAL TH COEFF X{i}", -0.0 if i % 4 in (2, 3) else 0.0, "coeff x=(ll,order)")
             for i in range(288)]
    body += [_drs(f"CAL TH RMS ORDER{i}", v, "rms around fit (m/s)")
             for i, v in enumerate(rng.uniform(6, 12, 72))]
    body += [_drs(f"CAL TH CHISQ ORDER{i}", v, "reduced chi-square")
             for i, v in enumerate(rng.uniform(1.5, 4.5, 72))]
    body += _th_misc(rng)
    body = [body[i] for i in rng.permutation(len(body))]
    spots = rng.uniform(1.0, 4000.0, (8, 6))
    head = [_drs("CAL TH LAMP USED", "THAR1", "Lamp used for wavelength calibration")]
    head += [_drs(f"CAL TH LINE SPOT{i}", v, f"th line #{i // 6}")
             for i, v in enumerate(spots.ravel())]
    tail = [_drs("CAL TH LAMP OFFSET", rng.normal(0.0, 1.0), "ThAr lamp RV offset")]
    return "".join(head + body + tail).encode("ascii")


def _cal_file(night: int, hhmmss: str, kind: str) -> str:
    return f"HARPS.{astro.mjd_to_datetime(night).date().isoformat()}T{hhmmss}_{kind}_A.fits"


def drs_cards(o: Observation, sn_orders: np.ndarray, gain: float,
              read_noise: float) -> list[str | bytes]:
    """The DRS keyword set: calibration records, S/N per order, BERV and BJD.

    Parameters
    ----------
    o : Observation
    sn_orders : numpy.ndarray
        Shape ``(72,)``: S/N per pixel at the centre of each order.
    gain, read_noise : float
        Detector conversion factor (e-/adu) and read noise (e-).

    Returns
    -------
    list of str or bytes
        Cards and cached card blocks, in the order of a real ADP header.
    """
    var = variant(o.seed, o.night)
    rng = rngmod.stream(o.seed, rngmod.HEADER, o.index)
    nbcos = rng.poisson(max(o.exptime, 30.0) / 30.0, 72)
    cards: list[str | bytes] = [
        _drs("VERSION", o.drs_version, "DRS version"),
        _drs("CCD SIGDET", read_noise, "CCD Readout Noise [e-]"),
        _drs("CCD CONAD", gain, "CCD conv factor [e-/ADU]"),
        _drs("CAL LOC FILE", _cal_file(o.night, "22:13:36.885", "loco"), "Localization file"),
        cal_loc(o.seed, var),
        _drs("CAL FLAT FILE", _cal_file(o.night, "22:15:16.710", "flat"), "Flat-field file"),
        cal_flat(o.seed, var),
        _drs("BLAZE FILE", _cal_file(o.night, "22:15:16.710", "blaze"), "Blaze file"),
        _drs("SPE EXT OPT", 3, "Option extraction"),
        _drs("SPE EXT WINDOW", 17, "Size of extraction window"),
        _drs("SPE EXT COSM", 3.5, "threshold cosmic detection")]
    # the two per-order sets are formatted directly (144 cards per file)
    cards += [f"HIERARCH ESO DRS SPE EXT SN{i} = {v:.1f} / S_N order center{i}".ljust(80)
              for i, v in enumerate(sn_orders.tolist())]
    cards += [f"HIERARCH ESO DRS SPE NBCOS{i} = {v} / NbCos detected order{i}".ljust(80)
              for i, v in enumerate(nbcos.tolist())]
    return cards + [
        _drs("BERV", o.berv, "Barycentric Earth Radial Velocity"),
        _drs("BJD", o.bjd, "Barycentric Julian Day"),
        _drs("BERVMX", o.berv_max, "Maximum BERV"),
        _drs("CAL TH FILE", _cal_file(o.night, "22:37:11.215", "wave"), "Wavelength solution file"),
        cal_th(o.seed, var)]
