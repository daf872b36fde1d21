"""The model cache budgets with what the built-in plugins hold once loaded, not with their model files.

On a CPU worker a bf16 checkpoint (how most instruct LMs ship) loads as float32, twice its files;
the recommender also loads the packaged MiniLM, which no model directory holds. Every model here
is tiny and built in a fixture (or is the packaged MiniLM); nothing is downloaded.
"""

from __future__ import annotations

import pytest
from atelier_sdk import Manifest, Modality, Plugin, ResourceClass
from pydantic import BaseModel

from atelier_plugins.chatbot.plugin import ChatbotPlugin
from atelier_plugins.image.plugin import ImagePlugin
from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
from atelier_workers.model_cache import ModelCache, directory_bytes
from tests.support.tiny_diffusion import build_tiny_sd_pipeline
from tests.support.tiny_lm import build_tiny_chat_lm


def tensor_bytes(*modules) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def build_bf16_chat_lm(target):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from atelier_plugins.chatbot.chat_format import train_chat_tokenizer
    from tests.support.tiny_lm import TINY_TEXTS

    tokenizer = train_chat_tokenizer(TINY_TEXTS * 4, vocab_size=400)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=256, n_layer=4, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config).to(torch.bfloat16)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bf16_chat_dirs(tmp_path_factory):
    return [build_bf16_chat_lm(tmp_path_factory.mktemp(f"bf16_lm_{n}")) for n in range(2)]


def test_chat_models_kept_by_the_cache_fit_its_budget_as_loaded(bf16_chat_dirs):
    budget = int(sum(directory_bytes(d) for d in bf16_chat_dirs) * 1.2)  # room for both, as their files count
    cache = ModelCache("cpu", budget_bytes=budget)
    loaded = [cache.get(ChatbotPlugin, d) for d in bf16_chat_dirs]
    held = [m for m in loaded if m.plugin.lm is not None]
    assert sum(tensor_bytes(m.plugin.lm.model) for m in held) <= budget
    assert [m["model_dir"] for m in cache.describe()] == [str(bf16_chat_dirs[1])]  # the first made room
    assert loaded[1].nbytes == tensor_bytes(loaded[1].plugin.lm.model) > 1.9 * directory_bytes(bf16_chat_dirs[1])


def test_the_recommender_counts_its_packaged_embedding_model(tmp_path):
    model_dir = build_tiny_chat_lm(tmp_path / "chat-lm")
    cache = ModelCache("cpu", budget_bytes=10 * 2**30)
    loaded = cache.get(RecommenderCopyPlugin, model_dir)
    plugin = loaded.plugin
    embedding_bytes = tensor_bytes(plugin.embedder.model)
    assert loaded.nbytes == tensor_bytes(plugin.lm.model) + embedding_bytes
    assert embedding_bytes > directory_bytes(model_dir)  # all of it missed when the files were counted


def test_the_image_plugin_counts_its_pipeline_as_loaded(tmp_path):
    import torch
    from diffusers import DiffusionPipeline

    from atelier_plugins.image.pipeline import quiet_progress_bars

    def modules_of(pipeline):
        return [c for c in pipeline.components.values() if isinstance(c, torch.nn.Module)]

    float32_dir = build_tiny_sd_pipeline(tmp_path / "float32")
    with quiet_progress_bars():
        half = DiffusionPipeline.from_pretrained(float32_dir, dtype=torch.float16, local_files_only=True)
        half.save_pretrained(tmp_path / "float16", safe_serialization=True)
    loaded = ModelCache("cpu", budget_bytes=10 * 2**30).get(ImagePlugin, tmp_path / "float16")
    modules = modules_of(loaded.plugin.model.pipeline)
    assert {p.dtype for m in modules for p in m.parameters()} == {torch.float32}  # float32 on a CPU
    # Twice the half-precision weights (integer buffers, such as position ids, stay as they are).
    assert loaded.nbytes == tensor_bytes(*modules) > 1.99 * tensor_bytes(*modules_of(half))


# -- the cache itself, with plugins of a known size -------------------------------------------------

EVENTS: list[str] = []


class _Text(BaseModel):
    text: str = ""


def plugin_larger_than_its_files(plugin_id: str, nbytes: int) -> type[Plugin]:
    class Sized(Plugin):
        manifest = Manifest(id=plugin_id, version="1.0.0", name=plugin_id, modality=Modality.TEXT,
                            resource_class=ResourceClass.CPU)
        Input = Output = _Text

        def load(self, device, model_dir):
            EVENTS.append(f"load {plugin_id}")

        def memory_bytes(self):
            return nbytes

        def generate(self, batch, context):
            return []

        def unload(self):
            EVENTS.append(f"unload {plugin_id}")

    return Sized


def test_a_model_loaded_again_makes_room_for_its_loaded_size_before_it_loads(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights.safetensors").write_bytes(b"x" * 10)  # files far smaller than the model
    a, b = plugin_larger_than_its_files("model_a", 60), plugin_larger_than_its_files("model_b", 60)
    cache = ModelCache("cpu", budget_bytes=100)
    EVENTS.clear()
    cache.get(a, tmp_path / "a")
    cache.get(b, tmp_path / "b")  # a is unloaded once b's size is known
    cache.get(a, tmp_path / "a")  # a's size is known now: b goes before a loads, not after
    assert EVENTS == ["load model_a", "load model_b", "unload model_a", "unload model_b", "load model_a"]


def test_a_plugin_whose_memory_bytes_fails_is_counted_by_its_files(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"x" * 1234)

    class Failing(plugin_larger_than_its_files("model_failing", 0)):
        def memory_bytes(self):
            raise AttributeError("no model attribute")

    assert ModelCache("cpu", budget_bytes=10_000).get(Failing, tmp_path).nbytes == 1234
