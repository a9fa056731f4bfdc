"""addray: Ray Tune sweeps of small RoPE transformers learning addition."""

__version__ = "0.1.0"
