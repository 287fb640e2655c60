"""harps_site (deployment facts) and harps_service.rdcode (what the RDs' code calls)."""

from __future__ import annotations

import dataclasses

import harps_site
from harps_data import records
from harps_data.records import CheckpointInfo, Criteria, ModelAnalysis, ModelDescription, ZColumn
from harps_service import rdcode


def test_dachs_runs_as_the_admin_with_the_resource_bin_first_on_path(monkeypatch):
    monkeypatch.setattr(harps_site.os, "geteuid", lambda: 0)
    cmd = harps_site.dachs_command("imp", harps_site.RD_ID, path="/usr/bin")
    assert cmd == ["runuser", "-u", harps_site.DACHS_USER, "--", "env",
                   f"PATH={harps_site.resdir_of()}/bin:/usr/bin", "dachs", harps_site.DACHS_UI,
                   "imp", harps_site.RD_ID]


def test_without_root_dachs_runs_as_the_caller_and_nothing_is_chowned(monkeypatch, tmp_path):
    monkeypatch.setattr(harps_site.os, "geteuid", lambda: 1000)
    cmd = harps_site.dachs_command("test", harps_site.RD_ID, stingy=False, path="/bin")
    assert cmd[:3] == ["env", f"PATH={harps_site.bin_dir()}:/bin", "dachs"]
    assert harps_site.DACHS_UI not in cmd
    assert harps_site.owner_ids() is None
    harps_site.chown_to_dachs(tmp_path)  # a no-op, not an error


def test_resource_directory_and_schema_follow_the_rd_id():
    assert harps_site.schema_of("bench/q") == "bench"
    assert str(harps_site.resdir_of("bench/q")) == f"{harps_site.INPUTS_DIR}/bench"
    assert harps_site.EXAMPLE_ACCREF.startswith(f"{harps_site.RES_NAME}/data/")


def test_example_items_name_the_example_product():
    (item,) = rdcode.example_items()
    assert item["exampleAccref"] == harps_site.EXAMPLE_ACCREF
    assert item["exampleDID"].startswith("ivo://")
    assert item["exampleDID"].endswith(f"/~?{harps_site.EXAMPLE_ACCREF}")


def test_latent_columns_come_from_the_published_model(monkeypatch, tmp_path):
    assert list(rdcode.informative_items("nosuchresource/q")) == []
    assert list(rdcode.latent_origin_items("nosuchresource/q")) == []
    current = tmp_path / "scratch" / "models" / "current"
    current.mkdir(parents=True)
    info = CheckpointInfo(**{f.name: None for f in dataclasses.fields(CheckpointInfo)}
                          | {"conv_channels": [], "fc_hidden": []})
    analysis = ModelAnalysis(evaluation="", n_evaluation_stars=0, n_informative=2,
                             n_generative_parameters=0, best_mi_ksg={},
                             knn10_median_abs_error={}, criteria=Criteria(0.05, 0.05, False))
    records.write(ModelDescription(
        model_id="m", checkpoint="model.ckpt", ckpt_sha256="", created="", preset="tiny",
        latent_dim=4, n_parameters=1, grid_step=0.5, train_data="", n_train_spectra=1,
        training=info, analysis=analysis,
        informative=[ZColumn(3, "z1", "dim 3"), ZColumn(0, "z2", "dim 0")]),
        current / "model.json")
    monkeypatch.setattr(harps_site, "INPUTS_DIR", str(tmp_path))
    assert list(rdcode.informative_items("scratch/q")) == [
        {"column": "z1", "dim": "3", "description": "dim 3"},
        {"column": "z2", "dim": "0", "description": "dim 0"}]
    assert list(rdcode.latent_origin_items("scratch/q")) == [
        {"origin": "0 0", "nDims": "2", "originCommas": "0,0"}]
