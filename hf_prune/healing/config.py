"""`HealingConfig`: how a pruned model is distilled back towards the model it was pruned from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..errors import HealingError

Loss = Literal["kd", "ce", "kd+ce"]
Schedule = Literal["cosine", "linear", "constant"]
TeacherDtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass
class HealingConfig:
    """How to heal: data, budget, optimiser, loss and LoRA.

    Healing trains the pruned model (the student) to match the token distributions of the model it came from (the
    teacher) on ordinary text: logit distillation, KL(teacher || student) at `temperature`, scaled by `temperature**2`
    as in Hinton et al. With `intermediate_weight`, the output of every layer is also pulled towards the output of the
    teacher layer it came from (Minitron's intermediate-state distillation, which its authors recommend after deep
    depth pruning), as the squared error relative to the teacher's, per token. The full-vocabulary logits are
    computed `logits_chunk` tokens at a time, each chunk's gradients in closed form at once, so their memory does not
    grow with the batch. The teacher only runs forward, so `teacher_dtype="auto"` runs it in bfloat16 where the device
    has native bfloat16 arithmetic (GPUs that support it, CPUs with AVX512-BF16 or AMX): the student still trains in
    its own dtype, against float32 KL.

    `batch_size` is per process (Accelerate's convention): a step sees `batch_size x processes x grad_accum` windows.
    Give the budget as `tokens` (rounded up to whole steps) or `steps`.

    Example:

    ```python
    >>> from hf_prune.healing import HealingConfig
    >>> config = HealingConfig(tokens=32_768, seq_len=256, batch_size=4)
    >>> config.steps_for(processes=1)
    32
    >>> HealingConfig.from_dict(config.to_dict()) == config
    True

    ```
    """

    tokens: int | None = field(default=None, metadata={"help": "training tokens (rounded up to whole steps)"})
    steps: int | None = field(default=None, metadata={"help": "optimiser steps (instead of --tokens)"})
    seq_len: int = field(default=256, metadata={"help": "tokens per training window"})
    batch_size: int = field(default=4, metadata={"help": "windows per micro-batch and process"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimiser step"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default: 3e-4 full, 1e-3 LoRA)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup: float = field(default=0.05, metadata={"help": "fraction of the steps spent warming up linearly"})
    schedule: Schedule = field(default="cosine", metadata={"help": "learning-rate decay after warm-up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: none)"})
    loss: Loss = field(default="kd", metadata={"help": "kd (distillation), ce (next token), or kd+ce (mean of both)"})
    temperature: float = field(default=1.0, metadata={"help": "distillation temperature"})
    intermediate_weight: float = field(default=0.0, metadata={
        "help": "weight of the intermediate-state loss: each layer's output against its source layer's in the "
                "teacher (Minitron); 0: logits only"})
    logits_chunk: int = field(default=1024, metadata={"help": "tokens whose vocabulary logits are computed at once"})
    teacher_dtype: TeacherDtype = field(default="auto", metadata={
        "help": "the teacher's dtype; auto: bfloat16 where the device computes it natively, else the teacher's own"})
    lora: int | None = field(default=None, metadata={"help": "LoRA rank through PEFT, merged at the end (default: full)"})
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA alpha (default: 2 x rank)"})
    data: str | None = field(default=None, metadata={"help": "training text: .txt, .jsonl, Hub dataset, or builtin"})
    eval_text: str | None = field(default=None, metadata={"help": "held-out text (default: the built-in evaluation split)"})
    eval_windows: int = field(default=4, metadata={"help": "held-out windows of seq_len tokens"})
    eval_every: int | None = field(default=None, metadata={"help": "steps between held-out evaluations (default: 4 per run)"})
    save_every: int | None = field(default=None, metadata={"help": "steps between resumable checkpoints (default: 10 per run)"})
    seed: int = field(default=0, metadata={"help": "seed of LoRA's initialisation and the window order"})

    def __post_init__(self) -> None:
        if (self.tokens is None) == (self.steps is None):
            raise HealingError("give the healing budget as tokens or as steps (one of them)")
        for name in ("tokens", "steps", "seq_len", "batch_size", "grad_accum", "logits_chunk", "eval_windows"):
            value = getattr(self, name)
            if value is not None and value < (2 if name == "seq_len" else 1):
                raise HealingError(f"{name.replace('_', '-')} must be at least {2 if name == 'seq_len' else 1}, got {value}")
        if self.lora is not None and self.lora < 1:
            raise HealingError(f"LoRA rank must be at least 1, got {self.lora}")
        if self.temperature <= 0:
            raise HealingError(f"temperature must be positive, got {self.temperature}")
        if self.intermediate_weight < 0:
            raise HealingError(f"intermediate weight must be at least 0, got {self.intermediate_weight}")
        if not 0 <= self.warmup < 1:
            raise HealingError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.loss not in ("kd", "ce", "kd+ce"):
            raise HealingError(f"loss must be kd, ce or kd+ce, got {self.loss!r}")
        if self.teacher_dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise HealingError(f"teacher dtype must be auto, float32, bfloat16 or float16, got {self.teacher_dtype!r}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise HealingError(f"schedule must be cosine, linear or constant, got {self.schedule!r}")

    @property
    def learning_rate(self) -> float:
        """`lr`, or the default for the kind of training: 3e-4 for all parameters, 1e-3 for LoRA adapters (the best
        of 1e-4, 3e-4 and 1e-3 at 32k and 128k tokens in `benchmarks/healing.py`)."""
        return self.lr if self.lr is not None else (1e-3 if self.lora else 3e-4)

    def steps_for(self, processes: int) -> int:
        """Optimiser steps of the run on `processes` data-parallel processes."""
        if self.steps is not None:
            return self.steps
        per_step = self.seq_len * self.batch_size * self.grad_accum * processes
        return -(-self.tokens // per_step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
