"""Atelier's worker runtime: the task that runs jobs, the model cache, heartbeats."""
