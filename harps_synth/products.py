"""Synthetic observations as files: ESO Phase 3 ADP and HARPS DRS s1d bytes.

ADP (the archive's format, see ``shared/data/harps_real/README.md``)
    Empty primary HDU with ~3000 cards (Phase 3 keywords, then the
    OBS/TPL/DPR, TEL/ADA, INS, DET, OCS and DRS sets), then one BINTABLE
    ``SPECTRUM`` with one row of ``WAVE`` (D, Angstrom), ``FLUX`` and
    ``ERR`` (E, adu).  ``RADECSYS='FK5'`` with ``EQUINOX``, as in both real
    ADP headers (2014 and 2025 HARPS DRS products).  CHECKSUM/DATASUM
    are correct in both HDUs.
s1d
    A primary float32 image with ``CRVAL1/CDELT1/CRPIX1``, ``ORIGIN='TEST'``
    and a stale ``DATASUM='0'`` without CHECKSUM, like real DRS files.

Every primary header carries ``HIERARCH HARPSVO SYNTHETIC = T``
(``harps_data.harps.SYNTHETIC_KEYWORD``): these are not ESO products.
"""

from __future__ import annotations

import numpy as np

from harps_data import harps
from harps_synth import astro, eso_drs, eso_instrument, exposure
from harps_synth import rng as rngmod
from harps_synth.fitswrite import Num, card, fmt_float, hcard, hdu_bytes
from harps_synth.observations import Observation

#: ERR column comment for each ``--err`` mode.
ERR_COMMENTS = {"nan": "Error spectrum not available, filled with NaN",
                "real": "Photon and read noise, 1 sigma; NaN in the CCD gap"}
_VO_COLUMNS = (
    ("WAVE", "D", "Spectrum.Data.SpectralAxis.Value", "em.wl;obs.atmos", None,
     "Computed from original WCS information"),
    ("FLUX", "E", "Spectrum.Data.FluxAxis.Value", "phot.flux.density;em.wl;stat.uncalib", "adu",
     "Converted from 1-d pipeline spectrum (s1d_A)"),
    ("ERR", "E", "Spectrum.Data.FluxAxis.Accuracy.StatError",
     "stat.error;phot.flux.density;em.wl;stat.uncalib", "adu", None))


def adp_name(o: Observation) -> str:
    """File name of the ADP: the ARCFILE with ':' replaced by '_'."""
    return o.arcfile.replace(":", "_")


def s1d_name(o: Observation) -> str:
    """File name of the s1d: ``HARPS.<DATE-OBS with _>_s1d_A.fits``."""
    return f"HARPS.{o.date_obs.replace(':', '_')}_s1d_A.fits"


def order_snr(wave: np.ndarray, flux: np.ndarray, err: np.ndarray) -> np.ndarray:
    """DRS-style S/N at the centre of each of the 72 orders, per 0.01 A pixel.

    Parameters
    ----------
    wave, flux, err : numpy.ndarray
        Shape ``(N,)``: Angstrom, adu, adu (err the true 1-sigma noise).

    Returns
    -------
    numpy.ndarray
        Shape ``(72,)``: median ``flux / err`` within 5 A of each order
        centre, rescaled to native pixels and to the ~1.5x larger extracted
        pixels of the DRS (so ``SN50`` exceeds ``SNR``, as in real files).
    """
    step = float(wave[1] - wave[0])
    scale = 1.2 / np.sqrt(max(step / harps.WAVE_STEP, 1.0))
    half = max(1, int(round(5.0 / step)))
    centre = np.searchsorted(wave, eso_instrument.order_centres())
    window = np.clip(centre[:, None] + np.arange(-half, half + 1), 0, len(wave) - 1)
    ratio = np.where(err > 0, flux / np.where(err > 0, err, 1.0), 0.0)
    return np.median(ratio[window], axis=1) * scale


def _clock(seconds: float) -> str:
    h, rem = divmod(int(round(seconds * 1000)), 3_600_000)
    m, rem = divmod(rem, 60_000)
    return f"{h % 24:02d}:{m:02d}:{rem / 1000:06.3f}"


def _sexagesimal(value: float, hours: bool) -> str:
    v = abs(value) / (15.0 if hours else 1.0)
    d, m = int(v), int((v - int(v)) * 60)
    s = (v - d - m / 60) * 3600
    return f"{'-' if value < 0 else ''}{d:02d}:{m:02d}:{s:04.1f}"


def _written_ms(o: Observation) -> int:
    """DATE of the product: hours to days before it reached the archive."""
    return o.arc_ms - 3_600_000 - rngmod.mix64(o.arc_ms) % (3 * 86_400_000)


def _common_top(o: Observation) -> list[str]:
    """Cards shared by ADP and s1d primaries after the structural ones."""
    s = o.star
    utc = (o.start_ms // 1000 - 5) % 86400
    lst = float(astro.lst_deg(o.mjd_obs - 5 / 86400)) / 15.0 * 3600.0
    return [
        card("INSTRUME", harps.INSTRUMENT, "Instrument used"),
        card("RA", Num(f"{s.ra:.6f}"), f"{_sexagesimal(s.ra, True)} RA (J2000) pointing"),
        card("DEC", Num(f"{s.dec:.5f}"), f"{_sexagesimal(s.dec, False)} DEC (J2000) pointing"),
        card("EQUINOX", Num("2000."), "Standard FK5 (years)"),
        card("RADECSYS", "FK5", "Coordinate reference frame"),
        card("EXPTIME", Num(f"{o.exptime:.4f}"), "Total integration time"),
        card("MJD-OBS", Num(f"{o.mjd_obs:.8f}"), f"MJD start ({o.date_obs})"),
        card("DATE-OBS", o.date_obs, "Date of observation"),
        card("UTC", Num(f"{utc:.3f}"), f"{_clock(utc)} UTC"),
        card("LST", Num(f"{lst:.3f}"), f"{_clock(lst)} LST"),
    ]


def _phase3_origin(o: Observation) -> list[str]:
    """Provenance and observation keywords of the ADP primary header."""
    date = o.date_obs
    return [
        card("PI-COI", f"SynthPI{o.star.programme:03d}", "PI-COI name."),
        card("ORIGFILE", f"HARPS.{date}_s1d_A_DRS_{o.drs_version}_ESOSDP.fits",
             "Original file name"),
        card("UT", _clock((o.start_ms // 1000 - 5) % 86400), "UT at start"),
        card("ST", _clock(float(astro.lst_deg(o.mjd_obs - 5 / 86400)) * 240.0), "ST at start"),
        card("AIRMASS", Num(f"{o.airmass:.5f}"), "Averaged air mass"),
        card("IMAGETYP", o.dpr_type, "Observation type"),
        card("ORIGIN", "ESO", "European Southern Observatory"),
        card("TELESCOP", harps.TELESCOPE, "ESO Telescope Name"),
        card("M_EPOCH", False, "T if resulting from multiple epochs"),
        card("SINGLEXP", True, "T if resulting from single exposure"),
        card("PRODLVL", 2, "Product level: 1-raw 2-science grade 3-advanced"),
        card("DISPELEM", "HARPS Echelle", "Dispersive element name"),
        card("SPECSYS", "BARYCENT", "Reference frame"),
        card("OBJECT", o.star.name, "Object"),
        card("TEXPTIME", Num(f"{o.exptime:.4f}"), "[s] Total integration time of all exposures"),
        card("EXT_OBJ", False, "T if extended"),
        card("MJD-END", Num(f"{o.mjd_end:.8f}"), "[d] End of observation"),
        card("PROG_ID", o.prog_id, "ESO Programme ID"),
        card("OBID1", o.ob_id, "Observation block ID"),
        card("PROCSOFT", o.drs_version, "Data reduction software")]


def _phase3_spectrum(o: Observation, wave: np.ndarray, snr_file: float) -> list[str]:
    """Phase 3 keywords of the spectral product (ESO SDP standard, Table 8)."""
    step = float(np.median(np.diff(wave)))
    date = o.date_obs
    return [
        card("OBSTECH", "ECHELLE", "Observation technique"),
        card("PRODCATG", "SCIENCE.SPECTRUM", "Data product category"),
        card("FLUXCAL", "UNCALIBRATED", "Type of flux calibration"),
        card("CONTNORM", False, "T if normalised to the continuum"),
        card("WAVELMIN", float(wave[0]) / 10.0, "[nm] Minimum wavelength"),
        card("WAVELMAX", float(wave[-1]) / 10.0, "[nm] Maximum wavelength"),
        card("SPEC_BIN", round(step / 10.0, 10), "[nm] Wavelength bin size"),
        card("TOT_FLUX", False, "T if photom. cond. and all src flux captured"),
        card("FLUXERR", -1.0, "Uncertainty in flux scale (%)"),
        card("NCOMBINE", 1, "# of combined raw science data files"),
        card("REFERENC", "", "Bibliographic reference"),
        card("SNR", Num(f"{snr_file:.2f}"), "Median signal to noise"),
        card("SPEC_RES", harps.RESOLVING_POWER, "Reference spectral resolving power"),
        card("GAIN", exposure.GAIN, "Conversion from electrons to ADU"),
        card("DETRON", exposure.READ_NOISE_CCD, "Readout noise per output (e-)"),
        card("ASSOC1", "ANCILLARY.HARPSTAR", "Associated file 1 category"),
        card("ASSON1", f"HARPS.{date}_DRS_{o.drs_version}.tar", "Associated file 1"),
        card("ASSOM1", f"{rngmod.mix64(o.start_ms):016x}{rngmod.mix64(o.arc_ms):016x}",
             "Associated file 1 md5sum"),
        card("PROV1", f"HARPS.{date}.fits", "Originating file name"),
    ]


def _hierarch(o: Observation, sn_orders: np.ndarray) -> list[str | bytes]:
    """OBS ... DRS sets in the order of a real ADP header."""
    var = eso_instrument.variant(o.seed, o.night)
    return (eso_instrument.obs_tpl_dpr(o) + eso_instrument.tel_ada(o)
            + eso_instrument.ins_dynamic(o) + [eso_instrument.ins_static(o.seed, var)]
            + eso_instrument.det_cards(o)
            + eso_drs.drs_cards(o, sn_orders, exposure.GAIN, exposure.READ_NOISE_CCD)
            + [hcard(harps.SYNTHETIC_KEYWORD, True, "made by harps_synth, not ESO data")])


def adp_primary_cards(o: Observation, wave: np.ndarray, snr_file: float,
                      sn_orders: np.ndarray) -> list[str | bytes]:
    """Cards of the ADP primary header (without CHECKSUM/DATASUM and END)."""
    head = [card("SIMPLE", True, "file does conform to FITS standard"),
            card("BITPIX", 8, "number of bits per data pixel"),
            card("NAXIS", 0, "number of data axes"),
            card("EXTEND", True, "FITS dataset may contain extensions"),
            card("COMMENT", comment="  FITS (Flexible Image Transport System) format is defined in"
                 " 'Astronomy"),
            card("COMMENT", comment="  and Astrophysics', volume 376, page 359; bibcode:"
                 " 2001A&A...376..359H"),
            card("DATE", astro.iso_ms(_written_ms(o)), "Date this file was written")]
    return (head + _common_top(o) + _phase3_origin(o) + _phase3_spectrum(o, wave, snr_file)
            + _hierarch(o, sn_orders)
            + [card("ARCFILE", o.arcfile, "Archive File Name"),
               card("P3ORIG", "IDP", "ESO internal data product")])


def _column_cards(i: int, column: tuple, n: int, unit_wave: str, err_mode: str,
                  limits: tuple[float, float] | None) -> list[str]:
    name, code, utype, ucd, unit, comment = column
    cards = [card(f"TUTYP{i}", utype), card(f"TUCD{i}", ucd, "Air wavelength" if i == 1 else ""),
             card(f"TUNIT{i}", unit or unit_wave),
             card(f"TCOMM{i}", comment or ERR_COMMENTS[err_mode])]
    if limits is not None:
        cards += [card(f"TDMIN{i}", limits[0]), card(f"TDMAX{i}", limits[1])]
    return cards


def adp_extension_cards(o: Observation, wave: np.ndarray, flux: np.ndarray, err: np.ndarray,
                        err_mode: str) -> list[str]:
    """Cards of the SPECTRUM binary-table header (without CHECKSUM/DATASUM and END)."""
    n = len(wave)
    s = o.star
    cards = [card("XTENSION", "BINTABLE", "binary table extension"),
             card("BITPIX", 8, "array data type"), card("NAXIS", 2, "number of array dimensions"),
             card("NAXIS1", 16 * n, "length of dimension 1"),
             card("NAXIS2", 1, "length of dimension 2"),
             card("PCOUNT", 0, "number of group parameters"), card("GCOUNT", 1, "number of groups"),
             card("TFIELDS", 3, "number of table fields")]
    for i, col in enumerate(_VO_COLUMNS, start=1):
        cards += [card(f"TTYPE{i}", col[0]), card(f"TFORM{i}", f"{n}{col[1]}")]
    cards += [
        card("VOCLASS", "SPECTRUM v1.0", "VO Data Model"),
        card("VOPUB", "ESO/SAF", "VO Publishing Authority"),
        card("EXTNAME", "SPECTRUM", "Extension Name"),
        card("INHERIT", True, "Primary HDU inherited"),
        card("TITLE", f"{s.name}_HARPS.{o.date_obs}_s1d_A"), card("OBJECT", s.name, "Object"),
        card("RA", Num(f"{s.ra:.6f}"), "[deg] Right ascension"),
        card("DEC", Num(f"{s.dec:.5f}"), "[deg] Declination"),
        card("APERTURE", Num(f"{harps.APERTURE_DEG:.8f}"), "[deg] Aperture diameter"),
        card("TELAPSE", Num(f"{o.exptime:.4f}"), "[s] Total elapsed time"),
        card("TMID", Num(f"{0.5 * (o.mjd_obs + o.mjd_end):.8f}"), "[d] MJD mid exposure"),
        card("NELEM", n, "Length of the data arrays"),
        card("SPEC_VAL", (float(wave[0]) + float(wave[-1])) / 20.0, "[nm] Mean wavelength"),
        card("SPEC_BW", (float(wave[-1]) - float(wave[0])) / 10.0, "[nm] Bandpass width")]
    unit_wave = "Angstrom" if o.drs_version == "HARPS_3.5" else "angstrom"
    good = np.isfinite(err)
    err_limits = (float(err[good].min()), float(err[good].max())) if err_mode == "real" else None
    for i, (col, limits) in enumerate(zip(
            _VO_COLUMNS, ((float(wave[0]), float(wave[-1])),
                          (float(flux.min()), float(flux.max())), err_limits), strict=True), 1):
        cards += _column_cards(i, col, n, unit_wave, err_mode, limits)
    return cards


def adp_bytes(o: Observation, wave: np.ndarray, flux: np.ndarray, err: np.ndarray,
              err_mode: str = "nan") -> bytes:
    """A complete ADP file.

    Parameters
    ----------
    o : Observation
    wave : numpy.ndarray
        Shape ``(N,)``, Angstrom, increasing.
    flux, err : numpy.ndarray
        Shape ``(N,)``, adu, as returned by :func:`harps_synth.spectrum.render`
        (``err`` the true noise; NaN in the CCD gap).
    err_mode : str
        ``"nan"`` writes ERR as all NaN (like real ADPs), ``"real"`` writes ``err``.

    Returns
    -------
    bytes
        Primary HDU and SPECTRUM extension, both with valid checksums.
    """
    good = np.isfinite(err) & (err > 0)
    snr_file = float(np.median(flux[good] / err[good]))
    sn_orders = order_snr(wave, flux, err)
    err_out = np.full(len(wave), np.nan, np.float32) if err_mode == "nan" else err
    primary = hdu_bytes(adp_primary_cards(o, wave, snr_file, sn_orders), b"")
    row = b"".join([wave.astype(">f8").tobytes(), flux.astype(">f4").tobytes(),
                    err_out.astype(">f4").tobytes()])
    ext = hdu_bytes(adp_extension_cards(o, wave, flux, err_out, err_mode), row)
    return primary + ext


def s1d_bytes(o: Observation, wave: np.ndarray, flux: np.ndarray, err: np.ndarray) -> bytes:
    """A DRS s1d file: float32 image, linear wavelength WCS, stale DATASUM.

    Parameters are as for :func:`adp_bytes` (``err`` only feeds the S/N keywords).
    """
    step = float(wave[1] - wave[0])
    cards = [card("SIMPLE", True, "file does conform to FITS standard"),
             card("BITPIX", -32, "number of bits per data pixel"),
             card("NAXIS", 1, "number of data axes"),
             card("NAXIS1", len(wave), "length of data axis 1"),
             card("EXTEND", True, "FITS dataset may contain extensions"),
             card("CRPIX1", Num("1."), "Reference pixel"),
             card("CRVAL1", Num(fmt_float(float(wave[0]), 12)), "Coordinate at reference pixel"),
             card("CDELT1", Num(fmt_float(step, 12)), "Coordinate increment par pixel"),
             card("CTYPE1", "Angstrom", "Units of coordinate"),
             card("BUNIT", "Relative Flux", "Units of data values"),
             card("ORIGIN", "TEST", "European Southern Observatory"),
             card("DATE", astro.iso_ms(o.start_ms + int(o.exptime * 1000) + 40_000),
                  "UT date when this file was written"),
             card("TELESCOP", harps.TELESCOPES[1], "ESO Telescope Name"),
             card("OBJECT", o.star.name, "Original target.")]
    cards += _common_top(o) + [card("PI-COI", f"SynthPI{o.star.programme:03d}", "PI-COI name.")]
    cards += _hierarch(o, order_snr(wave, flux, err))
    cards.append(card("DATASUM", "0", "data unit checksum (stale, as in DRS files)"))
    return hdu_bytes(cards, flux.astype(">f4").tobytes(), checksum=False)
