"""Weights in and out of other frameworks. Only PyTorch for now; torch is imported lazily."""
from .torch import from_torch, to_torch

__all__ = ["from_torch", "to_torch"]
