"""Model directories: inside the models root, and safetensors only (pickle weights can run code)."""

from __future__ import annotations

import os
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
    pickled, walked = [], set()
    # Every entry, symlinked folders followed (Path.rglob does not follow them on Python 3.11): what a loader
    # reads must lie inside the root too, and no name along the way may be pickle weights.
    for folder, folders, files in os.walk(candidate, followlinks=True):
        if os.path.realpath(folder) in walked:  # a link back to a folder already walked: a loop
            folders[:] = []
            continue
        walked.add(os.path.realpath(folder))
        for name in folders + files:
            entry = Path(folder) / name
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise ModelDirError(f"{entry} in model directory {candidate} leads outside the models root {root} "
                                    f"(to {target}).")
            if entry.suffix.lower() in PICKLE_SUFFIXES or target.suffix.lower() in PICKLE_SUFFIXES:
                pickled.append(str(entry.relative_to(candidate)))
        if len(pickled) >= 3:
            break
    if pickled:
        raise ModelDirError(
            f"Model directory {candidate} holds pickle-format files ({', '.join(sorted(pickled)[:3])}); "
            "Atelier loads safetensors only: convert the weights and remove these files."
        )
    return candidate


def relative_model_dir(path: str | Path | None) -> str | None:
    """A model directory relative to the models root, as a project pins it (``demo/chat-lm``): what the API, the
    dashboard and stored provenance show, never the host's absolute paths. One outside the root: its last name."""
    if not path:
        return None
    path, root = str(path), str(get_config().resolved_models_root)
    return path[len(root):].lstrip("/") if path.startswith(root + "/") else path.rsplit("/", 1)[-1]
