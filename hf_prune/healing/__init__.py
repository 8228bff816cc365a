"""Healing: distil a pruned model from the model it was pruned from (full parameters or LoRA through PEFT),
on one device or many through Accelerate."""

from .config import HealingConfig
from .run import ShotHealer, heal, state_dir_for
from .trainer import HealingResult, check_teacher, heal_model

__all__ = ["HealingConfig", "HealingResult", "ShotHealer", "check_teacher", "heal", "heal_model", "state_dir_for"]
