"""Configuration of TransAct (activation-guided intra-module pruning)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import InvalidPruningError
from ..width import WidthConfig


@dataclass
class TransActConfig(WidthConfig):
    """TransAct: prune the transitional activations inside attention and MLP (arXiv 2407.05690).

    The residual stream keeps its size. Channel salience is the L2 norm over calibration tokens of each channel
    entering o_proj (attention output, heads x head_dim) and down_proj (`act(gate(x)) * up(x)`), accumulated in
    float64; a query head scores `mean + (10 / head_dim) * max` of its channels' saliences, a KV group the sum of its
    heads. The K-shot schedule moves every width `(current - target) // (K - s + 1)` toward its target at shot `s`,
    re-calibrating on the pruned model between shots (the reference trains between shots; here it does not, and
    recovery training is left to the user). `shots=1` is the one-shot ablation.

    Args:
        shots: K, the number of prune-and-recalibrate rounds (the reference uses 8).
        head_dim_ratio: also narrow every remaining head by this fraction of its rotary pairs, chosen by the summed
            salience of each pair's two output channels after the last shot; the kept pairs keep their RoPE
            frequencies. Off by default (the paper prunes whole heads).

    Example:

    ```python
    >>> from hf_prune.scoring import TransActConfig
    >>> TransActConfig(shots=4, gqa="groups").method
    'transact'

    ```
    """

    method = "transact"
    paper = (
        "Shen et al., 2024. Pruning Large Language Models to Intra-module Low-rank Architecture with Transitional "
        "Activations (TransAct). Findings of ACL 2024, arXiv:2407.05690"
    )

    shots: int = field(default=8, metadata={"help": "prune-and-recalibrate rounds (reference: 8; 1 = one shot)"})
    head_dim_ratio: float | None = field(
        default=None, metadata={"help": "also remove this fraction of every head's rotary pairs (exact RoPE)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shots < 1:
            raise InvalidPruningError(f"shots must be at least 1, got {self.shots}")
        if self.head_dim_ratio is not None and not 0 < self.head_dim_ratio < 1:
            raise InvalidPruningError(f"head-dim-ratio must be strictly between 0 and 1, got {self.head_dim_ratio}")

