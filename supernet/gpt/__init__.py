"""Built-in ``gpt`` space: decoder-only elastic transformer with a weight-shared PyTorch SuperNet."""

from supernet.gpt._space import GPTSpace

__all__ = ["GPTSpace"]
