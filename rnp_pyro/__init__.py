"""Recursive Neural Programs as Pyro models."""

from . import presets
from .config import RNPConfig

__all__ = ["RNPConfig", "presets"]
