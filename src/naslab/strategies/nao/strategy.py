"""Neural Architecture Optimization as an ask/tell strategy (Luo, Tian, Qin, Chen, Liu, arXiv:1808.07233, Alg. 1).

Generations: generation 0 is N random architectures; after a generation is scored, the NAO model
(`nao.model.NAOModel`) is trained on everything scored so far (min-max normalised, each architecture
with `symmetric_twins` branch-swapped twins), the top K become seeds, gradient ascent in the
embedding moves each seed and the decoder turns the moved embedding into a new architecture. A
seed whose decoded architecture is not new is retried with a larger step (eta, eta + eta_step, ...
eta_{i+1} = eta_i * eta_growth + eta_step, up to `max_ascent_tries`). The new architectures are the
next generation; if ascent finds fewer than K (a model fitted to a handful of architectures decodes
its seeds back to themselves), `fill_with_random` tops the generation up with random ones, marked
as such in the archive. `iterations` (L) counts
the generations that are scored, so the paper's L=3 with N=600 and K=200 evaluates
600 + 200 + 200 = 1000 architectures.

Sizes default to fractions of the search budget (`search.num_architectures`): N = 60 % of it (the
paper's 600 of 1000) and K splits the rest over the L-1 ascent generations; set `initial_pool` and
`top_k` to fix them instead.

With weight sharing (NAO-WS: `rescore_pool=true`, which `evaluator=shared` requires, `check_search`)
scores drift as the shared weights train, so the strategy keeps a population instead: every
generation re-scores the whole pool, trains the NAO model on the current scores only, and replaces
the worst members by the new architectures and `random_per_generation` fresh random ones
(renqianluo/NAO NAO-WS/cnn/train_search.py: the best 450 of 1000 + up to 500 from ascent + 50
random); shared-weight training samples uniformly from the pool (`train_on`). The next generation
is made when the search next asks for architectures (`ask`, `train_on`), not when the last scores
come in: a search that ends after a strategy phase trains no model, and its final choice
(`derive_from`) ranks only the population it has just scored, as the authors' search stops at its
last evaluation.

The model trains on every scored architecture (Alg. 1). `holdout_fraction` > 0 keeps a fixed slice
out of training to report held-out pairwise accuracy and Hamming distance (diagnostics only; the
paper's Fig. 2 measures them on held-out architectures).

`unlabelled` (0 in the paper's Alg. 1) adds that many random architectures, drawn once from the seed,
to every training set with no score: they enter the reconstruction loss only (as the unlabelled
architectures of SemiNAO, Luo et al. arXiv:2002.10389, without its pseudo-labels). Fitted to a handful
of scored architectures, the decoder learns them by heart: every embedding decodes to one of them,
so ascent from a seed gives back known cells (random fill) or, at an eta in the hundreds, a cell
unrelated to its seed. A few hundred unlabelled cells teach it the space, and a small step decodes to
a new neighbour of the seed (conf/strategy/nao_quick.yaml: the quick start's 16 architectures).

The model trains and infers on one torch thread (`own_model.one_thread`): what ascent proposes does
not depend on the process's thread count.

Each proposal carries its provenance (generation, seed, eta, predicted score and the model's
held-out diagnostics) into the archive (`Proposal.info`, under "nao"); `pop_metrics` hands the per-generation
diagnostics to the search loop for W&B.
"""

from __future__ import annotations

import copy
import logging
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from naslab.rank_agreement import hamming_distance, pairwise_accuracy
from naslab.spaces.base import Space
from naslab.strategies.base import G, Proposal, Result, SharesWeights, Strategy
from naslab.strategies.nao.model import NAOModel, fit
from naslab.strategies.own_model import one_thread

log = logging.getLogger(__name__)


class NAOStrategy(Strategy[G], SharesWeights[G]):
    """Encoder-predictor-decoder search: random pool, then gradient ascent from the top K."""

    name = "nao"

    def __init__(
        self,
        space: Space[G],
        seed: int = 0,
        budget: int | None = None,
        initial_pool: int | None = None,
        initial_fraction: float = 0.6,
        top_k: int | None = None,
        new_per_generation: int | None = None,
        iterations: int | None = 3,
        rescore_pool: bool = False,
        eta: float = 10.0,
        eta_growth: float = 1.0,
        eta_step: float = 5.0,
        max_ascent_tries: int = 200,
        fill_with_random: bool = True,
        random_per_generation: int = 0,
        symmetric_twins: int = 1,
        holdout_fraction: float = 0.0,
        unlabelled: int = 0,
        epochs: int = 1000,
        batch_size: int = 100,
        grad_clip: float = 5.0,
        accelerator: str = "cpu",
        model: dict[str, Any] | None = None,
    ):
        """`model`: NAOModel's keyword arguments (embedding, hidden, predictor_layers, trade_off, lr, ...)."""
        super().__init__(space)
        if iterations is not None and iterations < 1:
            raise ValueError(f"nao: iterations must be >= 1 or null, got {iterations}")
        model = dict(model or {})
        if random_per_generation < 0:
            raise ValueError(f"nao: random_per_generation must be >= 0, got {random_per_generation}")
        if not 0 <= holdout_fraction < 1:
            raise ValueError(f"nao: holdout_fraction must be in [0, 1), got {holdout_fraction}")
        if unlabelled < 0:
            raise ValueError(f"nao: unlabelled must be >= 0, got {unlabelled}")
        if not 0 < model.get("trade_off", 0.9) <= 1:
            raise ValueError(f"nao: model.trade_off (lambda) must be in (0, 1], got {model['trade_off']}")
        self.seed, self.iterations, self.budget = seed, iterations, budget
        self.rescore_pool = bool(rescore_pool)  # NAO-WS: a population re-scored every generation
        self.num_initial, self.top_k = self._sizes(budget, initial_pool, initial_fraction, top_k, iterations)
        self.num_new = new_per_generation or self.top_k
        self.etas = [eta]
        for _ in range(max_ascent_tries - 1):
            self.etas.append(self.etas[-1] * eta_growth + eta_step)
        self.fill_with_random = fill_with_random
        self.random_per_generation = random_per_generation
        self.symmetric_twins, self.holdout_fraction = symmetric_twins, holdout_fraction
        self.num_unlabelled = unlabelled
        self._unlabelled: torch.Tensor | None = None  # their tokens, drawn from the seed when first needed
        self.train_settings = {
            "epochs": epochs,
            "batch_size": batch_size,
            "grad_clip": grad_clip,
            "accelerator": accelerator,
        }
        torch.manual_seed(seed)  # the model's initialisation is part of the seeded run
        self.model = NAOModel(space.token_choices(), space.token_kinds(), **model)
        self.rng = np.random.default_rng(seed)
        self.generation = 0
        self.queue: list[G] = self._random_pool(self.num_initial)
        self.cursor = 0  # queue[:cursor] has been asked
        self.told: dict[str, float] = {}  # scores of this generation's queue, by key
        self.scored: dict[str, tuple[G, float]] = {}  # the training pool: everything scored (or the population)
        self.proposals: dict[str, dict[str, Any]] = {}  # provenance of generated architectures, by key
        self.metrics: dict[str, float] = {}
        self.known: set[str] = set()  # every architecture ever told: ascent must propose something else
        # NAO-WS: the population is scored and its next generation not made yet (see `_next_population`)
        self.generation_pending = False

    @classmethod
    def check_search(cls, kind: str, settings: Mapping[str, Any]) -> str | None:
        """With shared weights NAO is NAO-WS: its scores drift as the weights train, so it needs `rescore_pool`."""
        reason = super().check_search(kind, settings)
        if reason is None and kind == "shared" and not settings.get("rescore_pool"):
            return (
                "strategy=nao with evaluator=shared is NAO-WS: its population must be re-scored as the shared "
                "weights train; add strategy.rescore_pool=true (experiment=nao_ws sets it)"
            )
        return reason

    @property
    def finished(self) -> bool:
        """Nothing left to propose: Alg. 1 ran its generations, spent its budget or found nothing new.

        A population (NAO-WS) never runs dry: its queue is always the population to re-score.
        """
        return not self.queue

    @staticmethod
    def _sizes(
        budget: int | None, initial: int | None, fraction: float, top_k: int | None, iterations: int | None
    ) -> tuple[int, int]:
        rounds = max(1, (iterations or 2) - 1)  # ascent generations
        if top_k is None:
            if budget is None:
                raise ValueError("nao: give top_k, or budget (search.num_architectures) to derive it")
            pool = initial if initial is not None else max(2, round(fraction * budget))
            top_k = max(1, (budget - pool) // rounds)
        if initial is None:
            if budget is None:
                raise ValueError("nao: give initial_pool, or budget (search.num_architectures) to derive it")
            initial = max(2, budget - rounds * top_k)  # the rounding remainder goes to the random pool
        if initial < 1 or top_k < 1:
            raise ValueError(f"nao: initial_pool and top_k must be >= 1, got {initial} and {top_k}")
        return int(initial), int(top_k)

    # --- ask / tell ------------------------------------------------------------------------------
    def ask(self, n: int) -> list[Proposal[G]]:
        """The next `n` of this generation; [] once Alg. 1 has run its `iterations` generations."""
        self._next_population()
        genotypes = self.queue[self.cursor : self.cursor + n]
        self.cursor += len(genotypes)
        return [self._proposal(g) for g in genotypes]

    # --- the weight-sharing role (NAO-WS) ---------------------------------------------------------
    def train_on(self) -> G:
        """NAO-WS trains shared weights on an architecture drawn uniformly from the current pool."""
        self._next_population()
        scored = [g for g, _ in self.scored.values()]
        pool = (self.queue or scored) if self.rescore_pool else (scored or self.queue)
        if not pool:
            raise RuntimeError("nao: no architecture to train the shared weights on (empty pool)")
        return pool[int(self.rng.integers(len(pool)))]

    def derive_from(self, n: int) -> list[Proposal[G]]:
        """The final choice: the best `n` of what was scored (NAO-WS: of the population as last scored).

        Never an architecture that was not scored: a NAO-WS generation made after the last strategy
        phase would offer cells the shared weights never trained on (the authors stop at their last
        evaluation and take the best of it).
        """
        if self.rescore_pool and not self.scored:  # no phase has ended yet: the initial population
            return [self._proposal(g) for g in self.queue[:n]]
        ranked = sorted(self.scored.values(), key=lambda item: item[1], reverse=True)
        return [self._proposal(g) for g, _ in ranked[:n]]

    def _proposal(self, genotype: G) -> Proposal[G]:
        """`genotype` with its provenance as it is now (`{"nao": {...}}`; {} for the initial random pool)."""
        info = self.proposals.get(self.space.key(genotype))
        return Proposal(genotype, {"nao": copy.deepcopy(info)} if info else {})

    def tell(self, results: Sequence[Result[G]]) -> None:
        if not results:
            return
        for result in results:
            genotype, score = result.genotype, result.score
            key = self.space.key(genotype)
            self.told[key] = float(score)
            if not self.rescore_pool:
                self.scored.setdefault(key, (genotype, float(score)))
            self.known.add(key)
        # the queue holds distinct architectures, so counting the told ones says when all are in
        if self.cursor >= len(self.queue) and len(self.told) >= len(self.queue):
            self._end_generation()

    def pop_metrics(self) -> dict[str, float]:
        metrics, self.metrics = self.metrics, {}
        return metrics

    # --- one generation ---------------------------------------------------------------------------
    def _end_generation(self) -> None:
        self._measure_proposals()
        if self.rescore_pool:
            keys = [self.space.key(g) for g in self.queue]
            self.scored = {k: (g, self.told[k]) for k, g in zip(keys, self.queue)}
        self.told, self.cursor = {}, 0
        done = self.iterations is not None and self.generation + 1 >= self.iterations
        if self.rescore_pool:
            # The population as scored; the next generation is made when the search asks for more.
            self.queue = [g for g, _ in self.scored.values()]
            self.generation_pending = not done  # after the last generation: re-scored, never replaced
            return
        # Stand-alone: once the budget is spent, training the model again would be wasted work.
        done = done or (not self.rescore_pool and self.budget is not None and len(self.scored) >= self.budget)
        if done:
            self.queue = []
            return
        self.generation += 1
        self.queue = self._generate()
        if not self.queue:  # stand-alone: the queue is empty, so the search ends here
            log.warning("nao: gradient ascent found no new architecture in generation %d", self.generation)

    def _next_population(self) -> None:
        """NAO-WS: trains the model on the scored population and replaces its worst members by the new
        architectures from ascent and `random_per_generation` random ones (the population keeps its size)."""
        if not self.generation_pending:
            return
        self.generation_pending = False
        self.generation += 1
        new = self._generate()
        size = len(self.scored)
        fresh = self._random_pool(
            min(self.random_per_generation, max(0, size - len(new))),
            exclude=self.known | {self.space.key(g) for g in new},
        )
        for genotype in fresh:
            self.proposals[self.space.key(genotype)] = {"generation": self.generation, "source": "random"}
        ranked = sorted(self.scored.values(), key=lambda item: item[1], reverse=True)
        keep = [g for g, _ in ranked[: max(0, size - len(new) - len(fresh))]]
        self.queue = keep + new + fresh

    def _held_out(self, key: str) -> bool:
        """A fixed split by architecture: a held-out architecture is never trained on, in any generation
        (the model is warm-started, so a fresh split per generation would test on training data)."""
        return zlib.crc32(f"{self.seed}:{key}".encode()) % 10_000 < self.holdout_fraction * 10_000

    def _training_data(self, keys: Sequence[str], lo: float, span: float) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, targets = [], []
        for key in keys:
            genotype, score = self.scored[key]
            target = (score - lo) / span
            tokens.append(self.space.to_tokens(genotype))
            targets.append(target)
            for _ in range(self.symmetric_twins):
                tokens.append(self.space.to_tokens(self.space.random_symmetry(genotype, self.rng)))
                targets.append(target)
        return torch.tensor(tokens, dtype=torch.long), torch.tensor(targets, dtype=torch.float32)

    def _train_model(self) -> tuple[float, float]:
        """Fits the model on the pool minus a held-out slice; returns the normalisation (lo, span)."""
        # Failed trials are scored 0 by the evaluators: they would stretch the min-max normalisation.
        keys = [k for k, (_, score) in self.scored.items() if np.isfinite(score) and score > 0]
        heldout = [k for k in keys if self.holdout_fraction > 0 and self._held_out(k)]
        if len(heldout) < 2 or len(heldout) > len(keys) // 2:
            heldout = []  # too few to rank, or the pool is too small to spare them
        train = [k for k in keys if k not in set(heldout)]
        values = [self.scored[k][1] for k in train]
        lo, span = min(values), (max(values) - min(values)) or 1.0
        tokens, targets = self._training_data(train, lo, span)
        scored_rows = len(tokens)
        if self.num_unlabelled:
            unlabelled = self._unlabelled_tokens()
            tokens = torch.cat([tokens, unlabelled])
            targets = torch.cat([targets, torch.full((len(unlabelled),), float("nan"))])
        log.info(
            "nao generation %d: training the model on %d architectures (%d with twins) + %d unlabelled, "
            "%d held out, %d epochs",
            self.generation,
            len(train),
            scored_rows,
            len(tokens) - scored_rows,
            len(heldout),
            self.train_settings["epochs"],
        )
        losses = fit(self.model, tokens, targets, seed=self.seed * 1000 + self.generation, **self.train_settings)
        self.metrics.update(losses)
        if len(heldout) >= 2:
            held_tokens = torch.tensor([self.space.to_tokens(self.scored[k][0]) for k in heldout])
            predicted = self.model.predict_tokens(held_tokens).tolist()
            truth = [self.scored[k][1] for k in heldout]
            decoded = self.model.reconstruct(held_tokens).tolist()
            self.metrics["nao/pairwise_accuracy"] = pairwise_accuracy(truth, predicted)
            self.metrics["nao/hamming_distance"] = hamming_distance(held_tokens.tolist(), decoded)
        return lo, span

    def _unlabelled_tokens(self) -> torch.Tensor:
        """`unlabelled` random architectures, never held out, drawn from the seed alone (the same after a
        resume, and the search's own random stream is left as it was)."""
        if self._unlabelled is None:
            rng = np.random.default_rng([self.seed, 0x4E414F])
            pool = self._random_pool(self.num_unlabelled, rng=rng, keep=lambda key: not self._held_out(key))
            self._unlabelled = torch.tensor([self.space.to_tokens(g) for g in pool], dtype=torch.long)
        return self._unlabelled

    @one_thread()  # the model's numbers, hence what ascent proposes, whatever the process's thread count
    def _generate(self) -> list[G]:
        lo, span = self._train_model()
        ranked = sorted(self.scored.values(), key=lambda item: item[1], reverse=True)
        seeds = ranked[: self.top_k]
        seed_tokens = torch.tensor([self.space.to_tokens(g) for g, _ in seeds], dtype=torch.long)
        known = set(self.known)  # everything scored or queued so far has been told
        # A population keeps its size: at most all of its members are replaced.
        num_new = min(self.num_new, len(self.scored)) if self.rescore_pool else self.num_new
        new: list[G] = []
        waiting = list(range(len(seeds)))  # seeds still to yield a new architecture
        tries: list[int] = []
        wanted = num_new if num_new > len(seeds) else min(num_new, len(seeds))
        for eta in self.etas:
            if len(new) >= num_new or not waiting:
                break
            ascent = self.model.ascend(seed_tokens[waiting], eta)
            decoded_predicted = self.model.predict_tokens(ascent.tokens)  # f(E(x')), as in Fig. 2b
            still = []
            for row, i in enumerate(waiting):
                genotype = self.space.from_tokens(ascent.tokens[row].tolist())
                key = self.space.key(genotype)
                if key in known or len(new) >= num_new:
                    still.append(i)
                    continue
                known.add(key)
                new.append(genotype)
                tries.append(self.etas.index(eta) + 1)
                self.proposals[key] = {
                    "generation": self.generation,
                    "source": "ascent",
                    "eta": eta,
                    "seed": self.space.describe(seeds[i][0]),
                    "seed_score": seeds[i][1],
                    "seed_predicted": lo + span * float(ascent.predicted_before[row]),
                    "predicted_embedding": lo + span * float(ascent.predicted_after[row]),  # f(e') before decoding
                    "predicted": lo + span * float(decoded_predicted[row]),
                }
            # more new architectures than seeds (NAO-WS): every seed keeps ascending
            waiting = still if num_new <= len(seeds) else list(range(len(seeds)))
        fill = []
        if self.fill_with_random and not self.rescore_pool and len(new) < wanted:
            fill = self._random_pool(wanted - len(new), exclude=known)
            for genotype in fill:
                self.proposals[self.space.key(genotype)] = {"generation": self.generation, "source": "random_fill"}
        diagnostics = {k.removeprefix("nao/"): v for k, v in self.metrics.items() if k.startswith("nao/")}
        for genotype in new + fill:
            self.proposals[self.space.key(genotype)].update(diagnostics)
        self.metrics.update(
            {
                "nao/generation": float(self.generation),
                "nao/num_new": float(len(new)),
                "nao/num_random_fill": float(len(fill)),
                "nao/new_fraction": len(new) / max(1, wanted),
                "nao/mean_tries": float(np.mean(tries)) if tries else float("nan"),
                "nao/seed_score": float(np.mean([s for _, s in seeds])),
                "nao/seed_predicted": lo + span * float(self.model.predict_tokens(seed_tokens).mean()),
                "nao/new_predicted": float(np.mean([self.proposals[self.space.key(g)]["predicted"] for g in new]))
                if new
                else float("nan"),
            }
        )
        log.info(
            "nao generation %d: %d of %d new architectures from gradient ascent (mean %.1f eta tries), "
            "%d random fill (held-out pairwise acc %.3f, hamming %.2f)",
            self.generation,
            len(new),
            wanted,
            self.metrics["nao/mean_tries"],
            len(fill),
            self.metrics.get("nao/pairwise_accuracy", float("nan")),
            self.metrics.get("nao/hamming_distance", float("nan")),
        )
        return new + fill

    def _measure_proposals(self) -> None:
        """Predicted vs measured score of the architectures that gradient ascent proposed."""
        this_generation = {  # survivors proposed in older generations do not count again
            k: info
            for k, info in self.proposals.items()
            if "predicted" in info and info["generation"] == self.generation
        }
        pairs = [(this_generation[k]["predicted"], s) for k, s in self.told.items() if k in this_generation]
        if self.generation == 0 or not pairs:
            return
        predicted, measured = zip(*pairs)
        self.metrics["nao/new_measured"] = float(np.mean(measured))
        self.metrics["nao/new_predicted_mean"] = float(np.mean(predicted))
        self.metrics["nao/new_pairwise_accuracy"] = pairwise_accuracy(measured, predicted)

    # --- checkpoint ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        to_dict = self.space.to_dict
        return copy.deepcopy(
            {
                "model": self.model.state_dict(),
                "rng": self.rng.bit_generator.state,
                "generation": self.generation,
                "queue": [to_dict(g) for g in self.queue],
                "cursor": self.cursor,
                "told": self.told,
                "scored": [(k, to_dict(g), s) for k, (g, s) in self.scored.items()],
                "proposals": self.proposals,
                "sizes": [self.budget, self.num_initial, self.top_k, self.num_new, self.iterations],
                "seed": self.seed,
                "known": sorted(self.known),
                "generation_pending": self.generation_pending,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sizes = [self.budget, self.num_initial, self.top_k, self.num_new, self.iterations]
        if state["sizes"] != sizes:
            raise ValueError(
                f"nao: the search was started with (budget, N, K, new per generation, L) = {state['sizes']}, "
                f"not {sizes}; resume it with the same search.num_architectures and strategy sizes"
            )
        from_dict = self.space.genotype_from_dict
        self.model.load_state_dict(state["model"])
        self.rng.bit_generator.state = state["rng"]
        self.generation, self.cursor = state["generation"], state["cursor"]
        self.queue = [from_dict(d) for d in state["queue"]]
        self.told = dict(state["told"])
        self.scored = {k: (from_dict(d), s) for k, d, s in state["scored"]}
        self.proposals = copy.deepcopy(state["proposals"])
        self.seed, self.known = state["seed"], set(state["known"])
        self._unlabelled = None  # drawn again from the restored seed
        self.generation_pending = bool(state.get("generation_pending", False))  # False: a pre-fix checkpoint

    # --- helpers -----------------------------------------------------------------------------------
    def _random_pool(
        self,
        n: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        rng: np.random.Generator | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> list[G]:
        """Up to `n` distinct random architectures (from `rng`, default the strategy's) whose keys are not in
        `exclude` (and pass `keep`)."""
        rng = self.rng if rng is None else rng
        pool: dict[str, G] = {}
        for _ in range(1000 * n):
            if len(pool) == n:
                break
            genotype = self.space.sample(rng)
            key = self.space.key(genotype)
            if key not in exclude and (keep is None or keep(key)):
                pool.setdefault(key, genotype)
        return list(pool.values())
