"""Preparing the demo: small models trained here from shipped data, and the demo knowledge base.

Each model is built into a temporary directory and renamed into place when complete, with a
marker that records the recipe (a hash of the code and data that made it). A second run finds
the marker and skips the work; a changed recipe or ``--force`` builds again.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from atelier_platform.config import get_config

DEMO_DATA = Path(importlib.import_module("atelier_plugins").__file__).parent / "demo_data"
MARKER = "atelier-demo.json"

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DemoModel:
    name: str  # directory under <models root>/demo/
    module: str  # module with prepare_demo_model(target_dir, [data_dir,] progress)

    @property
    def target(self) -> Path:
        return get_config().resolved_models_root / "demo" / self.name

    def recipe(self) -> str:
        module = importlib.import_module(self.module)
        digest = hashlib.sha256(Path(module.__file__).read_bytes())
        for path in sorted(DEMO_DATA.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(DEMO_DATA).as_posix().encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def is_current(self) -> bool:
        marker = self.target / MARKER
        try:
            return json.loads(marker.read_text())["recipe"] == self.recipe()
        except (OSError, ValueError, KeyError):
            return False

    def build(self, progress: Progress | None = None) -> dict:
        module = importlib.import_module(self.module)
        prepare = module.prepare_demo_model
        staging = self.target.with_name(self.target.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        started = time.monotonic()
        kwargs = {"progress": progress}
        if "data_dir" in inspect.signature(prepare).parameters:
            kwargs["data_dir"] = DEMO_DATA
        figures = prepare(staging, **kwargs) or {}
        figures = {**figures, "seconds_total": round(time.monotonic() - started, 1)}
        (staging / MARKER).write_text(json.dumps({"recipe": self.recipe(), "figures": figures}, default=str, indent=2))
        shutil.rmtree(self.target, ignore_errors=True)
        staging.rename(self.target)
        return figures


DEMO_MODELS = (
    DemoModel("chat-lm", "atelier_plugins.chatbot.demo"),
    DemoModel("image-digits", "atelier_plugins.image.demo"),
    # the features image evaluation runs are scored with (ATELIER_EVALUATION_IMAGE_FEATURES' default)
    DemoModel("image-features", "atelier_plugins.image.demo_features"),
)


def demo_documents() -> list[tuple[str, str, str]]:
    """(source_id, title, content) of every shipped knowledge-base document."""
    documents = []
    for path in sorted((DEMO_DATA / "knowledge_base").rglob("*.md")):
        content = path.read_text(encoding="utf-8")
        first = content.strip().splitlines()[0] if content.strip() else path.stem
        title = first.lstrip("#").strip() or path.stem
        source_id = path.relative_to(DEMO_DATA / "knowledge_base").with_suffix("").as_posix()
        documents.append((source_id, title, content))
    return documents


def demo_question_cases(documents: set[str]) -> list[dict]:
    """The demo shop's evaluation questions as a chatbot reference set's cases: each answered from the knowledge base,
    its key fact (a short string a correct answer contains) as the reference text, and the document that holds it as
    the source expected to ground the answer, where the project's knowledge base (``documents``, source ids) has it
    (an owner may have deleted it: the set is checked against the knowledge base)."""
    questions = json.loads((DEMO_DATA / "eval_questions.json").read_text(encoding="utf-8"))
    cases = []
    for q in questions:
        case = {"input": {"messages": [{"role": "user", "content": q["question"]}], "use_knowledge": True},
                "params": {}, "reference": q["key_fact"]}
        if q["source_id"] in documents:
            case["reference_sources"] = [q["source_id"]]
        cases.append(case)
    return cases


def recommender_defaults() -> dict:
    """The demo shop's brand voice, banned words and length limit, as recommender_copy params."""
    voice = json.loads((DEMO_DATA / "brand_voice.json").read_text(encoding="utf-8"))["en"]
    return {"brand_voice": voice["voice"], "banned_words": voice["banned_words"], "max_chars": voice["max_chars"]}


#: The demo shop's allow list (``prepare_demo`` sets it once): the contacts its knowledge base publishes, which a
#: chatbot answer quotes (blocked as personal data without it), and the product words of its catalogue the
#: profanity model misreads ("wool" alone scores 0.62: a merino scarf's copy was flagged as harassment). "wool" is
#: also on the profanity check's shipped list; it is here too because it is what this shop sells, and the list
#: does no harm twice. ``tests/workers/test_demo_allowlist.py`` checks that every contact the knowledge base
#: publishes is here.
DEMO_ALLOWLIST = (
    ("email", "support@lumenloom.example"),
    ("email", "complaints@lumenloom.example"),
    ("email", "warranty@lumenloom.example"),
    ("email", "trade@lumenloom.example"),
    ("phone", "1-800-555-0142"),
    ("term", "wool"),
)


def demo_allowlist() -> list[dict]:
    """The demo shop's allow list as ``import_allowlist`` takes it."""
    return [{"kind": kind, "value": value} for kind, value in DEMO_ALLOWLIST]
