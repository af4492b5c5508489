"""A stand-alone child's own recipe: NAO trains its children with an auxiliary head and drop path."""

from __future__ import annotations

import numpy as np
import pytest

import naslab.evaluators.standalone as standalone
from tests.evaluators.test_backends import SPACE, evaluator


@pytest.mark.usefixtures("one_torch_thread")
def test_children_get_the_auxiliary_head_and_drop_path_they_are_given(monkeypatch) -> None:
    built: list = []
    real = standalone.training_module

    def recording(task, network, epochs, options):
        module, trainer_options = real(task, network, epochs, options)
        built.append(module)
        return module, trainer_options

    monkeypatch.setattr(standalone, "training_module", recording)
    genotype = SPACE.sample(np.random.default_rng(0))
    plain = evaluator().evaluate([genotype])[0]
    nao = evaluator(auxiliary_weight=0.4, drop_path_prob=0.3).evaluate([genotype])[0]
    assert plain.error is None and nao.error is None
    assert built[0].network.auxiliary_head is None and built[0].hparams.auxiliary_weight == 0.0
    assert built[1].network.auxiliary_head is not None
    assert (built[1].hparams.auxiliary_weight, built[1].hparams.drop_path_prob) == (0.4, 0.3)
    assert nao.params == plain.params  # the papers' parameter counts leave the auxiliary head out


def test_bad_recipe_values_are_refused() -> None:
    with pytest.raises(ValueError, match="auxiliary_weight"):
        evaluator(auxiliary_weight=-1.0)
    with pytest.raises(ValueError, match="drop_path_prob"):
        evaluator(drop_path_prob=1.0)
