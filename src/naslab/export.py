"""Export of a trained final network (`mode=export`): files that run the network without naslab's run dir.

A run dir's `checkpoints/last.ckpt` only makes sense together with the run's composed config, its
genotype.json and the training module; it also carries optimizer state and, with `channels_last`,
NHWC weights. Export rebuilds the network from those three, loads the trained weights strictly (so a
config that no longer builds the same network fails here, not in production), drops the training-only
auxiliary head and writes, into `<run dir>/export/`:

- `model.ckpt`: a Lightning checkpoint of `TrainedNetwork`, whose hyperparameters are plain data (the
  space's Hydra config, the genotype, the task, the network sizes), so that
  `TrainedNetwork.load_from_checkpoint` alone rebuilds it: no config, no data, no run dir;
- `model.ts`: TorchScript (traced in eval mode), for `torch.jit.load` without naslab installed;
- `model.onnx`: ONNX with a dynamic batch dimension (needs `onnx`, `onnxscript`, `onnxruntime`).

Every exported file is loaded back and compared with the rebuilt network on a batch of another size
than the traced one (so a batch size baked into a trace fails too): `max_abs_diff` must stay <= 1e-4.

Inference with an export, e.g. of a digits run (inputs normalised as the dataset's test transform does)::

    import torch
    net = torch.jit.load("outputs/<run>/export/model.ts")
    logits = net(torch.randn(2, 1, 8, 8))  # a batch of the task's input shape (digits: 1 x 8 x 8)

or, with naslab installed, as a LightningModule (eval mode already; `Trainer.predict` works too)::

    from naslab.export import TrainedNetwork
    net = TrainedNetwork.load_from_checkpoint("outputs/<run>/export/model.ckpt", map_location="cpu")
    logits = net(torch.randn(2, *net.task.input_shape))

or with ONNX Runtime::

    import numpy as np, onnxruntime
    session = onnxruntime.InferenceSession("outputs/<run>/export/model.onnx")
    logits = session.run(None, {"x": np.random.randn(2, 1, 8, 8).astype(np.float32)})[0]

TorchScript is deprecated upstream (torch 2.14 warns on trace/save/load) but still the one file that runs
without Python in libtorch; those warnings are silenced here because the export is deliberate.

Language models (`space=rnn`, text datasets) are refused: their forward takes and returns a hidden
state and a token window, which needs a different export interface than a classifier's `logits = net(x)`.
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from naslab.errors import ConfigError
from naslab.spaces.base import Space, Task

log = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
TOLERANCE = 1e-4  # float32 rounding of the same computation in another runtime stays far below this
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_PIP = "pip install onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.31.1"
AUXILIARY_PREFIX = "auxiliary_head."  # the training-only head of cell networks (MicroNetwork)
TRACE_BATCH, CHECK_BATCH = 2, 3  # different sizes: the check proves that the batch dimension is not baked in


class TrainedNetwork(L.LightningModule):
    """A trained final network for inference: `forward(x)` returns the logits (eval mode, no auxiliary head).

    Its constructor takes plain data only, saved as the checkpoint's hyperparameters, so a checkpoint is
    self-contained: `TrainedNetwork.load_from_checkpoint(path)` rebuilds the network from them and loads
    the weights (also with torch's default `weights_only=True` loading, which refuses arbitrary objects).

    Args:
        space: the space's Hydra config (`_target_` and its arguments), as in the run's `.hydra/config.yaml`.
        genotype: the genotype's data, as in the run's `genotype.json` ("genotype").
        task: `Task` fields: num_classes, input_shape, stem, kind.
        network: `build_child`'s size keywords (channels, cells_per_stage, auxiliary, ...).
    """

    def __init__(self, space: dict[str, Any], genotype: Any, task: dict[str, Any], network: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        built = space_from_config(space)
        self.task = Task(**{**task, "input_shape": tuple(task["input_shape"])})
        self.network = built.build_child(built.genotype_from_dict(genotype), self.task, **network)
        self.example_input_array = torch.zeros(TRACE_BATCH, *self.task.input_shape)  # Lightning's to_onnx / summary
        # An exported network is for inference: BatchNorm on its running statistics and dropout off,
        # without every caller having to remember .eval() (a Trainer still switches modes as usual).
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """`Trainer.predict` on (x, y) batches of a naslab datamodule or on bare inputs: the logits."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)


def space_from_config(config: Mapping[str, Any]) -> Space[Any]:
    """The space a (checkpoint's) Hydra config describes; only naslab spaces are built.

    A checkpoint is data that may come from elsewhere: instantiating any `_target_` it names would run
    arbitrary code on loading, which torch's `weights_only` loading exists to prevent.
    """
    for target in _targets(config):
        if not str(target).startswith("naslab.spaces."):
            raise ConfigError(f"the space config names _target_={target}; an exported network's space must be naslab's")
    if not issubclass(get_class(str(config["_target_"])), Space):
        raise ConfigError(f"the space config's _target_={config['_target_']} is not a naslab search space")
    return instantiate(dict(config))


def _targets(node: Any) -> list[Any]:
    """Every `_target_` in a nested config (a space may wrap another, e.g. SubSpace's `base`)."""
    if isinstance(node, Mapping):
        own = [node["_target_"]] if "_target_" in node else []
        return own + [t for value in node.values() for t in _targets(value)]
    if isinstance(node, (list, tuple)):
        return [t for value in node for t in _targets(value)]
    return []


def export_run(run_dir: Path, formats: Sequence[str] = ("torchscript",), out_dir: Path | None = None) -> dict[str, Any]:
    """Exports the trained network of a mode=train / mode=search_train run dir; returns results.json's `export`.

    Writes `model.ckpt` always and `model.ts` / `model.onnx` as `formats` asks, into `out_dir`
    (default `<run_dir>/export`), after checking each file against the trained network.
    """
    run_dir = Path(run_dir)
    wanted = _formats(formats)  # before any work: a typo or a missing package fails at once
    cfg, genotype_file, last = _run_files(run_dir)
    if cfg.dataset.get("stem") == "text":
        raise ConfigError(
            f"{run_dir} trained a language model (dataset={cfg.dataset.name}): "
            "export supports image and tabular classifiers only"
        )

    space_config = OmegaConf.to_container(cfg.space, resolve=True)
    space = space_from_config(space_config)  # type: ignore[arg-type]
    saved = json.loads(genotype_file.read_text())
    if saved.get("space") not in (None, space.name):
        raise ConfigError(
            f"{genotype_file} belongs to space '{saved['space']}', but the run's config builds {space.name}"
        )
    task = _run_task(cfg)
    if task.kind == "text":
        raise ConfigError(f"{run_dir} trained a language model: export supports image and tabular classifiers only")
    train = cfg.train
    sizes: dict[str, Any] = {"channels": int(train.channels), "cells_per_stage": int(train.cells_per_stage)}
    if train.get("network"):  # a language model's sizes and dropouts, kept for spaces that read more keywords
        sizes.update(OmegaConf.to_container(train.network, resolve=True))  # type: ignore[arg-type]
    genotype = space.genotype_from_dict(saved["genotype"])
    trained = space.build_child(genotype, task, auxiliary=float(train.auxiliary_weight) > 0, **sizes)
    _load_trained_weights(trained, last)
    trained.eval()

    module = TrainedNetwork(
        space=space_config,  # type: ignore[arg-type]
        genotype=saved["genotype"],
        task={
            "num_classes": task.num_classes,
            "input_shape": list(task.input_shape),
            "stem": task.stem,
            "kind": task.kind,
        },
        network={**sizes, "auxiliary": False},
    )
    inference_weights = {k: v for k, v in trained.state_dict().items() if not k.startswith(AUXILIARY_PREFIX)}
    module.network.load_state_dict(inference_weights, strict=True)

    out_dir = (Path(out_dir) if out_dir is not None else run_dir / "export").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {"checkpoint": str(out_dir / "model.ckpt"), "torchscript": None, "onnx": None}
    torch.save(
        {
            "state_dict": {k: v.contiguous() for k, v in module.state_dict().items()},
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
            "epoch": 0,
            "global_step": 0,
        },
        files["checkpoint"],
    )
    example = torch.randn(TRACE_BATCH, *task.input_shape, generator=torch.Generator().manual_seed(0))
    if "torchscript" in wanted:
        files["torchscript"] = str(out_dir / "model.ts")
        with torch.no_grad(), _quiet_torchscript():
            torch.jit.save(torch.jit.trace(module.network, example), files["torchscript"])
    if "onnx" in wanted:
        files["onnx"] = str(out_dir / "model.onnx")
        _export_onnx(module.network, example, Path(files["onnx"]))

    diffs = _check_exports(trained, files, task)
    worst = max(diffs.values())
    if worst > TOLERANCE:
        detail = ", ".join(f"{name} {diff:.2e}" for name, diff in diffs.items())
        raise RuntimeError(f"exported network differs from the trained one by more than {TOLERANCE:g} ({detail})")
    log.info("exported %s to %s (max abs diff %.2e)", saved.get("readable"), out_dir, worst)
    return {
        "dir": str(out_dir),
        "files": files,
        "genotype": saved.get("readable", space.describe(genotype)),
        "space": space.name,
        "params": sum(p.numel() for p in module.network.parameters()),
        "max_abs_diff": worst,
    }


def _formats(formats: Sequence[str] | str) -> list[str]:
    """The requested formats, checked: known names, and the ONNX packages when ONNX is asked for."""
    wanted = [formats] if isinstance(formats, str) else [str(f) for f in formats]
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        raise ConfigError(
            f"unknown export.formats {unknown}; allowed: {', '.join(FORMATS)} (model.ckpt is always written)"
        )
    if "onnx" in wanted:
        missing = [name for name in ONNX_PACKAGES if not _importable(name)]
        if missing:
            raise ConfigError(f"export.formats=[onnx] needs {', '.join(missing)}: {ONNX_PIP}")
    return wanted


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _run_files(run_dir: Path) -> tuple[DictConfig, Path, Path]:
    """(composed config, genotype.json, last.ckpt) of a trained run dir, or a one-line error saying what is missing."""
    if not run_dir.is_dir():
        raise ConfigError(
            f"export.run={run_dir} is not a directory: give the run dir of a mode=train or search_train run"
        )
    config, genotype, last = (
        run_dir / ".hydra/config.yaml",
        run_dir / "genotype.json",
        run_dir / "checkpoints/last.ckpt",
    )
    if not config.exists():
        raise ConfigError(
            f"{run_dir} has no .hydra/config.yaml: export the run dir that `python run.py mode=train` "
            "or mode=search_train wrote"
        )
    if not genotype.exists():
        raise ConfigError(f"{run_dir} has no genotype.json; export a mode=train or mode=search_train run")
    if not last.exists():
        raise ConfigError(
            f"{run_dir} holds no trained network (checkpoints/last.ckpt); export a mode=train or mode=search_train run"
        )
    cfg = OmegaConf.load(config)
    assert isinstance(cfg, DictConfig)
    if "paths" in cfg:  # `${hydra:runtime.output_dir}` resolves only inside the Hydra app that wrote it
        cfg.paths.output_dir = str(run_dir)
    return cfg, genotype, last


def _run_task(cfg: DictConfig) -> Task:
    """The run's Task, computed from its datamodule as the pipeline did (image datamodules read no data for it)."""
    from naslab.stages.build import datamodule, task_of  # here: stages.final imports this module for mode=export

    return task_of(cfg, datamodule(cfg, "final"))


def _load_trained_weights(network: nn.Module, last: Path) -> None:
    """Loads the network's weights from a training checkpoint, strictly, with a one-line error on a mismatch.

    The training module holds the network as `network.`; torch.compile'd modules add `_orig_mod.`.
    Anything else (metric states) is not the network's.
    """
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    weights = {
        key.removeprefix("network.").replace("_orig_mod.", ""): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("network.")
    }
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or reshaped:
        raise ConfigError(
            f"{last} does not fit the network that the run's .hydra/config.yaml and genotype.json build: "
            f"{len(missing)} missing weights {missing[:2]}, {len(unexpected)} unexpected {unexpected[:2]}, "
            f"{len(reshaped)} of another shape {reshaped[:2]}"
        )
    network.load_state_dict(weights, strict=True)


@contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """No TorchScript deprecation warnings (see the module docstring) nor tracer warnings about Python
    values of shapes: a cell network's shapes are fixed per layer, only the batch size varies."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _export_onnx(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX through torch's exporter, the batch dimension dynamic (any batch size runs)."""
    batch = torch.export.Dim("batch")
    # onnxscript's optimizer logs every rewrite at INFO (hundreds of lines under Hydra's INFO root logger)
    for name in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.onnx.export(
        network,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        dynamo=True,  # torch.export-based (needs onnxscript); the TorchScript-based exporter is deprecated
        verbose=False,
    )


def _check_exports(trained: nn.Module, files: Mapping[str, str | None], task: Task) -> dict[str, float]:
    """Largest absolute logit difference of each exported file, loaded back, against the trained network."""
    x = torch.randn(CHECK_BATCH, *task.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trained(x)
        outputs = {"checkpoint": TrainedNetwork.load_from_checkpoint(files["checkpoint"], map_location="cpu")(x)}
        if files.get("torchscript"):
            with _quiet_torchscript():
                outputs["torchscript"] = torch.jit.load(files["torchscript"], map_location="cpu")(x)
    if files.get("onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"])
        outputs["onnx"] = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    return {name: float((out - expected).abs().max()) for name, out in outputs.items()}
