"""EPNAS and PNAS: progressive search with an LSTM surrogate, as ask / tell.

EPNAS: "Efficient Progressive Neural Architecture Search", Perez-Rua, Baccouche, Pateux, arXiv:1808.00391.
PNAS: "Progressive Neural Architecture Search", Liu et al., arXiv:1712.00559.

An architecture grows one level at a time (`space.expand`; macro: one more layer; the tied micro cell of
`space=micro_epnas`: one more block). Per level:

1. the K architectures of the previous level are expanded into every one-level-larger child
   (level 1: every simplest architecture);
   at level 1 every child is measured before the surrogate ranks anything (`first_level="all"`:
   the paper's Fig. 3, step 1, "We list all the possible configurations for the simplest
   complexity level ... Each of these models are trained", as PNAS trains every 1-block cell);
   `first_level="sample"` picks K of them like any later level;
2. the surrogate (`epnas.surrogate.Surrogate`, an LSTM over the token prefix) predicts each child's
   score; K of them are chosen, by EPNAS with probability p_i^(1/tau) / sum_j p_j^(1/tau) over the
   normalised predictions (`temperature_sampling`), by PNAS greedily (the top K);
3. the evaluator scores the K (`ask` hands them out, `tell` takes the scores): with `evaluator=shared`
   they are also what the shared weights train on (`train_on`), for a few epochs per level
   (`evaluator.strategy_every`, paper: 3);
4. the surrogate is refitted on everything measured so far (its hash table), and its Kendall tau
   (scipy) on this level's measured scores, predicted before they were measured, is logged.

EPNAS repeats the whole progression `iterations` times (paper: 3 to 5) with the temperature decaying
towards 1 (`temperature(iteration)`); PNAS is one greedy progression. The result is the best
complete architecture measured (`derive_from` for weight sharing; the search loop keeps partial ones
out of the result). Each proposal's `info` (archived under the strategy's name) holds its level, the
progression and temperature it was chosen in, and the surrogate's prediction.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import stats

from naslab.spaces.base import Progressive, Space
from naslab.strategies.base import G, Proposal, Result, SharesWeights, Strategy
from naslab.strategies.epnas.surrogate import Surrogate
from naslab.strategies.epnas.temperature_sampling import temperature, temperature_sample

NORMALISATIONS = ("sum", "minmax")
FIRST_LEVEL = ("all", "sample")


def normalised(predictions: np.ndarray, how: str) -> np.ndarray:
    """The scores the sampling law weighs: the predictions as they are ("sum": the law divides by their
    sum, as the paper does), or rescaled to [0, 1] over this level's candidates ("minmax").

    Predicted accuracies cluster (e.g. 0.85-0.95), and s_i / sum_j s_j is then nearly uniform even at
    tau = 1; min-max spreads them so that the law prefers what the surrogate ranks high.
    """
    if how == "sum":
        return predictions
    low, high = float(predictions.min()), float(predictions.max())
    return (predictions - low) / (high - low) if high > low else np.ones_like(predictions)


class EPNASStrategy(Strategy[G], SharesWeights[G]):
    """Progressive search: expand, predict, sample K (temperature) or take the top K (greedy), measure."""

    name = "epnas"

    def __init__(
        self,
        space: Space[G],
        seed: int = 0,
        k: int = 25,
        iterations: int = 3,
        greedy: bool = False,
        tau_start: float = 5.0,
        tau_decay: float = 0.5,
        tau_end: float = 1.0,
        max_candidates: int = 20_000,
        normalise: str = "sum",
        first_level: str = "all",
        surrogate: dict[str, Any] | None = None,
    ):
        super().__init__(space)
        if normalise not in NORMALISATIONS:
            raise ValueError(f"strategy.normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
        if first_level not in FIRST_LEVEL:
            raise ValueError(f"strategy.first_level must be one of {', '.join(FIRST_LEVEL)}, got {first_level!r}")
        self.normalise, self.first_level = normalise, first_level
        if k < 1 or iterations < 1 or max_candidates < k:
            raise ValueError(f"epnas needs k >= 1, iterations >= 1, max_candidates >= k; got {k}, {iterations}")
        if not isinstance(space, Progressive):  # a ValueError: one line when the run is built
            raise ValueError(f"the {space.name} space has no progressive levels (expand): use e.g. space=macro")
        space.expand(None)  # a space that cannot grow in its settings fails here, before any training
        self.seed, self.k, self.iterations, self.greedy = seed, k, iterations, greedy
        temperature(0, tau_start, tau_decay, tau_end)  # a bad schedule fails here, not after the first level
        self.tau_start, self.tau_decay, self.tau_end = tau_start, tau_decay, tau_end
        self.max_candidates = max_candidates
        self.rng = np.random.default_rng(seed)
        self.surrogate = Surrogate(space.token_choices(), space.token_kinds(), seed=seed, **(surrogate or {}))
        self.iteration, self.level = 0, 1
        self.pending: list[G] = []  # this level's K, in the order they are handed out
        self.predicted: dict[str, float] = {}  # key -> the surrogate's prediction before measuring
        self.asked = 0  # how many of `pending` were handed out
        self.measured_level: dict[str, float] = {}  # key -> measured score, this level
        self.complete: dict[str, tuple[G, float]] = {}  # key -> (genotype, best measured score)
        self.metrics: dict[str, float] = {}
        self.level_info: dict[str, float] = {}  # how this level's K were chosen, logged once it is measured
        self._start_level(parents=None)

    # --- the progression ------------------------------------------------------------------------
    @property
    def tau(self) -> float:
        return temperature(self.iteration, self.tau_start, self.tau_decay, self.tau_end)

    @property
    def finished(self) -> bool:
        return self.iteration >= self.iterations

    def _start_level(self, parents: Sequence[G] | None) -> None:
        """Expands `parents` (None: level 1), predicts every child and picks this level's K."""
        children: dict[str, G] = {}
        for parent in parents if parents is not None else [None]:
            for child in self.space.expand(parent):
                children.setdefault(self.space.key(child), child)
        keys = list(children)
        if len(keys) > self.max_candidates:  # a uniform subset keeps prediction affordable (macro L = 12)
            keys = [keys[i] for i in sorted(self.rng.choice(len(keys), self.max_candidates, replace=False))]
        tokens = [self.space.to_tokens(children[key]) for key in keys]
        raw = self.surrogate.predict(tokens)  # predicted accuracies: what the archive and the plots show
        predictions = normalised(raw, self.normalise)  # what the sampling law weighs
        if parents is None and self.first_level == "all":
            chosen = np.arange(len(keys))  # every simplest architecture is measured (logged predictions only)
        elif self.greedy:
            chosen = np.argsort(-predictions, kind="stable")[: self.k]
        else:
            chosen = temperature_sample(predictions, self.k, self.tau, self.rng)
        self.pending = [children[keys[i]] for i in chosen]
        self.predicted = {keys[i]: float(raw[i]) for i in chosen}
        self.asked, self.measured_level = 0, {}
        self.level_info = {
            "candidates": float(len(keys)),
            "sampled_mean_prediction": float(np.mean(raw[chosen])),
        }

    def ask(self, n: int) -> list[Proposal[G]]:
        if self.finished:
            return []
        batch = self.pending[self.asked : self.asked + n]
        self.asked += len(batch)
        return [self._proposal(g) for g in batch]

    def tell(self, results: Sequence[Result[G]]) -> None:
        if self.finished:  # e.g. a resumed weight-sharing run's strategy phase after the last progression
            return
        for result in results:
            genotype, score = result.genotype, result.score
            key = self.space.key(genotype)
            if key not in self.predicted:
                continue  # not this level's (e.g. a weight-sharing derivation): nothing to learn
            score = float(np.clip(score, 0.0, 1.0)) if np.isfinite(score) else 0.0
            self.measured_level[key] = score
            self.surrogate.add(self.space.to_tokens(genotype), score)
            if self.space.is_complete(genotype) and score >= self.complete.get(key, (None, -1.0))[1]:
                self.complete[key] = (genotype, score)
        if len(self.measured_level) < len(self.pending):
            return
        # the whole level is measured: how well did the surrogate predict it, then learn from it
        self.metrics.update(
            {"level": float(self.level), "iteration": float(self.iteration), "temperature": self.tau, **self.level_info}
        )
        keys = list(self.measured_level)
        if len(keys) > 1:
            tau = stats.kendalltau([self.predicted[k] for k in keys], [self.measured_level[k] for k in keys]).statistic
            self.metrics["surrogate_kendall_tau"] = float(tau) if np.isfinite(tau) else 0.0
        self.metrics["surrogate_l1"] = self.surrogate.fit()
        self.metrics["level_best_score"] = max(self.measured_level.values())
        parents = self.pending
        if self.level < self.space.max_level():
            self.level += 1
            self._start_level(parents)
        else:
            self.iteration, self.level = self.iteration + 1, 1
            if not self.finished:
                self._start_level(parents=None)

    # --- the weight-sharing role ---------------------------------------------------------------------
    def train_on(self) -> G:
        """The shared weights train on this level's K (EPNAS trains the sampled architectures)."""
        if not self.pending:
            return (self._candidates(1) or [self.space.sample(self.rng)])[0]
        return self.pending[int(self.rng.integers(len(self.pending), size=1)[0])]

    def derive_from(self, n: int) -> list[Proposal[G]]:
        """The best measured complete architectures (weight sharing re-scores them to pick the result).

        A search stopped before any architecture was complete (a short budget) offers this level's
        architectures grown to full depth with random layers instead, so it still returns a whole one.
        """
        return [self._proposal(g) for g in self._candidates(n)]

    def _candidates(self, n: int) -> list[G]:
        ranked = sorted(self.complete.values(), key=lambda item: -item[1])
        if ranked or not self.pending:
            return [genotype for genotype, _ in ranked[:n]]
        return [self._completed(self.pending[i % len(self.pending)]) for i in range(n)]

    def _completed(self, genotype: G) -> G:
        while not self.space.is_complete(genotype):
            children = self.space.expand(genotype)
            genotype = children[int(self.rng.integers(len(children)))]
        return genotype

    def _proposal(self, genotype: G) -> Proposal[G]:
        """`genotype` with its info, stored in the archive record under the strategy's name: the genotype's
        level, the progression and temperature it was sampled in, its prediction, and `generation` (the
        progression step, iteration x levels + level - 1) that the predicted-vs-measured plot colours by."""
        key, level = self.space.key(genotype), self.space.level(genotype)
        info: dict[str, Any] = {
            "level": level,
            "iteration": self.iteration,
            "temperature": self.tau,
            "generation": self.iteration * self.space.max_level() + level - 1,
        }
        if key in self.predicted:
            info["predicted"] = self.predicted[key]
        return Proposal(genotype, {self.name: info})

    def pop_metrics(self) -> dict[str, float]:
        metrics, self.metrics = self.metrics, {}
        return metrics

    # --- resume ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "surrogate": self.surrogate.state_dict(),
            "iteration": self.iteration,
            "level": self.level,
            "pending": [self.space.to_dict(g) for g in self.pending],
            "predicted": dict(self.predicted),
            "asked": self.asked,
            "measured_level": dict(self.measured_level),
            "complete": [[self.space.to_dict(g), s] for g, s in self.complete.values()],
            "level_info": dict(self.level_info),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.surrogate.load_state_dict(state["surrogate"])
        self.iteration, self.level, self.asked = int(state["iteration"]), int(state["level"]), int(state["asked"])
        self.pending = [self.space.genotype_from_dict(d) for d in state["pending"]]
        self.predicted = {k: float(v) for k, v in state["predicted"].items()}
        self.measured_level = {k: float(v) for k, v in state["measured_level"].items()}
        self.level_info = {k: float(v) for k, v in state.get("level_info", {}).items()}
        self.complete = {}
        for data, score in state["complete"]:
            genotype = self.space.genotype_from_dict(data)
            self.complete[self.space.key(genotype)] = (genotype, float(score))


class PNASStrategy(EPNASStrategy[G]):
    """PNAS ("Progressive Neural Architecture Search" (Liu et al., arXiv:1712.00559)): one greedy progression."""

    name = "pnas"

    def __init__(
        self, space: Space[G], seed: int = 0, k: int = 25, iterations: int = 1, greedy: bool = True, **kwargs: Any
    ):
        if not greedy:
            raise ValueError("pnas keeps the top K by prediction (greedy); strategy=epnas samples with a temperature")
        super().__init__(space, seed=seed, k=k, iterations=iterations, greedy=True, **kwargs)
