"""Weights in and out of other frameworks. Only PyTorch for now; torch is imported lazily.

``from_torch`` / ``to_torch`` convert modules; ``load_state_dict`` / ``state_dict`` convert
their state dicts (and need torch only if the values are tensors).
"""
from .torch import from_torch, load_state_dict, state_dict, to_torch

__all__ = ["from_torch", "to_torch", "load_state_dict", "state_dict"]
