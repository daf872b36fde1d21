"""The plugin contract: what a model plugin declares and implements.

A plugin knows nothing of Django, queues or databases. The platform validates each job's input
against ``Input`` and ``Params`` before queueing it, calls ``load`` once per worker process and
device, then calls ``generate`` with batches of up to ``manifest.max_batch_size`` requests.

Keep heavy imports (torch, transformers, diffusers) inside ``load`` and ``generate``: the web
process imports every plugin module to read its schemas and must start fast.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from atelier_sdk.errors import JobCancelled, PluginError
from atelier_sdk.manifest import Manifest
from atelier_sdk.retrieval import Passage, Retriever


class NoParams(BaseModel):
    """Params of a plugin that takes none: any key is an error."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Regeneration:
    """A job that makes another try at an output a reviewer sent back from the review queue. A plugin whose
    output would come out the same again (greedy decoding) should vary it, reproducibly from the job's seed;
    ``note`` is what the reviewer asked for ("shorter", "cite the returns policy"), possibly empty, for a
    plugin that can take guidance."""

    note: str = ""


@dataclass(frozen=True)
class GenerationRequest:
    """One job as a plugin sees it: validated input and params, a seed for reproducibility, and whether it
    regenerates an output a reviewer sent back."""

    job_id: str
    input: BaseModel
    params: BaseModel
    seed: int
    regeneration: Regeneration | None = None


@dataclass(frozen=True)
class Artifact:
    """A file that belongs to an output (an image, its thumbnail)."""

    name: str
    media_type: str
    data: bytes
    role: str = "primary"


@dataclass
class OutputItem:
    """One piece of content: an instance of the plugin's ``Output`` model and its files."""

    content: BaseModel
    artifacts: list[Artifact] = field(default_factory=list)


#: What ``generate`` returns for one request: its outputs, or the error that failed it alone.
ItemResult = list[OutputItem] | PluginError


class RunContext:
    """What the worker gives ``generate``: the device, progress reporting and cancellation."""

    def __init__(
        self,
        device: str,
        *,
        on_progress: Callable[[str, float, dict[str, Any]], None] | None = None,
        is_cancelled: Callable[[str], bool] | None = None,
        retriever: Retriever | None = None,
        on_results: Callable[[dict[str, "ItemResult"]], None] | None = None,
    ) -> None:
        self.device = device
        self._on_progress = on_progress
        self._is_cancelled = is_cancelled
        self._retriever = retriever
        self._on_results = on_results
        self._lock = threading.Lock()

    def report_progress(self, job_id: str, fraction: float, **detail: Any) -> None:
        """Tell the submitter how far a job got (0..1), with details such as tokens or steps."""
        if self._on_progress is not None:
            with self._lock:
                self._on_progress(job_id, max(0.0, min(1.0, float(fraction))), detail)

    def is_cancelled(self, job_id: str) -> bool:
        return bool(self._is_cancelled and self._is_cancelled(job_id))

    def raise_if_cancelled(self, job_id: str) -> None:
        """Call between steps of long work so that a cancelled job stops early."""
        if self.is_cancelled(job_id):
            raise JobCancelled(job_id)

    def deliver(self, job_id: str, result: "ItemResult") -> None:
        """Hand one job's result over before the rest of the batch is done (optional).

        A plugin whose items finish at different times (text generation: a short reply before a
        long one) calls this as each finishes, so the worker stores and releases that job at
        once instead of making it wait for the longest item. The same result must still be
        returned by ``generate``; the worker keeps the first one it got.
        """
        self.deliver_many({job_id: result})

    def deliver_many(self, results: Mapping[str, "ItemResult"]) -> None:
        """Hand over, at once, the results of the items that finished together (at the same decoding
        step): the worker stores them in one transaction, which costs far less than one per job."""
        if self._on_results is not None and results:
            self._on_results(dict(results))

    def retrieve(self, job_id: str, query: str, top_k: int = 4) -> list[Passage]:
        """Passages of the job's project knowledge base closest to ``query``; [] without one."""
        if self._retriever is None or not query.strip():
            return []
        return list(self._retriever(job_id, query, top_k))


def require_model_dir(model_dir: Path | None, what: str) -> Path:
    """The model directory ``load`` was given, or a ``model_missing`` error saying how to get one.

    ``what`` names the kind of directory, e.g. "a chat model directory" or "a diffusers
    text-to-image pipeline directory".
    """
    if model_dir is None:
        raise PluginError(
            f"This plugin needs a model directory ({what}): pin one in the project's plugin settings "
            "or run `python manage.py prepare_demo` to build the demo model.",
            code="model_missing",
        )
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PluginError(
            f"Model directory {model_dir} does not exist: run `python manage.py prepare_demo` "
            f"or pin an existing directory ({what}) in the project's plugin settings.",
            code="model_missing",
        )
    return model_dir


class Plugin(ABC):
    """Base class of every model plugin.

    Subclasses set ``manifest``, ``Input`` and ``Output`` (pydantic models; their JSON Schema
    is what the API publishes and the dashboard builds its forms from), optionally ``Params``,
    and implement ``generate``. ``load`` receives the device (``cpu``, ``cuda:0``) and the
    model directory the project chose (or ``None`` when the plugin needs no model files).
    """

    manifest: ClassVar[Manifest]
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    Params: ClassVar[type[BaseModel]] = NoParams

    def load(self, device: str, model_dir: Path | None) -> None:  # noqa: B027 - optional hook
        """Load weights once; called before the first ``generate`` of this instance."""

    @abstractmethod
    def generate(self, batch: Sequence[GenerationRequest], context: RunContext) -> list[ItemResult]:
        """Return one ``ItemResult`` per request, in order. Never let one bad item fail the rest."""

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Free what ``load`` took (device memory); called before the instance is dropped."""

    def memory_bytes(self) -> int | None:
        """Device memory this loaded instance holds, if the plugin knows; the worker's model cache
        budgets with it (otherwise it measures CUDA allocation, or the model files' size)."""
        return None

    @classmethod
    def batch_key(cls, input: BaseModel, params: BaseModel) -> tuple:
        """Jobs whose keys are equal may run in one ``generate`` call.

        The default, ``()``, lets any jobs of the plugin share a batch: ``generate`` must then cope
        with mixed inputs and params (per-item seeds, lengths, sampling). Override it for what
        cannot be mixed, such as image sizes and step counts that must match in one tensor batch.
        """
        return ()

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        return cls.Input.model_json_schema()

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        return cls.Params.model_json_schema()

    @classmethod
    def output_schema(cls) -> dict[str, Any]:
        return cls.Output.model_json_schema()
