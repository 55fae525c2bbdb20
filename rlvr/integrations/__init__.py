"""Adapters that run rlvr's components inside other training libraries.

- :mod:`rlvr.integrations.trl`: the info-gain monitor as a TRL ``TrainerCallback`` (imports ``trl``'s
  dependency ``transformers`` only).
"""
