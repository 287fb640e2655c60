"""What one exposure needs to be rendered: physical parameters and detector constants."""

from __future__ import annotations

from typing import NamedTuple

from harps_data import harps

#: CCD read noise, electrons (DRS CCD SIGDET in real headers: 4.7-4.9).
READ_NOISE_CCD = 4.9
#: Effective read noise per native 0.01 A pixel, electrons: the CCD noise
#: summed over about four detector pixels (extraction and resampling).
READ_NOISE_NATIVE = 2.0 * READ_NOISE_CCD
#: Detector gain, electrons per adu (DRS CCD CONAD in real headers: 1.36-1.42).
GAIN = 1.42
#: Instrumental profile (Gaussian) FWHM, km/s.
INSTRUMENT_FWHM = harps.C_KMS / harps.RESOLVING_POWER
#: Second moment of the rotation kernel (limb darkening 0.6), in vsini units.
ROT_SIGMA = 0.474


class SpectrumParams(NamedTuple):
    """Physical parameters of one exposure.

    Attributes
    ----------
    teff : float
        Effective temperature, K.
    logg : float
        Surface gravity, log10 cgs.
    feh : float
        Metallicity [M/H], dex.
    vsini : float
        Projected rotation, km/s.
    rv : float
        Stellar barycentric radial velocity, km/s.
    berv : float
        Barycentric Earth radial velocity, km/s (DRS sign convention).
    airmass : float
        Mean airmass of the exposure.
    pwv : float
        Precipitable water vapour, mm.
    """

    teff: float
    logg: float
    feh: float
    vsini: float
    rv: float
    berv: float
    airmass: float
    pwv: float
