"""A demo-model recipe for testing the preparation command: writes a small file, counts builds."""

from __future__ import annotations

import os
from pathlib import Path

BUILDS_FILE = os.environ.get("ATELIER_DATA_DIR", "/tmp") + "/demo-recipe-builds"


def prepare_demo_model(target_dir: Path, data_dir: Path, progress=None) -> dict:
    documents = sorted(p.name for p in (data_dir / "knowledge_base" / "en").glob("*.md"))
    for step, name in enumerate(documents, start=1):
        if progress:
            progress(step, len(documents), name)
    (target_dir / "weights.txt").write_text("\n".join(documents))
    with open(BUILDS_FILE, "a") as handle:
        handle.write("built\n")
    return {"documents": len(documents)}
