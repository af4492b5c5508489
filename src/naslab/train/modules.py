"""Which LightningModule trains a network for a task, and how its validation metric becomes a score.

Stand-alone search trials and final training both train one network from scratch; only the module
differs with the task: `ClassifierModule` for images (Trainer-side gradient clipping) and
`LanguageModelModule` for language models (manual optimisation, so it clips itself).
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
from torch import nn

from naslab.spaces.base import Task
from naslab.train.classifier import ClassifierModule
from naslab.train.language_model import LanguageModelModule
from naslab.train.objectives import perplexity_reward

CLASSIFIER_OPTIONS = (
    "lr",
    "momentum",
    "weight_decay",
    "auxiliary_weight",
    "drop_path_prob",
    "channels_last",
    "compile",
    "label_smoothing",
    "optimizer",
    "scheduler",
)


def training_module(
    task: Task, network: nn.Module, epochs: int, options: Mapping[str, Any]
) -> tuple[L.LightningModule, dict[str, Any]]:
    """(module, Trainer keyword arguments) that train `network` on `task` for `epochs` epochs.

    `options` holds lr, weight_decay, grad_clip and, for images, momentum / auxiliary_weight / ...;
    for text, `lm` (alpha, beta, bptt, nonmono, asgd).
    """
    if task.kind == "text":
        module = LanguageModelModule(
            network,
            lr=options["lr"],
            weight_decay=options["weight_decay"],
            grad_clip=options["grad_clip"],
            epochs=epochs,
            **(options.get("lm") or {}),
        )
        return module, {"precision": "32-true"}  # manual optimisation would clip before unscaling
    kwargs = {k: options[k] for k in CLASSIFIER_OPTIONS if options.get(k) is not None}
    module = ClassifierModule(network, task.num_classes, epochs=epochs, **kwargs)
    return module, {"gradient_clip_val": options["grad_clip"]}


def validation_score(task: Task, metrics: Mapping[str, Any]) -> tuple[float, dict[str, float]]:
    """(score, extras) from a Trainer's validation metrics: accuracy, or 80 / perplexity for text.

    A classifier's extras hold the last epoch's training accuracy (running, in training mode, as
    Keras reports it) when it was logged: NASES's reward weighs the generalisation gap (Liu's NASES paper, Eq. 1).
    """
    if task.kind == "text":
        ppl = float(metrics["val/ppl"])
        return perplexity_reward(ppl), {"perplexity": ppl}
    extras = {"train_accuracy": float(metrics["train/acc"])} if "train/acc" in metrics else {}
    return float(metrics["val/acc"]), extras


def test_metrics(task: Task, module: L.LightningModule, metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """results.json's test fields (and a language model's best validation perplexity) after testing."""
    if task.kind == "text":
        assert isinstance(module, LanguageModelModule)
        return {
            "test_accuracy": None,
            "test_perplexity": float(metrics["test/ppl"]),
            "valid_perplexity": module.best_valid_perplexity(),
        }
    return {"test_accuracy": float(metrics["test/acc"]), "test_perplexity": None}
