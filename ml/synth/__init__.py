"""Synthetic HARPS archive: labelled, seeded, physically motivated test data.

It makes ESO Phase 3 ADP (and DRS s1d) files indistinguishable in format
from the real archive, plus a label catalogue with the ground truth, so the
service and the learned layer can be tested and benchmarked.

Modules, in the order the data flow through them:

:mod:`~ml.synth.config`        run settings (:class:`SynthConfig`)
:mod:`~ml.synth.catalogue`     stars and programmes (:func:`make_catalogue`)
:mod:`~ml.synth.observations`  dates, conditions, S/N (:class:`ObservationPlanner`,
                               :func:`iter_observations`)
:mod:`~ml.synth.astro`         site geometry, BERV, BJD
:mod:`~ml.synth.lines`, :mod:`~ml.synth.telluric`   line data
:mod:`~ml.synth.physics`, :mod:`~ml.synth.features`, :mod:`~ml.synth.kernels`
                               line formation, profiles, curve of growth
:mod:`~ml.synth.profile`, :mod:`~ml.synth.coarse`   the two rendering modes
:mod:`~ml.synth.spectrum`      spectra on any grid (:func:`render`), noise
:mod:`~ml.synth.eso_instrument`, :mod:`~ml.synth.eso_drs`, :mod:`~ml.synth.products`
                               headers and FITS bytes
:mod:`~ml.synth.fitswrite`     FITS cards and checksums
:mod:`~ml.synth.labels`, :mod:`~ml.synth.archive`, :mod:`~ml.synth.cli`
                               label CSV, archive writer, ``harps-synth``

Command line: ``harps-synth --out DIR -n 1000 --seed 1`` (or ``python -m
ml.synth``); ``--step 1.0`` for header-heavy benchmark files.

Typical use (ground truth in ``obs.star`` and ``label_dict(obs)``)::

    from harps_data import harps
    from ml.synth import iter_observations, label_dict, render

    wave = harps.archive_grid(0.05)
    for obs in iter_observations(20_000, seed=1, today=datetime.date(2026, 11, 21)):
        flux, err = render(obs, wave)        # adu, shape (len(wave),)
        truth = label_dict(obs)              # teff_k, logg_cgs, mh_dex, ...
"""

from __future__ import annotations

from ml.synth.archive import ArchiveSummary, write_archive, write_archive_config
from ml.synth.catalogue import Catalogue, Star, make_catalogue
from ml.synth.config import ConfigError, SynthConfig
from ml.synth.labels import label_dict
from ml.synth.observations import Observation, ObservationPlanner, iter_observations, planner_for
from ml.synth.spectrum import SpectrumParams, normalized_spectrum, render

__all__ = [
    "ArchiveSummary", "Catalogue", "ConfigError", "Observation", "ObservationPlanner",
    "SpectrumParams", "Star", "SynthConfig", "iter_observations", "label_dict",
    "make_catalogue", "normalized_spectrum", "planner_for", "render", "write_archive",
    "write_archive_config",
]
