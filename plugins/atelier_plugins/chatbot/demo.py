"""The demo chat model: a small Llama trained here, offline, on the shipped knowledge base.

It learns one skill: given the chatbot's prompt (system prompt with the retrieved passages, best
first, and a customer question), reply by quoting the three best passages exactly as the prompt
writes them: ``[1] title`` line, text, blank line, ``[2] ...``. The reply holds the answer
whenever retrieval ranks its passage in the top three (the plugin's default ``top_k``). A real
instruct LM placed in the project's model directory answers in its own words instead.

Why this reply: a ~2M-parameter model trained for a few minutes on two CPU cores does not learn
to copy arbitrary text from its context (induction heads do not form in that budget: trained on
passages with randomised numbers and words, so that only copying could pay, it scored 0 of 12).
What it does learn is the knowledge base by heart, and which memorised passage a prompt shows
where. Quoting the passages with their numbered, unique title lines helps with that: the title
line it writes names the passage to recite next, and the reply runs through the passages in the
order of the prompt, which helps it keep its place. So the reply is a
recitation, conditioned on the prompt, of passages it learnt here; it is not a general copier,
and passages of another knowledge base would not be quoted faithfully.

Training data come from the documents themselves: for every sentence, synthetic questions
phrased by templates from what it says (an amount of money, a duration, an e-mail address,
opening hours...) and from its words and section heading, each put in the plugin's own prompt
(``build_prompt``) with the passages the plugin's own retrieval returns for it, in its order (the
sentence's passage takes the last place when retrieval misses it). Training prompts are thus the
prompts the plugin writes. The loss counts the reply's tokens only, its title lines more.

``evaluate_demo`` runs the shipped evaluation questions through ``ChatbotPlugin`` with real
retrieval (all-MiniLM-L6-v2 plus bigram overlap) over the chunked knowledge base.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from atelier_plugins.chatbot.chat_format import TURN_END, TURN_START
from atelier_plugins.chatbot.plugin import ChatMessage, build_prompt
from atelier_plugins.text.chunking import chunk_markdown
from atelier_plugins.text.retrieval import IndexedPassage

Progress = Callable[[int, int, str], None]

SEED = 1234
VOCAB_SIZE = 3000
EXAMPLES_PER_SENTENCE = 12
BATCH_TOKENS = 1024  # tokens per optimiser step (sequences of similar length are batched together)
EPOCHS = 1
#: The demo model's reply quotes this many of the passages it is given, best first (the chatbot's default top_k).
QUOTED_PASSAGES = 3
#: Reply length in evaluate_demo: three passages with their title lines take up to ~350 tokens (the plugin's
#: default, 128, is too short; its limit is 512).
EVAL_MAX_NEW_TOKENS = 384
LEARNING_RATE = 3e-3
WARMUP_STEPS = 60
#: Loss weight of prompt tokens: none; the reply holds every passage's text anyway, and prompt logits are skipped.
PROMPT_LOSS_WEIGHT = 0.0
#: Loss weight of the reply's ``[n] title`` lines, against 1 for the passages' text: choosing the passage is the
#: hard part (the eval's misses recited the right passages in the wrong order), reciting it once chosen is easy.
TITLE_LOSS_WEIGHT = 4.0
MODEL_CONFIG = dict(
    hidden_size=192, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
    max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-5,
)


# -- the knowledge base ---------------------------------------------------------------------------


def demo_passages(data_dir: Path) -> list[IndexedPassage]:
    """The knowledge base chunked as the platform indexes it: title = heading path, else the document title."""
    passages = []
    root = Path(data_dir) / "knowledge_base"
    for path in sorted(root.rglob("*.md")):
        content = path.read_text(encoding="utf-8")
        first = content.strip().splitlines()[0] if content.strip() else path.stem
        title = first.lstrip("#").strip() or path.stem
        source_id = path.relative_to(root).with_suffix("").as_posix()
        for chunk in chunk_markdown(content):
            passages.append(IndexedPassage(source_id, f"{source_id}#{chunk.index}", chunk.heading or title, chunk.text))
    return passages


_LATIN_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"A-Z0-9])")
_CJK_SENTENCE_END = re.compile(r"(?<=[。！？])")


def sentences_of(text: str) -> list[str]:
    """Sentences of a passage ("$6.95" and "lumenloom.example/track" stay whole)."""
    found = []
    for line in text.split("\n"):
        for part in _LATIN_SENTENCE_END.split(line):
            found.extend(s.strip() for s in _CJK_SENTENCE_END.split(part) if s.strip())
    return found


def is_chinese(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


# -- synthetic questions --------------------------------------------------------------------------

STOPWORDS = set(
    "a an the and or but if of to in on at by for with from as is are was were be been it its this that these those "
    "we our us you your they their them he she his her i me my can will would should could may might must do does "
    "did not no so than then there here also any all each every other such only just very more most per up out "
    "has have had which who whom what when where why how about into over under after before within without "
    "while during same one two three four five six seven eight nine ten".split()
)

# What a sentence answers, recognised from its wording, and the questions that ask for it.
EN_ANSWER_TYPES: list[tuple[re.Pattern, list[str]]] = [
    (re.compile(r"\S+@\S+\.\w+"), [
        "What e-mail address should I use for {x}?", "Which address should I write to about {x}?",
        "Where do I send {x}?", "Who do I e-mail about {x}?", "How do I contact you about {x}?",
    ]),
    (re.compile(r"\b[a-z]+\.example/\S+"), [
        "Where can I {v}?", "Which website do I use to {v}?", "Where do I go online to {v}?", "Can I {v} online?",
    ]),
    (re.compile(r"\b\d{1,2}(:\d\d)? ?(am|pm)\b"), [
        "What are the opening hours of {x}?", "When is {x} open?", "What time does {x} open?",
        "What are the hours of {x}?", "What time {x}?",
    ]),
    (re.compile(r"\b(over|above|at least|more than|from|minimum of) \$?\d", re.I), [
        "How much do I have to spend for {x}?", "What is the minimum for {x}?", "How much do I need for {x}?",
        "How many do I need for {x}?", "What is the threshold for {x}?",
    ]),
    (re.compile(r"\$\d"), [
        "How much does {x} cost?", "How much is {x}?", "What is the price of {x}?", "How much do I pay for {x}?",
        "What is the fee for {x}?",
    ]),
    (re.compile(r"\d+%"), ["How big is the discount for {x}?", "What percentage is {x}?", "How much off is {x}?"]),
    (re.compile(r"\bevery (\d+ )?(day|week|month|year|hour)s?\b|\bonce a\b", re.I), [
        "How often should I {v}?", "How often {x}?", "How frequently should I {v}?",
    ]),
    (re.compile(r"\b\d+[- ](business |working )?(minute|hour|day|week|month|year)s?\b", re.I), [
        "How long {x}?", "How long do I have for {x}?", "How much time is there for {x}?",
        "How many {unit}s for {x}?", "How long is {x}?", "Within how long {x}?",
    ]),
    (re.compile(r"\b\d[\d,]* ([a-z]+)"), ["How many {noun} for {x}?", "How many {noun} does {x} take?"]),
    (re.compile(r"\b\d+ [A-Z][a-z]+ (Street|Lane|Avenue|Road)\b|\bPO Box\b"), [
        "Where is {x}?", "What is the address of {x}?", "Where can I find {x}?",
    ]),
]
EN_GENERIC = [
    "What about {x}?", "Tell me about {x}.", "Can you tell me about {x}?", "What is the rule for {x}?",
    "I have a question about {x}.", "{x}?", "What should I know about {x}?", "Is there anything about {x}?",
    "Do you {v}?", "Can I {v}?",
]
EN_OPENERS = ["", "", "", "Hi, ", "Hello! ", "Quick question: ", "Hi there. ", "Please help. ", "Sorry, "]

ZH_ANSWER_TYPES: list[tuple[re.Pattern, list[str]]] = [
    (re.compile(r"\S+@\S+\.\w+"), ["{x}应该发邮件到哪里？", "{x}联系哪个邮箱？", "怎么联系你们{x}？"]),
    (re.compile(r"\.example/"), ["在哪里可以{x}？", "{x}去哪个网址？"]),
    (re.compile(r"满\d+|超过\d+|\d+至\d+"), ["买多少{x}？", "多少钱可以{x}？", "{x}需要多少？", "要满多少才能{x}？"]),
    (re.compile(r"\d+(\.\d+)?美元"), ["{x}多少钱？", "{x}要花多少钱？", "{x}费用是多少？", "{x}怎么收费？"]),
    (re.compile(r"\d+%|折"), ["{x}打几折？", "{x}有多少折扣？"]),
    (re.compile(r"每\d*(个月|周|天|年)"), ["{x}多久一次？", "多长时间{x}一次？"]),
    (re.compile(r"\d+(个)?(工作日|天|周|个月|年|小时|分钟)"), ["{x}多久？", "{x}需要几天？", "多久之内{x}？", "{x}要多长时间？", "{x}期限是多久？"]),
    (re.compile(r"\d[\d,]*积分"), ["{x}需要多少积分？", "积分怎么{x}？", "{x}能换什么？"]),
    (re.compile(r"\d+(点|时)"), ["{x}几点？", "{x}营业时间是什么？"]),
]
ZH_GENERIC = ["请问{x}？", "{x}是怎样的？", "关于{x}有什么规定？", "我想了解{x}。", "{x}怎么办？", "{x}吗？", "{x}有什么要求？"]
ZH_OPENERS = ["", "", "你好，", "您好，", "请问，", "麻烦问一下，"]


@dataclass(frozen=True)
class Example:
    """One training conversation: the plugin's prompt, then answered turns (the assistant's are the targets)."""

    messages: list[dict[str, str]]


def _english_phrases(sentence: str) -> list[str]:
    """Runs of consecutive content words: the sentence's key noun/verb phrases, numbers left out."""
    runs, current = [], []
    for word in re.findall(r"[A-Za-z][A-Za-z'-]*|\S", sentence):
        if re.fullmatch(r"[A-Za-z][A-Za-z'-]*", word) and word.lower() not in STOPWORDS:
            current.append(word)
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [" ".join(run) for run in runs]


def _english_question(sentence: str, heading: str, rng: random.Random) -> str:
    phrases = _english_phrases(sentence)
    heading_words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", heading.split(">")[-1]) if w.lower() not in STOPWORDS]
    picked = []
    if phrases:
        phrase = rng.choice(phrases).split()
        start = rng.randrange(len(phrase))
        picked.append(" ".join(phrase[start : start + rng.randint(1, 3)]))
        if len(phrases) > 1 and rng.random() < 0.5:
            picked.append(rng.choice(phrases))
    if heading_words and (not picked or rng.random() < 0.4):
        picked.append(" ".join(heading_words))
    if rng.random() < 0.3:
        rng.shuffle(picked)
    x = " and ".join(picked) if picked else heading
    words = [w for p in phrases for w in p.split()]
    v = " ".join(words[: rng.randint(1, 3)]).lower() if words else x
    templates = list(EN_GENERIC)
    fields = {"x": x.lower() if rng.random() < 0.7 else x, "v": v, "unit": "day", "noun": "points"}
    for pattern, typed in EN_ANSWER_TYPES:
        match = pattern.search(sentence)
        if match:
            unit = re.search(r"(minute|hour|day|week|month|year)", match.group(0))
            noun = match.group(match.lastindex) if match.lastindex else None
            fields["unit"] = unit.group(1) if unit else "day"
            fields["noun"] = noun if noun and noun.isalpha() and noun not in STOPWORDS else "items"
            templates = typed * 3 + EN_GENERIC  # the answer-type questions are the common ones
            break
    question = rng.choice(templates).format(**fields)
    question = rng.choice(EN_OPENERS) + question[0].upper() + question[1:]
    return question if rng.random() < 0.85 else question.lower()


def _chinese_question(sentence: str, heading: str, rng: random.Random) -> str:
    runs = [r for r in re.findall(r"[\u3400-\u9fff]+", sentence) if len(r) >= 2]
    head_runs = re.findall(r"[\u3400-\u9fff]+", heading.split(">")[-1])
    picked = []
    if runs:
        run = rng.choice(runs)
        size = min(len(run), rng.randint(2, 5))
        start = rng.randrange(len(run) - size + 1)
        picked.append(run[start : start + size])
    if head_runs and (not picked or rng.random() < 0.4):
        picked.append(rng.choice(head_runs))
    x = "".join(picked) if picked else heading
    templates = list(ZH_GENERIC)
    for pattern, typed in ZH_ANSWER_TYPES:
        if pattern.search(sentence):
            templates = typed * 3 + ZH_GENERIC
            break
    return rng.choice(ZH_OPENERS) + rng.choice(templates).format(x=x)


def synthesise_question(sentence: str, heading: str, rng: random.Random) -> str:
    if is_chinese(sentence):
        return _chinese_question(sentence, heading, rng)
    return _english_question(sentence, heading, rng)


Ranking = Callable[[list[str], int], list[list[IndexedPassage]]]


def retriever_ranking(embedder, passages: list[IndexedPassage]) -> Ranking:
    """The plugin's own retrieval (``rank``: the sentence embedding plus bigram overlap) over ``passages``,
    for many questions at once: question texts and ``top_k`` -> each question's passages, best first."""
    import numpy as np

    from atelier_plugins.text.retrieval import passage_embedding_text, rank

    vectors = embedder.embed([passage_embedding_text(p.title, p.text) for p in passages]) if passages else np.zeros((0, 1))
    by_chunk = {p.chunk_id: p for p in passages}

    def ranked(questions: list[str], top_k: int) -> list[list[IndexedPassage]]:
        question_vectors = embedder.embed(questions) if questions else []
        return [[by_chunk[hit.chunk_id] for hit in rank(question, vector, passages, vectors, top_k)]
                for question, vector in zip(questions, question_vectors)]

    return ranked


def quote(passages) -> str:
    """The demo model's reply to a prompt with ``passages`` (best first): the first ``QUOTED_PASSAGES``, verbatim,
    each with its number and title line, exactly as ``build_system_prompt`` writes them."""
    return "\n\n".join(f"[{n}] {p.title}\n{p.text}" for n, p in enumerate(passages[:QUOTED_PASSAGES], start=1))


def make_examples(passages: list[IndexedPassage], rng: random.Random, per_sentence: int, ranking: Ranking) -> list[Example]:
    """Conversations in the plugin's prompt format (``build_prompt``) whose answer quotes the passages shown.

    Every sentence opens ``per_sentence`` conversations with a synthetic question about it. The
    prompt shows what the plugin's retrieval (``ranking``) returns for that question, in its order,
    so that training prompts are the prompts the plugin will write; when the sentence's own passage
    is not among them it takes the last place. The answer is ``quote(shown)``.
    """
    asked = [
        (synthesise_question(sentence, passage.title, rng), passage)
        for passage in passages for sentence in sentences_of(passage.text) for _ in range(per_sentence)
    ]
    examples = []
    for (question, passage), shown in zip(asked, ranking([q for q, _ in asked], QUOTED_PASSAGES)):
        if passage not in shown:
            shown = shown[: QUOTED_PASSAGES - 1] + [passage]
        conversation = [ChatMessage(role="user", content=question), ChatMessage(role="assistant", content=quote(shown))]
        examples.append(Example(build_prompt(conversation, shown)))
    rng.shuffle(examples)
    return examples


# -- building the model ---------------------------------------------------------------------------


def prepare_demo_model(target_dir: Path, data_dir: Path, progress: Progress | None = None, *, seed: int = SEED) -> dict:
    """Train the demo chat model into ``target_dir`` (safetensors, tokenizer, chat template); return its figures."""
    started = time.monotonic()
    import torch

    from atelier_plugins.chatbot.chat_format import train_chat_tokenizer

    report = progress or (lambda step, total, message: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        target_dir = Path(target_dir)
        target_dir.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed)
        torch.manual_seed(seed)

        passages = demo_passages(data_dir)
        if not passages:
            raise FileNotFoundError(f"No knowledge-base documents under {Path(data_dir) / 'knowledge_base'}")
        from atelier_plugins.text.embedding import SentenceEmbedder

        examples = make_examples(passages, rng, EXAMPLES_PER_SENTENCE, retriever_ranking(SentenceEmbedder(device="cpu"), passages))

        corpus = [p.text for p in passages] + [p.title for p in passages]
        corpus += [m["content"] for e in examples[:3000] for m in e.messages if m["role"] == "user"]
        corpus += [examples[0].messages[0]["content"]]
        tokenizer = train_chat_tokenizer(corpus, VOCAB_SIZE)

        sequences = _encode_examples(tokenizer, examples)
        batches = _length_batches(sequences, BATCH_TOKENS, rng)
        total_steps = len(batches) * EPOCHS
        total = total_steps + 2
        report(1, total, f"tokenizer ({len(tokenizer)} tokens) and {len(examples)} training examples ready")

        model = _new_model(tokenizer)
        figures = _train(model, batches, total_steps, tokenizer.pad_token_id, lambda step, msg: report(1 + step, total, msg), rng)

        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(TURN_END)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(target_dir, safe_serialization=True)
        tokenizer.save_pretrained(target_dir)
        size = sum(p.stat().st_size for p in target_dir.iterdir() if p.is_file())
        report(total, total, f"saved to {target_dir}")
        return {
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "examples": len(examples),
            "sentences": sum(len(sentences_of(p.text)) for p in passages),
            "steps": total_steps,
            **figures,
            "model_bytes": size,
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        torch.set_num_threads(previous_threads)


def _encode_examples(tokenizer, examples: list[Example]) -> list[tuple[list[int], list[float]]]:
    """Token ids of each conversation, and the loss weight of predicting each next token.

    Turns are tokenised piece by piece as the chat template writes them (all pieces of all
    conversations in one batched call); the byte-level pre-tokenizer splits at the special tokens
    and newlines that separate turns, so this gives the ids the whole rendered text would, and
    marks where each answer starts. Inside an answer, the tokens of its ``[n] title`` lines weigh
    ``TITLE_LOSS_WEIGHT``: they are where the model decides which memorised passage comes next.
    """
    pieces: list[tuple[int, str, float, bool]] = []
    for number, example in enumerate(examples):
        for message in example.messages:
            if message["role"] == "assistant":
                pieces.append((number, f"{TURN_START}assistant\n", PROMPT_LOSS_WEIGHT, False))
                pieces.append((number, message["content"] + TURN_END, 1.0, True))
                pieces.append((number, "\n", PROMPT_LOSS_WEIGHT, False))
            else:
                pieces.append((number, f"{TURN_START}{message['role']}\n{message['content']}{TURN_END}\n", PROMPT_LOSS_WEIGHT, False))
    encoded = tokenizer([text for _, text, _, _ in pieces], add_special_tokens=False, return_offsets_mapping=True)
    sequences: list[tuple[list[int], list[float]]] = [([], []) for _ in examples]
    for (number, text, weight, is_answer), piece, offsets in zip(pieces, encoded["input_ids"], encoded["offset_mapping"]):
        ids, weights = sequences[number]
        ids.extend(piece)
        if is_answer:
            titles = [(m.start(), m.end()) for m in _TITLE_LINE.finditer(text)]
            weights.extend(TITLE_LOSS_WEIGHT if any(a <= start < b for a, b in titles) else weight for start, _ in offsets)
        else:
            weights.extend([weight] * len(piece))
    return [(ids, weights[1:]) for ids, weights in sequences]


_TITLE_LINE = re.compile(r"^\[\d+\] [^\n]*\n", re.MULTILINE)


def _length_batches(sequences, batch_tokens: int, rng: random.Random):
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    batches, current, longest = [], [], 0
    for index in order:
        length = len(sequences[index][0])
        if current and max(longest, length) * (len(current) + 1) > batch_tokens:
            batches.append([sequences[i] for i in current])
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append([sequences[i] for i in current])
    rng.shuffle(batches)
    return batches


def _new_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id,
        **MODEL_CONFIG,
    )
    return LlamaForCausalLM(config)


def _train(model, batches, total_steps: int, pad_id: int, report, rng: random.Random) -> dict:
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.98), weight_decay=0.01)

    def learning_rate(step: int) -> float:
        if step < WARMUP_STEPS:
            return (step + 1) / WARMUP_STEPS
        progress = (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, learning_rate)
    model.train()
    losses, answer_losses = [], []
    step = 0
    for epoch in range(EPOCHS):
        if epoch:
            rng.shuffle(batches)
        for batch in batches:
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            weights = torch.zeros((len(batch), width - 1))
            answer = torch.zeros((len(batch), width - 1))
            for row, (ids, w) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
                weights[row, : len(w)] = torch.tensor(w)
                answer[row, : len(w)] = (torch.tensor(w) > 0).float()
            # Logits only where the loss counts: the vocabulary projection of prompt tokens is wasted work.
            hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, :-1]
            counted = weights > 0
            token_loss = torch.nn.functional.cross_entropy(
                model.lm_head(hidden[counted]), input_ids[:, 1:][counted], reduction="none"
            )
            weights, answer = weights[counted], answer[counted]
            loss = (token_loss * weights).sum() / weights.sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad(set_to_none=True)
            losses.append(loss.item())
            answer_losses.append(float((token_loss.detach() * answer).sum() / answer.sum()))
            step += 1
            if step % 10 == 0 or step == total_steps:
                report(step, f"step {step}/{total_steps}: answer loss {sum(answer_losses[-10:]) / len(answer_losses[-10:]):.3f}")
    model.eval()
    tail = max(1, len(losses) // 10)
    return {
        "train_loss": round(sum(losses[-tail:]) / tail, 4),
        "train_answer_loss": round(sum(answer_losses[-tail:]) / tail, 4),
        "first_answer_loss": round(answer_losses[0], 4),
    }


# -- evaluation -----------------------------------------------------------------------------------


def evaluate_demo(model_dir: Path, data_dir: Path, *, device: str = "cpu", embedder=None) -> dict:
    """The acceptance check: through ``ChatbotPlugin`` with retrieval over the chunked demo knowledge base,
    a question passes when the reply contains its ``key_fact`` verbatim and the sources include its ``source_id``.
    """
    from atelier_sdk import GenerationRequest, RunContext

    from atelier_plugins.chatbot.plugin import ChatbotInput, ChatbotParams, ChatbotPlugin
    from atelier_plugins.text.retrieval import InMemoryRetriever

    if embedder is None:
        from atelier_plugins.text.embedding import SentenceEmbedder

        embedder = SentenceEmbedder(device=device)
    retriever = InMemoryRetriever(embedder, demo_passages(data_dir))
    questions = json.loads((Path(data_dir) / "eval_questions.json").read_text(encoding="utf-8"))
    plugin = ChatbotPlugin()
    plugin.load(device, Path(model_dir))
    context = RunContext(device, retriever=retriever)
    details = []
    size = ChatbotPlugin.manifest.max_batch_size
    for start in range(0, len(questions), size):
        chunk = questions[start : start + size]
        batch = [
            GenerationRequest(q["id"], ChatbotInput(messages=[{"role": "user", "content": q["question"]}]), ChatbotParams(max_new_tokens=EVAL_MAX_NEW_TOKENS), seed=0)
            for q in chunk
        ]
        for question, result in zip(chunk, plugin.generate(batch, context)):
            output = result[0].content
            sources = [s.source_id for s in output.sources]
            fact = question["key_fact"] in output.reply
            cited = question["source_id"] in sources
            details.append({
                "id": question["id"], "passed": fact and cited, "key_fact_in_reply": fact, "source_cited": cited,
                "reply": output.reply, "sources": sources,
            })
    plugin.unload()
    return {"score": sum(d["passed"] for d in details), "total": len(details), "details": details}
