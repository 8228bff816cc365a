"""Configuration of LLM-Rank (PageRank centrality of MLP neurons)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...errors import InvalidPruningError
from ..width import MLPWidthConfig


@dataclass
class LLMRankConfig(MLPWidthConfig):
    """LLM-Rank: rank MLP neurons by their centrality in the graph of their projections (arXiv 2410.13299).

    Nodes are the input and output neurons of the chain `up_proj -> down_proj`; the edge from input j to output i
    weighs `|W_ij|`. Calibration records the L2 norm over tokens of every input and output neuron of each linear.
    One sweep along the chain gives each linear's output neurons an importance `I` (normalised to sum 1), starting
    from the normalised input norms:

    - weighted PageRank (`wpr`): `I = gamma * M p + (1 - gamma) * a_out / sum(a_out)`, with
      `M = theta * |W| / colsum(|W|) + (1 - theta) * 1[W != 0] / colsum(1[W != 0])`;
    - modified PageRank (`mpr`): `I = (|W| p) * a_out`.

    An intermediate neuron scores the importance of its up_proj output; removing it removes its gate and up rows and
    its down column together (the reference only zeroes rows, so nothing shrinks). With `gamma=0`, WPR is activation
    pruning on up_proj's outputs, which is what the reference LLM code runs by default.

    Args:
        variant: `wpr` or `mpr`.
        gamma: weight of the graph term in WPR. Default 0.0, the reference LLM code's value, chosen by measurement:
            on SmolLM2-135M the reference MLP code's 0.9 multiplied WikiText-2 perplexity by 6 to 25 at 10-30% of the
            neurons removed (benchmarks/results/llm_rank.md). With 0.0 the graph term is off and WPR ranks neurons
            by their up_proj output norms.
        theta: mix of weighted and unweighted edges in WPR (reference: 0.5).
        chained: link layer l's down_proj to layer l+1's up_proj (the importance flows through the whole network)
            instead of scoring each MLP alone (the reference default, "isolated").
        gate: `ignore` (the reference) or `product`: also rank gate_proj's outputs the same way and score a neuron by
            the product of its up and gate importances.

    Example:

    ```python
    >>> from hf_prune.scoring import LLMRankConfig
    >>> LLMRankConfig(mlp_ratio=0.2).gamma
    0.0

    ```
    """

    method = "llm-rank"
    paper = (
        "Hoffmann, Budhathoki and Kleindessner, 2024. LLM-Rank: A Graph Theoretical Approach to Pruning Large "
        "Language Models. arXiv:2410.13299"
    )

    variant: Literal["wpr", "mpr"] = field(default="wpr", metadata={"help": "weighted or modified PageRank"})
    gamma: float = field(
        default=0.0, metadata={"help": "WPR: weight of the graph term (reference LLM code: 0.0, MLP code: 0.9)"}
    )
    theta: float = field(default=0.5, metadata={"help": "WPR: weighted vs unweighted edges"})
    chained: bool = field(default=False, metadata={"help": "link each MLP to the next (default: isolated)"})
    gate: Literal["ignore", "product"] = field(
        default="ignore", metadata={"help": "also rank gate_proj outputs and multiply the importances"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in ("wpr", "mpr"):
            raise InvalidPruningError(f"variant must be 'wpr' or 'mpr', got {self.variant!r}")
        for name in ("gamma", "theta"):
            if not 0 <= getattr(self, name) <= 1:
                raise InvalidPruningError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.gate not in ("ignore", "product"):
            raise InvalidPruningError(f"gate must be 'ignore' or 'product', got {self.gate!r}")

