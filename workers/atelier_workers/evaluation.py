"""Scoring image evaluation runs on a worker: the feature extractor, loaded once per process.

The extractor is the model at ``ATELIER_EVALUATION_IMAGE_FEATURES`` (default: the demo's, ``demo/image-features``
under the models root); it is loaded again when its directory changes (a new ``config.json`` or weights file).
"""

from __future__ import annotations

import threading
from pathlib import Path

from atelier_platform.config import get_config
from atelier_platform.evaluation import image_scoring

_lock = threading.Lock()
_loaded: dict = {}


def _signature(model_dir: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in model_dir.iterdir() if p.is_file()))


def extractor():
    """The feature extractor and its name (the directory's, relative to the models root when inside it)."""
    from atelier_plugins.image.features import check_extractor_dir, load_extractor

    config = get_config()
    model_dir = check_extractor_dir(config.resolved_image_features_dir)
    signature = (str(model_dir), _signature(model_dir))
    with _lock:
        if _loaded.get("signature") != signature:
            _loaded.clear()
            _loaded.update(signature=signature, model=load_extractor(model_dir, "cpu"))
        model = _loaded["model"]
    try:
        name = model_dir.relative_to(config.resolved_models_root).as_posix()
    except ValueError:
        name = model_dir.name
    return model, name


def score_run(run_id: str) -> str:
    from atelier_plugins.image.features import score

    return image_scoring.score_run(run_id, extractor, score)
