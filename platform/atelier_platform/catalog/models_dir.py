"""Model directories: inside the models root, and safetensors only (pickle weights can run code)."""

from __future__ import annotations

from pathlib import Path

from atelier_platform.config import get_config

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"}


class ModelDirError(ValueError):
    pass


def resolve_model_dir(relative: str) -> Path:
    """The absolute directory for ``relative``; refuses escapes, missing dirs and pickle weights."""
    root = get_config().resolved_models_root
    candidate = (root / relative).resolve()
    if candidate == root or root not in candidate.parents:
        raise ModelDirError(f"Model directory {relative!r} is not inside the models root {root}.")
    if not candidate.is_dir():
        raise ModelDirError(f"Model directory {candidate} does not exist.")
    pickled = sorted(str(p.relative_to(candidate)) for p in candidate.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise ModelDirError(
            f"Model directory {candidate} holds pickle-format files ({', '.join(pickled[:3])}); "
            "Atelier loads safetensors only: convert the weights and remove these files."
        )
    return candidate
