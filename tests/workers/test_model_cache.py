"""The worker's model cache: models stay loaded, within a byte budget, least recently used out first."""

from __future__ import annotations

from atelier_sdk import Manifest, Modality, Plugin, ResourceClass
from pydantic import BaseModel

from atelier_workers.model_cache import ModelCache

UNLOADED: list[str] = []


class _Text(BaseModel):
    text: str = ""


def sized_plugin(plugin_id: str, nbytes: int) -> type[Plugin]:
    class Sized(Plugin):
        manifest = Manifest(id=plugin_id, version="1.0.0", name=plugin_id, modality=Modality.TEXT,
                            resource_class=ResourceClass.CPU)
        Input = Output = _Text

        def memory_bytes(self):
            return nbytes

        def generate(self, batch, context):
            return []

        def unload(self):
            UNLOADED.append(plugin_id)

    return Sized


def test_models_stay_loaded_while_they_fit_the_budget():
    UNLOADED.clear()
    cache = ModelCache("cpu", budget_bytes=100)
    a, b = sized_plugin("model_a", 40), sized_plugin("model_b", 40)
    first = cache.get(a, None)
    cache.get(b, None)
    assert cache.get(a, None) is first and UNLOADED == []
    assert cache.used_bytes == 80 and {m["plugin"] for m in cache.describe()} == {"model_a", "model_b"}


def test_the_least_recently_used_model_is_unloaded_to_make_room():
    UNLOADED.clear()
    cache = ModelCache("cpu", budget_bytes=100)
    a, b, c = sized_plugin("model_a", 40), sized_plugin("model_b", 40), sized_plugin("model_c", 40)
    cache.get(a, None)
    cache.get(b, None)
    cache.get(a, None)  # a is now more recent than b
    cache.get(c, None)
    assert UNLOADED == ["model_b"]
    assert [m["plugin"] for m in cache.describe()] == ["model_a", "model_c"]


def test_a_model_larger_than_the_budget_still_loads_alone():
    UNLOADED.clear()
    cache = ModelCache("cpu", budget_bytes=100)
    cache.get(sized_plugin("model_a", 40), None)
    huge = cache.get(sized_plugin("model_huge", 500), None)
    assert UNLOADED == ["model_a"] and huge.nbytes == 500
    assert [m["plugin"] for m in cache.describe()] == ["model_huge"]
    assert cache.describe()[0]["load_seconds"] >= 0


def test_without_a_size_from_the_plugin_the_model_files_are_counted(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"x" * 1234)

    class Unsized(sized_plugin("model_files", 0)):
        def memory_bytes(self):
            return None

    assert ModelCache("cpu", budget_bytes=10_000).get(Unsized, tmp_path).nbytes == 1234
