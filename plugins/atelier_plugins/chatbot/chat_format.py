"""The chat format and tokenizer of models this project trains itself (the demo model, test models).

Any model with its own chat template works with the chatbot; this is only what our own small
models use: ChatML-style turns, ``<|im_end|>`` ends a turn and is the end-of-sequence token, so
generation stops at the end of the assistant's turn.
"""

from __future__ import annotations

from typing import Iterable

END_OF_TEXT = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
SPECIAL_TOKENS = [END_OF_TEXT, TURN_START, TURN_END]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_chat_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``, as a transformers fast tokenizer with the chat template.

    Byte level: every string is encodable (Chinese included) whatever the training text, and the
    merges learnt from the texts make their frequent words and characters single tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=TURN_END, pad_token=END_OF_TEXT, bos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
