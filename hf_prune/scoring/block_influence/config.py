"""Configuration of Block Influence (ShortGPT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...errors import InvalidPruningError
from ..base import MethodConfig


@dataclass
class BlockInfluenceConfig(MethodConfig):
    """Block Influence: remove the layers that change the hidden state least (ShortGPT, arXiv 2403.03853).

    For every decoder layer, `BI = 1 - mean over tokens of cos(h_in, h_out)`, computed from hooks on the decoder
    layers (so the last layer is compared with its real, pre-final-norm output) and accumulated in float64. The
    layers with the lowest BI are removed in one shot, as in the paper.

    Args:
        metric: `"cosine"` (`1 - cos`, the paper's) or `"angular"` (`arccos(cos) / pi`).
        iterative: remove the lowest-scoring layer, re-score the smaller model, and repeat (the paper removes all
            at once; this costs one calibration pass per removed layer).
        contiguous: remove the contiguous block of n layers whose input `h_i` and output `h_{i+n}` are closest in
            angular distance (Gromov et al., "The Unreasonable Ineffectiveness of the Deeper Layers").

    Example:

    ```python
    >>> from hf_prune.scoring import BlockInfluenceConfig
    >>> BlockInfluenceConfig(metric="angular").method
    'block-influence'

    ```
    """

    method = "block-influence"
    kind = "depth"
    paper = (
        "Men et al., 2024. ShortGPT: Layers in Large Language Models are More Redundant Than You Expect. "
        "arXiv:2403.03853"
    )

    metric: Literal["cosine", "angular"] = field(
        default="cosine", metadata={"help": "cosine: 1 - cos (the paper); angular: arccos(cos) / pi"}
    )
    iterative: bool = field(default=False, metadata={"help": "remove one layer at a time, re-scoring in between"})
    contiguous: bool = field(
        default=False, metadata={"help": "remove the contiguous block whose input and output are closest"}
    )

    def __post_init__(self) -> None:
        if self.metric not in ("cosine", "angular"):
            raise InvalidPruningError(f"metric must be 'cosine' or 'angular', got {self.metric!r}")
        if self.iterative and self.contiguous:
            raise InvalidPruningError("choose one of iterative or contiguous, not both")

