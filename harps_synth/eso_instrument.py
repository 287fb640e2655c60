"""The observatory and instrument ``HIERARCH ESO`` keywords of a HARPS product.

Real ADP primary headers carry about 3000 cards.  This module regenerates
the OBS/TPL/DPR (observation block), TEL/ADA (telescope, ambient
conditions, including the water vapour as ``TEL AMBI IWV START/END``),
INS (instrument set-up and telemetry, 43 temperature sensors) and DET
(CCD) sets with the keyword names, comments and layout of the real 2014
ADP; values are synthetic.  :mod:`harps_synth.eso_drs` adds the DRS set.

Observation-dependent cards are formatted per file.  The telemetry block
describes the instrument on a night: it comes from ``N_VARIANTS`` seeded
variants chosen by the night (every exposure of a night shares it) and
each variant is formatted once per process and cached as bytes.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from harps_data import harps
from harps_synth import astro
from harps_synth import rng as rngmod
from harps_synth.fitswrite import Num, hcard
from harps_synth.observations import Observation

N_VARIANTS = 16
#: (number, ID, name) of the INS temperature sensors of HARPS.
TEMP_SENSORS = (
    (1, "CFAS", "HCFA air temperature"), (2, "IODS", "Iodine cell temperature"),
    (3, "PA101", "VV inside top"), (4, "PA102", "VV inside bottom"),
    (5, "PA103", "VV inside right"), (6, "PA104", "VV inside left"),
    (7, "PA105", "VV inside Detector side"), (8, "PA106", "VV inside Collimator side"),
    (9, "PA107", "Image Scrambler inside VV"), (10, "PA108", "CFC inside VV"),
    (11, "PA209", "Opt. Bench top-Detector"), (12, "PA210", "Opt. Bench bottom-Detector"),
    (13, "PA211", "Opt. Bench top-left"), (14, "PA212", "Opt. Bench bottom-Collimator"),
    (15, "PA213", "Opt. Bench top-right"), (16, "PA214", "Opt. Bench bottom-right"),
    (17, "PA215", "Opt. Bench top-Collimator"), (18, "PA216", "Opt. Bench bottom-left"),
    (19, "PA2RA", "Opt. Bench Spare 1"), (20, "PA1RB", "VV inside Spare 1 - not conn."),
    (21, "PB101", "Fiber Exit"), (22, "PB102", "Collimator"), (23, "PB103", "Echelle Grating"),
    (24, "PB104", "Grism"), (25, "PB105", "Camera Optics Detector side"),
    (26, "PB106", "Camera Optics Collimator side"), (27, "PB107", "Detector-Head body back"),
    (28, "PB108", "Detector-Head holding ring"), (29, "PB209", "VV outside Foot S2"),
    (30, "PB210", "Air-Coude room W"), (31, "PB211", "Air-HARPS Enclosure"),
    (32, "PB212", "Air-HARPS Isolation Box"), (33, "PB213", "Air-through Fan 4 IB"),
    (34, "PB214", "Image Scrambler outside VV"), (35, "PB215", "CFC outside VV"),
    (36, "PB216", "VV outside Detector side"), (37, "PB2RA", "VV outside Collimator side"),
    (38, "PB1RB", "Spectrograph Spare 2"), (40, "CCD1", "CCD control reference"),
    (41, "CCD2", "CCD secondary"), (42, "IBX1", "Isolation box control reference"),
    (43, "IBX2", "Isolation box secondary"),
)
_TEMP_FIELDS = (
    ("DETCOEF", "RMS of linear regression slope."), ("GRAD", "Linear regression slope."),
    ("ID", "Temperature sensor ID."), ("LRCONST", "Linear regression constant."),
    ("LRRMS", "Linear regression RMS."), ("MAX", "Maximum value."), ("MEAN", "Average value."),
    ("MIN", "Minimum value."), ("NAME", "Temperature sensor name."),
    ("RMS", "RMS of samples over exposure."), ("VAL", "Temperature sensor numeric value."))
#: Typical readings of the sensors that are not near 17 C (iodine cell off: 9999).
_TEMP_BASE = {1: 18.47, 2: 9999.0, 30: 15.17, 31: 15.23, 40: 148.17, 41: 148.23}


def order_centres() -> np.ndarray:
    """Central wavelengths (Angstrom) of the 72 DRS orders, bluest first, shape ``(72,)``."""
    m = np.arange(harps.ORDER_BLUEST, harps.ORDER_REDDEST - 1, -1)
    m = m[m != harps.ORDER_IN_GAP]
    return harps.ECHELLE_CONSTANT / m


def variant(seed: int, night: int) -> int:
    """Calibration/telemetry variant used on a night."""
    return rngmod.mix64(rngmod.key64(seed, rngmod.CALIBRATION) ^ night) % N_VARIANTS


def _f(value: float, fmt: str) -> Num:
    return Num(format(value, fmt))


def _sexagesimal(value_deg: float, hours: bool) -> Num:
    """ESO TARG ALPHA/DELTA coding: hhmmss.sss or +-ddmmss.ss as a number."""
    v = value_deg / 15.0 if hours else abs(value_deg)
    d = int(v)
    m = int((v - d) * 60)
    s = (v - d - m / 60.0) * 3600.0
    text = f"{d:02d}{m:02d}{s:06.3f}" if hours else f"{d:02d}{m:02d}{s:05.2f}"
    return Num(("-" if value_deg < 0 and not hours else "") + text)


def obs_tpl_dpr(o: Observation) -> list[str]:
    """OBS, TPL and DPR keywords (observation block, template, data type)."""
    start = astro.iso_ms(o.start_ms - 20_000)[:19]
    tpl = astro.iso_ms(o.start_ms - 7_000)[:19]
    return [
        hcard("ESO OBS DID", "ESO-VLT-DIC.OBS-1.11", "OBS Dictionary"),
        hcard("ESO OBS GRP", "HARPS", "linked blocks"),
        hcard("ESO OBS ID", o.ob_id, "Observation block ID"),
        hcard("ESO OBS NAME", f"OB_{o.star.name}", "OB name"),
        hcard("ESO OBS PI-COI ID", 0, "ESO internal PI-COI ID"),
        hcard("ESO OBS PI-COI NAME", _pi(o), "PI-COI name"),
        hcard("ESO OBS PROG ID", o.prog_id, "ESO program identification"),
        hcard("ESO OBS START", start, "OB start time"),
        hcard("ESO OBS TARG NAME", o.star.name, "OB target name"),
        hcard("ESO OBS TPLNO", 2, "Template number within OB"),
        hcard("ESO TPL DID", "ESO-VLT-DIC.TPL-1.9", "Data dictionary for TPL"),
        hcard("ESO TPL EXPNO", 1, "Exposure number within template"),
        hcard("ESO TPL ID", "HARPS_ech_obs_all", "Template signature ID"),
        hcard("ESO TPL NAME", "HARPS_ech_obs_objA", "Template name"),
        hcard("ESO TPL NEXP", 1, "Number of exposures within template"),
        hcard("ESO TPL PRESEQ", "HARPS_ech_obs_all.seq", "Sequencer script"),
        hcard("ESO TPL START", tpl, "TPL start time"),
        hcard("ESO TPL VERSION", "1.0", "Version of the template"),
        hcard("ESO DPR CATG", "SCIENCE", "Observation category"),
        hcard("ESO DPR TECH", "ECHELLE", "Observation technique"),
        hcard("ESO DPR TYPE", o.dpr_type, "Observation type"),
    ]


def _pi(o: Observation) -> str:
    return f"SynthPI{o.star.programme:03d}"


def _tel_conditions(o: Observation) -> list[str]:
    """TEL keywords of the exposure: airmass, pointing, seeing, water vapour, weather."""
    rhum = float(np.clip(8.0 * o.pwv, 3.0, 95.0))
    return [
        hcard("ESO TEL AIRM END", _f(o.airmass_end, ".3f"), "Airmass at end"),
        hcard("ESO TEL AIRM START", _f(o.airmass_start, ".3f"), "Airmass at start"),
        hcard("ESO TEL ALT", _f(o.alt_start, ".3f"), "Alt angle at start (deg)"),
        hcard("ESO TEL AMBI FWHM END", _f(o.seeing_end, ".2f"),
              "Observatory Seeing queried from AS"),
        hcard("ESO TEL AMBI FWHM START", _f(o.seeing_start, ".2f"),
              "Observatory Seeing queried from AS"),
        hcard("ESO TEL AMBI IWV END", _f(o.pwv_end, ".2f"), "[mm] Integrated water vapour at end"),
        hcard("ESO TEL AMBI IWV START", _f(o.pwv_start, ".2f"),
              "[mm] Integrated water vapour at start"),
        hcard("ESO TEL AMBI PRES END", _f(773.4, ".2f"), "Observatory ambient air pressure q"),
        hcard("ESO TEL AMBI PRES START", _f(773.4, ".2f"), "Observatory ambient air pressure q"),
        hcard("ESO TEL AMBI RHUM", Num(f"{round(rhum)}."), "Observatory ambient relative humi"),
        hcard("ESO TEL AMBI TEMP", _f(12.0 + 4.0 * math.sin(o.night / 58.1), ".2f"),
              "Observatory ambient temperature qu"),
        hcard("ESO TEL AMBI WINDDIR", Num(f"{(o.night * 37) % 360}."),
              "Observatory ambient wind directio"),
        hcard("ESO TEL AMBI WINDSP", _f(2.0 + (o.night * 7919 % 900) / 100.0, ".2f"),
              "Observatory ambient wind speed que"),
        hcard("ESO TEL AZ", _f(o.az_start, ".3f"), "Az angle at start (deg) S=0,W=90"),
    ]


def _tel_static() -> list[str]:
    """TEL keywords of the telescope itself (TCS, focus, site)."""
    return [
        hcard("ESO TEL CHOP ST", False, "True when chopping is active"),
        hcard("ESO TEL DATE", "not set", "TCS installation date"),
        hcard("ESO TEL DID", "ESO-VLT-DIC.TCS", "Data dictionary for TEL"),
        hcard("ESO TEL DOME STATUS", "FULLY-OPEN", "Dome status"),
        hcard("ESO TEL FOCU ID", "CA", "Telescope focus station ID"),
        hcard("ESO TEL FOCU LEN", _f(28.914, ".3f"), "Focal length (m)"),
        hcard("ESO TEL FOCU SCALE", _f(7.12, ".3f"), "Focal scale (arcsec/mm)"),
        hcard("ESO TEL FOCU VALUE", _f(13.5, ".3f"), "M2 setting (mm)"),
        hcard("ESO TEL GEOELEV", Num(f"{harps.SITE_ELEVATION_M:.0f}."),
              "Elevation above sea level (m)"),
        hcard("ESO TEL GEOLAT", _f(harps.SITE_LAT_DEG, ".4f"), "Tel geo latitute (+=North) (deg)"),
        hcard("ESO TEL GEOLON", _f(harps.SITE_LON_DEG, ".4f"), "Tel geo longitude (+=East) (deg)"),
        hcard("ESO TEL ID", "v 6.0+", "TCS version number"),
    ]


def _tel_target(o: Observation) -> list[str]:
    """TEL keywords of the target, the Moon and the tracking; then ADA."""
    s = o.star
    moon_ra, moon_dec = astro.moon_radec(o.mjd_obs)
    rot = _f(89.9 + (o.night % 20) / 100.0, ".5f")
    return [
        hcard("ESO TEL MOON DEC", _f(moon_dec, ".5f"), "DEC (J2000) (deg)"),
        hcard("ESO TEL MOON RA", _f(moon_ra, ".6f"), "RA (J2000) (deg)"),
        hcard("ESO TEL OPER", "Synthetic", "Telescope Operator"),
        hcard("ESO TEL PARANG END", _f(o.parang_end, ".3f"), "Parallactic angle at end (deg)"),
        hcard("ESO TEL PARANG START", _f(o.parang_start, ".3f"),
              "Parallactic angle at start (deg)"),
        hcard("ESO TEL TARG ALPHA", _sexagesimal(s.ra, True), "Alpha coordinate for the target"),
        hcard("ESO TEL TARG COORDTYPE", "M", "Coordinate type (M=mean A=apparent)"),
        hcard("ESO TEL TARG DELTA", _sexagesimal(s.dec, False), "Delta coordinate for the target"),
        hcard("ESO TEL TARG EPOCH", _f(2000.0, ".3f"), "Epoch"),
        hcard("ESO TEL TARG EPOCHSYSTEM", "J", "Epoch system (default J=Julian)"),
        hcard("ESO TEL TARG EQUINOX", _f(2000.0, ".3f"), "Equinox"),
        hcard("ESO TEL TARG PARALLAX", _f(0.0, ".3f"), "Parallax"),
        hcard("ESO TEL TARG PMA", _f(0.0, ".6f"), "Proper Motion Alpha"),
        hcard("ESO TEL TARG PMD", _f(0.0, ".6f"), "Proper motion Delta"),
        hcard("ESO TEL TARG RADVEL", _f(s.rv, ".3f"), "Radial velocity"),
        hcard("ESO TEL TH M1 TEMP", _f(11.0 + 3.0 * math.sin(o.night / 58.1), ".2f"),
              "M1 superficial temperature"),
        hcard("ESO TEL TRAK STATUS", "NORMAL", "Tracking status"),
        hcard("ESO ADA ABSROT END", rot, "Abs rot angle at exp end (deg)"),
        hcard("ESO ADA ABSROT START", rot, "Abs rot angle at exp start (deg)"),
        hcard("ESO ADA GUID DEC", _f(0.0, ".5f"), "00:00:00.0 Guide star DEC J2000"),
        hcard("ESO ADA GUID RA", _f(0.0, ".6f"), "00:00:00.0 Guide star RA J2000"),
        hcard("ESO ADA GUID STATUS", "ON", "Status of autoguider"),
        hcard("ESO ADA POSANG", _f(0.0, ".5f"), "Position angle at start"),
    ]


def tel_ada(o: Observation) -> list[str]:
    """TEL and ADA keywords (alphabetical, as ESO writes them)."""
    return _tel_conditions(o) + _tel_static() + _tel_target(o)


def ins_dynamic(o: Observation) -> list[str]:
    """INS keywords that change with every exposure (ADC pointing, exposure meter)."""
    s = o.star
    counts = o.snr ** 2 / max(o.exptime, 1.0)
    cards = []
    for adc in ("ADC1", "ADC2"):
        cards += [hcard(f"ESO INS {adc} DEC", _sexagesimal(s.dec, False), "DEC (J2000) pointing"),
                  hcard(f"ESO INS {adc} END", _f((o.parang_end * 7.3) % 360, ".4f"),
                        "Position angle at end [deg]."),
                  hcard(f"ESO INS {adc} MODE", "AUTO", "ADC mode."),
                  hcard(f"ESO INS {adc} RA", _sexagesimal(s.ra, True), "RA (J2000) pointing")]
    cards += [hcard("ESO INS ADCS NAME", "IN", "ADC slide position."),
              hcard("ESO INS ADCS NO", 2, "ADC slide position."),
              hcard("ESO INS DATE", "2000-06-16", "Instrument release date (yyyy-mm-dd)")]
    for det, scale in (("DET1", 1.0), ("DET2", 0.0075)):
        mean = counts * scale * 22.0
        rows = (("CTMAX", Num(f"{round(mean * 1.33)}."), "Maximum count during exposure."),
                ("CTMEAN", _f(mean, ".1f"), "Average counts during exposure."),
                ("CTMIN", Num(f"{round(mean * 0.01)}."), "Minimum count during exposure."),
                ("CTRMS", _f(mean * 0.32, ".2f"), "RMS of counts during exposure."),
                ("CTTOT", Num(f"{round(mean * o.exptime)}."), "Total counts during exposure."),
                ("OFFDRK", Num("0."), "Average dark background counts."),
                ("OFFSKY", Num(f"{round(scale * 800) + 1}."), "Average sky background counts."),
                ("TMMEAN", _f(0.44, ".2f"), "Normalised mean exposure time."),
                ("UIT", _f(1.0, ".3f"), "User defined Integration time [sec]"))
        cards += [hcard(f"ESO INS {det} {k}", v, c) for k, v, c in rows]
    return cards + [hcard("ESO INS DID", "ESO-VLT-DIC.HARPS_ICS-1.17", "Data dictionary for INS"),
                    hcard("ESO INS ID", "HARPS/1.56", "Instrument ID.")]


def _temperature_cards(rng: np.random.Generator) -> list[str]:
    cards = []
    for number, ident, name in sorted(TEMP_SENSORS, key=lambda t: str(t[0])):
        base = _TEMP_BASE.get(number, 17.05)
        val = base if number == 2 else base + rng.normal(0.0, 0.04)
        rms = abs(rng.normal(0.0, 0.0008))
        values = {"DETCOEF": _f(rng.uniform(0, 1), ".6f"), "GRAD": _f(rng.normal(0, 2e-6), ".6f"),
                  "ID": ident, "LRCONST": _f(val, ".6f"), "LRRMS": _f(rms / 2, ".6f"),
                  "MAX": _f(val + rms, ".6f"), "MEAN": _f(val, ".6f"), "MIN": _f(val - rms, ".6f"),
                  "NAME": name, "RMS": _f(rms, ".6f"), "VAL": _f(val, ".3f")}
        fields = _TEMP_FIELDS if number not in (19, 20) else [
            f for f in _TEMP_FIELDS if f[0] in ("ID", "NAME", "VAL")]
        cards += [hcard(f"ESO INS TEMP{number} {key}", values[key], comment)
                  for key, comment in fields]
    return cards


def _optics_cards() -> list[str]:
    optics = (("2", "HARPS", "1", "FIBHEAD"), ("3", "OUT", "2", "COVER"),
              ("4", "OUT", "1", "I2CELL"), ("5", "NONE", "4", "LAMPSELA"),
              ("6", "NONE", "4", "LAMPSELB"))
    cards = [hcard("ESO INS LAMP5 ID", "THAR2", "Lamp ID."),
             hcard("ESO INS LAMP5 NAME", "THAR2", "Lamp name."),
             hcard("ESO INS LAMP5 ST", True, "Lamp activated."),
             hcard("ESO INS LAMP7 ST", False, "Lamp activated."),
             hcard("ESO INS MIRR1 ID", "FIBB", "Mirror unique ID."),
             hcard("ESO INS MIRR1 NAME", "FIBB", "Mirror name."),
             hcard("ESO INS MIRR1 NO", 4, "Mirror slide position."),
             hcard("ESO INS MODE", "HARPS", "Instrument mode used.")]
    for num, ident, slot, kind in optics:
        cards += [hcard(f"ESO INS OPTI{num} ID", ident, "OPTIi unique ID."),
                  hcard(f"ESO INS OPTI{num} NAME", ident, "OPTIi name."),
                  hcard(f"ESO INS OPTI{num} NO", int(slot), "OPTIi slot number."),
                  hcard(f"ESO INS OPTI{num} TYPE", kind, "OPTIi element.")]
    return cards + [hcard("ESO INS PATH", "DEFAULT", "Optical path used."),
                    hcard("ESO INS ROT1 ENC", 71, "Absolute position [Enc]."),
                    hcard("ESO INS ROT1 POS", _f(0.023, ".3f"), "Density [density].")]


def _sensor_cards(rng: np.random.Generator) -> list[str]:
    cards = []
    for num, ident, name, base in ((1, "PRSS", "Vacuum vessel pressure", 0.0062),
                                   (2, "LNLV", "LN2 level", 41.8)):
        val = base * (1 + rng.normal(0, 0.01))
        rows = (("DETCOEF", _f(rng.uniform(0, 1), ".6f"), "RMS of linear regression slope."),
                ("GRAD", _f(rng.normal(0, 1e-4), ".6f"), "Linear regression slope."),
                ("ID", ident, "sensor ID."),
                ("LRCONST", _f(val, ".6f"), "Linear regression constant."),
                ("LRRMS", _f(abs(val) * 1e-3, ".6f"), "Linear regression RMS."),
                ("MAX", _f(val * 1.001, ".6f"), "Maximum value."),
                ("MEAN", _f(val, ".6f"), "Average value."),
                ("MIN", _f(val * 0.999, ".6f"), "Minimum value."),
                ("NAME", name, "sensor common name."),
                ("RMS", _f(abs(val) * 1e-3, ".6f"), "RMS of samples over exposure."),
                ("VAL", _f(val, ".6f"), "Sensor numeric value."))
        cards += [hcard(f"ESO INS SENS{num} {k}", v, c) for k, v, c in rows]
    cards += [hcard(f"ESO INS SENSOR{n} SWSIM", n == 2, "If T, function is software simulated.")
              for n in (2, 4, 5, 6, 7)]
    return cards + [hcard("ESO INS SHUT1 ID", "PMSH", "Shutter ID."),
                    hcard("ESO INS SHUT1 NAME", "PM_Shutter", "Shutter name."),
                    hcard("ESO INS SHUT1 ST", True, "Shutter open."),
                    hcard("ESO INS SWSIM", "NORMAL", "Software simulation.")]


@functools.lru_cache(maxsize=2 * N_VARIANTS)
def ins_static(seed: int, var: int) -> bytes:
    """INS lamps, optics, sensors and the 43 temperature sensors of a night variant."""
    rng = rngmod.stream(seed, rngmod.CALIBRATION, var, 0)
    cards = _optics_cards() + _sensor_cards(rng) + _temperature_cards(rng)
    return "".join(cards).encode("ascii")


_DET_HEAD = (
    ("BITS", 16, "Bits per pixel readout"), ("CHIPS", 2, "# of chips in detector array"),
    ("DATE", "2001-11-01", "Installation date"),
    ("DEC", Num("0.00000000"), "Apparent 00:00:00.0 DEC at start"),
    ("DID", "ESO-VLT-DIC.CCDDCS,ESO-VLT-DIC.FCDDCS", "Dictionary Name and Revision"))
_DET_MIDDLE = (
    ("EXP RDTTIME", Num("22.565"), "image readout time"), ("EXP TYPE", "Normal", "Exposure type"),
    ("EXP XFERTIM", Num("22.533"), "image transfer time"),
    ("FRAM ID", 1, "Image sequencial number"), ("FRAM TYPE", "Normal", "Type of frame"),
    ("ID", "CCD FIERA - Rev: 3.96", "Detector system Id"),
    ("NAME", "harps - Harps", "Name of detector system"), ("OUTPUTS", 2, "# of outputs"),
    ("OUTREF", 0, "reference output"), ("RA", Num("0.00000000"), "Apparent 00:00:00.0 RA at start"),
    ("READ CLOCK", "416kpx/rr", "Readout clock pattern used"),
    ("READ MODE", "normal", "Readout method"),
    ("READ NFRAM", 1, "Number of readouts buffered in single frame"),
    ("READ SPEED", "416kHz,1,high", "Readout speed"),
    ("SHUT ID", "SESO", "Shutter unique identifier"),
    ("SHUT TMCLOS", Num("0.037"), "Time taken to close shutter"),
    ("SHUT TMOPEN", Num("0.034"), "Time taken to open shutter"),
    ("SHUT TYPE", "IRIS", "type of shutter"), ("SOFW MODE", "Normal", "CCD sw operational mode"),
    ("TELE INT", Num("600.0"), "Interval between two successive telemetry"),
    ("TELE NO", 3, "# of sources active"))
_DET_TELEMETRY = ((1, "CCD Sensor1", "CCD T1", "150.70"), (2, "Box Temp", "EBOX T", "283.90"),
                  (3, "CCD Vacuum", "CCD Vacuum", "0.00"))


def det_cards(o: Observation) -> list[str]:
    """DET keywords: CCD system, read-out, the exposure's integration times; then OCS."""
    rows = list(_DET_HEAD) + [("EXP NO", o.ob_id % 90_000 + 1000, "Unique exposure ID number")]
    rows += _DET_MIDDLE
    for n, ident, name, value in _DET_TELEMETRY:
        rows += [(f"TLM{n} END", Num(value), "Telemetry value at read completion"),
                 (f"TLM{n} ID", ident, "ID of telemetry sensor"),
                 (f"TLM{n} NAME", name, "Description of telemetry param."),
                 (f"TLM{n} START", Num(value), "Telemetry value at read start")]
    rows += [("WIN1 BINX", 1, "Binning factor along X"), ("WIN1 BINY", 1, "Binning factor along Y"),
             ("WIN1 DIT1", _f(o.exptime, ".6f"), "actual subintegration time"),
             ("WIN1 DKTM", _f(o.exptime + 0.0854, ".4f"), "Dark current time"),
             ("WIN1 NDIT", 1, "# of subintegrations"), ("WIN1 NX", 4296, "# of pixels along X"),
             ("WIN1 NY", 4096, "# of pixels along Y"), ("WIN1 ST", True, "If T, window enabled"),
             ("WIN1 STRX", 1, "Lower left pixel in X"), ("WIN1 STRY", 1, "Lower left pixel in Y"),
             ("WIN1 UIT1", _f(round(o.exptime), ".6f"), "user defined subintegration time"),
             ("WINDOWS", 1, "# of windows readout")]
    cards = [hcard(f"ESO DET {k}", v, c) for k, v, c in rows]
    return cards + [hcard("ESO OCS DET1 IMGNAME", "HARPS_ech_obs_all", "Data File Name."),
                    hcard("ESO OCS DET1 NAMING", "Sequence-Naming", "Data File Naming Type.")]
