"""Outputs that must not depend on a job's batch-mates or break at a cut, across the built-in plugins.

- image: an SDXL-type pipeline (force_zeros_for_empty_prompt) renders a job without a negative
  prompt the same whether or not a batch-mate has one;
- chatbot / text generation: a reply cut by the token limit or a cancellation inside a multi-byte
  character does not end in U+FFFD, while a U+FFFD the model really wrote stays;
- recommender_copy: a job's scores do not depend on the texts of the other jobs of its batch, and
  at full diversity the ranking still follows the shopper's profile.

Every model is tiny and built here (or is the packaged MiniLM); nothing is downloaded.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from atelier_sdk import GenerationRequest, OutputItem, RunContext
from PIL import Image

from atelier_plugins.chatbot.plugin import ChatbotInput, ChatbotParams
from atelier_plugins.image.plugin import ImageInput, ImagePlugin
from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
from atelier_plugins.recommender_copy.ranking import mmr_select
from atelier_plugins.recommender_copy.schemas import RecommenderInput, RecommenderOutput, RecommenderParams
from atelier_plugins.text.generation import FINISH_CANCELLED, ChatRequest
from tests.support.tiny_diffusion import PROMPT_WORDS
from tests.support.tiny_recommender import ScriptedChatLM, product_of, variant_of

# -- image: SDXL-type pipelines ------------------------------------------------------------------


def build_tiny_sdxl_pipeline(target):
    """A Stable Diffusion XL pipeline with random weights and force_zeros_for_empty_prompt, as SDXL ships."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from atelier_plugins.image.demo import build_clip_tokenizer
    from atelier_plugins.image.pipeline import quiet_progress_bars

    tokenizer = build_clip_tokenizer(PROMPT_WORDS * 2, vocab_size=300, model_max_length=12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)

        def text_config(**extra):
            return CLIPTextConfig(
                vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, **extra,
            )

        text_encoder = CLIPTextModel(text_config())
        text_encoder_2 = CLIPTextModelWithProjection(text_config(projection_dim=32))
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=32 + 6 * 8, cross_attention_dim=64, norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1, norm_num_groups=4, sample_size=32,
        )
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
    )
    target.mkdir(parents=True, exist_ok=True)
    with quiet_progress_bars():
        pipeline.save_pretrained(target, safe_serialization=True)
    return target


@pytest.fixture(scope="module")
def sdxl_plugin(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    plugin = ImagePlugin()
    plugin.load("cpu", build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny_sdxl")))
    yield plugin
    plugin.unload()


def image_request(job_id, seed, **fields):
    data = ImageInput(prompt="a red cat on a mat", steps=3, guidance=5.0, width=32, height=32, seed=seed, **fields)
    return GenerationRequest(job_id=job_id, input=data, params=ImagePlugin.Params(), seed=seed)


def pixels(item: OutputItem) -> np.ndarray:
    primary = next(a for a in item.artifacts if a.role == "primary")
    return np.asarray(Image.open(io.BytesIO(primary.data)).convert("RGB"), dtype=np.int16)


def test_an_sdxl_image_is_the_same_whether_or_not_a_batch_mate_has_a_negative_prompt(sdxl_plugin):
    plain = image_request("plain", 11)
    negative = image_request("negative", 22, negative_prompt="blurry")
    # They may still come in one batch: the plugin keeps them out of one pipeline call.
    assert ImagePlugin.batch_key(plain.input, plain.params) == ImagePlugin.batch_key(negative.input, negative.params)

    (plain_alone,) = sdxl_plugin.generate([plain], RunContext("cpu"))
    (negative_alone,) = sdxl_plugin.generate([negative], RunContext("cpu"))
    plain_batched, negative_batched = sdxl_plugin.generate([plain, negative], RunContext("cpu"))
    assert np.array_equal(pixels(plain_alone[0]), pixels(plain_batched[0]))
    assert np.array_equal(pixels(negative_alone[0]), pixels(negative_batched[0]))


# -- chatbot: replies cut inside a character -------------------------------------------------------


class ScriptedLogits:
    """The real model's forward pass, its logits forced so that greedy decoding emits ``script`` token by token."""

    def __init__(self, model, script):
        self.model, self.script, self.step = model, list(script), 0
        self.config, self.generation_config = model.config, model.generation_config

    def __call__(self, **kwargs):
        import torch

        out = self.model(**kwargs)
        forced = torch.full_like(out.logits, -1e9)
        forced[..., self.script[min(self.step, len(self.script) - 1)]] = 0.0
        self.step += 1
        out.logits = forced
        return out


def scripted(chatbot, monkeypatch, answer: str) -> list[int]:
    """Make the chatbot's model answer ``answer`` greedily; its token ids."""
    script = chatbot.lm.tokenizer(answer, add_special_tokens=False)["input_ids"]
    monkeypatch.setattr(chatbot.lm, "model", ScriptedLogits(chatbot.lm.model, script))
    return script


def limits_inside_the_last_character(tokenizer, script) -> list[int]:
    """Token counts whose decoded text ends inside the script's last character."""
    whole = tokenizer.decode(script)
    return [n for n in range(1, len(script)) if tokenizer.decode(script[:n]) == whole[:-1] + "\ufffd"]


def chat_reply(chatbot, limit):
    request = GenerationRequest(
        job_id="job", input=ChatbotInput(messages=[{"role": "user", "content": "退货期限是多久？"}], use_knowledge=False),
        params=ChatbotParams(max_new_tokens=limit), seed=1,
    )
    return chatbot.generate([request], RunContext("cpu"))[0][0].content


def test_a_reply_cut_by_the_token_limit_inside_a_character_drops_that_character(chatbot, monkeypatch):
    answer = "您好，退货需要四十五天以内。"
    script = scripted(chatbot, monkeypatch, answer)
    tokenizer = chatbot.lm.tokenizer
    cuts = [n for n in range(1, len(script)) if tokenizer.decode(script[:n]).endswith("\ufffd")]
    assert cuts  # the tiny tokenizer spells Chinese characters in bytes
    for limit in cuts:
        chatbot.lm.model.step = 0
        reply = chat_reply(chatbot, limit)
        assert reply.finish_reason == "length" and reply.usage.completion_tokens == limit
        assert "\ufffd" not in reply.reply and answer.startswith(reply.reply), (limit, reply.reply)


def test_a_u_fffd_the_model_wrote_stays_when_the_character_after_it_is_cut(chatbot, monkeypatch):
    answer = "您好\ufffd好"  # the model really writes U+FFFD, then the limit falls inside the last character
    script = scripted(chatbot, monkeypatch, answer)
    limits = limits_inside_the_last_character(chatbot.lm.tokenizer, script)
    assert limits
    for limit in limits:
        chatbot.lm.model.step = 0
        assert chat_reply(chatbot, limit).reply == "您好\ufffd"
    chatbot.lm.model.step = 0
    assert chat_reply(chatbot, len(script)).reply == answer  # a whole U+FFFD at the end stays too


def test_a_reply_cancelled_inside_a_character_drops_that_character(chatbot, monkeypatch):
    answer = "标准配送需要4至6个工作日。"
    script = scripted(chatbot, monkeypatch, answer)
    tokenizer = chatbot.lm.tokenizer
    stop_after = next(n for n in range(1, len(script)) if tokenizer.decode(script[:n]).endswith("\ufffd"))
    produced: list[int] = []
    (completion,) = chatbot.lm.generate(
        [ChatRequest(messages=[{"role": "user", "content": "多久到货？"}], max_new_tokens=len(script))],
        callback=lambda item, tokens: produced.append(tokens),
        should_stop=lambda item: bool(produced) and produced[-1] >= stop_after,
    )
    assert completion.finish_reason == FINISH_CANCELLED and completion.completion_tokens == stop_after
    assert "\ufffd" not in completion.text and answer.startswith(completion.text) and completion.text


# -- recommender_copy: batch independence and diversity --------------------------------------------

ITEMS = [
    {"id": f"i{k}", "title": title, "description": description}
    for k, (title, description) in enumerate([
        ("Summit Two-Person Tent", "A light dome tent for camping and hiking."),
        ("Cast Iron Skillet", "A heavy pan for searing."),
        ("Merino Wool Throw", "A soft throw for cosy evenings."),
        ("Olive Wood Spoon", "A wooden spoon for sauces."),
        ("Linen Bedding Set", "Breathable linen sheets."),
        ("Trail Running Shoes", "Light shoes for trails."),
        ("Enamel Kettle", "A stovetop kettle with a whistle."),
        ("Paper Lamp", "A soft light for calm rooms."),
        ("Hiking Backpack", "A 30 litre pack for day hikes."),
        ("Camping Stove", "A compact stove for the outdoors."),
    ])
]
ORDINAL = {1: "first", 2: "second"}


class RecordingEmbedder:
    """The real embedder, with a record of the texts of each call."""

    def __init__(self, embedder):
        self.embedder, self.calls = embedder, []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.embedder.embed(texts)


@pytest.fixture(scope="module")
def packaged_embedder():
    import torch

    from atelier_plugins.text.embedding import SentenceEmbedder

    torch.set_num_threads(1)
    return SentenceEmbedder()  # the packaged all-MiniLM-L6-v2, offline


@pytest.fixture
def recommender(packaged_embedder):
    plugin = RecommenderCopyPlugin()
    plugin.embedder = RecordingEmbedder(packaged_embedder)
    plugin.lm = ScriptedChatLM(lambda r: f"A {ORDINAL[variant_of(r)]} calm look at the {product_of(r)}.")
    return plugin


def recommender_request(job_id, interests, items, count, **params):
    data = RecommenderInput.model_validate({"profile": {"interests": interests}, "items": items, "count": count, "variants": 1})
    return GenerationRequest(job_id=job_id, input=data, params=RecommenderParams(**params), seed=1)


def recommendations(result) -> list[tuple[str, float]]:
    output = RecommenderOutput.model_validate(result[0].content.model_dump(mode="json"))
    return [(r.item_id, r.score) for r in output.recommendations]


def test_recommendations_are_the_same_alone_and_beside_a_job_with_long_texts(recommender):
    job = recommender_request("job", "light evenings kitchen mountains", ITEMS, 10)
    mate = recommender_request("mate", "a very long description of what the shopper likes " * 8,
                               [{"id": "x", "title": "Long thing " * 15, "description": "word " * 200}], 1)
    (alone,) = recommender.generate([job], RunContext("cpu"))
    _, batched = recommender.generate([mate, job], RunContext("cpu"))
    assert recommendations(batched) == recommendations(alone)


def test_each_job_embeds_its_own_texts_and_jobs_with_the_same_texts_share_a_call(recommender):
    first = recommender_request("first", "loves hiking", ITEMS[:4], 2)
    same = recommender_request("same", "loves hiking", ITEMS[:4], 1, diversity=0.9)  # same texts, other params
    other = recommender_request("other", "cooks a lot", ITEMS[2:6], 2)
    results = recommender.generate([first, same, other], RunContext("cpu"))
    assert [len(call) for call in recommender.embedder.calls] == [5, 5]  # four items and the profile, per call
    assert recommender.embedder.calls[0][-1] == "loves hiking" and recommender.embedder.calls[1][-1] == "cooks a lot"
    assert recommendations(results[1])[0] == recommendations(results[0])[0]


def test_at_full_diversity_the_ranking_still_follows_the_profile(recommender):
    items = ITEMS[1:] + ITEMS[:1]  # the tent, the one match for this shopper, comes last
    by_relevance = recommender_request("relevance", "loves hiking and camping in tents", items, 1, diversity=0.0)
    most_diverse = recommender_request("diverse", "loves hiking and camping in tents", items, 1, diversity=1.0)
    relevance_first, diverse_first = recommender.generate([by_relevance, most_diverse], RunContext("cpu"))
    assert recommendations(relevance_first)[0][0] == "i0"
    assert recommendations(diverse_first)[0][0] == "i0"


def test_mmr_at_full_diversity_picks_the_most_relevant_first_and_lets_relevance_break_ties():
    relevance = np.array([0.0, 1.0, 0.9, 0.2])
    similarity = np.array([
        [1.0, 0.0, 0.0, 0.5],
        [0.0, 1.0, 0.95, 0.0],  # items 1 and 2 are near-duplicates
        [0.0, 0.95, 1.0, 0.0],
        [0.5, 0.0, 0.0, 1.0],
    ])
    # After item 1, items 0 and 3 are equally unlike it: the more relevant one comes next.
    assert mmr_select(relevance, similarity, 2, diversity=1.0, pools=[[0, 1, 2, 3]]) == [1, 3]
    assert mmr_select(relevance, similarity, 2, diversity=0.0, pools=[[0, 1, 2, 3]]) == [1, 2]
