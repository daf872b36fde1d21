"""A tiny causal chat LM built in a fixture: a byte-level BPE tokenizer trained in milliseconds and
a randomly initialised GPT-2, saved with safetensors. Its replies are gibberish, but they are
real model output, which is all that batching, seeding, stopping and counting need.
"""

from __future__ import annotations

from pathlib import Path

TINY_TEXTS = [
    "Standard shipping takes 4 to 6 business days. Express shipping takes 2 business days.",
    "You can return most items within 45 days of delivery for a full refund.",
    "Every 100 points can be exchanged for a $5 reward.",
    "Our stores open from 9 am to 6 pm, Monday to Saturday.",
    "标准配送需要4至6个工作日。订单金额满75美元可享受免费标准配送。",
    "The quick brown fox jumps over the lazy dog, again and again.",
]


def build_tiny_chat_lm(target: Path, *, n_positions: int = 256, seed: int = 0,
                       texts: list[str] = TINY_TEXTS, vocab_size: int = 400) -> Path:
    """Train the tokenizer on ``texts`` (so the model's gibberish is made of their tokens), save the model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from atelier_plugins.chatbot.chat_format import train_chat_tokenizer

    tokenizer = train_chat_tokenizer(texts * 4, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
        # Large initial weights give peaked, varied next-token distributions: greedy argmaxes far
        # from ties, and samples that differ between seeds.
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target
