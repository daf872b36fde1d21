"""The recommender_copy plugin: schemas, the copy checks as pure functions, ranking with the real
embedding model, and whole batches with a tiny real chat LM or a scripted one that misbehaves
on purpose (banned words, invented prices) to show that no violation reaches the output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from atelier_sdk import GenerationRequest, OutputItem, PluginError, Regeneration, RunContext, validate_plugin_class
from pydantic import ValidationError

from atelier_plugins.recommender_copy.checks import (
    ItemFacts,
    enforce_length,
    find_banned_words,
    find_unsupported_numbers,
    remove_banned_words,
    repair_copy,
)
from atelier_plugins.recommender_copy.copywriting import MAX_REGENERATIONS, template_texts
from atelier_plugins.recommender_copy.plugin import RecommenderCopyPlugin
from atelier_plugins.recommender_copy.schemas import (
    CatalogueItem,
    RecommenderInput,
    RecommenderOutput,
    RecommenderParams,
)
from tests.support.tiny_recommender import ScriptedChatLM, build_tiny_copy_lm, product_of, variant_of

REPO = Path(__file__).resolve().parents[2]

TENT = {
    "id": "tent",
    "title": "Summit Two-Person Tent",
    "description": "A light dome tent for camping and hiking trips in the mountains. It weighs 2.5 kg.",
    "tags": ["camping", "outdoor"],
    "price": 129.0,
    "currency": "USD",
    "attributes": {"material": "100% ripstop nylon", "dimensions": "210 x 140 cm"},
}
KITCHEN = [
    {"id": "skillet", "title": "Cast Iron Skillet", "description": "A heavy pan for searing and baking.",
     "tags": ["kitchen"], "price": 59.0, "currency": "USD"},
    {"id": "plates", "title": "Stoneware Dinner Plates", "description": "Handmade plates for dinner parties.",
     "tags": ["kitchen", "tableware"], "price": 89.0, "currency": "USD"},
    {"id": "spoon", "title": "Olive Wood Spoon", "description": "A wooden spoon for stirring sauces.",
     "tags": ["kitchen"], "price": 12.5, "currency": "USD"},
    {"id": "kettle", "title": "Enamel Kettle", "description": "A stovetop kettle with a whistle.",
     "tags": ["kitchen", "tea"], "price": 45.0, "currency": "USD"},
]
# numbers in scripted copy would be invented facts: variants are told apart by words
ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
HIKER = {"interests": "loves hiking and camping in the mountains"}


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    return build_tiny_copy_lm(tmp_path_factory.mktemp("tiny-copy-lm"))


@pytest.fixture(scope="module")
def loaded_plugin(tiny_lm_dir) -> RecommenderCopyPlugin:
    """The plugin as a worker loads it: the packaged MiniLM and the tiny chat LM (loaded once)."""
    import torch

    torch.set_num_threads(1)
    plugin = RecommenderCopyPlugin()
    plugin.load("cpu", tiny_lm_dir)
    yield plugin
    plugin.unload()


def scripted_plugin(loaded_plugin, respond) -> tuple[RecommenderCopyPlugin, ScriptedChatLM]:
    """A plugin with the real embedder and a chat LM that answers what the test scripts."""
    plugin = RecommenderCopyPlugin()
    plugin.embedder = loaded_plugin.embedder
    plugin.lm = ScriptedChatLM(respond)
    return plugin, plugin.lm


def make_request(job_id="job-1", seed=7, params=None, **fields) -> GenerationRequest:
    data = {"profile": HIKER, "items": [TENT, *KITCHEN], **fields}
    return GenerationRequest(
        job_id=job_id,
        input=RecommenderInput.model_validate(data),
        params=RecommenderParams.model_validate(params or {}),
        seed=seed,
    )


class Recorder:
    """A RunContext whose progress is recorded and whose jobs can be cancelled."""

    def __init__(self, cancelled=()):
        self.progress: list[tuple[str, float, dict]] = []
        self.cancelled = set(cancelled)
        self.context = RunContext(
            "cpu",
            on_progress=lambda job, fraction, detail: self.progress.append((job, fraction, detail)),
            is_cancelled=lambda job: job in self.cancelled,
        )


def run(plugin, *requests, recorder=None):
    recorder = recorder or Recorder()
    return plugin.generate(list(requests), recorder.context)


def output_of(result) -> RecommenderOutput:
    assert isinstance(result, list) and len(result) == 1, result
    item = result[0]
    assert isinstance(item, OutputItem)
    # what the worker does with it: dump, then validate against the published Output model
    dumped = item.content.model_dump(mode="json")
    assert all("copy" in rec for rec in dumped["recommendations"])  # the public field name
    return RecommenderOutput.model_validate(dumped)


def all_copy(output: RecommenderOutput) -> list[str]:
    return [variant.text for rec in output.recommendations for variant in rec.copy_variants]


# -- manifest, schemas, loading ------------------------------------------------------------------


def test_manifest_and_contract():
    assert validate_plugin_class(RecommenderCopyPlugin) is RecommenderCopyPlugin
    manifest = RecommenderCopyPlugin.manifest
    assert (manifest.id, manifest.version, manifest.modality, manifest.resource_class) == (
        "recommender_copy", "1.0.0", "ranked_text", "gpu"
    )
    assert (manifest.max_batch_size, manifest.time_limit_s, manifest.default_model_dir) == (8, 300, "demo/chat-lm")
    recommendation = RecommenderCopyPlugin.output_schema()["$defs"]["Recommendation"]
    assert {"rank", "item_id", "title", "score", "copy"} <= set(recommendation["properties"])


def test_importing_the_plugin_does_not_import_torch():
    code = (
        "import sys; import atelier_plugins.recommender_copy.plugin as p; p.RecommenderCopyPlugin.input_schema(); "
        "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; print(heavy); "
        "sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "change, field",
    [
        ({"items": []}, "items"),
        ({"items": [TENT, {**KITCHEN[0], "id": "tent"}]}, "unique"),
        ({"count": 11}, "count"),
        ({"count": 0}, "count"),
        ({"variants": 6}, "variants"),
        ({"tone": "shouty"}, "tone"),
        ({"language": "fr"}, "language"),
        ({"items": [{**TENT, "price": -1}]}, "price"),
        ({"items": [{**TENT, "currency": "usd"}]}, "currency"),
        ({"items": [{**TENT, "tags": ["t"] * 21}]}, "tags"),
        ({"items": [{**TENT, "id": "x" * 65}]}, "id"),
        ({"items": [{**TENT, "attributes": {f"a{i}": "v" for i in range(21)}}]}, "attributes"),
        ({"items": [{**TENT, "colour": "green"}]}, "colour"),
        ({"profile": {"interests": "x" * 2001}}, "interests"),
        ({"profile": {"recent_items": ["a"] * 51}}, "recent_items"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_input_limits(change, field):
    data = {"profile": HIKER, "items": [TENT, *KITCHEN], **change}
    with pytest.raises(ValidationError) as raised:
        RecommenderInput.model_validate(data)
    assert field in str(raised.value)


@pytest.mark.parametrize(
    "params",
    [{"max_chars": 19}, {"max_chars": 1001}, {"diversity": 1.5}, {"temperature": 2.5},
     {"banned_words": ["x" * 51]}, {"banned_words": ["w"] * 501}, {"brand_voice": "v" * 1001}, {"tone": "x"}],
)
def test_params_limits(params):
    with pytest.raises(ValidationError):
        RecommenderParams.model_validate(params)


def test_defaults():
    data = RecommenderInput.model_validate({"items": [TENT]})
    params = RecommenderParams()
    assert (data.count, data.variants, data.tone, data.language) == (3, 2, "friendly", "en")
    assert (params.max_chars, params.diversity, params.temperature, params.seed) == (220, 0.3, 0.8, None)


def test_load_needs_a_model_dir(tmp_path):
    with pytest.raises(PluginError, match="prepare_demo") as raised:
        RecommenderCopyPlugin().load("cpu", None)
    assert raised.value.code == "model_missing"
    with pytest.raises(PluginError, match="does not exist"):
        RecommenderCopyPlugin().load("cpu", tmp_path / "nowhere")


def test_load_prefers_an_embedding_model_inside_the_model_dir(tmp_path, monkeypatch):
    made = {}

    class Recording:
        def __init__(self, name):
            self.name = name

        def __call__(self, model_dir, device="cpu", **_):
            made[self.name] = model_dir

    monkeypatch.setattr("atelier_plugins.text.embedding.SentenceEmbedder", Recording("embedder"))
    monkeypatch.setattr("atelier_plugins.text.generation.CausalChatLM", Recording("lm"))
    RecommenderCopyPlugin().load("cpu", tmp_path)
    assert made == {"embedder": None, "lm": tmp_path}  # None: the packaged MiniLM
    (tmp_path / "embedding").mkdir()
    RecommenderCopyPlugin().load("cpu", tmp_path)
    assert made["embedder"] == tmp_path / "embedding"


def test_generate_before_load_says_so():
    with pytest.raises(PluginError, match="load"):
        RecommenderCopyPlugin().generate([make_request()], Recorder().context)


# -- checks (pure functions) ---------------------------------------------------------------------

BANNED = ["cheap", "bargain", "best ever", "must-have", "便宜", "保证"]
TENT_FACTS = ItemFacts.from_item(
    title=TENT["title"], description=TENT["description"], tags=TENT["tags"], attributes=TENT["attributes"],
    price=TENT["price"], currency=TENT["currency"],
)


def test_banned_words_case_insensitive_whole_words():
    found = find_banned_words("CHEAP tents, cheapest prices, a Bargain! The best  ever MUST have.", BANNED)
    assert [m.word for m in found] == ["cheap", "cheap", "bargain", "best ever", "must-have"]  # "cheapest" too
    assert not find_banned_words("Cheapskates and bargain_hunters are other words.", BANNED)


def test_banned_words_catch_their_inflections_not_other_words():
    banned = ["cheap", "bargain", "guarantee", "hurry", "must-have", "new"]
    text = "Cheaper, the CHEAPEST bargains, guaranteed; we hurried for these must-haves."
    found = [text[m.start : m.end] for m in find_banned_words(text, banned)]
    assert found == ["Cheaper", "CHEAPEST", "bargains", "guaranteed", "hurried", "must-haves"]
    # Whole words still: another word that starts with a banned one is not blocked, nor a short
    # word's look-alike ("news" is no inflection of "new").
    assert not find_banned_words("A cheapskate reads the news.", banned)
    cleaned, removed = remove_banned_words("The cheapest tent, guaranteed to please.", banned)
    assert not find_banned_words(cleaned, banned) and removed == ["cheap", "guarantee"]


def test_a_word_that_only_starts_like_a_banned_word_is_not_taken_for_its_inflection():
    banned = ["butt", "matt", "scar", "star", "plan", "strip", "snip", "shin", "pant"]
    # butter and matter are no comparatives (no adjective ends in -tt); one-syllable words such as scar
    # double their consonant (scarred), so scared, stared, planed, striped, sniper and shining are other words.
    text = ("Peanut butter matters. A scarlet coat, a scared cat that stared at planed oak, "
            "a planer, striped socks, a sniper, shining shoes, a full pantry.")
    assert find_banned_words(text, banned) == []
    assert remove_banned_words("Peanut butter on toast.", ["butt"]) == ("Peanut butter on toast.", [])


def test_banned_words_still_catch_the_inflections_those_rules_keep():
    banned = ["butt", "scar", "star", "plan", "slim", "shop", "cheap", "guarantee", "miracle", "admit", "visit",
              "small", "stiff"]
    text = ("Butts butted, scars scarred, scarring, starred, planned, plans, slimmer, the slimmest, shopping, "
            "cheaper, cheapest, guaranteed, guarantees, miracles, admitted, visited, smaller, stiffer.")
    found = [text[m.start : m.end] for m in find_banned_words(text, banned)]
    assert found == ["Butts", "butted", "scars", "scarred", "scarring", "starred", "planned", "plans", "slimmer",
                     "slimmest", "shopping", "cheaper", "cheapest", "guaranteed", "guarantees", "miracles", "admitted",
                     "visited", "smaller", "stiffer"]


def test_banned_words_match_whatever_apostrophe_the_copy_uses():
    text = "Don\u2019t wait: it\u2019s the one you\u02bcll love. Don't wait."
    found = [text[m.start : m.end] for m in find_banned_words(text, ["don't", "it\u2019s", "you'll"])]
    assert found == ["Don\u2019t", "it\u2019s", "you\u02bcll", "Don't"]


def test_a_banned_dash_is_found_and_removed(loaded_plugin):
    # "No em dashes" is a common house-style rule; the hyphen of "Two-Person" is another character.
    text = "Light and warm \u2014 made for the hills\u2014and the Two-Person crowd."
    assert [text[m.start : m.end] for m in find_banned_words(text, ["\u2014"])] == ["\u2014", "\u2014"]
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: f"{product_of(request)} \u2014 light, quick to pitch, warm.")
    output = output_of(run(plugin, make_request(items=[TENT], count=1, variants=1, params={"banned_words": ["\u2014"]}))[0])
    (variant,) = output.recommendations[0].copy_variants
    assert "\u2014" not in variant.text and "Summit Two-Person Tent" in variant.text


def test_banned_words_in_cjk_match_as_substrings():
    text = "这款毯子很便宜，保证好用，cheap不行"
    found = find_banned_words(text, BANNED)
    assert [text[m.start : m.end] for m in found] == ["便宜", "保证", "cheap"]


def test_removing_a_chinese_banned_word_leaves_no_adverb_qualifying_nothing():
    # "很便宜" (very cheap) without 便宜 is "very" before a comma; "也不便宜" would end in "also not".
    assert remove_banned_words("这套床品很便宜，透气又好用。", ["便宜"]) == ("这套床品，透气又好用。", ["便宜"])
    assert remove_banned_words("透气又好用，也不便宜！", ["便宜"])[0] == "透气又好用！"
    assert remove_banned_words("很好的便宜货。", ["便宜"])[0] == "很好的货。"  # 很 qualifies 好, which stays


def test_numbers_must_come_from_the_item():
    text = "Only $49 today, 20% off, with a 3-year warranty and 49.00 shipping."
    assert [m.text for m in find_unsupported_numbers(text, TENT_FACTS)] == ["$49", "20%", "3-year", "49.00"]
    supported = "Now $129 (129.00 USD): 100% nylon, 2.5 kg, 210 x 140 cm, for 2 people."
    assert find_unsupported_numbers(supported, TENT_FACTS) == []


def test_numbers_of_another_kind_or_currency_are_not_supported():
    # 100 appears in the data only as a percentage, 129 only as a price in USD
    assert [m.text for m in find_unsupported_numbers("Yours for $100.", TENT_FACTS)] == ["$100"]
    assert [m.text for m in find_unsupported_numbers("Only €129.", TENT_FACTS)] == ["€129"]
    assert [m.text for m in find_unsupported_numbers("129% more room.", TENT_FACTS)] == ["129%"]


def test_chinese_numbers():
    facts = ItemFacts.from_item(title="羊毛毯", description="百分之百羊毛，可机洗。", price=399.0, currency="CNY")
    unsupported = find_unsupported_numbers("限时八折，三年保修，百分之二十的羊毛，只要99元。", facts)
    assert [m.text for m in unsupported] == ["八折", "三年", "百分之二十", "99元"]
    assert find_unsupported_numbers("百分之百羊毛，售价399元，一年四季都好用。", facts) == []


def test_enforce_length_cuts_at_a_sentence_then_a_word():
    text = "Sleep well under the stars. This tent is light and packs small, so it goes wherever you go."
    assert enforce_length(text, 200) == text
    assert enforce_length(text, 40) == "Sleep well under the stars."
    cut = enforce_length(text, 70)
    assert cut == "Sleep well under the stars. This tent is light and packs small, so it…"
    assert len(cut) <= 70
    for limit in range(20, len(text)):
        shortened = enforce_length(text, limit)
        assert len(shortened) <= limit and shortened
        assert text.startswith(shortened.rstrip("…"))


def test_enforce_length_cuts_a_compound_at_its_hyphen_rather_than_inside_a_word():
    # The only space comes too early to cut at; the compound's hyphen keeps whole words.
    text = "Our extraordinarily-comfortable sleeping bag keeps you warm."
    assert enforce_length(text, 30) == "Our extraordinarily\u2026"


def test_enforce_length_in_chinese():
    text = "这款羊毛毯柔软温暖，适合秋冬的夜晚，放在沙发上也很好看。它由百分之百美利奴羊毛织成。"
    assert enforce_length(text, 30) == "这款羊毛毯柔软温暖，适合秋冬的夜晚，放在沙发上也很好看。"
    assert enforce_length(text, 20) == "这款羊毛毯柔软温暖，适合秋冬的夜晚…"


def test_repair_removes_banned_words_and_invented_claims():
    draft = "This cheap tent is light, only $49 with 20% off. Made of 100% ripstop nylon, it weighs 2.5 kg."
    repaired = repair_copy(draft, banned_words=BANNED, facts=TENT_FACTS, max_chars=220)
    assert repaired.acceptable
    assert repaired.text == "This tent is light. Made of 100% ripstop nylon, it weighs 2.5 kg."
    assert repaired.issues_fixed == ["banned_word:cheap", "unsupported_number:$49", "unsupported_number:20%"]


def test_repair_drops_a_sentence_whose_subject_carries_the_invented_number():
    draft = "A 3-year warranty, no questions asked. It packs small for hiking trips."
    repaired = repair_copy(draft, banned_words=[], facts=TENT_FACTS, max_chars=220)
    assert repaired.text == "It packs small for hiking trips."


def test_repair_cuts_to_length_and_reports_it():
    draft = "A light tent for the mountains. " * 10
    repaired = repair_copy(draft, banned_words=[], facts=TENT_FACTS, max_chars=50)
    assert len(repaired.text) <= 50 and repaired.issues_fixed == ["too_long"]


def test_repair_gives_up_when_nothing_useful_remains():
    repaired = repair_copy("Cheap! $5!", banned_words=BANNED, facts=TENT_FACTS, max_chars=220)
    assert not repaired.acceptable and repaired.text == ""
    assert "banned_word:cheap" in repaired.issues_fixed


def test_templates_use_only_item_facts_and_differ():
    texts = template_texts(CatalogueItem.model_validate(TENT), "en")
    assert len(texts) == len(set(texts)) >= 4
    for text in texts:
        assert find_unsupported_numbers(text, TENT_FACTS) == []
    assert texts[0] == "Summit Two-Person Tent. A light dome tent for camping and hiking trips in the mountains."


# -- ranking (real embedding model) ---------------------------------------------------------------


def recommended_ids(plugin, **fields) -> list[str]:
    params = fields.pop("params", {})
    output = output_of(run(plugin, make_request(params=params, variants=1, **fields))[0])
    return [rec.item_id for rec in output.recommendations]


def test_a_clearly_matching_item_ranks_first(loaded_plugin):
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: "A good companion for the days ahead.")
    items = [*KITCHEN[:2], TENT, *KITCHEN[2:]]
    output = output_of(run(plugin, make_request(items=items, count=3, variants=1))[0])
    assert output.recommendations[0].item_id == "tent"
    assert [rec.rank for rec in output.recommendations] == [1, 2, 3]
    scores = [rec.score for rec in output.recommendations]
    assert scores[0] > max(scores[1:]) + 0.2


def test_mmr_keeps_near_duplicates_apart_when_diversity_is_high(loaded_plugin):
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: "A good companion for the days ahead.")
    twin = {**TENT, "id": "tent-green", "title": "Summit Two-Person Tent, Green",
            "description": TENT["description"] + " In forest green."}
    backpack = {"id": "pack", "title": "Trail Hiking Backpack", "description": "A 30 litre rucksack for mountain day hikes.",
                "tags": ["hiking", "outdoor"]}
    fields = {"profile": {"interests": "looking for a light two-person dome tent for camping"},
              "items": [*KITCHEN, TENT, twin, backpack], "count": 2}
    assert set(recommended_ids(plugin, params={"diversity": 0.0}, **fields)) == {"tent", "tent-green"}
    diverse = recommended_ids(plugin, params={"diversity": 0.7}, **fields)
    assert diverse[0] in {"tent", "tent-green"} and not {"tent", "tent-green"} <= set(diverse)


def test_recent_items_are_not_recommended_again_unless_too_few_remain(loaded_plugin):
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: "A good companion for the days ahead.")
    profile = {**HIKER, "recent_items": ["tent", "Cast Iron Skillet", "not-in-this-list"]}
    ids = recommended_ids(plugin, profile=profile, count=3)
    assert "tent" not in ids and "skillet" not in ids and len(ids) == 3
    # five candidates, two of them recent: the recent ones fill the list last
    everything = recommended_ids(plugin, profile=profile, count=5)
    assert set(everything[:3]) == {"plates", "spoon", "kettle"} and set(everything[3:]) == {"tent", "skillet"}
    output = output_of(run(plugin, make_request(profile=profile, count=5, variants=1))[0])
    assert "recommended again" in output.profile_summary and "1 recent item(s) not among" in output.profile_summary


def test_a_product_listed_twice_takes_one_place_in_the_list(loaded_plugin):
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: "A good companion for the days ahead.")
    # The same tent under a second id (a feed with one row per warehouse, say): same words, same facts.
    again = {**TENT, "id": "tent-warehouse-2"}
    fields = {"items": [TENT, again, *KITCHEN], "count": 3}
    ids = recommended_ids(plugin, **fields)
    assert ids[0] in {"tent", "tent-warehouse-2"} and not {"tent", "tent-warehouse-2"} <= set(ids)
    # It is still recommended when nothing else is left, and diversity 0 ranks by relevance alone.
    everything = recommended_ids(plugin, **{**fields, "count": 6})
    assert set(everything) == {"tent", "tent-warehouse-2", *(item["id"] for item in KITCHEN)}
    assert everything[-1] in {"tent", "tent-warehouse-2"}
    assert set(recommended_ids(plugin, params={"diversity": 0.0}, **fields)[:2]) == {"tent", "tent-warehouse-2"}


# -- copy with a scripted model ----------------------------------------------------------------------


def test_banned_words_are_regenerated_then_repaired_never_published(loaded_plugin):
    plugin, lm = scripted_plugin(
        loaded_plugin,
        lambda request: f"This cheap {product_of(request)} is a BARGAIN for your {ORDINAL[variant_of(request)]} trip.",
    )
    params = {"banned_words": ["cheap", "bargain"]}
    first = make_request("job-a", params=params, count=2, variants=2)
    second = make_request("job-b", seed=8, params=params, count=1, variants=1)
    results = run(plugin, first, second)
    outputs = [output_of(result) for result in results]
    for output in outputs:
        for rec in output.recommendations:
            for variant in rec.copy_variants:
                assert not find_banned_words(variant.text, ["cheap", "bargain"]), variant.text
                assert variant.repaired and variant.source == "edited"
                assert {"banned_word:cheap", "banned_word:bargain"} <= set(variant.issues_fixed)
                assert variant.attempts == MAX_REGENERATIONS + 1
                assert rec.title in variant.text
    # every round is one batched call with the prompts of both jobs: 2 x 2 + 1 x 1
    assert [len(call) for call in lm.calls] == [5] * (MAX_REGENERATIONS + 1)
    seeds = [request["seed"] for request in lm.requests]
    assert len(set(seeds)) == len(seeds), "every draft (item, variant, attempt) has a seed of its own"


def test_a_regenerated_draft_that_passes_is_used_as_written(loaded_plugin):
    def respond(request):
        # the model misbehaves on its first draft of each slot only
        drafts = seen.setdefault(request["messages"][-1]["content"], 0)
        seen[request["messages"][-1]["content"]] = drafts + 1
        return "Guaranteed the best ever tent." if drafts == 0 else "A calm, light shelter for nights in the hills."

    seen: dict[str, int] = {}
    plugin, lm = scripted_plugin(loaded_plugin, respond)
    output = output_of(run(plugin, make_request(params={"banned_words": ["guaranteed"]}, count=1, variants=1))[0])
    variant = output.recommendations[0].copy_variants[0]
    assert variant.text == "A calm, light shelter for nights in the hills."
    assert variant.source == "model" and variant.repaired and variant.attempts == 2
    assert variant.issues_fixed == ["banned_word:guaranteed", "regenerated:1"]
    assert len(lm.calls) == 2


def test_invented_prices_never_reach_the_copy_but_item_numbers_stay(loaded_plugin):
    plugin, _ = scripted_plugin(
        loaded_plugin,
        lambda request: "Summit Tent, now $49 with 20% off. Made of 100% ripstop nylon, it weighs 2.5 kg and costs $129.",
    )
    output = output_of(run(plugin, make_request(items=[TENT], count=1, variants=2))[0])
    for variant in output.recommendations[0].copy_variants:
        assert "$49" not in variant.text and "20%" not in variant.text
        assert find_unsupported_numbers(variant.text, TENT_FACTS) == []
        assert {"unsupported_number:$49", "unsupported_number:20%"} <= set(variant.issues_fixed)
    texts = all_copy(output)
    # "Summit Tent, now $49 with 20% off." loses its claims, and the stub left is dropped too
    assert texts[0] == "Made of 100% ripstop nylon, it weighs 2.5 kg and costs $129."
    # the second variant may not repeat the first: it falls back to a sentence of item facts
    assert output.recommendations[0].copy_variants[1].source == "template" and texts[1] != texts[0]


def test_max_chars_is_respected(loaded_plugin):
    long_copy = "Wake up to mountain light in a tent that packs small and pitches fast. " * 6
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: f"The {ORDINAL[variant_of(request)]} idea. {long_copy}")
    output = output_of(run(plugin, make_request(params={"max_chars": 60}, count=3, variants=2))[0])
    for variant in (v for rec in output.recommendations for v in rec.copy_variants):
        assert len(variant.text) <= 60 and "too_long" in variant.issues_fixed


def test_an_empty_reply_falls_back_to_item_facts(loaded_plugin):
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: "  ")
    output = output_of(run(plugin, make_request(items=[TENT], count=1, variants=3))[0])
    variants = output.recommendations[0].copy_variants
    assert all(v.source == "template" and "template_fallback" in v.issues_fixed for v in variants)
    assert len({v.text for v in variants}) == 3
    assert variants[0].text.startswith("Summit Two-Person Tent.")


def test_chinese_copy_with_banned_substrings(loaded_plugin):
    blanket = {"id": "LL-2001", "title": "亚麻床品套装", "description": "天然亚麻，透气舒适。", "price": 699.0, "currency": "CNY"}
    plugin, lm = scripted_plugin(loaded_plugin, lambda request: "这套床品很便宜，透气舒适，睡得安稳，保证满意。")
    request = make_request(items=[blanket], language="zh", count=1, variants=1, params={"banned_words": ["便宜", "保证"]})
    variant = output_of(run(plugin, request)[0]).recommendations[0].copy_variants[0]
    assert "便宜" not in variant.text and "保证" not in variant.text and "透气舒适" in variant.text
    assert "简体中文" in lm.requests[0]["messages"][0]["content"]


def test_one_bad_job_fails_alone_and_cancelled_jobs_stop(loaded_plugin):
    plugin, _ = scripted_plugin(loaded_plugin, lambda request: "Cheap.")
    unwritable = make_request(
        "job-bad", items=[{"id": "x", "title": "Cheap Cheap", "price": 5.0}], count=1, params={"banned_words": ["cheap"]}
    )
    good = make_request("job-good", count=1, params={"banned_words": ["cheap"]})
    cancelled = make_request("job-cancelled", count=1)
    recorder = Recorder(cancelled={"job-cancelled"})
    bad_result, good_result, cancelled_result = run(plugin, unwritable, good, cancelled, recorder=recorder)
    assert isinstance(bad_result, PluginError) and bad_result.code == "invalid_input" and "'x'" in bad_result.message
    assert output_of(good_result).recommendations[0].copy_variants
    assert isinstance(cancelled_result, PluginError) and cancelled_result.code == "cancelled"
    finals = [(job, fraction) for job, fraction, _ in recorder.progress if fraction == 1.0]
    assert finals == [("job-good", 1.0)]


# -- the tiny real chat LM ----------------------------------------------------------------------------


def test_real_model_copy_passes_every_rule(loaded_plugin):
    params = {"banned_words": ["cheap", "bargain", "guaranteed", "hurry", "must-have", "best ever"], "max_chars": 120}
    recorder = Recorder()
    results = run(loaded_plugin, make_request("job-1", params=params, count=3, variants=3), recorder=recorder)
    output = output_of(results[0])
    assert len(output.recommendations) == 3 and output.profile_summary.startswith("Interests:")
    items = {item["id"]: item for item in [TENT, *KITCHEN]}
    for rec in output.recommendations:
        item = CatalogueItem.model_validate(items[rec.item_id])
        facts = ItemFacts.from_item(title=item.title, description=item.description, tags=item.tags,
                                    attributes=item.attributes, price=item.price, currency=item.currency)
        texts = [variant.text for variant in rec.copy_variants]
        assert len(set(texts)) == len(texts) == 3, "variants of one item differ"
        for variant in rec.copy_variants:
            assert variant.text and len(variant.text) <= 120
            assert not find_banned_words(variant.text, params["banned_words"])
            assert find_unsupported_numbers(variant.text, facts) == []
            assert variant.repaired == bool(variant.issues_fixed)
    fractions = [fraction for job, fraction, _ in recorder.progress]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_real_model_output_does_not_depend_on_the_batch(loaded_plugin):
    alone = make_request("job-1", seed=11, count=2, variants=2)
    other = make_request("job-2", seed=99, profile={"interests": "home cooking"}, count=3, variants=1)
    by_itself = output_of(run(loaded_plugin, alone)[0])
    in_a_batch = output_of(run(loaded_plugin, other, alone)[1])
    assert by_itself == in_a_batch


def test_greedy_variants_differ_and_regenerations_sample(loaded_plugin):
    def respond(request):
        # a greedy model writes the same thing for the same prompt: regenerating needs sampling
        if request["temperature"] == 0:
            return f"Guaranteed joy, {ORDINAL[variant_of(request)]} take on {product_of(request)}."
        return f"A {ORDINAL[variant_of(request)]} calm look at the {product_of(request)}."

    plugin, lm = scripted_plugin(loaded_plugin, respond)
    request = make_request(items=[TENT], count=1, variants=2, params={"temperature": 0, "banned_words": ["guaranteed"]})
    texts = all_copy(output_of(run(plugin, request)[0]))
    assert texts == ["A first calm look at the Summit Two-Person Tent.", "A second calm look at the Summit Two-Person Tent."]
    first_round, second_round = lm.calls
    assert {r["temperature"] for r in first_round} == {0} and {r["temperature"] for r in second_round} == {0.7}
    angles = [r["messages"][-1]["content"].splitlines()[-1] for r in first_round]
    assert len(set(angles)) == 2, "each variant's prompt takes its own angle"


SEED_WORDS = ["amber", "breezy", "calm", "dusky", "earthy", "fresh", "gentle", "hearty", "ivory", "jolly", "keen",
              "lucky", "mellow", "nimble", "olive", "plucky", "quiet", "rustic", "sunny", "tidy", "urban", "vivid",
              "woody", "young", "zesty"]


def sampling_or_greedy(request):
    """A model as it decodes: greedily, the same words for the same prompt; sampling, words from its seed."""
    if request["temperature"] == 0:
        return f"A {ORDINAL[variant_of(request)]} plain look at the {product_of(request)}."
    return f"A {ORDINAL[variant_of(request)]} {SEED_WORDS[request['seed'] % len(SEED_WORDS)]} look at the {product_of(request)}."


@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": 0.8, "seed": 5}], ids=["greedy", "seed-pinned"])
def test_a_regeneration_writes_other_copy_with_the_reviewers_note(loaded_plugin, params):
    plugin, lm = scripted_plugin(loaded_plugin, sampling_or_greedy)
    first = make_request("job-first", seed=7, params=params, items=[TENT], count=1, variants=2)
    (result,) = run(plugin, first)
    rejected = all_copy(output_of(result))

    # What the platform sends for "regenerate": the same input and params, a new job seed, the note.
    again = GenerationRequest(job_id="job-again", input=first.input, params=first.params, seed=8,
                              regeneration=Regeneration(note="Less formal, please."))
    (result,) = run(plugin, again)
    regenerated = all_copy(output_of(result))
    assert regenerated != rejected and not set(regenerated) & set(rejected)
    assert "Less formal, please." in lm.requests[-1]["messages"][0]["content"]
    (result,) = run(plugin, again)
    assert all_copy(output_of(result)) == regenerated, "a regeneration is reproducible from its own seed"
