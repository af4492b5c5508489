"""The composed configuration: every preset runs with debug=fast, cluster configs compose, multirun works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from naslab.pipeline import run
from tests.conftest import CONF_DIR, REPO_ROOT
from tests.fake_data import write_cifar10, write_fashion_mnist_raw, write_imagefolder, write_text_corpus

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def fake_data_for(dataset: str, data_dir: Path) -> None:
    """Tiny real-format copies of the data sets that are not embedded (none is needed for digits)."""
    if dataset == "cifar10":
        write_cifar10(data_dir)
    elif dataset == "fashion_mnist":
        write_fashion_mnist_raw(data_dir)
    elif dataset == "imagenet":
        write_imagefolder(data_dir, classes=1000, train=1, val=1)
    elif dataset in ("ptb", "wikitext2"):
        write_text_corpus(data_dir, dataset)


def probe_fast_epochs(preset: str) -> int:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return int(compose(config_name="config", overrides=[f"experiment={preset}", "debug=fast"]).strategy.epochs)


def test_presets_exist() -> None:
    expected = {"random_digits", "random_fashion_mnist", "random_cifar10", "darts_v2_cifar10", "darts_v2_imagenet"}
    assert expected | {"darts_v1", "darts_v2"} <= set(PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_with_debug_fast(compose_cfg, tmp_path, preset) -> None:
    assert (Path(CONF_DIR) / "experiment" / f"{preset}.yaml").read_text().startswith("# @package _global_")
    data_dir = tmp_path / "data"
    probe = compose_cfg(f"experiment={preset}")
    fake_data_for(probe.dataset.name, data_dir)
    cfg = compose_cfg(
        f"experiment={preset}",
        "debug=fast",
        f"paths.data_dir={data_dir}",
        "dataset.datamodule.source_dir=null" if probe.dataset.name == "fashion_mnist" else "seed=0",
    )
    results = run(cfg)  # benchmarks/preset_times.py times this ("about a minute on 2 cores")
    assert results["dataset"] == probe.dataset.name and results["mode"] == probe.mode
    space = probe.space._target_.rsplit(".", 1)[-1]
    pictures = {
        "MacroSpace": ("macro.png",),
        "RNNSpace": ("rnn_cell.png",),
        "MLPSpace": (),
        "NASESSpace": ("nases.png",),
    }.get(space, ("normal.png", "reduce.png"))
    for name in ("results.json", "genotype.json", "archive.jsonl", *pictures):
        assert (tmp_path / "run" / name).exists()
    if probe.mode in ("train", "search_train"):
        test_metric = "test_perplexity" if probe.dataset.stem == "text" else "test_accuracy"
        assert results["final"][test_metric] is not None
    if probe.mode in ("search", "search_train"):
        if results["strategy"] in ("epnas", "pnas"):  # debug: one progression of K = 2 through every level
            levels = probe.space.get("num_layers") or probe.space.num_nodes
            assert results["search"]["num_evaluated"] >= 2 * levels
            assert (tmp_path / "run" / "progression.png").exists()
        elif results["strategy"] == "darts":  # one derivation per search epoch; no evaluator
            assert results["evaluator"] is None and results["search"]["num_evaluated"] == probe_fast_epochs(preset)
        elif results["evaluator"] in ("standalone", "table", "bigram"):
            assert results["search"]["num_evaluated"] == 2  # debug=fast: two architectures
        else:  # weight sharing also archives every strategy-phase score, then 2 derived architectures
            assert results["search"]["num_evaluated"] > 2


def test_debug_fast_shrinks_and_defaults_are_paper_recipes(compose_cfg) -> None:
    cifar = compose_cfg("dataset=cifar10")
    assert (cifar.train.channels, cifar.train.cells_per_stage, cifar.train.epochs) == (36, 6, 600)
    assert (cifar.train.auxiliary_weight, cifar.train.drop_path_prob, cifar.train.cutout) == (0.4, 0.2, 16)
    assert cifar.dataset.datamodule.search_valid_size == 5000
    fast = compose_cfg("dataset=cifar10", "debug=fast")
    assert fast.train.epochs == 1 and fast.search.num_architectures == 2 and fast.trainer.limit_train_batches == 2
    assert "debug" not in compose_cfg()  # the debug group is empty by default: it changes nothing
    plain, imagenet = compose_cfg(), compose_cfg("dataset=imagenet")
    assert plain.train.scheduler._target_.endswith("CosineAnnealingLR") and plain.train.label_smoothing == 0
    assert imagenet.train.scheduler._target_.endswith("StepLR") and imagenet.train.label_smoothing == 0.1


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        ("gpu", {"accelerator": "gpu", "devices": 1}),
        ("ddp", {"accelerator": "gpu", "strategy": "ddp"}),
        ("cpu", {"accelerator": "cpu"}),
    ],
)
def test_trainer_configs_compose(compose_cfg, trainer, expected) -> None:
    cfg = compose_cfg(f"trainer={trainer}")
    assert cfg.trainer._target_ == "lightning.Trainer"
    assert {k: cfg.trainer[k] for k in expected} == expected
    if trainer == "cpu":
        assert instantiate(cfg.trainer, max_epochs=1, logger=False).max_epochs == 1


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("joblib", "JoblibLauncher"),
        ("local", "JoblibLauncher"),
        ("submitit_slurm", "SlurmLauncher"),
        ("slurm", "SlurmLauncher"),
    ],
)
def test_launchers_compose(launcher, target) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "local":
        assert cfg.hydra.launcher.n_jobs == 2
    if launcher == "slurm":
        assert cfg.hydra.launcher.timeout_min == 1440 and cfg.hydra.launcher.gpus_per_node == 1


@pytest.mark.parametrize("logger", ["csv", "wandb"])
def test_loggers_write_to_the_run_dir_offline(compose_cfg, tmp_path, monkeypatch, logger) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: W&B must go offline, not prompt
    cfg = compose_cfg("debug=fast")
    cfg_with_logger = compose_cfg("debug=fast", f"logger={logger}")
    cfg.logger = cfg_with_logger.logger
    run(cfg)
    run_dir = tmp_path / "run"
    if logger == "csv":
        metrics = (run_dir / "csv" / "metrics.csv").read_text()
        for key in ("search/score", "search/best_so_far", "train/loss", "test/acc", "final/test_accuracy"):
            assert key in metrics
    else:
        runs = list((run_dir / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
        images = {p.parent.name + "/" + p.name.split("_")[0] for p in (runs[0] / "files" / "media").rglob("*.png")}
        assert {"genotype/normal", "genotype/reduce", "search/search"} <= images
        tables = list((runs[0] / "files" / "media" / "table" / "search").glob("archive_*.table.json"))
        assert len(tables) == 1 and len(json.loads(tables[0].read_text())["data"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_over_seeds(tmp_path, launcher) -> None:
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "seed=0,1",
        "mode=search",
        "debug=fast",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]
    if launcher == "joblib":
        cmd.append("hydra/launcher=local")
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seeds = sorted(json.loads((sweep / str(i) / "results.json").read_text())["seed"] for i in range(2))
    assert seeds == [0, 1]


def test_wandb_run_is_closed_after_an_error(compose_cfg, tmp_path, monkeypatch) -> None:
    import wandb

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = compose_cfg("debug=fast", "mode=train")  # no genotype: fails after the logger started
    cfg.logger = compose_cfg("logger=wandb").logger
    with pytest.raises(ValueError, match="needs genotype"):
        run(cfg)
    assert wandb.run is None


@pytest.mark.parametrize("space", sorted(p.stem for p in (Path(CONF_DIR) / "space").glob("*.yaml")))
def test_every_space_config_builds_networks(compose_cfg, space) -> None:
    import numpy as np
    import torch

    from naslab.spaces import Task

    built = instantiate(compose_cfg(f"space={space}").space)
    genotype = built.sample(np.random.default_rng(0))
    built.validate(genotype)
    if space.startswith("rnn"):  # language models: tokens (T, B) -> next-word logits (T, B, vocabulary)
        net = built.build_child(genotype, Task(10, (), "text", "text"), emb_size=4).eval()
        assert net(torch.randint(10, (3, 2))).logits.shape == (3, 2, 10)
        return
    net = built.build_child(genotype, Task(10, (3, 16, 16)), channels=4, cells_per_stage=1).eval()
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
