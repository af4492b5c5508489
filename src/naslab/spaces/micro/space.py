"""The micro (cell) search space of NASNet / ENAS / NAO / DARTS.

Decisions per node: (input, op) for each of its two branches; B nodes per cell; a normal and a
reduction cell. The token sequence lists, cell by cell and node by node,
[left input, left op, right input, right op]; tokens are indices into the valid choices at
their position (inputs 0..k+1 for node k, ops 0..|ops|-1), which is what an ENAS controller's
per-position softmax and NAO's decoder mask need.

`tied=True` is the cell space of PNAS and EPNAS (EPNAS arXiv:1808.00391, "Micro search space"): one cell structure
describes the whole network, the reduction cells being the same cell with strides, so the tokens
list one cell. Tied spaces grow progressively: level b is a cell of b blocks (`expand`), and a cell
of fewer blocks runs in the same networks and supernet (the 1x1 convs that read a cell output take
whichever nodes it concatenates). A tied space's DARTS supernet has one alpha matrix, "cell", used by
the normal and the reduction cells alike.

`distinct_inputs=True` makes a node read two different states, as DARTS' derivation always does (it
keeps a node's two strongest *edges*). The right input's token then counts the node's other inputs
(k + 1 choices: token r means input r, or r + 1 from the left input on), so every token sequence is
a valid cell and the controllers, NAO and the surrogates need no masks. `space=micro_tiny` is such a
space, small enough to enumerate and train exhaustively (`mode=groundtruth`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from naslab.ops.cnn import OPS
from naslab.ops.cnn import op_set as lookup_op_set
from naslab.spaces.base import GenotypeError, Space, Task
from naslab.spaces.micro.genotype import NUM_CELL_INPUTS, Branch, Cell, MicroGenotype, Node
from naslab.spaces.micro.network import MicroNetwork

TOKENS_PER_NODE = 4
ZERO_OP = "none"
CELL_NAMES = ("normal", "reduce")


def _order(branch: Branch) -> tuple[int, str]:
    return (branch.input, branch.op)


class MicroSpace(Space[MicroGenotype]):
    """Normal + reduction cell with `num_nodes` nodes over a named op set."""

    name = "micro"

    def __init__(
        self,
        num_nodes: int = 5,
        op_set: str | Sequence[str] = "enas",
        concat: Literal["unused", "all"] = "unused",
        tied: bool = False,
        distinct_inputs: bool = False,
        zero_op: bool = False,
    ):
        if num_nodes < 1:
            raise ValueError(f"micro space needs num_nodes >= 1, got {num_nodes}")
        if concat not in ("unused", "all"):
            raise ValueError(f"micro space concat must be 'unused' or 'all', got '{concat}'")
        self.num_nodes = num_nodes
        self.ops: tuple[str, ...] = lookup_op_set(op_set)
        self.op_set_name = op_set if isinstance(op_set, str) else "custom"
        self.concat_rule = concat
        self.tied = bool(tied)
        self.distinct_inputs = bool(distinct_inputs)
        self.zero_op = bool(zero_op)

    def __repr__(self) -> str:
        ops = f"'{self.op_set_name}'" if self.op_set_name != "custom" else repr(list(self.ops))
        tied = ", tied=True" if self.tied else ""
        distinct = ", distinct_inputs=True" if self.distinct_inputs else ""
        return f"MicroSpace(num_nodes={self.num_nodes}, op_set={ops}, concat='{self.concat_rule}'{tied}{distinct})"

    @property
    def mixed_ops(self) -> tuple[str, ...]:
        """The ops of DARTS' mixed edges: the space's, with the zero op `none` in front when `zero_op`.

        DARTS relaxes over its PRIMITIVES, which begin with 'none' (quark0/darts cnn/genotypes.py), so that
        an edge can learn to be absent; a space without `none` among its ops (whose cells never contain it)
        gets it in the relaxation only with zero_op=True. Derivation never picks it.
        """
        if self.zero_op and ZERO_OP not in self.ops:
            return (ZERO_OP, *self.ops)
        return self.ops

    @property
    def num_cells(self) -> int:
        """Cells the tokens describe: 1 when tied (normal = reduce), else 2."""
        return 1 if self.tied else len(CELL_NAMES)

    # --- structure -------------------------------------------------------------------------
    def _concat(self, nodes: tuple[Node, ...]) -> tuple[int, ...]:
        if self.concat_rule == "all":
            return tuple(range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + len(nodes)))
        return Cell(nodes, (NUM_CELL_INPUTS,)).unused_nodes()

    def _cell(self, nodes: Sequence[Node]) -> Cell:
        nodes = tuple(nodes)
        return Cell(nodes, self._concat(nodes))

    def _right_inputs(self, k: int) -> int:
        """Choices of node k's right input: every state before it, or all but the left input's."""
        return k + NUM_CELL_INPUTS - (1 if self.distinct_inputs else 0)

    def size(self) -> int:
        """Token sequences (architectures up to branch swaps are fewer: see `key`)."""
        per_cell = math.prod(
            (k + NUM_CELL_INPUTS) * self._right_inputs(k) * len(self.ops) ** 2 for k in range(self.num_nodes)
        )
        return per_cell**self.num_cells

    def sample(self, rng: np.random.Generator) -> MicroGenotype:
        """Uniform over token sequences (each architecture has as many as it has branch-swap variants)."""
        return self.from_tokens([int(rng.integers(n)) for n in self.token_choices()])

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
            per_cell += [k + NUM_CELL_INPUTS, len(self.ops), self._right_inputs(k), len(self.ops)]
        return per_cell * self.num_cells

    def token_kinds(self) -> list[str]:
        return ["input", "op"] * (len(self.token_choices()) // 2)

    def to_tokens(self, genotype: MicroGenotype) -> tuple[int, ...]:
        """The token sequence; a tied space's partial genotype (fewer blocks) gives its prefix."""
        self.validate(genotype, partial=self.tied)
        tokens: list[int] = []
        for cell in (genotype.normal, genotype.reduce)[: self.num_cells]:
            for node in cell.nodes:
                right = node.right.input
                if self.distinct_inputs and right > node.left.input:
                    right -= 1  # the right input counts the states other than the left input
                tokens += [node.left.input, self.ops.index(node.left.op), right, self.ops.index(node.right.op)]
        return tuple(tokens)

    def from_tokens(self, tokens: Sequence[int]) -> MicroGenotype:
        self.check_tokens(tokens)
        per_cell = self.num_nodes * TOKENS_PER_NODE
        cells = []
        for c in range(self.num_cells):
            chunk = [int(t) for t in tokens[c * per_cell : (c + 1) * per_cell]]
            nodes = []
            for i in range(0, per_cell, TOKENS_PER_NODE):
                left, right = chunk[i], chunk[i + 2]
                if self.distinct_inputs and right >= left:
                    right += 1
                nodes.append(Node(Branch(left, self.ops[chunk[i + 1]]), Branch(right, self.ops[chunk[i + 3]])))
            cells.append(self._cell(nodes))
        return MicroGenotype(cells[0], cells[-1])

    # --- equivalences and validation --------------------------------------------------------
    def symmetries(self, genotype: MicroGenotype) -> list[MicroGenotype]:
        """All genotypes reachable by swapping the two branches of any nodes (a node sums them).

        The concat set is unchanged by swaps, so every variant is the same network function. A tied
        space swaps the same nodes in both cells, so its variants stay tied.
        """
        variants = []
        for cell in (genotype.normal, genotype.reduce)[: self.num_cells]:
            options = [{node, node.swapped()} for node in cell.nodes]
            variants.append([Cell(tuple(nodes), cell.concat) for nodes in itertools.product(*options)])
        seen: dict[MicroGenotype, None] = {}
        for cells in itertools.product(*variants):
            seen.setdefault(MicroGenotype(cells[0], cells[-1]), None)
        return list(seen)

    def random_symmetry(self, genotype: MicroGenotype, rng: np.random.Generator) -> MicroGenotype:
        """Swaps the branches of each node with probability 1/2 (uniform over the swap patterns)."""

        def swap_some(cell: Cell) -> Cell:
            nodes = tuple(node.swapped() if rng.integers(2) else node for node in cell.nodes)
            return Cell(nodes, cell.concat)

        normal = swap_some(genotype.normal)
        return MicroGenotype(normal, normal if self.tied else swap_some(genotype.reduce))

    def canonical(self, genotype: MicroGenotype) -> MicroGenotype:
        """Branches of every node in sorted (input, op) order: equal for all symmetric variants."""

        def canon(cell: Cell) -> Cell:
            nodes = tuple(
                node if (node.left.input, node.left.op) <= (node.right.input, node.right.op) else node.swapped()
                for node in cell.nodes
            )
            return Cell(nodes, cell.concat)

        return MicroGenotype(canon(genotype.normal), canon(genotype.reduce))

    def validate(self, genotype: MicroGenotype, partial: bool = False) -> None:
        """A one-line error unless `genotype` is in the space; `partial` also accepts cells of fewer
        blocks (a tied space's progressive levels)."""
        if not isinstance(genotype, MicroGenotype):
            raise GenotypeError(f"expected a MicroGenotype, got {type(genotype).__name__}")
        if self.tied and genotype.normal != genotype.reduce:
            raise GenotypeError(f"{self!r} ties the reduction cell to the normal cell, but the genotype's cells differ")
        for name, cell in genotype.cells.items():
            if partial and not 1 <= cell.num_nodes <= self.num_nodes:
                raise GenotypeError(f"{name} has {cell.num_nodes} nodes; {self!r} has 1..{self.num_nodes}")
            if not partial and cell.num_nodes != self.num_nodes:
                raise GenotypeError(f"{name} has {cell.num_nodes} nodes; {self!r} has {self.num_nodes}")
            expected = self._concat(cell.nodes)
            if cell.concat != expected:
                raise GenotypeError(
                    f"{name}.concat={list(cell.concat)}; {self!r} concatenates "
                    f"{list(expected)} ({self.concat_rule} nodes)"
                )
            for k, node in enumerate(cell.nodes):
                if self.distinct_inputs and node.left.input == node.right.input:
                    raise GenotypeError(
                        f"{name}.nodes[{k}] reads input {node.left.input} twice; {self!r} needs two different inputs"
                    )
                for side, branch in (("left", node.left), ("right", node.right)):
                    if branch.op not in self.ops:
                        raise GenotypeError(
                            f"{name}.nodes[{k}].{side}.op='{branch.op}' is not in op set "
                            f"'{self.op_set_name}' ({', '.join(self.ops)})"
                        )

    def genotype_from_dict(self, data: Any) -> MicroGenotype:
        return MicroGenotype.from_dict(data)

    # --- progressive search (EPNAS / PNAS): one more block per level, tied cells only ------------
    def level(self, genotype: MicroGenotype) -> int:
        """The complexity level of a (partial) genotype: its number of blocks, 1..num_nodes."""
        return genotype.normal.num_nodes

    def is_complete(self, genotype: MicroGenotype) -> bool:
        return self.level(genotype) == self.max_level()

    def max_level(self) -> int:
        return self.num_nodes

    def validate_partial(self, genotype: MicroGenotype) -> None:
        """Partial cells exist only in a tied (progressive) space; an untied one validates strictly."""
        self.validate(genotype, partial=self.tied)

    def expand(self, genotype: MicroGenotype | None) -> list[MicroGenotype]:
        """Every cell one block larger than `genotype`'s (None: the one-block cells), in both positions.

        Block k reads two of the cell inputs and earlier blocks (k + 2 choices) through two ops: the
        unordered pairs of (input, op) branches, canonical order first, since a block sums its two
        branches. So expanding level by level from None reaches every architecture of the space once
        up to branch swaps (each has one parent: its cell without the last block).
        """
        if not self.tied:
            raise ValueError(
                f"progressive search grows one cell used as both normal and reduction cell (PNAS, EPNAS), "
                f"but {self!r} has two: use space=micro_epnas or space.tied=true"
            )
        nodes: tuple[Node, ...] = ()
        if genotype is not None:
            self.validate(genotype, partial=True)
            nodes = self.canonical(genotype).normal.nodes
        k = len(nodes)
        if k >= self.num_nodes:
            return []
        # sorted as `canonical` orders a block's branches, so every child is its own canonical form
        branches = sorted((Branch(i, op) for i in range(k + NUM_CELL_INPUTS) for op in self.ops), key=_order)
        children = []
        for left, right in itertools.combinations_with_replacement(branches, 2):
            if self.distinct_inputs and left.input == right.input:
                continue
            cell = self._cell(nodes + (Node(left, right),))
            children.append(MicroGenotype(cell, cell))
        return children

    def prefix(self, genotype: MicroGenotype, level: int) -> MicroGenotype:
        """The first `level` blocks of every cell (concat recomputed): the genotype's ancestor at that level."""
        if level < 1:
            raise ValueError(f"a prefix has at least one block (level >= 1), got level {level}")
        self.validate(genotype, partial=True)
        cells = [self._cell(cell.nodes[:level]) for cell in (genotype.normal, genotype.reduce)]
        return MicroGenotype(*cells)

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
        from naslab.spaces.micro.supernet import MicroSupernet

        task.require("image", self.name)
        return MicroSupernet(
            self.num_nodes, self.ops, task.num_classes, task.input_shape[0], channels, cells_per_stage, task.stem
        )

    def build_mixed_supernet(
        self, task: Task, channels: int = 16, cells_per_stage: int = 2, stem_multiplier: int = 3, **_: Any
    ) -> nn.Module:
        """DARTS' search network (default: C=16, 8 cells) over this space's ops and node count.

        The relaxation concatenates every node, so only a space that does the same (concat=all)
        derives the network it searched. A tied space's supernet has one alpha matrix for all cells.
        """
        from naslab.spaces.micro.mixed import MicroMixedSupernet

        task.require("image", self.name)
        if self.concat_rule != "all":
            raise ValueError(
                f"a mixed-op supernet concatenates every node, but {self!r} concatenates unused nodes only; "
                "use space=micro_darts or space.concat=all"
            )

        return MicroMixedSupernet(
            self.num_nodes,
            self.mixed_ops,
            task.num_classes,
            task.input_shape[0],
            channels,
            cells_per_stage,
            task.stem,
            stem_multiplier,
            tied=self.tied,
        )

    def derive(self, alphas: Mapping[str, torch.Tensor]) -> MicroGenotype:
        """DARTS' rule: per node the two strongest edges, each with its strongest non-`none` op.

        A tied space derives its one cell from alphas["cell"]; an untied one from "normal" and "reduce".
        """
        from naslab.spaces.micro.derive import TIED_ALPHA, derive_micro_genotype

        names = (TIED_ALPHA,) if self.tied else CELL_NAMES
        missing = [kind for kind in names if kind not in alphas]
        if missing:
            raise GenotypeError(f"micro alphas need entries {list(names)}; missing {missing}")
        if self.tied:
            return derive_micro_genotype(self, alphas[TIED_ALPHA], alphas[TIED_ALPHA], self.mixed_ops)
        return derive_micro_genotype(self, alphas["normal"], alphas["reduce"], self.mixed_ops)

    def relaxed_weights(self, genotype: MicroGenotype) -> dict[str, torch.Tensor]:
        """One-hot mixed-supernet weights that compute `genotype` (`micro.derive.one_hot_weights`)."""
        from naslab.spaces.micro.derive import one_hot_weights

        return one_hot_weights(self, genotype)

    def describe(self, genotype: MicroGenotype) -> str:
        """The readable genotype; a tied space's one cell once (the reduction cell is the same)."""
        return f"cell (normal = reduce): {genotype.normal}" if self.tied else str(genotype)
