"""MLPNAS's "bigram" weight sharing: stand-alone children that inherit the weights of layer pairs seen before.

MLPNAS (the NAS overview by Minutoli et al., Sec. 4.1): "identical pairs of layers (also addressed as *bigrams*)
share weights connecting them. [...] we use a dictionary that stores bigrams of the layers sampled so
far and their corresponding weights, that will be transferred to newly sampled architectures whenever
the opportunity arises." Its Keras code keys that dictionary by (previous layer, this layer), each layer
written as (units, activation), the first layer's predecessor being "input" and dropout layers left out;
a child's Dense layers are set from the dictionary before training, and after training every layer
overwrites its bigram's entry (last writer wins; of two equal bigrams in one child, the later one).

Here, for a child of `MLPSpace`:
- the Linear layers, input to output, are keyed by bigrams of layer specs: ("input", in_features) for
  the data, (width, activation) for a hidden layer, ("output", num_classes) for the classifier; a
  layer's dropout bit is not part of its spec (MLPNAS's dropout layers have no weights and are skipped).
  The key fixes the Linear's shape, (width of this spec, width of the previous one).
- every child is seeded and built exactly as `StandaloneEvaluator` builds it; then each layer whose
  bigram is in the store is overwritten with the stored weight and bias (a copy: children never share
  tensors), the others keep their fresh initialisation. It is then trained by the stand-alone path
  (its Lightning Trainer, the same epochs) and, unless training failed, all its layers are written back.
- the store is resumable: `state_dict` / `load_state_dict`, and with `store_path` it is saved after
  every child and reloaded by an evaluator built with `resume=True` (conf/evaluator/bigram.yaml puts it
  in the run dir). A resumed search then initialises its next child exactly as the killed one would have.

Each Evaluation's extra holds `inherited_layers` (of `linear_layers`) and `stored_bigrams`. Children
depend on the ones before them, so trials run one after another: only `backend=local`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from torch import nn

from naslab.evaluators.base import Evaluation
from naslab.evaluators.standalone import StandaloneEvaluator
from naslab.spaces.base import Space, Task
from naslab.spaces.mlp.space import MLPGenotype, MLPNetwork, MLPSpace

__all__ = ["BigramEvaluator", "BigramStore", "bigram_keys", "linear_layers"]

LayerSpec = tuple[Any, int] | tuple[int, str]  # ("input", n) | (width, activation) | ("output", n)
BigramKey = tuple[LayerSpec, LayerSpec]
STORE_VERSION = 1


def bigram_keys(genotype: MLPGenotype, in_features: int, num_classes: int) -> list[BigramKey]:
    """(previous spec, this spec) of every Linear layer of the child, input to output (dropout ignored)."""
    specs: list[Any] = [("input", int(in_features))]
    specs += [(layer.width, layer.activation) for layer in genotype.layers]
    specs.append(("output", int(num_classes)))
    return list(zip(specs[:-1], specs[1:]))


def linear_layers(network: MLPNetwork) -> list[nn.Linear]:
    """The network's Linear layers in the order of `bigram_keys`: hidden layers, then the classifier."""
    return [m for m in network.body if isinstance(m, nn.Linear)] + [network.classifier]


class BigramStore:
    """Bigram key -> (weight, bias) of the Linear layer that last trained under that key (CPU copies)."""

    def __init__(self) -> None:
        self.entries: dict[BigramKey, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    @torch.no_grad()
    def inherit(self, keys: Sequence[BigramKey], layers: Sequence[nn.Linear]) -> list[bool]:
        """Copies the stored weights into every layer whose key is stored; which layers inherited."""
        inherited = []
        for key, layer in zip(keys, layers, strict=True):
            entry = self.entries.get(key)
            if entry is not None:
                layer.weight.copy_(entry[0])  # same shape by construction: the key fixes both widths
                layer.bias.copy_(entry[1])
            inherited.append(entry is not None)
        return inherited

    @torch.no_grad()
    def write(self, keys: Sequence[BigramKey], layers: Sequence[nn.Linear]) -> None:
        """Every layer overwrites its key's entry, in order: the last writer wins, as in MLPNAS."""
        for key, layer in zip(keys, layers, strict=True):
            self.entries[key] = (layer.weight.detach().cpu().clone(), layer.bias.detach().cpu().clone())

    def state_dict(self) -> dict[str, Any]:
        """Plain containers and tensors (loads with torch.load(weights_only=True)); keys as lists."""
        return {
            "version": STORE_VERSION,
            "bigrams": [
                {"key": [list(spec) for spec in key], "weight": weight.clone(), "bias": bias.clone()}
                for key, (weight, bias) in self.entries.items()
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STORE_VERSION:
            raise ValueError(f"bigram store version {state.get('version')!r}; this code reads {STORE_VERSION}")
        self.entries = {
            (tuple(entry["key"][0]), tuple(entry["key"][1])): (entry["weight"].clone(), entry["bias"].clone())
            for entry in state["bigrams"]
        }

    def save(self, path: Path) -> None:
        """Written to a temporary file, then renamed: a kill never leaves half a store."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        self.load_state_dict(torch.load(path, weights_only=True))


class BigramEvaluator(StandaloneEvaluator[MLPGenotype]):
    """Stand-alone training of each child, warm-started from the bigram store (MLPNAS, the NAS overview Sec. 4.1).

    Arguments are `StandaloneEvaluator`'s, plus `store_path` (where the store is saved after every child;
    None keeps it in memory) and `resume` (load `store_path` if it exists).
    """

    name = "bigram"

    def __init__(
        self,
        space: Space[MLPGenotype],
        task: Task,
        datamodule_factory: Callable[..., L.LightningDataModule],
        trainer_factory: Callable[..., L.Trainer],
        store_path: str | Path | None = None,
        resume: bool = False,
        backend: str = "local",
        **standalone: Any,
    ):
        if not isinstance(space, MLPSpace):
            raise ValueError(
                f"evaluator=bigram shares weights between MLP layer pairs: it needs space=mlp, got space={space.name}"
            )
        if backend != "local":
            raise ValueError(
                f"evaluator=bigram trains children one after another (each inherits from the ones before): "
                f"backend={backend} is not supported, use evaluator.backend=local"
            )
        super().__init__(space, task, datamodule_factory, trainer_factory, backend=backend, **standalone)
        self.store = BigramStore()
        self.store_path = None if store_path is None else Path(store_path)
        if resume and self.store_path is not None and self.store_path.exists():
            self.store.load(self.store_path)

    def state_dict(self) -> dict[str, Any]:
        return self.store.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.store.load_state_dict(state)

    def initial_network(self, genotype: MLPGenotype) -> tuple[MLPNetwork, list[bool]]:
        """(the child as training would start it, which of its `linear_layers` inherited); trains nothing."""
        network, _, inherited = self._initial(genotype)
        return network, inherited

    def _initial(self, genotype: MLPGenotype) -> tuple[MLPNetwork, list[BigramKey], list[bool]]:
        """The child seeded and built as a stand-alone child, then its stored bigrams copied in."""
        L.seed_everything(self.seed, workers=True, verbose=False)  # as the stand-alone path seeds
        network = self.space.build_child(genotype, self.task, **self.network_kwargs)
        keys = bigram_keys(genotype, math.prod(self.task.input_shape), self.task.num_classes)
        return network, keys, self.store.inherit(keys, linear_layers(network))

    def _train_and_score(self, genotype: MLPGenotype) -> Evaluation:
        start = time.perf_counter()
        network, keys, inherited = self._initial(genotype)
        evaluation = self._fit_and_score(network, start)
        if evaluation.error is None:  # a diverged child's weights are not worth inheriting
            self.store.write(keys, linear_layers(network))
            if self.store_path is not None:
                self.store.save(self.store_path)
        # a copy: the stand-alone path may hand every failed child the same extra dict
        evaluation.extra = {
            **evaluation.extra,
            "inherited_layers": sum(inherited),
            "linear_layers": len(inherited),
            "stored_bigrams": len(self.store),
        }
        return evaluation
