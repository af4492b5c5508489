"""The micro (cell) genotype: the contract between search and final training.

A cell has B nodes; node k (index k + 2) sums two branches, each an (input, op) pair whose input
is a cell input (0 = the cell two steps back, 1 = the previous cell) or an earlier node. The cell
output concatenates the nodes in `concat` (ENAS/NAO: the nodes no other node uses; DARTS: all).
Genotypes are frozen and hashable so that archives, caches and sets of architectures just work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from naslab.spaces.base import GenotypeError, parse_genotype_json  # noqa: F401 (re-exported)

NUM_CELL_INPUTS = 2


@dataclass(frozen=True)
class Branch:
    """One edge into a node: which earlier state it reads and which op it applies."""

    input: int
    op: str

    def __str__(self) -> str:
        return f"{self.op}({self.input})"


@dataclass(frozen=True)
class Node:
    """A node sums its two branches."""

    left: Branch
    right: Branch

    @property
    def branches(self) -> tuple[Branch, Branch]:
        return (self.left, self.right)

    def swapped(self) -> "Node":
        return Node(self.right, self.left)


@dataclass(frozen=True)
class Cell:
    """A normal or reduction cell: its nodes and which of them form the output."""

    nodes: tuple[Node, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        # Lists from JSON or user code become tuples, so every genotype stays hashable.
        for name in ("nodes", "concat"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def unused_nodes(self) -> tuple[int, ...]:
        """Node indices that no other node reads: the ENAS/NAO output rule."""
        used = {b.input for n in self.nodes for b in n.branches}
        return tuple(i for i in range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + self.num_nodes) if i not in used)

    def validate(self, where: str) -> None:
        if not isinstance(self.nodes, tuple) or len(self.nodes) == 0:
            raise GenotypeError(f"{where}.nodes must be a non-empty tuple of nodes, got {self.nodes!r}")
        for k, node in enumerate(self.nodes):
            if not isinstance(node, Node):
                raise GenotypeError(f"{where}.nodes[{k}] must be a Node, got {node!r}")
            for side, branch in (("left", node.left), ("right", node.right)):
                field = f"{where}.nodes[{k}].{side}"
                if not isinstance(branch, Branch):
                    raise GenotypeError(f"{field} must be a Branch, got {branch!r}")
                if not isinstance(branch.input, int) or isinstance(branch.input, bool):
                    raise GenotypeError(f"{field}.input must be an int, got {branch.input!r}")
                if not 0 <= branch.input < k + NUM_CELL_INPUTS:
                    raise GenotypeError(
                        f"{field}.input={branch.input} must be in [0, {k + NUM_CELL_INPUTS - 1}] "
                        f"(cell inputs 0-1 and earlier nodes)"
                    )
                if not isinstance(branch.op, str) or not branch.op:
                    raise GenotypeError(f"{field}.op must be an op name, got {branch.op!r}")
        last = NUM_CELL_INPUTS + self.num_nodes - 1
        if not self.concat:
            raise GenotypeError(f"{where}.concat must name at least one node")
        for i in self.concat:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= last:
                raise GenotypeError(f"{where}.concat has {i!r}; state indices are 0..{last} (0-1 are the cell inputs)")
        if len(set(self.concat)) != len(self.concat):
            raise GenotypeError(f"{where}.concat has duplicates: {list(self.concat)}")

    def __str__(self) -> str:
        nodes = " ".join(f"{k + NUM_CELL_INPUTS}={n.left}+{n.right}" for k, n in enumerate(self.nodes))
        return f"{nodes} -> cat{list(self.concat)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [[[b.input, b.op] for b in n.branches] for n in self.nodes],
            "concat": list(self.concat),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Cell":
        if not isinstance(data, dict) or "nodes" not in data or "concat" not in data:
            raise GenotypeError(f"{where} must be an object with 'nodes' and 'concat', got {data!r}")
        for name in ("nodes", "concat"):
            if not isinstance(data[name], (list, tuple)):
                raise GenotypeError(f"{where}.{name} must be a list, got {data[name]!r}")
        nodes = []
        for k, node in enumerate(data["nodes"]):
            if not isinstance(node, (list, tuple)) or len(node) != 2:
                raise GenotypeError(f"{where}.nodes[{k}] must be two [input, op] branches, got {node!r}")
            branches = []
            for side, branch in zip(("left", "right"), node):
                if not isinstance(branch, (list, tuple)) or len(branch) != 2:
                    raise GenotypeError(f"{where}.nodes[{k}].{side} must be [input, op], got {branch!r}")
                branches.append(Branch(branch[0], branch[1]))
            nodes.append(Node(*branches))
        cell = cls(tuple(nodes), tuple(data["concat"]))
        cell.validate(where)
        return cell


@dataclass(frozen=True)
class MicroGenotype:
    """A normal and a reduction cell. Validated on construction."""

    normal: Cell
    reduce: Cell

    def __post_init__(self) -> None:
        for name in ("normal", "reduce"):
            cell = getattr(self, name)
            if not isinstance(cell, Cell):
                raise GenotypeError(f"{name} must be a Cell, got {cell!r}")
            cell.validate(name)

    @property
    def cells(self) -> dict[str, Cell]:
        return {"normal": self.normal, "reduce": self.reduce}

    def ops(self) -> set[str]:
        return {b.op for c in (self.normal, self.reduce) for n in c.nodes for b in n.branches}

    def __str__(self) -> str:
        return f"normal: {self.normal} | reduce: {self.reduce}"

    def to_dict(self) -> dict[str, Any]:
        return {"normal": self.normal.to_dict(), "reduce": self.reduce.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "MicroGenotype":
        """Reads naslab's format, or the DARTS format {normal: [[op, input], ...], normal_concat, ...}."""
        if not isinstance(data, dict):
            raise GenotypeError(f"a micro genotype must be a JSON object, got {type(data).__name__}")
        if "normal_concat" in data:
            data = _from_darts_format(data)
        missing = [k for k in ("normal", "reduce") if k not in data]
        if missing:
            raise GenotypeError(f"micro genotype is missing {missing}")
        return cls(Cell.from_dict(data["normal"], "normal"), Cell.from_dict(data["reduce"], "reduce"))

    @classmethod
    def from_json(cls, text: str) -> "MicroGenotype":
        return cls.from_dict(parse_genotype_json(text))


_DARTS_OP_NAMES = {"skip_connect": "identity", "conv_7x1_1x7": "conv_1x7_7x1"}


def _from_darts_format(data: dict[str, Any]) -> dict[str, Any]:
    """DARTS lists (op, input) per edge, two per node; map its op names to ours."""
    out = {}
    missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat") if k not in data]
    if missing:
        raise GenotypeError(f"DARTS-format genotype is missing {missing}")
    for name in ("normal", "reduce"):
        edges = data[name]
        if len(edges) % 2:
            raise GenotypeError(f"{name} has {len(edges)} edges; DARTS format needs two per node")
        nodes = [
            [
                [int(edges[i][1]), _DARTS_OP_NAMES.get(edges[i][0], edges[i][0])],
                [int(edges[i + 1][1]), _DARTS_OP_NAMES.get(edges[i + 1][0], edges[i + 1][0])],
            ]
            for i in range(0, len(edges), 2)
        ]
        out[name] = {"nodes": nodes, "concat": list(data[f"{name}_concat"])}
    return out


def make_cell(nodes: Sequence[Sequence[tuple[int, str]]], concat: Iterable[int] | None = None) -> Cell:
    """Builds a cell from [((in, op), (in, op)), ...]; concat defaults to the unused nodes."""
    cell_nodes = tuple(Node(Branch(*left), Branch(*right)) for left, right in nodes)
    if concat is None:
        concat = Cell(cell_nodes, (NUM_CELL_INPUTS,)).unused_nodes()
    cell = Cell(cell_nodes, tuple(concat))
    return cell
