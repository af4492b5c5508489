"""The micro (cell) search space of NASNet / ENAS / NAO / DARTS.

Decisions per node: (input, op) for each of its two branches; B nodes per cell; a normal and a
reduction cell. The token sequence lists, cell by cell and node by node,
[left input, left op, right input, right op]; tokens are indices into the valid choices at
their position (inputs 0..k+1 for node k, ops 0..|ops|-1), which is what an ENAS controller's
per-position softmax and NAO's decoder mask need.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from naslab.ops.cnn import OPS
from naslab.ops.cnn import op_set as lookup_op_set
from naslab.spaces.base import Space, Task
from naslab.spaces.micro_genotype import NUM_CELL_INPUTS, Branch, Cell, GenotypeError, MicroGenotype, Node
from naslab.spaces.micro_network import MicroNetwork

TOKENS_PER_NODE = 4
CELL_NAMES = ("normal", "reduce")


class MicroSpace(Space[MicroGenotype]):
    """Normal + reduction cell with `num_nodes` nodes over a named op set."""

    name = "micro"

    def __init__(
        self, num_nodes: int = 5, op_set: str | Sequence[str] = "enas", concat: Literal["unused", "all"] = "unused"
    ):
        if num_nodes < 1:
            raise ValueError(f"micro space needs num_nodes >= 1, got {num_nodes}")
        if concat not in ("unused", "all"):
            raise ValueError(f"micro space concat must be 'unused' or 'all', got '{concat}'")
        self.num_nodes = num_nodes
        self.ops: tuple[str, ...] = lookup_op_set(op_set)
        self.op_set_name = op_set if isinstance(op_set, str) else "custom"
        self.concat_rule = concat

    def __repr__(self) -> str:
        ops = f"'{self.op_set_name}'" if self.op_set_name != "custom" else repr(list(self.ops))
        return f"MicroSpace(num_nodes={self.num_nodes}, op_set={ops}, concat='{self.concat_rule}')"

    # --- structure -------------------------------------------------------------------------
    def _concat(self, nodes: tuple[Node, ...]) -> tuple[int, ...]:
        if self.concat_rule == "all":
            return tuple(range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + len(nodes)))
        return Cell(nodes, (NUM_CELL_INPUTS,)).unused_nodes()

    def _cell(self, nodes: Sequence[Node]) -> Cell:
        nodes = tuple(nodes)
        return Cell(nodes, self._concat(nodes))

    def size(self) -> int:
        per_cell = math.prod((k + NUM_CELL_INPUTS) ** 2 * len(self.ops) ** 2 for k in range(self.num_nodes))
        return per_cell**2

    def sample(self, rng: np.random.Generator) -> MicroGenotype:
        cells = []
        for _ in CELL_NAMES:
            nodes = []
            for k in range(self.num_nodes):
                branches = [
                    Branch(int(rng.integers(k + NUM_CELL_INPUTS)), self.ops[int(rng.integers(len(self.ops)))])
                    for _ in range(2)
                ]
                nodes.append(Node(*branches))
            cells.append(self._cell(nodes))
        return MicroGenotype(*cells)

    def enumerate(self) -> Iterator[MicroGenotype]:
        if self.size() > 1_000_000:
            raise NotImplementedError(f"{self!r} has {self.size():,} architectures; too many to enumerate")
        choices = [range(n) for n in self.token_choices()]
        for tokens in itertools.product(*choices):
            yield self.from_tokens(tokens)

    # --- tokens ----------------------------------------------------------------------------
    def token_choices(self) -> list[int]:
        per_cell = []
        for k in range(self.num_nodes):
            per_cell += [k + NUM_CELL_INPUTS, len(self.ops)] * 2
        return per_cell * len(CELL_NAMES)

    def token_kinds(self) -> list[str]:
        return ["input", "op"] * (len(self.token_choices()) // 2)

    def to_tokens(self, genotype: MicroGenotype) -> tuple[int, ...]:
        self.validate(genotype)
        tokens: list[int] = []
        for cell in (genotype.normal, genotype.reduce):
            for node in cell.nodes:
                for branch in node.branches:
                    tokens += [branch.input, self.ops.index(branch.op)]
        return tuple(tokens)

    def from_tokens(self, tokens: Sequence[int]) -> MicroGenotype:
        self.check_tokens(tokens)
        per_cell = self.num_nodes * TOKENS_PER_NODE
        cells = []
        for c in range(len(CELL_NAMES)):
            chunk = [int(t) for t in tokens[c * per_cell : (c + 1) * per_cell]]
            nodes = [
                Node(Branch(chunk[i], self.ops[chunk[i + 1]]), Branch(chunk[i + 2], self.ops[chunk[i + 3]]))
                for i in range(0, per_cell, TOKENS_PER_NODE)
            ]
            cells.append(self._cell(nodes))
        return MicroGenotype(*cells)

    # --- equivalences and validation --------------------------------------------------------
    def symmetries(self, genotype: MicroGenotype) -> list[MicroGenotype]:
        """All genotypes reachable by swapping the two branches of any nodes (a node sums them).

        The concat set is unchanged by swaps, so every variant is the same network function.
        """
        variants = []
        for cell in (genotype.normal, genotype.reduce):
            options = [{node, node.swapped()} for node in cell.nodes]
            variants.append([Cell(tuple(nodes), cell.concat) for nodes in itertools.product(*options)])
        seen: dict[MicroGenotype, None] = {}
        for normal, reduce in itertools.product(*variants):
            seen.setdefault(MicroGenotype(normal, reduce), None)
        return list(seen)

    def random_symmetry(self, genotype: MicroGenotype, rng: np.random.Generator) -> MicroGenotype:
        """Swaps the branches of each node with probability 1/2 (uniform over the swap patterns)."""

        def swap_some(cell: Cell) -> Cell:
            nodes = tuple(node.swapped() if rng.integers(2) else node for node in cell.nodes)
            return Cell(nodes, cell.concat)

        return MicroGenotype(swap_some(genotype.normal), swap_some(genotype.reduce))

    def canonical(self, genotype: MicroGenotype) -> MicroGenotype:
        """Branches of every node in sorted (input, op) order: equal for all symmetric variants."""

        def canon(cell: Cell) -> Cell:
            nodes = tuple(
                node if (node.left.input, node.left.op) <= (node.right.input, node.right.op) else node.swapped()
                for node in cell.nodes
            )
            return Cell(nodes, cell.concat)

        return MicroGenotype(canon(genotype.normal), canon(genotype.reduce))

    def validate(self, genotype: MicroGenotype) -> None:
        if not isinstance(genotype, MicroGenotype):
            raise GenotypeError(f"expected a MicroGenotype, got {type(genotype).__name__}")
        for name, cell in genotype.cells.items():
            if cell.num_nodes != self.num_nodes:
                raise GenotypeError(f"{name} has {cell.num_nodes} nodes; {self!r} has {self.num_nodes}")
            expected = self._concat(cell.nodes)
            if cell.concat != expected:
                raise GenotypeError(
                    f"{name}.concat={list(cell.concat)}; {self!r} concatenates "
                    f"{list(expected)} ({self.concat_rule} nodes)"
                )
            for k, node in enumerate(cell.nodes):
                for side, branch in (("left", node.left), ("right", node.right)):
                    if branch.op not in self.ops:
                        raise GenotypeError(
                            f"{name}.nodes[{k}].{side}.op='{branch.op}' is not in op set "
                            f"'{self.op_set_name}' ({', '.join(self.ops)})"
                        )

    def genotype_from_dict(self, data: Any) -> MicroGenotype:
        return MicroGenotype.from_dict(data)

    # --- networks and pictures ---------------------------------------------------------------
    def build_child(
        self,
        genotype: MicroGenotype,
        task: Task,
        channels: int = 16,
        cells_per_stage: int = 1,
        auxiliary: bool = False,
        **_: Any,
    ) -> nn.Module:
        task.require("image", self.name)
        unknown = sorted(op for op in genotype.ops() if op not in OPS)
        if unknown:
            raise GenotypeError(f"genotype uses unknown ops {unknown}; known: {', '.join(OPS.names())}")
        return MicroNetwork(
            genotype,
            num_classes=task.num_classes,
            in_channels=task.input_shape[0],
            channels=channels,
            cells_per_stage=cells_per_stage,
            auxiliary=auxiliary,
            stem=task.stem,  # type: ignore[arg-type]
        )

    def build_supernet(self, task: Task, channels: int = 16, cells_per_stage: int = 1, **_: Any) -> nn.Module:
        """ENAS weight sharing: one set of weights per (cell position, node, input, op)."""
        from naslab.spaces.micro_supernet import MicroSupernet

        task.require("image", self.name)
        return MicroSupernet(
            self.num_nodes, self.ops, task.num_classes, task.input_shape[0], channels, cells_per_stage, task.stem
        )

    def build_mixed_supernet(
        self, task: Task, channels: int = 16, cells_per_stage: int = 2, stem_multiplier: int = 3, **_: Any
    ) -> nn.Module:
        """DARTS' search network (default: C=16, 8 cells) over this space's ops and node count.

        The relaxation concatenates every node, so only a space that does the same (concat=all)
        derives the network it searched.
        """
        from naslab.spaces.micro_mixed import MicroMixedSupernet

        task.require("image", self.name)
        if self.concat_rule != "all":
            raise ValueError(
                f"a mixed-op supernet concatenates every node, but {self!r} concatenates unused nodes only; "
                "use space=micro_darts or space.concat=all"
            )

        return MicroMixedSupernet(
            self.num_nodes,
            self.ops,
            task.num_classes,
            task.input_shape[0],
            channels,
            cells_per_stage,
            task.stem,
            stem_multiplier,
        )

    def derive(self, alphas: Mapping[str, torch.Tensor]) -> MicroGenotype:
        """DARTS' rule: per node the two strongest edges, each with its strongest non-`none` op."""
        from naslab.spaces.micro_derive import derive_micro_genotype

        missing = [kind for kind in CELL_NAMES if kind not in alphas]
        if missing:
            raise GenotypeError(f"micro alphas need entries {list(CELL_NAMES)}; missing {missing}")
        return derive_micro_genotype(self, alphas["normal"], alphas["reduce"])

    def draw(self, genotype: MicroGenotype, out_dir: Path) -> list[Path]:
        from naslab.analysis.cell_plot import draw_genotype

        return draw_genotype(genotype, out_dir)
