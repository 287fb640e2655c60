"""Synthetic HARPS archive: labelled, seeded, physically motivated test data.

It makes ESO Phase 3 ADP (and DRS s1d) files indistinguishable in format
from the real archive, plus a label catalogue with the ground truth, so the
service and the learned layer can be tested and benchmarked.

Modules, in the order the data flow through them:

:mod:`~harps_synth.config`        run settings (:class:`SynthConfig`)
:mod:`~harps_synth.catalogue`     stars and programmes (:func:`make_catalogue`)
:mod:`~harps_synth.observations`  dates, conditions, S/N (:class:`ObservationPlanner`,
                               :func:`iter_observations`)
:mod:`~harps_synth.astro`         site geometry, BERV, BJD
:mod:`~harps_synth.lines`, :mod:`~harps_synth.telluric`   line data
:mod:`~harps_synth.physics`, :mod:`~harps_synth.features`, :mod:`~harps_synth.kernels`
                               line formation, profiles, curve of growth
:mod:`~harps_synth.profile`, :mod:`~harps_synth.coarse`   the two rendering modes
:mod:`~harps_synth.spectrum`      spectra on any grid (:func:`render`), noise
:mod:`~harps_synth.eso_instrument`, :mod:`~harps_synth.eso_drs`, :mod:`~harps_synth.products`
                               headers and FITS bytes
:mod:`~harps_synth.fitswrite`     FITS cards and checksums
:mod:`~harps_synth.labels`, :mod:`~harps_synth.archive`, :mod:`~harps_synth.cli`
                               label CSV, archive writer, ``harps-synth``

Command line: ``harps-synth --out DIR -n 1000 --seed 1`` (or ``python -m
harps_synth``); ``--step 1.0`` for header-heavy benchmark files.

Typical use (ground truth in ``obs.star`` and ``label_dict(obs)``)::

    from harps_data import harps
    from harps_synth import iter_observations, label_dict, render

    wave = harps.archive_grid(0.05)
    for obs in iter_observations(20_000, seed=1, today=datetime.date(2026, 11, 21)):
        flux, err = render(obs, wave)        # adu, shape (len(wave),)
        truth = label_dict(obs)              # teff_k, logg_cgs, mh_dex, ...
"""

from __future__ import annotations

from harps_synth.archive import ArchiveSummary, write_archive, write_archive_config
from harps_synth.catalogue import Catalogue, Star, make_catalogue
from harps_synth.config import ConfigError, SynthConfig
from harps_synth.labels import label_dict
from harps_synth.observations import Observation, ObservationPlanner, iter_observations, planner_for
from harps_synth.spectrum import SpectrumParams, normalized_spectrum, render

__all__ = [
    "ArchiveSummary", "Catalogue", "ConfigError", "Observation", "ObservationPlanner",
    "SpectrumParams", "Star", "SynthConfig", "iter_observations", "label_dict",
    "make_catalogue", "normalized_spectrum", "planner_for", "render", "write_archive",
    "write_archive_config",
]
