"""harps_data.records: the model description and analysis summary, typed and strict."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from harps_data import records
from harps_data.records import (
    AnalysisSummary,
    CheckpointInfo,
    Criteria,
    InformativeDim,
    ModelDescription,
    RecordError,
)
from ml import checkpoint
from ml.model import ModelConfig, SpectrumVAE
from ml.preprocess import Recipe


def _summary() -> AnalysisSummary:
    dims = [InformativeDim(dim=d, mad=mad, response=0.5, mi_ksg={"Teff": 1.0},
                           description=f"Latent dimension {d}")
            for d, mad in ((4, 0.9), (1, 0.3))]
    return AnalysisSummary(
        model_id="tiny-z16-abc", n_spectra=40, evaluation="all stars (in-sample)",
        n_evaluation_stars=20, latent_dim=16,
        criteria=Criteria(mad_fraction=0.05, response_fraction=0.05, decoder_response=True),
        n_informative=2, n_generative_parameters=6, informative=dims,
        best_mi_ksg={"latent": {"Teff": 1.0}}, knn10_median_abs_error={"latent": {"Teff": 90.0}})


@pytest.fixture(scope="module")
def info(tmp_path_factory) -> CheckpointInfo:
    """What a real (tiny, untrained) checkpoint says about itself, through JSON."""
    torch.manual_seed(0)
    config = ModelConfig.from_preset("tiny")
    model = SpectrumVAE(config)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    checkpoint.save(path, model_config=config.as_dict(), model_state=model.state_dict(),
                    optimizer_state={}, recipe=Recipe(config.grid).describe(), step=0, epoch=0,
                    data={"file_list_sha256": "0" * 64})
    described = checkpoint.describe(checkpoint.load(path))
    assert isinstance(described, CheckpointInfo)
    return CheckpointInfo.from_dict(json.loads(json.dumps(described.to_dict(), default=str)))


def test_a_written_summary_reads_back_equal(tmp_path):
    records.write(_summary(), tmp_path / "summary.json")
    assert records.read(AnalysisSummary, tmp_path / "summary.json") == _summary()


def test_a_renamed_or_missing_key_fails_when_read(tmp_path):
    d = _summary().to_dict()
    d["n_informative_dims"] = d.pop("n_informative")
    (tmp_path / "summary.json").write_text(json.dumps(d))
    with pytest.raises(RecordError, match=r"summary.json: AnalysisSummary: unknown keys "
                                          r"\['n_informative_dims'\], missing keys "
                                          r"\['n_informative'\]"):
        records.read(AnalysisSummary, tmp_path / "summary.json")
    d = _summary().to_dict()
    del d["informative"][0]["mad"]
    with pytest.raises(RecordError, match=r"InformativeDim: .*missing keys \['mad'\]"):
        AnalysisSummary.from_dict(d)


def test_the_model_description_ranks_z_columns_as_the_analysis(info, tmp_path):
    model = ModelDescription.of(model_id="tiny-z16-abc", ckpt_sha256="f" * 64,
                                created="2026-12-01T00:00:00", train_data="40 spectra",
                                info=info, summary=_summary())
    assert [(z.column, z.dim) for z in model.informative] == [("z1", 4), ("z2", 1)]
    assert model.informative[0].description.startswith("Informative latent coordinate no. 1: ")
    assert (model.preset, model.latent_dim) == ("tiny", 16)
    assert model.analysis.n_informative == 2 and model.analysis.criteria.decoder_response
    records.write(model, tmp_path / "model.json")
    assert records.read(ModelDescription, tmp_path / "model.json") == model
    # the checkpoint's sha256 is optional (added by `python -m ml.checkpoint describe`)
    with_sha = dataclasses.replace(info, sha256="e" * 64)
    assert CheckpointInfo.from_dict(with_sha.to_dict()).sha256 == "e" * 64
