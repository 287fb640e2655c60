"""Typed records the learned layer writes and the service reads: one module for both.

Three JSON files cross from the model side (``ml``, torch) to the service
side (``harps_service``, inside DaCHS):

* :class:`CheckpointInfo`: what a checkpoint says about itself
  (``python -m ml.checkpoint describe``, written by :func:`ml.checkpoint.describe`);
* :class:`AnalysisSummary`: ``summary.json`` of ``harps-analyse``
  (:func:`ml.analysis.run`), published as ``analysis.json``;
* :class:`ModelDescription`: ``model.json`` of a published model
  (``harps-latents publish``), read by the RD (z columns, TAP examples), the
  grammars of ``harps.latents`` and ``harps.models`` and the model card.

They are frozen dataclasses, written with :func:`write` and read with
:func:`read` (or ``Record.from_dict``): a key that is missing, renamed or
unknown fails when the file is read, in the unit tests, instead of at
publication.  The JSON layout is unchanged from the untyped dicts the
records replace, so published models stay readable.  Torch-free (DaCHS
imports this).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A JSON file that does not hold the record it should, naming what is wrong."""


class Record:
    """Mixin: strict conversion from and to JSON-ready dicts (nested records too)."""

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        """Build the record from a dict; unknown or missing keys raise RecordError."""
        if not isinstance(d, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        missing = sorted(n for n, f in fields.items() if n not in d
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise RecordError(f"{cls.__name__}: unknown keys {unknown}, missing keys {missing}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _convert(hints[k], v) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (nested records become dicts)."""
        return dataclasses.asdict(self)


def _convert(hint: Any, value: Any) -> Any:
    """Nested records and lists of records from their dicts; other values as they are."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    return value


# ---------------------------------------------------------------------------
# What a checkpoint says about itself
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointInfo(Record):
    """A JSON-ready summary of a checkpoint (``ml.checkpoint.describe``).

    Grid, training options, seeds and code version are the checkpoint's own
    dicts; counts are None when the checkpoint lacks them.
    """

    preset: str
    latent_dim: int
    n_parameters: int
    conv_channels: list[int]
    fc_hidden: list[int]
    grid_step: float
    #: the preprocessing grid: wave_min, wave_max, step, npix, padded
    grid: dict[str, Any]
    frame: str
    normalisation: str
    train_config: dict[str, Any]
    seeds: dict[str, Any]
    step: int
    epoch: int | None
    n_files: int | None
    n_train: int | None
    n_val: int | None
    n_stars_train: int | None
    n_stars_val: int | None
    n_flagged: int | None
    file_list_sha256: str | None
    final_train_loss: float | None
    final_val_recon: float | None
    best_val_recon: float | None
    world_size: int | None
    code: dict[str, Any]
    created: str | None
    #: SHA-256 of the checkpoint file (added by ``describe`` on the command line)
    sha256: str | None = None


# ---------------------------------------------------------------------------
# harps-analyse: summary.json
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Criteria(Record):
    """When a latent dimension counts as informative (fractions of the largest)."""

    mad_fraction: float
    response_fraction: float
    #: whether the decoder-response criterion was applied (needs the checkpoint)
    decoder_response: bool


@dataclass(frozen=True)
class InformativeDim(Record):
    """One informative latent dimension, as the analysis measured it."""

    dim: int
    #: median absolute deviation of mu over the archive, prior units
    mad: float
    #: decoder response, or None without a checkpoint
    response: float | None
    #: mutual information with each label (short name), nats, KSG estimator
    mi_ksg: dict[str, float]
    description: str


@dataclass(frozen=True)
class AnalysisSummary(Record):
    """``summary.json`` of ``harps-analyse``: what the latent dimensions mean."""

    model_id: str | None
    n_spectra: int
    #: "held-out stars" or "all stars (in-sample)"
    evaluation: str
    n_evaluation_stars: int
    latent_dim: int
    criteria: Criteria
    n_informative: int
    n_generative_parameters: int
    #: most informative (largest MAD) first
    informative: list[InformativeDim]
    #: basis ("latent", "pca") -> label -> best MI over dimensions, nats
    best_mi_ksg: dict[str, dict[str, float]]
    #: basis -> label -> median |error| of a 10-nearest-neighbour label estimate
    knn10_median_abs_error: dict[str, dict[str, float]]


# ---------------------------------------------------------------------------
# harps-latents publish: model.json
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelAnalysis(Record):
    """The part of :class:`AnalysisSummary` a published model carries."""

    evaluation: str
    n_evaluation_stars: int
    n_informative: int
    n_generative_parameters: int
    best_mi_ksg: dict[str, dict[str, float]]
    knn10_median_abs_error: dict[str, dict[str, float]]
    criteria: Criteria

    @classmethod
    def of(cls, summary: AnalysisSummary) -> ModelAnalysis:
        return cls(**{f.name: getattr(summary, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class ZColumn(Record):
    """An informative dimension as a column of harps.latents (``z1`` the most informative)."""

    dim: int
    column: str
    description: str


@dataclass(frozen=True)
class ModelDescription(Record):
    """``model.json``: a published model, as the RD, the grammars and the model card see it."""

    model_id: str
    #: the checkpoint's file name in the model directory
    checkpoint: str
    ckpt_sha256: str
    #: publication time, ISO 8601, UTC
    created: str
    preset: str
    latent_dim: int
    n_parameters: int
    grid_step: float
    #: one line on the training data
    train_data: str
    n_train_spectra: int | None
    training: CheckpointInfo
    analysis: ModelAnalysis
    informative: list[ZColumn] = field(default_factory=list)

    @classmethod
    def of(cls, *, model_id: str, ckpt_sha256: str, created: str, train_data: str,
           info: CheckpointInfo, summary: AnalysisSummary,
           checkpoint: str = "model.ckpt") -> ModelDescription:
        """The description of a model from its checkpoint and its analysis.

        The z columns are ranked as in the analysis (largest MAD first).
        """
        return cls(
            model_id=model_id, checkpoint=checkpoint, ckpt_sha256=ckpt_sha256, created=created,
            preset=info.preset, latent_dim=info.latent_dim, n_parameters=info.n_parameters,
            grid_step=info.grid_step, train_data=train_data, n_train_spectra=info.n_train,
            training=info, analysis=ModelAnalysis.of(summary),
            informative=[ZColumn(dim=d.dim, column=f"z{rank}",
                                 description=f"Informative latent coordinate no. {rank}: "
                                             + d.description)
                         for rank, d in enumerate(summary.informative, 1)])


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

def write(record: Record, path: str | os.PathLike) -> None:
    """Write a record as indented JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record.to_dict(), f, indent=1)


def read(kind: type[R], path: str | os.PathLike) -> R:
    """Read a record of type ``kind``; RecordError names the file and the keys."""
    with open(path, encoding="utf-8") as f:
        try:
            return kind.from_dict(json.load(f))
        except RecordError as ex:
            raise RecordError(f"{path}: {ex}") from None
