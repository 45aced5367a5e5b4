"""Training and evaluation data for Hugging Face causal-LM spaces (the family hook ``training_task``): token
windows through the folder's tokenizer, else bytes (see :mod:`supernet.training`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from hwpareto.errors import HwparetoError, InvalidValueError
from supernet._space import SearchSpace
from supernet._types import SubNetConfig
from supernet.data import TextData, tokenize_text
from supernet.training import EVAL_WINDOWS, LM_EVAL_BATCH, LM_WINDOW_TOKENS, TextTask, train_seq

__all__ = ["LMTask"]


class LMTask(TextTask):
    """Token windows for a Hugging Face causal-LM space (see the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        data: TextData,
        device: torch.device,
        seq_len: int | None,
        *,
        vocab: int,
        max_positions: int,
        tokenizer: Any,
    ) -> None:
        """``vocab``, ``max_positions`` and ``tokenizer`` (None: bytes) are the space's model's."""
        if data.tokenizer == "bytes":
            if tokenizer is not None:
                data = tokenize_text(data, tokenizer)
            elif vocab < 256:
                raise InvalidValueError(
                    f"space {space.name!r} vocab_size",
                    "at least 256 to read bytes (its folder has no tokenizer)",
                    vocab,
                )
        if data.vocab_size > vocab:
            raise InvalidValueError(
                f"corpus {data.name} vocabulary", f"at most {vocab} (space {space.name!r})", data.vocab_size
            )
        self.space, self.data, self.device = space, data, device
        self.window = min(max_positions, LM_WINDOW_TOKENS)
        self.max_seq = self.window - 1
        where = f"space {space.name!r}: max_position_embeddings"
        self.train_seq = self.max_seq if seq_len is None else train_seq(seq_len, max_positions, where)
        self.train = data.train.tokens.to(device)
        self._check_train_split("tokens")

    def prepare(self, batch: tuple[Any, torch.Tensor], config: SubNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
        return batch

    def check_output(self, logits: torch.Tensor) -> None:
        """Nothing to check: the corpus's vocabulary was checked against the space's."""

    def eval_batches(self, split: str, config: SubNetConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``EVAL_WINDOWS`` evenly spaced of the split's consecutive windows (all when fewer), the same for every
        SubNet, in batches of ``LM_EVAL_BATCH``."""
        tokens = self.data.split(split).tokens.to(self.device)
        n = len(tokens) // self.window
        if n == 0:
            raise HwparetoError(
                f"text {self.data.name}: the {split} split has {len(tokens)} tokens, need at least {self.window}"
            )
        chosen = np.unique(np.linspace(0, n - 1, min(n, EVAL_WINDOWS)).round().astype(np.int64))
        x, y = self._windows(tokens, torch.from_numpy(chosen * self.window).to(self.device))
        for i in range(0, len(x), LM_EVAL_BATCH):
            yield x[i : i + LM_EVAL_BATCH], y[i : i + LM_EVAL_BATCH]
