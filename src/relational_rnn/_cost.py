"""When folding two linear maps into one product saves work."""

from __future__ import annotations


def folding_pays(rows: int, inputs: int, middle: int, outputs: int) -> bool:
    """Whether x (A B)^T takes fewer multiply-adds than (x B^T) A^T, forming A B included.

    x has ``rows`` rows of ``inputs`` features, B is (middle, inputs), A (outputs, middle).
    Forming A B costs outputs * middle * inputs once, so folding pays only for enough rows
    (a whole sequence, not a single step of one sample).
    """
    folded = outputs * middle * inputs + rows * outputs * inputs
    return folded < rows * middle * (inputs + outputs)
