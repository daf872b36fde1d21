"""Blocklist screening speed: one Aho-Corasick automaton vs a loop of ``term in text.lower()``.

    .venv/bin/python bench/screening.py [--terms 50000] [--texts 2000] [--naive-texts 200]

A deterministic 50,000-term blocklist (synthetic pseudo-words, two-word phrases and Chinese
terms) screens ~2,000 realistic texts (customer messages, product copy, some Chinese, a few with
obfuscated terms). The naive baseline runs in the same process on a deterministic sample of the
same texts (it is ~50,000 substring tests a text, so the full set would take minutes).

The comparison favours the baseline: it does no normalisation, no whole-word check and no
obfuscation handling, while ours builds up to six normalised views of every text.
The last line printed is one JSON object: p50_ms, p99_ms (ours, per text) and speedup
(naive p50 / ours p50).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))

from atelier_sdk.safety import BlocklistTerm, Category  # noqa: E402
from atelier_plugins.safety import blocklist as blocklist_module  # noqa: E402

SEED = 20261128
ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "cl", "dr", "gr", "kr", "pl", "st", "tr", "sh", "ch"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ee", "oa"]
CODAS = ["", "", "n", "r", "s", "x", "k", "m", "l", "th"]
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def synthetic_terms(count: int, rng: random.Random) -> list[BlocklistTerm]:
    seen: set[str] = set()
    terms: list[BlocklistTerm] = []
    while len(terms) < count:
        roll = rng.random()
        if roll < 0.75:
            word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(rng.randint(3, 4))) + rng.choice(CODAS)
        elif roll < 0.9:
            word = " ".join(
                "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 3))) for _ in range(2)
            )
        else:
            word = "".join(rng.choice(HANZI) for _ in range(rng.randint(3, 4)))
        if word in seen or len(word) < 3 and not any("\u4e00" <= c <= "\u9fff" for c in word):
            continue
        seen.add(word)
        terms.append(BlocklistTerm(pattern=word, category=Category.CUSTOM))
    return terms


EN_SENTENCES = [
    "Hi, I ordered the {product} last week and it still hasn't arrived.",
    "Could you check the status of order {number} for me?",
    "The {product} is great, but the strap broke after two days.",
    "Introducing our new {product}: lightweight, durable and made for everyday adventures.",
    "I'd like a refund for the {product}; the colour is not what the photos showed.",
    "Please write a friendly reply thanking the customer for their feedback about the {product}.",
    "Our autumn collection brings warm tones and soft fabrics to your wardrobe.",
    "Free shipping on orders over $50, this weekend only.",
    "Can I change the delivery address to 221B Baker Street, London?",
    "The {product} pairs well with our classic leather boots.",
    "Thanks for the quick response, the replacement arrived today.",
    "Write three taglines for a {product} aimed at students.",
    "Is the {product} water-resistant, and does it come in navy?",
    "I've been a loyal customer for five years and this is the first time I'm disappointed.",
]
ZH_SENTENCES = [
    "你好，我上周买的{product}还没有到货，请帮我查一下订单{number}。",
    "这款{product}质量很好，推荐给大家。",
    "请为我们的新品{product}写一段宣传文案，突出轻便和耐用。",
    "我想退货，颜色和图片不一样。",
    "感谢您的耐心等待，我们已经为您重新发货。",
]
PRODUCTS = ["trail running shoes", "canvas backpack", "smart watch", "wool scarf", "ceramic mug", "rain jacket", "desk lamp"]
ZH_PRODUCTS = ["跑鞋", "双肩包", "智能手表", "羊毛围巾", "陶瓷杯", "雨衣"]


def realistic_texts(count: int, terms: list[BlocklistTerm], rng: random.Random) -> list[str]:
    texts = []
    for _ in range(count):
        chinese = rng.random() < 0.15
        pool, products = (ZH_SENTENCES, ZH_PRODUCTS) if chinese else (EN_SENTENCES, PRODUCTS)
        sentences = [
            rng.choice(pool).format(product=rng.choice(products), number=rng.randint(10**9, 10**10))
            for _ in range(rng.randint(1, 6))
        ]
        roll = rng.random()
        if roll < 0.05:  # a blocklisted term, as written
            sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(terms).pattern)
        elif roll < 0.08:  # a blocklisted term, spelled out to dodge filters
            sentences.insert(rng.randrange(len(sentences) + 1), ".".join(rng.choice(terms).pattern))
        texts.append((" " if not chinese else "").join(sentences))
    return texts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terms", type=int, default=50_000)
    parser.add_argument("--texts", type=int, default=2_000)
    parser.add_argument("--naive-texts", type=int, default=200, help="texts sampled for the naive loop")
    args = parser.parse_args(argv)

    rng = random.Random(SEED)
    terms = synthetic_terms(args.terms, rng)
    texts = realistic_texts(args.texts, terms, rng)
    term_tuple = tuple(terms)

    started = time.perf_counter()
    compiled = blocklist_module.compile_blocklist(term_tuple)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    blocklist_module.compile_blocklist(list(terms))  # a fresh list with equal terms: hashed, not recompiled
    cached_by_hash_ms = (time.perf_counter() - started) * 1000

    ours_ms, hits = [], 0
    for text in texts:
        started = time.perf_counter()
        hits += bool(compiled.find(text))
        ours_ms.append((time.perf_counter() - started) * 1000)

    sample = random.Random(SEED + 1).sample(texts, min(args.naive_texts, len(texts)))
    lowered_terms = [t.pattern.lower() for t in terms]
    naive_ms, naive_hits = [], 0
    for text in sample:
        started = time.perf_counter()
        lowered = text.lower()
        found = [term for term in lowered_terms if term in lowered]
        naive_ms.append((time.perf_counter() - started) * 1000)
        naive_hits += bool(found)

    ours_p50, ours_p99 = statistics.median(ours_ms), percentile(ours_ms, 0.99)
    naive_p50, naive_p99 = statistics.median(naive_ms), percentile(naive_ms, 0.99)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"blocklist: {len(terms):,} terms ({compiled.literal_count:,} distinct normalised), compiled in {compile_s:.2f} s; "
          f"equal list from cache (hash) in {cached_by_hash_ms:.1f} ms; compiles this run: {blocklist_module.compile_count}")
    print(f"texts: {len(texts):,} (mean {mean_chars:.0f} chars); naive loop on a sample of {len(sample)}")
    print()
    print(f"{'method':<34} {'texts':>6} {'p50 ms':>9} {'p99 ms':>9} {'texts hit':>10}")
    print(f"{'aho-corasick + normalised views':<34} {len(texts):>6} {ours_p50:>9.3f} {ours_p99:>9.3f} {hits:>10}")
    print(f"{'naive: term in text.lower()':<34} {len(sample):>6} {naive_p50:>9.3f} {naive_p99:>9.3f} {naive_hits:>10}")
    print(f"{'speedup (naive p50 / ours p50)':<34} {naive_p50 / ours_p50:>16.1f}x")
    print("(naive counts substring hits inside longer words; ours counts whole-word and obfuscated hits)")
    print(json.dumps({
        "p50_ms": round(ours_p50, 4),
        "p99_ms": round(ours_p99, 4),
        "speedup": round(naive_p50 / ours_p50, 1),
        "naive_p50_ms": round(naive_p50, 3),
        "naive_p99_ms": round(naive_p99, 3),
        "naive_texts": len(sample),
        "texts": len(texts),
        "terms": len(terms),
        "compile_s": round(compile_s, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
