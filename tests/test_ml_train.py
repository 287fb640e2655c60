"""ml.train and ml.checkpoint: learning, exact resumption, torchrun, self-describing checkpoints."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support import REPO
from tiny_archive import make_archive

import ml
from ml import checkpoint, data, train
from ml.model import ModelConfig

TINY = ModelConfig.from_preset("tiny")
FAST = train.TrainConfig(epochs=15, batch_size=4, lr=2e-3, kl_ramp_steps=20, val_fraction=0.2,
                         seed=3)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """22 files: 6 stars with 1-6 observations each, plus one garbage file."""
    root = tmp_path_factory.mktemp("arch")
    files, labels = make_archive(root / "files")
    return root / "files", labels


@pytest.fixture(scope="module")
def trained(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    path = train.train([archive[0]], out, model_config=TINY, config=FAST, labels=archive[1],
                       progress=False, threads=1)
    return path, checkpoint.load(path)


def test_training_reduces_the_loss(trained):
    _, ckpt = trained
    tr = np.array(ckpt["losses"]["train"])
    per_epoch = -(-ckpt["data"]["n_train"] // FAST.batch_size)
    assert len(tr) == ckpt["step"] == 15 * per_epoch and ckpt["epoch"] == 15
    assert tr[-10:, 2].mean() < 0.3 * tr[:4, 2].mean()
    val = np.array(ckpt["losses"]["val"])
    assert len(val) == 15 and val[-3:, 1].mean() < 0.3 * val[0, 1]
    assert ckpt["best_val"] == val[:, 1].min()
    assert (Path(trained[0]).parent / "best.ckpt").exists()
    # the KL weight ramps linearly to kl_max
    assert tr[0, 4] == 0.0 and tr[10, 4] == pytest.approx(FAST.kl_max * 10 / 20)
    assert tr[-1, 4] == FAST.kl_max


def test_checkpoint_describes_itself(trained, archive):
    path, ckpt = trained
    assert ckpt["format"] == "harps-vo-vae" and ckpt["model_config"]["preset"] == "tiny"
    grid = ckpt["recipe"]["grid"]
    assert (grid["step"], grid["padded"], grid["npix"]) == (0.5, 6400, 6251)
    assert (grid["wave_min"], grid["wave_max"]) == (3785.0, 6910.0)
    assert ckpt["recipe"]["frame"] == "barycentric" and "median" in ckpt["recipe"]["normalisation"]
    assert ckpt["code"]["ml"] == ml.__version__ and "git" in ckpt["code"]
    assert ckpt["seeds"]["seed"] == 3 and ckpt["train_config"]["seed"] == 3
    assert len(ckpt["rng_states"]) == 1 and ckpt["optimizer_state"]["state"]
    d = ckpt["data"]
    paths = data.collect_inputs([archive[0]])
    assert d["file_list_sha256"] == data.file_list_sha256(paths)
    assert (d["n_files"], d["n_usable"], d["n_flagged"]) == (22, 21, 1)
    assert d["flagged"][0][0].endswith("SYN.garbage.fits") and d["flagged"][0][2] == "garbage"
    assert d["n_train"] + d["n_val"] == 21 and d["star_source"] == "labels"
    # the model comes back from the checkpoint alone
    model, recipe = checkpoint.build_model(ckpt)
    assert recipe.grid.padded == 6400 and not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  ckpt["model_state"].values(), strict=True))


def test_split_by_star_holds_in_the_run(trained, archive):
    _, ckpt = trained
    with open(archive[1], newline="") as f:
        per_star = {}
        for row in csv.DictReader(f):
            per_star[row["star_id"]] = per_star.get(row["star_id"], 0) + 1
    val = ckpt["data"]["val_stars"]
    assert val and ckpt["data"]["n_val"] == sum(per_star[s] for s in val)


def test_resume_continues_exactly(archive, tmp_path):
    cfg = train.TrainConfig(max_steps=6, batch_size=4, val_fraction=0.2, seed=5)
    kw = {"model_config": TINY, "labels": archive[1], "progress": False, "threads": 1,
          "cache": tmp_path / "cache"}
    full = checkpoint.load(train.train([archive[0]], tmp_path / "a", config=cfg, **kw))
    half_cfg = train.TrainConfig(max_steps=3, batch_size=4, val_fraction=0.2, seed=5)
    half = train.train([archive[0]], tmp_path / "b", config=half_cfg, **kw)
    assert checkpoint.load(half)["batch_in_epoch"] == 3  # stopped inside epoch 0
    kw.pop("model_config")
    resumed = checkpoint.load(train.train([archive[0]], tmp_path / "b", resume=half,
                                          extend={"max_steps": 6}, **kw))
    assert resumed["step"] == full["step"] == 6 and resumed["epoch"] == full["epoch"] == 1
    assert resumed["losses"] == full["losses"]
    for k, v in full["model_state"].items():
        assert torch.equal(v, resumed["model_state"][k]), k


def test_resume_refuses_other_data_and_other_models(archive, trained, tmp_path):
    other = tmp_path / "other"
    make_archive(other, n_stars=2, per_star=(2,), garbage=False)
    with pytest.raises(data.DataError, match="trained on other files"):
        train.train([other], tmp_path / "o", resume=trained[0], progress=False, threads=1,
                    labels=other / "labels.csv")
    with pytest.raises(ValueError, match="--resume: the checkpoint's model"):
        train.train([archive[0]], tmp_path / "o", resume=trained[0], progress=False, threads=1,
                    model_config=ModelConfig.from_preset("fc2"))


def test_command_line_errors_name_the_culprit(archive, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert train.main([str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
    assert train.main([str(archive[0]), "--out", out, "--val-fraction", "1.5",
                       "--preset", "tiny", "--quiet", "--max-steps", "1"]) == 2
    assert "--val-fraction" in capsys.readouterr().err
    assert train.main([str(archive[0]), "--out", out, "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    assert train.main([str(archive[0]), "--out", out, "--resume", str(tmp_path / "x.ckpt")]) == 2
    assert "x.ckpt: checkpoint not found" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train.main([str(archive[0]), "--out", out, "--device", "cuda"]) == 2
        assert "--device cuda: no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main([str(archive[0]), "--out", out, "--preset", "huge"])


def test_torchrun_two_processes(archive, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    assert torchrun.exists(), f"{torchrun} missing"
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ml.train",
           str(archive[0]), "--labels", str(archive[1]), "--preset", "tiny",
           "--max-steps", "5", "--batch-size", "2", "--val-fraction", "0.2",
           "--out", str(out), "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           # both import roots of the checkout (ml; harps_data and harps_site)
           "PYTHONPATH": os.pathsep.join(str(REPO / root) for root in (".", "resdir/res"))}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    ckpt = checkpoint.load(out / "last.ckpt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 5 and len(ckpt["rng_states"]) == 2
    # the two processes drew different spectra: their random states differ
    assert not torch.equal(ckpt["rng_states"][0]["torch"], ckpt["rng_states"][1]["torch"])
    assert np.isfinite(np.array(ckpt["losses"]["train"])).all()


def test_trains_on_a_harps_synth_archive(tmp_path):
    import harps_synth as synth
    summary = synth.write_archive(tmp_path / "syn", 12, seed=2, step=0.5, fmt="both")
    path = train.train([tmp_path / "syn"], tmp_path / "run", model_config=TINY,
                       labels=summary.labels_path, progress=False, threads=1,
                       config=train.TrainConfig(max_steps=2, batch_size=4, val_fraction=0.3))
    d = checkpoint.load(path)["data"]
    assert d["n_files"] == 24 and d["n_flagged"] == 0
    # ADP and s1d of one exposure share a star, so they land on the same side
    with open(summary.labels_path, newline="") as f:
        rows = list(csv.DictReader(f))
    val = set(d["val_stars"])
    assert d["n_val"] == sum(r["star_id"] in val for r in rows)
