"""Adapters that plug rlvr verifiers into other training libraries.

- :mod:`verifiers.integrations.trl`: a reward function for TRL's ``GRPOTrainer``. It does not import
  ``trl``; TRL only needs a callable.
"""
