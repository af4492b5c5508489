"""Primitive operations of the cell spaces."""

from naslab.ops.cnn import OP_SETS, OPS, FactorizedReduce, ReLUConvBN, build_op, op_set

__all__ = ["OPS", "OP_SETS", "FactorizedReduce", "ReLUConvBN", "build_op", "op_set"]
