"""rlvr: verifier-in-the-loop RLVR training (GRPO) with an information-gain monitor."""

__version__ = "0.1.0"
