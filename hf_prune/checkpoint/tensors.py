"""Reading single tensors, or rows of one, from a safetensors checkpoint (one file or sharded) without loading it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import CheckpointError


class CheckpointTensors:
    """Lazy access to the tensors of a safetensors checkpoint directory.

    Each read opens the file, takes the tensor (its pages are read when first touched and released when the tensor
    is freed) and closes the file again: a file kept open would keep every page touched so far resident, and memory
    would grow with each layer read. Reading one decoder layer costs about one layer of memory whatever the size of
    the model.

    Example:

    ```python
    >>> from hf_prune.checkpoint import CheckpointTensors
    >>> import tempfile
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> directory = tempfile.mkdtemp()
    >>> LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    ...                              num_attention_heads=4)).save_pretrained(directory)
    >>> CheckpointTensors(directory).read("model.norm.weight").shape
    torch.Size([32])

    ```
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self._files = {name: self.directory / file for name, file in weight_map.items()}
        else:
            self._files = {}
            for path in sorted(self.directory.glob("*.safetensors")):
                with safe_open(path, framework="pt") as handle:
                    self._files.update({name: path for name in handle.keys()})
        if not self._files:
            raise CheckpointError(f"{self.directory} has no safetensors weights to stream")

    def names(self) -> list[str]:
        return list(self._files)

    def _path(self, name: str) -> Path:
        if name not in self._files:
            raise CheckpointError(f"{self.directory}: tensor {name} is missing from the checkpoint")
        return self._files[name]

    def read(self, name: str) -> torch.Tensor:
        """One whole tensor, in its stored dtype."""
        with safe_open(self._path(name), framework="pt") as handle:
            return handle.get_tensor(name)

    def shape(self, name: str) -> list[int]:
        with safe_open(self._path(name), framework="pt") as handle:
            return list(handle.get_slice(name).get_shape())

    def read_rows(self, name: str, rows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """`tensor[rows]` for a 2-D tensor, reading it `chunk` rows at a time (an embedding lookup without loading
        the embedding matrix)."""
        rows = rows.reshape(-1)
        result = None
        with safe_open(self._path(name), framework="pt") as handle:
            matrix = handle.get_slice(name)
            total = matrix.get_shape()[0]
            for start in range(0, total, chunk):
                selected = ((rows >= start) & (rows < start + chunk)).nonzero().squeeze(-1)
                if selected.numel() == 0:
                    continue
                block = matrix[start : min(start + chunk, total)]
                if result is None:
                    result = torch.empty((rows.numel(), block.shape[1]), dtype=block.dtype)
                result[selected] = block[rows[selected] - start]
        return result
