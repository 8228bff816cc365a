"""`python -m hf_prune ...` is `hf-prune ...` (what `torchrun -m hf_prune` runs)."""

from .cli import console_main

console_main()
