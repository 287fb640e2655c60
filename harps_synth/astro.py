"""Time, site geometry and barycentric corrections for La Silla, analytically.

No ephemeris files and no network: everything here is closed-form so that
a worker can compute it in microseconds.

Barycentric Earth radial velocity (BERV)
    Earth-Moon barycentre on its Keplerian orbit (Standish's mean elements
    for 1800-2050, J2000 ecliptic), plus the Earth's motion about that
    barycentre (circular lunar orbit), plus the Sun's reflex motion caused
    by Jupiter and Saturn (circular orbits), plus the diurnal rotation of
    the site.  The sum is projected on the star direction (J2000), with the
    HARPS DRS sign convention: ``BERV > 0`` when the observatory moves
    towards the star, and ``v_bary = v_topo + BERV``.  Neglected terms
    (Uranus, Neptune, lunar inclination, orbital perturbations) are each a
    few m/s; the tests compare with astropy at 0.03 km/s.
Barycentric Julian date (BJD)
    JD (UTC) of mid-exposure plus the Roemer delay of the observatory's
    barycentric position, as the HARPS DRS does (its ``BJD`` is UTC-based).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from harps_data import harps

MJD_J2000 = 51544.5
#: Light time for one astronomical unit, days.
AU_LIGHT_DAYS = 499.004784 / 86400.0
#: km/s per AU/day.
AU_PER_DAY_KMS = 149_597_870.7 / 86400.0
#: Gaussian gravitational constant, AU^1.5 / day (n * a^1.5).
GAUSS_K = 0.01720209895
#: Obliquity of the ecliptic at J2000, degrees.
OBLIQUITY_J2000 = 23.43929111
#: Equatorial rotation speed of the Earth times the site's geocentric radius, km/s.
_ROT_KMS = 7.2921150e-5 * (6378.137 + harps.SITE_ELEVATION_M / 1000.0)
#: Earth-Moon mass ratio term (Moon mass / (Earth + Moon)).
_MOON_FRAC = 1.0 / 82.30057
_MOON_DIST_AU = 384_400.0 / 149_597_870.7
#: (mass / solar mass, semi-major axis AU, mean longitude J2000 deg, deg per century)
_GIANTS = ((1.0 / 1047.3486, 5.20288700, 34.39644051, 3034.74612775),
           (1.0 / 3497.898, 9.53667594, 49.95424423, 1222.49362201))


# --------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------

def mjd_to_datetime(mjd: float) -> dt.datetime:
    """Calendar datetime (UTC, naive) of an MJD, to the microsecond."""
    return harps.MJD_EPOCH + dt.timedelta(days=mjd)


def date_to_mjd(date: dt.date) -> int:
    """MJD of 00:00 UTC on ``date``."""
    return (date - harps.MJD_EPOCH.date()).days


def iso_ms(ms: int) -> str:
    """ISO timestamp with milliseconds for an integer number of ms since MJD 0.

    Parameters
    ----------
    ms : int
        Milliseconds since MJD 0 (``harps_data.harps.MJD_EPOCH``).

    Returns
    -------
    str
        ``'YYYY-MM-DDThh:mm:ss.sss'``, exact (no float rounding).
    """
    days, rest = divmod(ms, 86_400_000)
    secs, milli = divmod(rest, 1000)
    day = harps.MJD_EPOCH.date() + dt.timedelta(days=days)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    return f"{day.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}.{milli:03d}"


def gmst_deg(mjd: float | np.ndarray) -> float | np.ndarray:
    """Greenwich mean sidereal time in degrees (UT1 taken as UTC)."""
    return (280.46061837 + 360.98564736629 * (np.asarray(mjd) - MJD_J2000)) % 360.0


def lst_deg(mjd: float | np.ndarray) -> float | np.ndarray:
    """Local mean sidereal time at La Silla, degrees."""
    return (gmst_deg(mjd) + harps.SITE_LON_DEG) % 360.0


def eso_period(mjd: float) -> int:
    """ESO observing period of a date: P72 began on 2003-10-01, one per half year."""
    d = mjd_to_datetime(mjd)
    return 72 + ((d.year - 2003) * 12 + d.month - 10) // 6


# --------------------------------------------------------------------------
# Sun and night
# --------------------------------------------------------------------------

def sun_radec(mjd: float) -> tuple[float, float]:
    """Apparent RA and Dec of the Sun, degrees (Astronomical Almanac, ~0.01 deg)."""
    n = mjd - MJD_J2000
    g = math.radians(357.528 + 0.9856003 * n)
    lam = math.radians(280.460 + 0.9856474 * n + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    eps = math.radians(23.439 - 4e-7 * n)
    ra = math.degrees(math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam))) % 360.0
    dec = math.degrees(math.asin(math.sin(eps) * math.sin(lam)))
    return ra, dec


def dark_window(night_mjd: int, sun_alt_deg: float = -12.0) -> tuple[float, float]:
    """Start and end (MJD) of the dark time of a night at La Silla.

    Parameters
    ----------
    night_mjd : int
        MJD of the UTC date on which the night begins (local evening).
    sun_alt_deg : float
        Sun altitude defining darkness (-12: nautical twilight).

    Returns
    -------
    start, end : float
        MJD (UTC), ``start < end``; solar midnight lies half-way.
    """
    mid = night_mjd + 1 - harps.SITE_LON_DEG / 360.0  # local mean midnight
    for _ in range(2):
        ra_sun, dec_sun = sun_radec(mid)
        ha = (lst_deg(mid) - ra_sun) % 360.0
        mid += (180.0 - ha) / 360.98564736629
    phi, dec = math.radians(harps.SITE_LAT_DEG), math.radians(dec_sun)
    cos_h0 = ((math.sin(math.radians(sun_alt_deg)) - math.sin(phi) * math.sin(dec))
              / (math.cos(phi) * math.cos(dec)))
    half = (180.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_h0))))) / 360.98564736629
    return mid - half, mid + half


# --------------------------------------------------------------------------
# Pointing geometry
# --------------------------------------------------------------------------

def altitude_deg(ha_deg: np.ndarray | float, dec_deg: np.ndarray | float) -> np.ndarray:
    """Altitude (degrees) for hour angle and declination at La Silla."""
    phi = math.radians(harps.SITE_LAT_DEG)
    ha, dec = np.radians(ha_deg), np.radians(dec_deg)
    s = math.sin(phi) * np.sin(dec) + math.cos(phi) * np.cos(dec) * np.cos(ha)
    return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))


def airmass(alt_deg: np.ndarray | float) -> np.ndarray:
    """Plane-parallel airmass ``sec z`` (so never below ``sec`` of the zenith distance)."""
    return 1.0 / np.sin(np.radians(alt_deg))


def azimuth_parang(ha_deg: float, dec_deg: float) -> tuple[float, float]:
    """Azimuth (ESO convention: S=0, W=90) and parallactic angle, degrees."""
    phi = math.radians(harps.SITE_LAT_DEG)
    ha, dec = math.radians(ha_deg), math.radians(dec_deg)
    az_n = math.atan2(math.sin(ha), math.cos(ha) * math.sin(phi) - math.tan(dec) * math.cos(phi))
    par = math.atan2(math.sin(ha), math.tan(phi) * math.cos(dec) - math.sin(dec) * math.cos(ha))
    return math.degrees(az_n) % 360.0, math.degrees(par)


def hour_angle_deg(mjd: float, ra_deg: float) -> float:
    """Hour angle in (-180, 180] degrees."""
    return (float(lst_deg(mjd)) - ra_deg + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------
# Barycentric corrections
# --------------------------------------------------------------------------

def _kepler_emb(t_cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Heliocentric position (AU) and velocity (AU/day) of the Earth-Moon barycentre."""
    a = 1.00000261 + 0.00000562 * t_cy
    e = 0.01671123 - 0.00004392 * t_cy
    mean_lon = 100.46457166 + 35999.37244981 * t_cy
    peri = math.radians(102.93768193 + 0.32327364 * t_cy)
    m = math.radians(mean_lon) - peri
    ecc_anom = m
    for _ in range(5):
        ecc_anom -= (ecc_anom - e * math.sin(ecc_anom) - m) / (1 - e * math.cos(ecc_anom))
    nu = 2 * math.atan2(math.sqrt(1 + e) * math.sin(ecc_anom / 2),
                        math.sqrt(1 - e) * math.cos(ecc_anom / 2))
    r = a * (1 - e * math.cos(ecc_anom))
    lon = nu + peri
    vscale = GAUSS_K / math.sqrt(a * (1 - e * e))
    pos = np.array([r * math.cos(lon), r * math.sin(lon), 0.0])
    vel = vscale * np.array([-(math.sin(lon) + e * math.sin(peri)),
                             math.cos(lon) + e * math.cos(peri), 0.0])
    return pos, vel


def _circular(lon_deg: float, radius: float, period_days: float) -> tuple[np.ndarray, np.ndarray]:
    lon = math.radians(lon_deg)
    speed = 2 * math.pi * radius / period_days
    return (radius * np.array([math.cos(lon), math.sin(lon), 0.0]),
            speed * np.array([-math.sin(lon), math.cos(lon), 0.0]))


def earth_barycentric(mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric position (AU) and velocity (km/s) of the geocentre, equatorial J2000.

    Parameters
    ----------
    mjd : float
        Time (UTC is close enough to TDB here).

    Returns
    -------
    pos, vel : numpy.ndarray
        Shapes ``(3,)``: AU and km/s, ICRS-aligned axes.
    """
    t_cy = (mjd - MJD_J2000) / 36525.0
    pos, vel = _kepler_emb(t_cy)
    moon_pos, moon_vel = _circular(218.3164477 + 481267.88123421 * t_cy, _MOON_DIST_AU, 27.321662)
    pos, vel = pos - _MOON_FRAC * moon_pos, vel - _MOON_FRAC * moon_vel
    for mass, a, lon0, rate in _GIANTS:
        p_pos, p_vel = _circular(lon0 + rate * t_cy, a, 365.25 * a ** 1.5)
        pos, vel = pos - mass * p_pos, vel - mass * p_vel
    eps = math.radians(OBLIQUITY_J2000)
    cos_e, sin_e = math.cos(eps), math.sin(eps)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, cos_e, -sin_e], [0.0, sin_e, cos_e]])
    return rot @ pos, (rot @ vel) * AU_PER_DAY_KMS


def unit_vector(ra_deg: float, dec_deg: float) -> np.ndarray:
    """Unit vector towards (RA, Dec), shape ``(3,)``."""
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


def berv(mjd: float, ra_deg: float, dec_deg: float) -> float:
    """Barycentric Earth radial velocity towards a star at La Silla, km/s.

    Parameters
    ----------
    mjd : float
        Time of the (mid-)exposure, MJD UTC.
    ra_deg, dec_deg : float
        J2000 coordinates of the star.

    Returns
    -------
    float
        Positive when the observatory approaches the star (DRS convention).
    """
    _, vel = earth_barycentric(mjd)
    orbital = float(vel @ unit_vector(ra_deg, dec_deg))
    ha = math.radians(hour_angle_deg(mjd, ra_deg))
    diurnal = -_ROT_KMS * math.cos(math.radians(harps.SITE_LAT_DEG)) \
        * math.cos(math.radians(dec_deg)) * math.sin(ha)
    return orbital + diurnal


def bjd(mjd: float, ra_deg: float, dec_deg: float) -> float:
    """Barycentric Julian date (UTC-based, as in the DRS ``BJD`` keyword), days."""
    pos, _ = earth_barycentric(mjd)
    return mjd + 2400000.5 + float(pos @ unit_vector(ra_deg, dec_deg)) * AU_LIGHT_DAYS


def berv_max(ra_deg: float, dec_deg: float) -> float:
    """Largest BERV over a year (DRS ``BERVMX``), km/s.

    The Earth's orbital velocity (at most 30.29 km/s, at perihelion) lies in
    the ecliptic, so its largest projection is ``30.29 cos(beta)`` for a star
    at ecliptic latitude ``beta``; the diurnal term adds up to 0.41 km/s.
    """
    eps = math.radians(OBLIQUITY_J2000)
    pole = np.array([0.0, -math.sin(eps), math.cos(eps)])
    sin_beta = float(unit_vector(ra_deg, dec_deg) @ pole)
    return 30.29 * math.sqrt(1.0 - sin_beta ** 2) \
        + _ROT_KMS * math.cos(math.radians(harps.SITE_LAT_DEG)) * math.cos(math.radians(dec_deg))


def moon_radec(mjd: float) -> tuple[float, float]:
    """Rough position of the Moon (mean longitude on the ecliptic), degrees."""
    lam = math.radians(218.3164477 + 13.17639648 * (mjd - MJD_J2000))
    eps = math.radians(OBLIQUITY_J2000)
    ra = math.degrees(math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam))) % 360.0
    return ra, math.degrees(math.asin(math.sin(eps) * math.sin(lam)))
