"""mode=export: a trained run dir becomes files that compute the trained network's logits without the run dir.

Each test trains a real (debug=fast, about a second) final network in-process and exports it; the expected
logits come from the training module itself (`ClassifierModule` with last.ckpt's weights, channels-last as
trained) on a real test batch, not from the export code.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from naslab.errors import ConfigError
from naslab.export import TrainedNetwork, export_run
from naslab.pipeline import run
from naslab.spaces.base import Task
from naslab.train.classifier import ClassifierModule

# the test's own torch.jit.load; the export silences its deprecation warnings itself
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Tiny networks: one intra-op thread (see conftest)."""


def trained_run(compose_cfg: Callable[..., DictConfig], run_dir: Path, *overrides: str) -> DictConfig:
    """A mode=train run of a genotype sampled from the chosen space, with the `.hydra/config.yaml` that
    `python run.py` would have written (unresolved `${hydra:...}` output dir included)."""
    cfg = compose_cfg("debug=fast", "mode=train", *overrides, run_dir=run_dir)
    space = instantiate(cfg.space)
    genotype_path = run_dir.parent / f"{run_dir.name}_genotype.json"
    space.save_genotype(space.sample(np.random.default_rng(0)), genotype_path)
    cfg.genotype = str(genotype_path)
    results = run(cfg)
    assert results["final"]["test_accuracy"] is not None
    hydra_cfg = copy.deepcopy(cfg)
    hydra_cfg.paths.output_dir = "${hydra:runtime.output_dir}"
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(hydra_cfg, run_dir / ".hydra" / "config.yaml")
    return cfg


def trained_logits(cfg: DictConfig, run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(a real test batch, the logits of the training module that last.ckpt restores)."""
    datamodule = instantiate(cfg.dataset.datamodule, phase="final")
    datamodule.prepare_data()
    datamodule.setup("test")
    x, _ = next(iter(datamodule.test_dataloader()))
    task = Task(
        datamodule.num_classes, tuple(datamodule.input_shape), cfg.dataset.stem, getattr(datamodule, "kind", "image")
    )
    space = instantiate(cfg.space)
    genotype = space.genotype_from_dict(json.loads((run_dir / "genotype.json").read_text())["genotype"])
    network = space.build_child(
        genotype,
        task,
        channels=cfg.train.channels,
        cells_per_stage=cfg.train.cells_per_stage,
        auxiliary=cfg.train.auxiliary_weight > 0,
    )
    module = ClassifierModule(network, task.num_classes, channels_last=cfg.train.channels_last)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    with torch.no_grad():
        return x, module(x)


def max_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor) -> float:
    return float((torch.as_tensor(a) - b).abs().max())


@pytest.mark.parametrize(
    ("overrides", "space_name"),
    [
        # a cell network trained with an auxiliary head (dropped by the export) in channels-last layout
        (("space=micro_small", "dataset=digits", "train.auxiliary_weight=0.4"), "micro"),
        (("space=mlp", "dataset=wine"), "mlp"),  # tabular: feature vectors, dropout layers
        (("space=macro", "space.num_layers=3", "dataset=digits"), "macro"),
    ],
    ids=["micro_small-digits", "mlp-wine", "macro-digits"],
)
def test_export_computes_the_trained_logits(
    compose_cfg, tmp_path: Path, overrides: tuple[str, ...], space_name
) -> None:
    run_dir = tmp_path / "run"
    cfg = trained_run(compose_cfg, run_dir, *overrides)
    results = export_run(run_dir)
    x, expected = trained_logits(cfg, run_dir)

    export_dir = run_dir / "export"
    assert results["dir"] == str(export_dir.resolve())
    assert results["files"] == {
        "checkpoint": str(export_dir.resolve() / "model.ckpt"),
        "torchscript": str(export_dir.resolve() / "model.ts"),
        "onnx": None,
    }
    trained = json.loads((run_dir / "results.json").read_text())
    assert results["space"] == space_name and results["genotype"] == trained["genotype"]
    assert results["params"] == trained["final"]["params"]  # the inference network: no auxiliary head
    assert 0.0 <= results["max_abs_diff"] <= 1e-4

    scripted = torch.jit.load(results["files"]["torchscript"])  # traced with batch 2; x is a bigger batch
    loaded = TrainedNetwork.load_from_checkpoint(results["files"]["checkpoint"])  # no config, no data
    assert not loaded.training  # ready for inference as loaded
    with torch.no_grad():
        assert max_diff(scripted(x), expected) <= 1e-5
        assert max_diff(loaded(x), expected) <= 1e-5
        fresh = TrainedNetwork(**loaded.hparams)  # same hyperparameters, untrained weights
        assert max_diff(fresh(x), expected) > 1e-3

    checkpoint = torch.load(results["files"]["checkpoint"], map_location="cpu", weights_only=True)
    genotype_data = json.loads((run_dir / "genotype.json").read_text())["genotype"]
    assert checkpoint["hyper_parameters"]["genotype"] == genotype_data
    assert checkpoint["hyper_parameters"]["space"] == OmegaConf.to_container(cfg.space, resolve=True)
    assert checkpoint["hyper_parameters"]["task"]["input_shape"] == list(x.shape[1:])
    # neither the training module's nor a compile wrapper's names, nor the training-only auxiliary head
    assert all(k.startswith("network.") and "_orig_mod" not in k for k in checkpoint["state_dict"])
    assert not any(k.startswith("network.auxiliary_head.") for k in checkpoint["state_dict"])
    assert all(v.is_contiguous() for v in checkpoint["state_dict"].values())  # NCHW, whatever the training layout


@pytest.mark.slow  # 5-11 s on 2 busy cores: torch.export + the ONNX optimiser, even for a tiny network
@pytest.mark.skipif(not HAS_ONNX, reason="pip install onnx onnxscript onnxruntime")
def test_onnx_export_runs_any_batch_size_in_onnxruntime(compose_cfg, tmp_path: Path) -> None:
    import onnxruntime

    run_dir = tmp_path / "run"
    cfg = trained_run(compose_cfg, run_dir, "space=micro_small", "dataset=digits")
    out_dir = tmp_path / "deploy"
    results = export_run(run_dir, formats=["onnx"], out_dir=out_dir)
    assert results["files"]["onnx"] == str(out_dir.resolve() / "model.onnx") and results["files"]["torchscript"] is None
    assert results["max_abs_diff"] <= 1e-4
    assert not (run_dir / "export").exists()
    x, expected = trained_logits(cfg, run_dir)
    session = onnxruntime.InferenceSession(results["files"]["onnx"], providers=["CPUExecutionProvider"])
    for batch in (1, len(x)):  # traced with 2: the batch dimension is dynamic
        logits = session.run(None, {"x": x[:batch].numpy()})[0]
        assert logits.shape == (batch, 10) and max_diff(logits, expected[:batch]) <= 1e-4


def fake_run(run_dir: Path, *present: str, cfg: DictConfig | None = None) -> Path:
    """A run dir holding only the named files (what a crashed or search-only run leaves)."""
    contents = {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg) if cfg is not None else "mode: train\n",
        "genotype.json": json.dumps({"space": "rnn", "genotype": {}}),
        "checkpoints/last.ckpt": "",
    }
    for name in present:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(contents[name])
    return run_dir


@pytest.mark.parametrize(
    ("present", "message"),
    [
        ((), r"has no \.hydra/config\.yaml: export the run dir that `python run.py mode=train`"),
        ((".hydra/config.yaml",), r"has no genotype\.json; export a mode=train or mode=search_train run"),
        (
            (".hydra/config.yaml", "genotype.json"),  # e.g. a mode=search run
            r"holds no trained network \(checkpoints/last\.ckpt\); export a mode=train or mode=search_train run",
        ),
    ],
)
def test_a_run_dir_without_a_trained_network_is_one_clear_error(tmp_path: Path, present, message) -> None:
    run_dir = fake_run(tmp_path / "run", *present)
    run_dir.mkdir(exist_ok=True)
    with pytest.raises(ValueError, match=message) as error:
        export_run(run_dir)
    assert str(run_dir) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="is not a directory"):
        export_run(tmp_path / "nowhere")


def test_unknown_format_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown export.formats \['tflite'\]; allowed: torchscript, onnx"):
        export_run(tmp_path, formats=["torchscript", "tflite"])


def test_onnx_without_its_packages_names_the_pip_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"needs onnxscript: pip install onnx==1.23.2 onnxscript==0.7.2"):
        export_run(tmp_path, formats="onnx")


def test_language_models_are_refused(compose_cfg, tmp_path: Path) -> None:
    """RNN language models keep a hidden state between token windows: no `logits = net(x)` to export."""
    cfg = compose_cfg("dataset=ptb", "space=rnn", "paths.data_dir=/nonexistent")
    run_dir = fake_run(tmp_path / "run", ".hydra/config.yaml", "genotype.json", "checkpoints/last.ckpt", cfg=cfg)
    with pytest.raises(ValueError, match=r"trained a language model \(dataset=ptb\): export supports image and"):
        export_run(run_dir)


def test_a_config_that_builds_another_network_is_refused(compose_cfg, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trained_run(compose_cfg, run_dir, "space=micro_small", "dataset=digits")
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    config.train.channels = 6  # trained with 4 (debug=fast)
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    with pytest.raises(ValueError, match=r"last\.ckpt does not fit the network .* of another shape"):
        export_run(run_dir)


def test_a_checkpoint_cannot_instantiate_anything_but_a_naslab_space(compose_cfg, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trained_run(compose_cfg, run_dir, "space=mlp", "dataset=wine")
    path = Path(export_run(run_dir)["files"]["checkpoint"])
    checkpoint: dict[str, Any] = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["space"] = {"_target_": "os.system", "command": "echo pwned"}
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="_target_=os.system; an exported network's space must be naslab's"):
        TrainedNetwork.load_from_checkpoint(path)
