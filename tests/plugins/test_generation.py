"""CausalChatLM: batched decoding with a KV cache, per-item seeds, stop strings, limits, cancellation."""

from __future__ import annotations

import shutil

import pytest
import torch

from atelier_plugins.text.generation import CausalChatLM, ChatRequest
from tests.support.tiny_lm import build_tiny_chat_lm

torch.set_num_threads(1)

SHORT = [{"role": "user", "content": "hi"}]
MEDIUM = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How long does shipping take?"}]
LONG = [
    {"role": "user", "content": "I ordered a lamp and a rug last week."},
    {"role": "assistant", "content": "Thank you, I can help with that order."},
    {"role": "user", "content": "The rug arrived but the lamp did not. 标准配送需要几天？ Where is my lamp now?"},
]


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    return build_tiny_chat_lm(tmp_path_factory.mktemp("tiny_chat_lm"))


@pytest.fixture(scope="module")
def lm(tiny_chat_dir):
    return CausalChatLM(tiny_chat_dir, "cpu")


def test_greedy_batch_of_mixed_lengths_equals_one_by_one(lm):
    conversations = [SHORT, LONG, MEDIUM]
    alone = [lm.generate([ChatRequest(c, max_new_tokens=24)])[0] for c in conversations]
    together = lm.generate([ChatRequest(c, max_new_tokens=24) for c in conversations])

    assert together == alone
    assert len({r.prompt_tokens for r in alone}) == 3, "the prompts must differ in length to exercise padding"
    assert all(r.text for r in alone)


def test_sampled_item_gives_the_same_text_alone_and_in_any_batch(lm):
    item = ChatRequest(MEDIUM, max_new_tokens=20, temperature=1.0, top_p=0.95, seed=1234)
    others = [ChatRequest(LONG, max_new_tokens=30, temperature=0.8, seed=7), ChatRequest(SHORT, max_new_tokens=5)]

    alone = lm.generate([item])[0]
    first = lm.generate([item, *others])[0]
    last = lm.generate([*others, item])[-1]

    assert first == alone
    assert last == alone


SYSTEM = {"role": "system", "content": "You are the support assistant of a furniture shop. Answer in two sentences, "
                                       "name the order number when you know it, and never invent delivery dates."}


def shared_prefix_spy(lm, monkeypatch) -> list[int]:
    """The length of the prefix each batch ran once for all its rows (0: none shared)."""
    shared: list[int] = []
    prefill = lm._prefill_shared_prefix

    def spy(prompts):
        result = prefill(prompts)
        shared.append(result[0])
        return result

    monkeypatch.setattr(lm, "_prefill_shared_prefix", spy)
    return shared


def test_a_shared_system_prompt_runs_once_and_every_reply_is_as_alone(lm, monkeypatch):
    chats = [[SYSTEM, {"role": "user", "content": question}] for question in
             ("Where is my lamp?", "Can I return a rug after thirty days?", "hi", "标准配送需要几天？")]
    requests = [ChatRequest(chat, max_new_tokens=16) for chat in chats]
    requests += [ChatRequest(chat, max_new_tokens=16, temperature=0.9, seed=seed) for seed, chat in enumerate(chats)]
    alone = [lm.generate([request])[0] for request in requests]
    shared = shared_prefix_spy(lm, monkeypatch)
    together = lm.generate(requests)
    assert shared and shared[0] >= len(lm._encode([SYSTEM], generation_prompt=False)) - 2  # the system prompt, run once
    assert together == alone
    assert len({reply.text for reply in alone[4:]}) > 1  # sampled with their own seeds: not all alike


def test_identical_prompts_share_all_but_their_last_token(lm, monkeypatch):
    request = ChatRequest([SYSTEM, {"role": "user", "content": "Where is my lamp?"}], max_new_tokens=12)
    alone = lm.generate([request])[0]
    shared = shared_prefix_spy(lm, monkeypatch)
    assert lm.generate([request, request, request]) == [alone] * 3
    assert shared == [alone.prompt_tokens - 1]


def test_prompts_that_share_little_are_not_split(lm, monkeypatch):
    shared = shared_prefix_spy(lm, monkeypatch)
    alone = [lm.generate([ChatRequest(chat, max_new_tokens=8)])[0] for chat in (SHORT, MEDIUM)]
    assert lm.generate([ChatRequest(chat, max_new_tokens=8) for chat in (SHORT, MEDIUM)]) == alone
    assert shared == [0, 0, 0]  # each alone, then the two together: too little in common to run apart


def test_different_seeds_give_different_samples(lm):
    texts = {
        lm.generate([ChatRequest(SHORT, max_new_tokens=16, temperature=1.0, seed=seed)])[0].text for seed in range(4)
    }
    assert len(texts) == 4


def test_greedy_ignores_the_seed(lm):
    a, b = lm.generate([ChatRequest(LONG, max_new_tokens=12, seed=1), ChatRequest(LONG, max_new_tokens=12, seed=99)])
    assert a == b


def test_stop_string_cuts_the_text_and_finishes_with_stop(lm):
    free = lm.generate([ChatRequest(LONG, max_new_tokens=30)])[0]
    assert len(free.text) > 6
    stop = free.text[3:6]
    expected = free.text[: free.text.find(stop)]

    stopped, other = lm.generate([
        ChatRequest(LONG, max_new_tokens=30, stop=("never-produced", stop)),
        ChatRequest(SHORT, max_new_tokens=30),
    ])

    assert stopped.text == expected
    assert stop not in stopped.text
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < free.completion_tokens
    assert other == lm.generate([ChatRequest(SHORT, max_new_tokens=30)])[0]


def test_max_new_tokens_is_respected_and_counted(lm):
    results = lm.generate([ChatRequest(c, max_new_tokens=n) for c, n in ((SHORT, 1), (MEDIUM, 7), (LONG, 13))])
    assert [(r.completion_tokens, r.finish_reason) for r in results] == [(1, "length"), (7, "length"), (13, "length")]
    prefix = lm.generate([ChatRequest(LONG, max_new_tokens=20)])[0]
    assert prefix.text.startswith(results[2].text)


def test_items_that_end_at_the_same_step_are_handed_over_together(lm):
    handed: list[list[tuple[int, int]]] = []
    results = lm.generate(
        [ChatRequest(SHORT, max_new_tokens=3), ChatRequest(LONG, max_new_tokens=6), ChatRequest(MEDIUM, max_new_tokens=3)],
        on_finished=lambda finished: handed.append([(item, done.completion_tokens) for item, done in finished]),
    )
    assert handed == [[(0, 3), (2, 3)], [(1, 6)]]  # one call per step at which items ended
    assert [r.completion_tokens for r in results] == [3, 6, 3]


def test_end_of_sequence_token_stops_the_item(tiny_chat_dir, tmp_path):
    # Make the token the model greedily produces first its end-of-sequence token: the reply is then
    # empty, one token counted, finished with "stop".
    lm = CausalChatLM(tiny_chat_dir, "cpu")
    ids, _ = lm.encode_chat(MEDIUM, 5)
    with torch.inference_mode():
        first = int(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    copy = tmp_path / "eos_model"
    shutil.copytree(tiny_chat_dir, copy)
    lm.model.generation_config.eos_token_id = first
    lm.model.generation_config.save_pretrained(copy)

    stopping = CausalChatLM(copy, "cpu")
    done, running = stopping.generate([ChatRequest(MEDIUM, max_new_tokens=10), ChatRequest(SHORT, max_new_tokens=10)])

    assert (done.text, done.completion_tokens, done.finish_reason) == ("", 1, "stop")
    assert running.completion_tokens >= 1


def test_long_conversation_is_truncated_from_the_left_keeping_the_system_message(lm):
    system = {"role": "system", "content": "Always answer politely."}
    turns = []
    for n in range(30):
        turns.append({"role": "user", "content": f"Question number {n} about shipping and returns?"})
        turns.append({"role": "assistant", "content": f"Answer number {n}: standard shipping takes 4 to 6 days."})
    turns.append({"role": "user", "content": "And the last question?"})

    ids, max_new = lm.encode_chat([system, *turns], max_new_tokens=40)
    text = lm.tokenizer.decode(ids)

    assert len(ids) + max_new <= lm.max_positions
    assert text.startswith(lm.render([system], generation_prompt=False))
    assert text.endswith(lm.render([turns[-1]]))
    assert "Question number 0 " not in text

    result = lm.generate([ChatRequest([system, *turns], max_new_tokens=40)])[0]
    assert result.prompt_tokens == len(ids)
    assert result.completion_tokens == 40


def test_single_huge_message_keeps_the_start_of_the_system_message(lm):
    system = {"role": "system", "content": "Answer from the passages. " + "Shipping takes 4 days. " * 80}
    question = {"role": "user", "content": "How long?"}
    ids, max_new = lm.encode_chat([system, question], max_new_tokens=16)
    text = lm.tokenizer.decode(ids)
    assert len(ids) + max_new == lm.max_positions
    assert text.startswith("<|im_start|>system\nAnswer from the passages.")
    assert text.endswith(lm.render([question]))


def test_progress_callback_and_cancellation_of_one_item(lm):
    progress: dict[int, list[int]] = {0: [], 1: []}
    cancelled = set()

    def callback(item, tokens):
        progress[item].append(tokens)
        if item == 1 and tokens == 3:
            cancelled.add(1)

    kept, dropped = lm.generate(
        [ChatRequest(MEDIUM, max_new_tokens=10), ChatRequest(LONG, max_new_tokens=10)],
        callback=callback, should_stop=lambda item: item in cancelled,
    )

    assert dropped.finish_reason == "cancelled"
    assert dropped.completion_tokens == 3
    assert progress[1] == [1, 2, 3]
    assert progress[0] == list(range(1, 11))
    assert kept == lm.generate([ChatRequest(MEDIUM, max_new_tokens=10)])[0]


def test_item_cancelled_before_the_start_generates_nothing(lm):
    handed: list[list[int]] = []
    gone, kept = lm.generate(
        [ChatRequest(LONG, max_new_tokens=10), ChatRequest(SHORT, max_new_tokens=4)], should_stop=lambda item: item == 0,
        on_finished=lambda finished: handed.append([item for item, _ in finished]),
    )
    assert (gone.completion_tokens, gone.finish_reason) == (0, "cancelled")
    assert handed == [[0], [1]]
    assert kept.completion_tokens == 4


def test_a_model_without_chat_template_is_refused(tiny_chat_dir, tmp_path):
    from atelier_sdk import PluginError

    copy = tmp_path / "no_template"
    shutil.copytree(tiny_chat_dir, copy)
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(PluginError, match="chat template"):
        CausalChatLM(copy, "cpu")


def test_on_cuda_attention_may_use_any_kernel_but_cudnns():
    """cuDNN's attention builds a plan for every new shape, and decoding meets a new one at every
    step: on an H200 a batch of 5 on new prompts took 4.7 s with it and 0.36 s without."""
    from atelier_plugins.text.generation import attention_kernels

    backends = torch.backends.cuda
    before = (backends.cudnn_sdp_enabled(), backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled(),
              backends.math_sdp_enabled())
    assert before[0], "PyTorch allows cuDNN's attention by default; this test starts from that"
    with attention_kernels("cuda:0"):
        assert not backends.cudnn_sdp_enabled()
        assert backends.flash_sdp_enabled() and backends.mem_efficient_sdp_enabled() and backends.math_sdp_enabled()
    with attention_kernels("cpu"):
        assert backends.cudnn_sdp_enabled()
    assert (backends.cudnn_sdp_enabled(), backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled(),
            backends.math_sdp_enabled()) == before


def test_every_forward_pass_of_decoding_runs_with_the_chosen_kernels(lm, monkeypatch):
    from contextlib import contextmanager

    from atelier_plugins.text import generation

    inside: list[str] = []
    calls: list[bool] = []

    @contextmanager
    def recording_kernels(device):
        inside.append(device)
        try:
            yield
        finally:
            inside.pop()

    monkeypatch.setattr(generation, "attention_kernels", recording_kernels)
    hook = lm.model.register_forward_pre_hook(lambda module, args: calls.append(inside == ["cpu"]))
    try:
        # A shared system prompt: its prefill, the rows' prefill and every step are forward passes.
        lm.generate([ChatRequest([SYSTEM, *SHORT], max_new_tokens=6), ChatRequest([SYSTEM, *LONG], max_new_tokens=4)])
    finally:
        hook.remove()
    assert len(calls) >= 6 and all(calls)
