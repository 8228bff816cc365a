"""The healing loop: distil a pruned student from its teacher with Accelerate, on one process or many.

The loop is Accelerate's: `Accelerator.prepare` places the student, shards the windows across data-parallel processes
(gloo on CPUs, NCCL on GPUs) and wraps the student for gradient all-reduce; `accumulate`, `backward`,
`clip_grad_norm_`, `save_state` / `load_state` and `skip_first_batches` do the rest. The same code runs under
`python`, `torchrun` and `accelerate launch`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from ..calibration.data import tokens_sha256
from ..calibration.distributed import process_state
from ..errors import HealingError, MissingDependencyError
from ..surgery import trace_of
from .config import HealingConfig

STATE_FILE = "healing_state.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class HealingResult:
    """A healed model and what was done to it (`facts` goes into pruning.json as `healing`)."""

    model: PreTrainedModel
    facts: dict[str, Any] = field(default_factory=dict)


def _log_softmax_(logits: torch.Tensor) -> torch.Tensor:
    """Turn `logits` into log-probabilities in place (over the last dimension) and return the probabilities.

    One vocabulary-sized buffer is allocated (the probabilities). Fresh buffers of that size are what made
    distillation slow: each costs a page fault per 4 KiB on first touch, which on virtual machines took longer than
    the arithmetic, and `torch.log_softmax` followed by `exp` allocates two, `torch.logsumexp` two more.
    """
    logits.sub_(logits.amax(-1, keepdim=True))
    probs = logits.exp()
    sums = probs.sum(-1, keepdim=True)
    probs.div_(sums)
    logits.sub_(sums.log_())
    return probs


class FusedHeadLoss(torch.autograd.Function):
    """The summed healing loss of `hidden` through the vocabulary projection `weight`, `chunk` positions at a time.

    The loss's gradient has a closed form in the logits (KL: `T * (softmax(s / T) - softmax(t / T))`; cross-entropy:
    `softmax(s) - onehot`), so each chunk's gradients with respect to the hidden states and the projection are
    computed in the forward pass and its logits dropped at once: neither the student's nor the teacher's logits are
    ever recomputed or held for more than one chunk. Logits are float32 whatever the weights are.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, teacher_hidden, teacher_weight, loss: str, temperature: float, chunk: int):
        distil, next_token = loss in ("kd", "kd+ce"), loss in ("ce", "kd+ce")
        terms = distil + next_token
        grad_hidden = torch.empty_like(hidden)
        grad_weight = None
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        for start in range(0, labels.numel(), chunk):
            part = slice(start, start + chunk)
            logits = (hidden[part] @ weight.T).float()
            grad_logits = None
            if next_token:
                rows, targets = torch.arange(len(logits), device=logits.device), labels[part]
                probs = _log_softmax_(logits)
                total -= logits[rows, targets].double().sum()
                probs[rows, targets] -= 1  # softmax(s) - onehot
                grad_logits = probs
            if distil:
                # Softmax ignores a shift per row: the log-probabilities left by the next-token loss serve as logits.
                teacher = (teacher_hidden[part] @ teacher_weight.T).float()
                if temperature != 1:
                    teacher.div_(temperature)
                    logits.div_(temperature)
                teacher_probs = _log_softmax_(teacher)
                student_probs = _log_softmax_(logits)
                # KL(t || s) = sum t * (log t - log s), row by row (the teacher's buffer becomes log t - log s).
                total += torch.einsum("ij,ij->i", teacher_probs, teacher.sub_(logits)).double().sum() * temperature**2
                # The gradient in the student's logits: T * (softmax(s / T) - softmax(t / T)).
                distillation = student_probs.sub_(teacher_probs).mul_(temperature)
                grad_logits = distillation if grad_logits is None else grad_logits.add_(distillation)
                del teacher, teacher_probs, student_probs, distillation
            if terms > 1:
                grad_logits.div_(terms)
            grad_hidden[part] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if ctx.needs_input_grad[1]:
                hidden_part = hidden[part].float()
                if grad_weight is None:
                    grad_weight = grad_logits.T @ hidden_part
                else:
                    grad_weight.addmm_(grad_logits.T, hidden_part)
            del logits, grad_logits
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return (total / terms).float()

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden * grad_output, grad_weight, None, None, None, None, None, None


class LayerOutputs:
    """Collects what the decoder layers at `indices` return while a forward pass runs inside the `with` block.

    Forward hooks rather than `output_hidden_states`: which of those states is taken before or after the final norm
    has changed between transformers releases, a layer's own output has not.
    """

    def __init__(self, decoder: nn.Module, indices: Sequence[int]):
        self.layers, self.indices = decoder.layers, list(indices)
        self.outputs: list[torch.Tensor] = []
        self._captured: dict[int, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> LayerOutputs:
        for index in set(self.indices):
            self._handles.append(self.layers[index].register_forward_hook(self._recorder(index)))
        return self

    def _recorder(self, index: int):
        def record(module, args, output):
            self._captured[index] = output[0] if isinstance(output, tuple) else output
        return record

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if exc[0] is None:
            self.outputs = [self._captured[index] for index in self.indices]
        self._captured = {}


def intermediate_loss(student_states: Sequence[torch.Tensor], teacher_states: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over layers and tokens of the squared error of each student layer's output relative to its teacher layer's.

    Relative per token because a few tokens (the first, often) carry hidden states hundreds of times larger than the
    rest, and would otherwise make up the whole loss.
    """
    terms = []
    for student, teacher in zip(student_states, teacher_states):
        teacher = teacher.float()
        error = (student.float() - teacher).pow(2).sum(-1)
        terms.append((error / teacher.pow(2).sum(-1).clamp_min(1e-6)).mean())
    return torch.stack(terms).mean()


class DistillationStudent(nn.Module):
    """The student as one module whose forward returns the loss, so data parallelism wraps all of it.

    The decoder runs once; the vocabulary projection and the loss run `logits_chunk` positions at a time through
    `FusedHeadLoss`, so the logits of only one chunk are ever held. Given the teacher's layer outputs, the student's
    own are collected as the decoder runs and compared with them (`intermediate_loss`).
    """

    def __init__(self, model: PreTrainedModel, config: HealingConfig):
        super().__init__()
        self.model = model
        self.config = config

    def forward(
        self,
        input_ids: torch.Tensor,
        teacher_hidden: torch.Tensor | None,
        teacher_head: nn.Module | None,
        teacher_states: list[torch.Tensor] | None = None,
    ):
        decoder = self.model.get_decoder()
        with LayerOutputs(decoder, range(len(teacher_states)) if teacher_states else []) as states:
            hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings()
        if getattr(head, "bias", None) is not None or (teacher_head is not None and getattr(teacher_head, "bias", None) is not None):
            raise HealingError("healing needs an output projection without bias")
        # Position t predicts token t + 1: the last position has no label.
        hidden, labels = hidden[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten()
        if teacher_hidden is not None:
            teacher_hidden = teacher_hidden[:, :-1].flatten(0, 1)
        teacher_weight = teacher_head.weight if teacher_head is not None else None
        total = FusedHeadLoss.apply(hidden, head.weight, labels, teacher_hidden, teacher_weight, self.config.loss,
                                    self.config.temperature, self.config.logits_chunk)
        loss = total / labels.numel()
        if teacher_states:
            loss = loss + self.config.intermediate_weight * intermediate_loss(states.outputs, teacher_states)
        return loss


def source_layers_of(student: PreTrainedModel, teacher: PreTrainedModel, source_layers: Sequence[int] | None) -> list[int]:
    """The teacher layer each student layer came from: `source_layers`, or the student's pruning trace, checked."""
    if source_layers is None:
        source_layers = [layer.source_layer for layer in trace_of(student).layers]
    source_layers = list(source_layers)
    student_layers, teacher_layers = len(student.get_decoder().layers), len(teacher.get_decoder().layers)
    if len(source_layers) != student_layers or not all(0 <= index < teacher_layers for index in source_layers):
        raise HealingError(f"the intermediate-state loss needs the source layer of each of the student's {student_layers} "
                           f"layers among the teacher's {teacher_layers}, got {source_layers}")
    return source_layers


def check_teacher(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    student_tokenizer: PreTrainedTokenizerBase | None = None,
    teacher_tokenizer: PreTrainedTokenizerBase | None = None,
) -> None:
    """Refuse, in one line, a teacher whose tokens mean something else than the student's."""
    sizes = student.get_output_embeddings().out_features, teacher.get_output_embeddings().out_features
    if sizes[0] != sizes[1]:
        raise HealingError(f"the teacher's vocabulary has {sizes[1]:,} entries and the student's {sizes[0]:,}: "
                           "distillation needs the same tokenizer")
    if student_tokenizer is not None and teacher_tokenizer is not None:
        if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
            raise HealingError("the teacher's tokenizer differs from the student's: distillation needs the same tokenizer")


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (not by emulation, which is slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        return any(getattr(cpu, check, lambda: False)() for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def teacher_dtype(config: HealingConfig, teacher: PreTrainedModel, device: torch.device) -> torch.dtype:
    """The dtype the teacher runs in: `config.teacher_dtype`, where `auto` is bfloat16 on native hardware.

    Example:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.healing import HealingConfig
    >>> from hf_prune.healing.trainer import teacher_dtype
    >>> teacher = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
    ...                                        num_hidden_layers=1, num_attention_heads=4))
    >>> teacher_dtype(HealingConfig(steps=1, teacher_dtype="float16"), teacher, torch.device("cpu"))
    torch.float16
    >>> teacher_dtype(HealingConfig(steps=1), teacher, torch.device("meta"))  # no native bfloat16: its own dtype
    torch.float32

    ```
    """
    if config.teacher_dtype != "auto":
        return getattr(torch, config.teacher_dtype)
    if teacher.dtype in (torch.float32, torch.float16) and native_bfloat16(device):
        return torch.bfloat16
    return teacher.dtype


def prepare_teacher(teacher: PreTrainedModel, config: HealingConfig, device: torch.device) -> PreTrainedModel:
    """The teacher on `device` in its healing dtype, in eval mode: a converted copy when the dtype changes, so the
    caller's model is left as it was."""
    dtype = teacher_dtype(config, teacher, device)
    if dtype != teacher.dtype:
        teacher = copy.deepcopy(teacher).to(dtype=dtype)
    return teacher.to(device).eval()


def _shares_storage(a: nn.Module, b: nn.Module) -> bool:
    pointers = {p.data_ptr() for p in b.parameters()}
    return any(p.data_ptr() in pointers for p in a.parameters())


def _add_lora(model: PreTrainedModel, config: HealingConfig):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MissingDependencyError("LoRA healing needs PEFT: pip install 'hf-prune[heal]'") from None
    present = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    lora = LoraConfig(
        r=config.lora,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora,
        lora_dropout=0.0,
        target_modules=[name for name in LORA_TARGETS if name in present],
        bias="none",
    )
    return get_peft_model(model, lora)


def _held_out(model, tokenizer, text, config: HealingConfig) -> float | None:
    if text is None:
        return None
    from ..evaluation.perplexity import perplexity

    was_training = model.training
    model.eval()
    value = perplexity(model, tokenizer, text, seq_len=config.seq_len, max_windows=config.eval_windows, progress=False)
    model.train(was_training)
    return value["perplexity"]


def heal_model(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    windows: torch.Tensor,
    config: HealingConfig,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    eval_text=None,
    state_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    accelerator: Accelerator | None = None,
    source_layers: Sequence[int] | None = None,
) -> HealingResult:
    """Distil `student` from `teacher` on the token `windows` (a `(N, seq_len)` tensor); returns the healed model.

    `teacher` may be `None` only for `loss="ce"`. With `config.intermediate_weight`, `source_layers` names the teacher
    layer each student layer came from (default: the student's pruning trace; a checkpoint read from disk has lost
    it, so `heal` passes the one in its `pruning.json`). With `state_dir`, resumable checkpoints are written there every
    `config.save_every` steps, and `resume=True` continues from the last one exactly. `eval_text` (with `tokenizer`)
    is the held-out text whose perplexity is measured before, during and after. The student is trained in place
    unless it shares weights with the teacher (surgery keeps untouched layers), in which case a copy is trained.

    Example:

    ```python
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> from hf_prune.healing import HealingConfig, heal_model
    >>> config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                      num_attention_heads=4, num_key_value_heads=2)
    >>> teacher = LlamaForCausalLM(config).eval()
    >>> student = LlamaForCausalLM(config)
    >>> windows = torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))
    >>> result = heal_model(student, teacher, windows, HealingConfig(steps=2, seq_len=16, batch_size=2), progress=False)
    >>> result.facts["steps"], len(result.facts["loss_curve"])
    (2, 2)

    ```
    """
    if config.loss != "ce" and teacher is None:
        raise HealingError(f"loss {config.loss} distils from a teacher; give one (or use loss='ce')")
    if config.intermediate_weight and teacher is None:
        raise HealingError("the intermediate-state loss compares layers with a teacher's; give one (or set it to 0)")
    if teacher is not None:
        check_teacher(student, teacher)
        source_layers = source_layers_of(student, teacher, source_layers) if config.intermediate_weight else []
        if _shares_storage(student, teacher):
            student = copy.deepcopy(student)
    if accelerator is None:
        # Accelerate sees a multi-process CPU run only when told it runs on the CPU (see calibration.distributed).
        process_state()
        accelerator = Accelerator(
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=config.grad_accum,
            step_scheduler_with_optimizer=False,
        )
    processes = accelerator.num_processes
    steps = config.steps_for(processes)
    micro_batches = steps * config.grad_accum * processes
    if windows.shape[1] != config.seq_len:
        raise HealingError(f"training windows have {windows.shape[1]} tokens, the config says seq_len={config.seq_len}")
    if windows.shape[0] < config.batch_size * processes:
        raise HealingError(
            f"the training text gives {windows.shape[0]} windows of {config.seq_len} tokens, fewer than one batch "
            f"({config.batch_size} x {processes} process{'es' if processes > 1 else ''}); use more text or shorter windows"
        )
    # The window order of the whole run, epoch after epoch, each epoch shuffled with the seed: what a step sees depends
    # on the step alone, which makes resuming exact.
    generator = torch.Generator().manual_seed(config.seed)
    needed = micro_batches * config.batch_size
    order = torch.cat([torch.randperm(windows.shape[0], generator=generator) for _ in range(-(-needed // windows.shape[0]))])
    dataset = windows[order[:needed]]
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=False)

    torch.manual_seed(config.seed)
    trained = _add_lora(student, config) if config.lora else student
    base = trained.get_base_model() if config.lora else trained
    base.config.use_cache = False
    wrapper = DistillationStudent(base, config)
    parameters = [p for p in wrapper.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = math.floor(config.warmup * steps)
    name = {"constant": "constant_with_warmup"}.get(config.schedule, config.schedule)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    wrapper, optimizer, loader, scheduler = accelerator.prepare(wrapper, optimizer, loader, scheduler)
    if teacher is not None:
        teacher = prepare_teacher(teacher, config, accelerator.device)
        teacher_decoder, teacher_head = teacher.get_decoder(), teacher.get_output_embeddings()
    else:
        teacher_decoder = teacher_head = None

    start_step, curve, held_out = 0, [], []
    state_dir = Path(state_dir) if state_dir is not None else None
    if resume:
        if state_dir is None or not (state_dir / STATE_FILE).is_file():
            raise HealingError(f"nothing to resume: no healing checkpoint in {state_dir}")
        accelerator.load_state(str(state_dir))
        saved = json.loads((state_dir / STATE_FILE).read_text())
        if saved["config"] != config.to_dict() or saved["processes"] != processes:
            raise HealingError(f"the healing checkpoint in {state_dir} was made with other settings; start again without --resume")
        start_step, curve, held_out = saved["step"], saved["loss_curve"], saved["held_out"]
        loader = accelerator.skip_first_batches(loader, start_step * config.grad_accum)
    eval_every = config.eval_every or max(1, steps // 4)
    save_every = config.save_every or max(1, steps // 10)
    tokens_per_step = config.seq_len * config.batch_size * config.grad_accum * processes
    # Held-out perplexity runs on every process: each evaluates a share of the windows and the sums are all-reduced.
    if not held_out and eval_text is not None:
        held_out.append({"tokens": 0, "perplexity": _held_out(accelerator.unwrap_model(wrapper).model, tokenizer, eval_text, config)})

    wrapper.train()
    bar = tqdm(total=steps, initial=start_step, desc="heal", unit="step", disable=not (progress and accelerator.is_main_process))
    started, step, running = time.perf_counter(), start_step, []
    for batch in loader:
        with accelerator.accumulate(wrapper):
            teacher_hidden = teacher_states = None
            if teacher_decoder is not None:
                with torch.no_grad(), LayerOutputs(teacher_decoder, source_layers) as states:
                    teacher_hidden = teacher_decoder(input_ids=batch, use_cache=False).last_hidden_state
                teacher_states = states.outputs or None
            loss = wrapper(batch, teacher_hidden, teacher_head, teacher_states)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        running.append(loss.detach())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        step_loss = accelerator.reduce(torch.stack(running).mean(), reduction="mean").item()
        running = []
        if not math.isfinite(step_loss):
            raise HealingError(f"the healing loss became {step_loss} at step {step}; lower --lr or check the data")
        curve.append({"step": step, "tokens": step * tokens_per_step, "loss": step_loss})
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{(step - start_step) * tokens_per_step / elapsed:,.0f}")
        bar.update()
        if eval_text is not None and (step % eval_every == 0 or step == steps):
            held_out.append({"tokens": step * tokens_per_step,
                             "perplexity": _held_out(accelerator.unwrap_model(wrapper).model, tokenizer, eval_text, config)})
        if state_dir is not None and step % save_every == 0 and step < steps:
            accelerator.save_state(str(state_dir))
            if accelerator.is_main_process:
                (state_dir / STATE_FILE).write_text(json.dumps(
                    {"step": step, "processes": processes, "config": config.to_dict(), "loss_curve": curve,
                     "held_out": held_out}))
            accelerator.wait_for_everyone()
        if step == steps:
            break
    bar.close()
    seconds = time.perf_counter() - started
    accelerator.wait_for_everyone()

    healed = accelerator.unwrap_model(wrapper).model
    if config.lora:
        healed = trained.merge_and_unload()
    healed.config.use_cache = True
    healed.eval()
    facts = {
        "config": config.to_dict(),
        "steps": steps,
        "tokens": steps * tokens_per_step,
        "processes": processes,
        "learning_rate": config.learning_rate,
        "optimizer": {"name": "AdamW", "lr": config.learning_rate, "weight_decay": config.weight_decay,
                      "betas": [0.9, 0.999], "schedule": config.schedule, "warmup_steps": warmup,
                      "max_grad_norm": config.max_grad_norm},
        "lora_rank": config.lora,
        # Which teacher layer each student layer was pulled towards, when the intermediate-state loss was on.
        "intermediate_source_layers": list(source_layers) if config.intermediate_weight else None,
        "teacher_dtype": str(teacher.dtype).removeprefix("torch.") if teacher is not None else None,
        "training_windows_sha256": tokens_sha256(windows),
        "loss_curve": curve,
        "held_out": held_out,
        "held_out_perplexity_before": held_out[0]["perplexity"] if held_out else None,
        "held_out_perplexity_after": held_out[-1]["perplexity"] if held_out else None,
        "wall_seconds": seconds,
        "tokens_per_second": (steps - start_step) * tokens_per_step / seconds if seconds else None,
        "resumed_from_step": start_step or None,
    }
    return HealingResult(healed, facts)
