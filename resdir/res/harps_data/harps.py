"""Facts about HARPS, its 1D data products and the archive: the one place for them.

Everything else (FITS readers, the synthetic archive, the DaCHS resource
descriptor helpers, preprocessing for the model) imports these names instead
of repeating numbers.  Wavelengths are in Angstrom (air, as HARPS archives
them), velocities in km/s, angles in degrees, times in MJD (UTC) unless a
name says otherwise.
"""

from __future__ import annotations

import datetime

import numpy as np

# --- Time -------------------------------------------------------------------
#: MJD 0: 1858-11-17T00:00:00 UTC (naive datetime; ``.date()`` for day counts).
MJD_EPOCH = datetime.datetime(1858, 11, 17)

# --- Instrument and site ---------------------------------------------------
INSTRUMENT = "HARPS"
#: TELESCOP as written by the ADP pipeline; DRS s1d files say "ESO-3P6".
TELESCOPES = ("ESO-3.6", "ESO-3P6")
TELESCOPE = "ESO-3.6"
FACILITY = "ESO La Silla 3.6m telescope"
#: Nominal resolving power lambda/dlambda.
RESOLVING_POWER = 115_000.0
#: Fibre aperture on the sky (diameter), degrees (1 arcsec).
APERTURE_DEG = 1.0 / 3600.0
SITE_LAT_DEG = -29.2584
SITE_LON_DEG = -70.7345
SITE_ELEVATION_M = 2400.0

# --- Archive wavelength grid (ADP and s1d) --------------------------------
#: Sampling of HARPS 1D products, Angstrom.
WAVE_STEP = 0.01
#: Nominal span of the full HARPS 1D grid, Angstrom (real files start
#: 3781.3-3781.8 and end 6912.5-6913.3, depending on BERV).
ARCHIVE_WAVE_MIN = 3781.0
ARCHIVE_WAVE_MAX = 6913.0
#: The gap between the two CCDs in the detector (topocentric) frame, Angstrom,
#: from the zero pixels of the eight real files in shared/data/harps_real
#: (3295 pixels each).  Products fill it with exact zeros.
CCD_GAP_TOPOCENTRIC = (5304.31, 5337.26)
#: Where the gap can fall in barycentric products: it sits at
#: ``CCD_GAP_TOPOCENTRIC * (1 + BERV / C_KMS)`` (see :func:`ccd_gap`), and
#: |BERV| stays below 31 km/s, i.e. shifts of up to +-0.55 A.
CCD_GAP = (5303.76, 5337.82)

# --- Echelle format (from the DRS wavelength-solution keywords) ------------
#: 72 extracted orders, physical orders 161 (bluest) down to 89: 46 on the
#: blue CCD, 26 on the red one; order 115 falls in the CCD gap.
N_ORDERS = 72
ORDER_BLUEST = 161
ORDER_REDDEST = 89
ORDER_IN_GAP = 115
#: Grating constant ``m * lambda_centre`` of the echelle, Angstrom (order 161
#: is centred at 3802 A, order 89 at 6878 A).
ECHELLE_CONSTANT = 612_150.0

# --- Common grid of the learned layer --------------------------------------
#: Wavelength range kept for the model (covered by every HARPS 1D product).
MODEL_WAVE_MIN = 3785.0
MODEL_WAVE_MAX = 6910.0
#: Number of 0.01 A samples in [MODEL_WAVE_MIN, MODEL_WAVE_MAX].
MODEL_NPIX = int(round((MODEL_WAVE_MAX - MODEL_WAVE_MIN) / WAVE_STEP)) + 1  # 312501
#: Model input length after zero padding: 2**18 + 2**16.
MODEL_PADDED = 2**18 + 2**16  # 327680
#: CCD gap masked in the loss, with a margin for BERV shifts.
MODEL_GAP = (5303.6, 5338.0)

# --- Earth's atmosphere (topocentric air wavelengths, Angstrom) -------------
#: Bluest wavelength of the red part of HARPS spectra where telluric lines occur
#: at all (the separation's quality compares misfits redder than this).
TELLURIC_WAVE_MIN = 5000.0
#: The telluric bands in the HARPS range, (name, start, end): the only places the
#: separation model may put absorption (with ``TELLURIC_MARGIN``), where it is
#: validated and its per-spectrum quality measured.  Every line of the
#: synthetic atmosphere deeper than 5 % lies in them; at La Silla the water lines
#: between them stay below ~2 %.
TELLURIC_BANDS = (("H2O 5900", 5880.0, 6010.0), ("O2 gamma", 6270.0, 6335.0),
                  ("H2O 6500", 6455.0, 6620.0), ("O2 B", 6860.0, 6913.0))
#: Margin around TELLURIC_BANDS (Angstrom, observatory frame) for the model's templates.
TELLURIC_MARGIN = 5.0
#: Strong stellar lines inside the telluric bands, (air wavelength, half-width), Angstrom:
#: H alpha and the Na D doublet.  Every FGK star has them; in the observatory frame
#: they smear over +-(RV + BERV) into a broad common absorption that a telluric
#: template learns unless it is kept out of these windows.
STRONG_STELLAR_LINES = ((6562.80, 4.0), (5889.95, 3.0), (5895.92, 3.0))


def in_telluric_bands(wave: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether each wavelength (Angstrom) lies in a telluric band, widened by ``margin``."""
    out = np.zeros(np.shape(wave), dtype=bool)
    for _, lo, hi in TELLURIC_BANDS:
        out |= (wave >= lo - margin) & (wave <= hi + margin)
    return out


def near_strong_stellar_line(wave: np.ndarray) -> np.ndarray:
    """Whether each wavelength (Angstrom) is within a window of STRONG_STELLAR_LINES."""
    out = np.zeros(np.shape(wave), dtype=bool)
    for centre, half in STRONG_STELLAR_LINES:
        out |= np.abs(wave - centre) <= half
    return out

# --- Archive policy -------------------------------------------------------
#: Primary-header keyword (HIERARCH) marking files made by ``harps_synth``: they
#: are not ESO products, so they get no ESO creator DID and are labelled as
#: synthetic in the service.
SYNTHETIC_KEYWORD = "HARPSVO SYNTHETIC"
#: ESO's proprietary period for HARPS data, days (one year).
PROPRIETARY_PERIOD_DAYS = 365
#: Speed of light, km/s.
C_KMS = 299_792.458


def archive_grid(step: float = WAVE_STEP, wmin: float = ARCHIVE_WAVE_MIN,
                 wmax: float = ARCHIVE_WAVE_MAX) -> np.ndarray:
    """Return a uniform wavelength grid in the archive's convention.

    Parameters
    ----------
    step : float
        Sampling in Angstrom; 0.01 is the HARPS product grid, coarser
        values give smaller files for quick work.
    wmin, wmax : float
        First and (inclusive) last wavelength, Angstrom.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64, Angstrom, strictly increasing, with
        ``N = round((wmax - wmin) / step) + 1``.
    """
    if step <= 0:
        raise ValueError(f"wavelength step must be positive, got {step}")
    n = int(round((wmax - wmin) / step)) + 1
    return wmin + step * np.arange(n, dtype=np.float64)


def model_grid(step: float = WAVE_STEP) -> np.ndarray:
    """Return the common wavelength grid of the learned layer, Angstrom.

    Parameters
    ----------
    step : float
        Sampling in Angstrom; the default 0.01 gives ``MODEL_NPIX``
        (312,501) samples, coarser steps give the fast configurations.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)``, float64.
    """
    return archive_grid(step, MODEL_WAVE_MIN, MODEL_WAVE_MAX)


def ccd_gap(berv_kms: float) -> tuple[float, float]:
    """The CCD gap in a barycentric product with this BERV, Angstrom.

    HARPS's pipeline maps detector wavelengths to the barycentric frame with
    ``lambda_bary = lambda_topo * (1 + BERV / c)``: everything fixed on the
    detector, the gap and telluric lines alike, moves by +BERV.
    """
    f = 1.0 + berv_kms / C_KMS
    return CCD_GAP_TOPOCENTRIC[0] * f, CCD_GAP_TOPOCENTRIC[1] * f


def in_ccd_gap(wave: np.ndarray, gap: tuple[float, float] = CCD_GAP) -> np.ndarray:
    """Boolean mask of wavelengths (Angstrom) inside the CCD gap."""
    return (wave >= gap[0]) & (wave <= gap[1])
