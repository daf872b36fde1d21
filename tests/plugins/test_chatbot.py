"""The chatbot plugin: its schemas, retrieval into the prompt, batching, progress and cancellation."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid

import numpy as np
import pytest
from atelier_sdk import GenerationRequest, OutputItem, Passage, PluginError, RunContext, TransientPluginError
from pydantic import ValidationError

from atelier_plugins.chatbot.plugin import ChatbotInput, ChatbotParams, ChatbotPlugin, build_prompt
from atelier_plugins.text.chunking import chunk_markdown
from atelier_plugins.text.retrieval import IndexedPassage, InMemoryRetriever, bigrams

KNOWLEDGE = {
    "en/shipping": "# Shipping\n\n## Times\n\nStandard shipping takes 4 to 6 business days.\n\n"
                   "## Costs\n\nFree standard shipping applies to orders over $75.",
    "en/returns": "# Returns\n\n## Window\n\nYou can return most items within 45 days of delivery.",
    "en/loyalty": "# Loyalty\n\n## Rewards\n\nEvery 100 points can be exchanged for a $5 reward.",
    "zh/returns": "# 退货政策\n\n## 退货期限\n\n大多数商品可在签收后45天内退货。",
}


class BigramHashEmbedder:
    """A deterministic stand-in for a sentence embedder: word/bigram features hashed into a unit vector."""

    dimension = 64

    def embed(self, texts):
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for gram in bigrams(text):
                rows[row, int(hashlib.md5(gram.encode()).hexdigest(), 16) % self.dimension] += 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.maximum(norms, 1e-9)


def knowledge_passages():
    passages = []
    for source_id, markdown in KNOWLEDGE.items():
        title = markdown.splitlines()[0].lstrip("# ")
        for chunk in chunk_markdown(markdown):
            passages.append(IndexedPassage(source_id, f"{source_id}#{chunk.index}", chunk.heading or title, chunk.text))
    return passages


@pytest.fixture(scope="module")
def retriever():
    return InMemoryRetriever(BigramHashEmbedder(), knowledge_passages())


def request(job_id, text="How long do I have to return an item?", *, messages=None, seed=5, **params):
    data = ChatbotInput(messages=messages or [{"role": "user", "content": text}])
    return GenerationRequest(job_id=job_id, input=data, params=ChatbotParams(**params), seed=seed)


def make_context(retriever=None, cancelled=(), progress=None):
    def on_progress(job_id, fraction, detail):
        if progress is not None:
            progress.append((job_id, fraction, detail))

    return RunContext("cpu", on_progress=on_progress, is_cancelled=lambda job_id: job_id in cancelled, retriever=retriever)


def only_output(result):
    assert isinstance(result, list) and len(result) == 1 and isinstance(result[0], OutputItem)
    return ChatbotPlugin.Output.model_validate(result[0].content.model_dump())


# -- schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "hi"}] * 51},
        {"messages": []},
        {"messages": [{"role": "user", "content": ""}]},
        {"messages": [{"role": "user", "content": "x" * 8001}]},
        {"messages": [{"role": "user", "content": "hi"}], "top_k": 9},
        {"messages": [{"role": "user", "content": "hi"}], "conversation_id": "not-a-uuid"},
        {"messages": [{"role": "user", "content": "hi"}], "tone": "friendly"},
    ],
)
def test_input_limits(payload):
    with pytest.raises(ValidationError):
        ChatbotInput.model_validate(payload)


def test_last_message_must_be_the_users_with_a_clear_message():
    with pytest.raises(ValidationError, match="last message must have role 'user'"):
        ChatbotInput.model_validate({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 2.5},
        {"temperature": -0.1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"max_new_tokens": 0},
        {"max_new_tokens": 513},
        {"seed": -1},
        {"seed": 2**31},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": [""]},
        {"stop": ["x" * 33]},
        {"beam_width": 4},
    ],
)
def test_params_limits(params):
    with pytest.raises(ValidationError):
        ChatbotParams.model_validate(params)


def test_valid_input_and_defaults():
    conversation_id = str(uuid.uuid4())
    data = ChatbotInput.model_validate({
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "conversation_id": conversation_id,
    })
    params = ChatbotParams()
    assert (data.use_knowledge, data.top_k, data.conversation_id) == (True, 3, conversation_id)
    assert (params.max_new_tokens, params.temperature, params.top_p, params.seed, params.stop) == (128, 0.0, 1.0, None, [])
    assert ChatbotPlugin.manifest.default_model_dir == "demo/chat-lm"
    assert ChatbotPlugin.manifest.max_batch_size == 32


def test_importing_the_plugin_module_does_not_import_torch_or_transformers():
    code = (
        "import sys; import atelier_plugins.chatbot.plugin as p; p.ChatbotPlugin.input_schema(); "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"imported: {done.stdout} {done.stderr}"


# -- loading -----------------------------------------------------------------------------------------


def test_load_without_a_model_dir_says_what_to_do(tmp_path):
    with pytest.raises(PluginError, match="needs a model directory"):
        ChatbotPlugin().load("cpu", None)
    with pytest.raises(PluginError, match="does not exist"):
        ChatbotPlugin().load("cpu", tmp_path / "missing")


# -- the prompt ---------------------------------------------------------------------------------------


def test_build_prompt_inlines_passages_and_folds_system_messages():
    passages = [Passage("en/returns", "en/returns#0", "Returns > Window", "You can return most items within 45 days.", 0.9)]
    data = ChatbotInput(messages=[
        {"role": "system", "content": "Sign as Ada."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "Returns?"},
    ])

    prompt = build_prompt(data.messages, passages)

    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    system = prompt[0]["content"]
    assert "[1] Returns > Window\nYou can return most items within 45 days." in system
    assert system.endswith("Sign as Ada.")
    assert "passages" in build_prompt(data.messages, passages)[0]["content"]
    assert "passages" not in build_prompt(data.messages, [])[0]["content"]


# -- generation ---------------------------------------------------------------------------------------


def test_reply_with_sources_from_the_retriever(chatbot, retriever):
    conversation_id = str(uuid.uuid4())
    data = ChatbotInput(messages=[{"role": "user", "content": "How many days do I have to return items?"}],
                        conversation_id=conversation_id, top_k=2)
    progress = []
    [result] = chatbot.generate([GenerationRequest("job-1", data, ChatbotParams(max_new_tokens=12), seed=3)],
                                make_context(retriever, progress=progress))

    output = only_output(result)
    expected = retriever("job-1", data.messages[-1].content, 2)
    assert [(s.source_id, s.chunk_id, s.title, s.score) for s in output.sources] == [
        (p.source_id, p.chunk_id, p.title, p.score) for p in expected
    ]
    assert output.sources[0].source_id == "en/returns"
    assert output.conversation_id == conversation_id
    assert output.usage.completion_tokens == 12 and output.finish_reason == "length"
    assert output.reply
    assert progress[-1] == ("job-1", 1.0, {"tokens": 12, "max_new_tokens": 12})
    assert all(detail["max_new_tokens"] == 12 for _, _, detail in progress)  # for "5 of 12 tokens" while it runs


def test_retrieved_passages_go_into_the_prompt(chatbot, retriever):
    question = "How many days do I have to return items?"
    with_knowledge = only_output(chatbot.generate([request("a", question, max_new_tokens=2)], make_context(retriever))[0])
    data = ChatbotInput(messages=[{"role": "user", "content": question}], use_knowledge=False)
    without = only_output(chatbot.generate([GenerationRequest("b", data, ChatbotParams(max_new_tokens=2), 5)],
                                           make_context(retriever))[0])

    passages = retriever("a", question, 3)
    prompt_with = chatbot.lm.encode_chat(build_prompt(ChatbotInput(messages=[{"role": "user", "content": question}]).messages, passages), 2)[0]
    assert with_knowledge.usage.prompt_tokens == len(prompt_with)
    assert passages[0].text in chatbot.lm.tokenizer.decode(prompt_with)
    assert without.sources == []
    assert without.usage.prompt_tokens < with_knowledge.usage.prompt_tokens


def test_seeded_reply_is_the_same_alone_and_in_a_batch(chatbot, retriever):
    sampled = dict(max_new_tokens=16, temperature=1.0, top_p=0.9)
    alone = chatbot.generate([request("x", seed=42, **sampled)], make_context(retriever))
    batch = chatbot.generate([
        request("y", "Do you ship to Canada?", seed=1, **sampled),
        request("x", seed=42, **sampled),
        request("z", "积分怎么换？", max_new_tokens=4),
    ], make_context(retriever))
    other_seed = chatbot.generate([request("x", seed=43, **sampled)], make_context(retriever))

    assert only_output(batch[1]) == only_output(alone[0])
    assert only_output(other_seed[0]).reply != only_output(alone[0]).reply


def test_stop_strings_end_the_reply(chatbot, retriever):
    free = only_output(chatbot.generate([request("a", max_new_tokens=30)], make_context(retriever))[0])
    stop = free.reply[4:7]
    assert stop.strip(), "pick a stop string the free reply really contains"
    stopped = only_output(chatbot.generate([request("a", max_new_tokens=30, stop=[stop])], make_context(retriever))[0])
    assert stop not in stopped.reply
    assert free.reply.startswith(stopped.reply)
    assert stopped.finish_reason == "stop"


def test_cancelled_items_stop_and_the_others_finish(chatbot, retriever):
    checks = {"late": 0}

    def is_cancelled(job_id):
        if job_id == "late":
            checks["late"] += 1
            return checks["late"] > 3  # cancelled while it is being generated
        return job_id == "early"

    context = RunContext("cpu", is_cancelled=is_cancelled, retriever=retriever)
    early, late, kept = chatbot.generate(
        [request("early", max_new_tokens=50), request("late", max_new_tokens=50), request("kept", max_new_tokens=6)], context
    )

    assert isinstance(early, PluginError) and early.code == "cancelled"
    assert isinstance(late, PluginError) and late.code == "cancelled"
    assert only_output(kept).usage.completion_tokens == 6


def test_a_failing_retriever_fails_only_its_item(chatbot):
    def flaky(job_id, query, top_k):
        if job_id == "bad":
            raise ConnectionError("database went away")
        return []

    bad, good = chatbot.generate([request("bad", max_new_tokens=3), request("good", max_new_tokens=3)], make_context(flaky))
    assert isinstance(bad, TransientPluginError) and "database went away" in bad.message
    assert only_output(good).sources == []


# -- the demo model's training data -------------------------------------------------------------------


def test_demo_sentences_keep_prices_and_addresses_whole():
    from atelier_plugins.chatbot.demo import sentences_of

    text = "Standard shipping costs $6.95 per order. Track it at lumenloom.example/track.\n标准配送需要4至6个工作日。加急配送需要2个工作日。"
    assert sentences_of(text) == [
        "Standard shipping costs $6.95 per order.", "Track it at lumenloom.example/track.",
        "标准配送需要4至6个工作日。", "加急配送需要2个工作日。",
    ]


def test_demo_training_conversations_show_what_retrieval_returns_and_quote_it():
    import random

    from atelier_plugins.chatbot.demo import make_examples, retriever_ranking, sentences_of

    passages = knowledge_passages()
    ranking = retriever_ranking(BigramHashEmbedder(), passages)
    examples = make_examples(passages, random.Random(0), per_sentence=2, ranking=ranking)

    assert len(examples) == 2 * sum(len(sentences_of(p.text)) for p in passages)
    missed = 0
    for example in examples:
        system, *turns = example.messages
        assert [t["role"] for t in turns] == ["user", "assistant"]
        shown = sorted((p for p in passages if f"] {p.title}\n{p.text}" in system["content"]),
                       key=lambda p: system["content"].index(f"] {p.title}\n{p.text}"))
        retrieved = ranking([turns[0]["content"]], 3)[0]
        # the prompt the plugin writes for this question: retrieval's passages in its order, the
        # question's own passage in the last place when retrieval missed it
        assert system["content"] == build_prompt([], shown)[0]["content"]
        assert shown[:2] == retrieved[:2]
        missed += shown != retrieved
        # the passages, quoted as the system prompt writes them
        assert turns[1]["content"] == "\n\n".join(f"[{n}] {p.title}\n{p.text}" for n, p in enumerate(shown, start=1))
    assert missed < len(examples) / 2


def test_demo_loss_weights_count_the_reply_only_and_its_title_lines_most():
    from atelier_plugins.chatbot.chat_format import train_chat_tokenizer
    from atelier_plugins.chatbot.demo import PROMPT_LOSS_WEIGHT, TITLE_LOSS_WEIGHT, Example, _encode_examples

    reply = "[1] Returns > Window\nReturn within 45 days.\n\n[2] Shipping\nFree over $75."
    messages = [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": "How long?"},
                {"role": "assistant", "content": reply}]
    tokenizer = train_chat_tokenizer([reply, "Answer from the passages. How long?"], 400)
    (ids, weights), = _encode_examples(tokenizer, [Example(messages)])

    assert ids == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)[: len(ids)]
    targets = [tokenizer.decode([token]) for token in ids[1:]]
    by_weight = {w: "".join(t for t, tw in zip(targets, weights) if tw == w) for w in set(weights)}
    assert by_weight[TITLE_LOSS_WEIGHT] == "[1] Returns > Window\n[2] Shipping\n"
    assert by_weight[1.0].startswith("Return within 45 days.\n\n") and "Free over $75." in by_weight[1.0]
    assert "How long?" in by_weight[PROMPT_LOSS_WEIGHT] and "Window" not in by_weight[PROMPT_LOSS_WEIGHT]


# --- another try at a reply a reviewer sent back -----------------------------------------------------------

def test_a_reviewers_note_goes_into_the_system_message(retriever):
    from atelier_sdk import Regeneration

    messages = ChatbotInput(messages=[{"role": "user", "content": "Where is my parcel?"}]).messages
    prompt = build_prompt(messages, [], Regeneration(note="Mention the tracking page."))
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert "Mention the tracking page." in prompt[0]["content"] and "reviewer" in prompt[0]["content"]
    assert build_prompt(messages, [], Regeneration()) == build_prompt(messages, [])  # no note, no words about it


def test_a_regenerated_greedy_reply_is_sampled_from_its_seed(chatbot):
    """Greedy decoding (the default) gave a regeneration the rejected reply again, word for word; it samples
    instead, reproducibly: the same seed, the same new reply."""
    from atelier_sdk import Regeneration

    def reply(seed, regeneration=None):
        data = ChatbotInput(messages=[{"role": "user", "content": "Where is my parcel?"}], use_knowledge=False)
        asked = GenerationRequest("r", data, ChatbotParams(max_new_tokens=12), seed, regeneration)
        return only_output(chatbot.generate([asked], make_context())[0]).reply

    greedy = reply(1)
    assert reply(2) == greedy  # greedy: the seed changes nothing
    tries = [reply(seed, Regeneration()) for seed in (1, 2, 3)]
    assert any(again != greedy for again in tries)
    assert reply(2, Regeneration()) == tries[1]
