"""Per-plugin figures on this machine: model load time, single-request latency, batch throughput.

Runs each built-in plugin with its demo model (``make demo`` prepares them) directly through the
plugin SDK, as a worker would. Baseline in the same run: the same requests one at a time
(batch size 1), so the table shows what batching buys for each plugin.

    .venv/bin/python bench/plugins.py [--repeats 3] [--device cpu]

Prints a table, then as its last line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atelier_platform.settings")


def sample_requests(plugin_id: str, count: int, demo_data: Path) -> list[tuple[dict, dict]]:
    """(input, params) pairs of realistic size for each built-in plugin, from the demo data."""
    if plugin_id == "chatbot":
        questions = json.loads((demo_data / "eval_questions.json").read_text(encoding="utf-8"))
        return [({"messages": [{"role": "user", "content": questions[i % len(questions)]["question"]}]},
                 {"max_new_tokens": 48}) for i in range(count)]
    if plugin_id == "recommender_copy":
        catalogue = [item for item in json.loads((demo_data / "catalogue.json").read_text(encoding="utf-8")) if item["lang"] == "en"]
        profiles = [p for p in json.loads((demo_data / "profiles.json").read_text(encoding="utf-8")) if p["lang"] == "en"]
        items = [{"id": i["id"], "title": i["title"], "description": i["description"], "tags": i["tags"],
                  "price": i["price"], "currency": i["currency"], "attributes": i["attributes"]} for i in catalogue]
        return [({"profile": {"interests": profiles[k % len(profiles)]["interests"], "recent_items": profiles[k % len(profiles)]["recent_items"]},
                  "items": items, "count": 3, "variants": 2}, {"max_chars": 220}) for k in range(count)]
    if plugin_id == "image":
        return [({"prompt": f"a handwritten digit {k % 10}", "steps": 20, "count": 1}, {}) for k in range(count)]
    raise KeyError(plugin_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--plugins", default="chatbot,recommender_copy,image")
    args = parser.parse_args()

    import django

    django.setup()
    from atelier_sdk import GenerationRequest, RunContext

    from atelier_platform.catalog.models_dir import resolve_model_dir
    from atelier_platform.catalog.registry import get_registry
    from atelier_plugins.text.embedding import SentenceEmbedder
    from atelier_plugins.text.retrieval import InMemoryRetriever
    from atelier_workers.demo import DEMO_DATA
    from atelier_plugins.chatbot.demo import demo_passages

    retriever = InMemoryRetriever(SentenceEmbedder(device=args.device), demo_passages(DEMO_DATA))
    context = RunContext(args.device, retriever=retriever)
    rows, figures = [], {}
    for plugin_id in args.plugins.split(","):
        plugin_class = get_registry().get(plugin_id)
        if plugin_class is None:
            print(f"{plugin_id}: not installed, skipped", file=sys.stderr)
            continue
        model_dir = resolve_model_dir(plugin_class.manifest.default_model_dir)
        started = time.perf_counter()
        plugin = plugin_class()
        plugin.load(args.device, model_dir)
        load_s = time.perf_counter() - started
        size = plugin_class.manifest.max_batch_size

        def requests(n: int, offset: int = 0):
            return [GenerationRequest(f"bench-{offset + i}", plugin_class.Input.model_validate(inp),
                                      plugin_class.Params.model_validate(par), seed=offset + i)
                    for i, (inp, par) in enumerate(sample_requests(plugin_id, n, DEMO_DATA))]

        plugin.generate(requests(1), context)  # warm-up: first call allocates
        single, sequential, batched = [], [], []
        for repeat in range(args.repeats):
            batch = requests(size, repeat * size)
            started = time.perf_counter()
            plugin.generate(batch[:1], context)
            single.append(time.perf_counter() - started)
            started = time.perf_counter()
            for request in batch:
                plugin.generate([request], context)
            sequential.append(size / (time.perf_counter() - started))
            started = time.perf_counter()
            plugin.generate(batch, context)
            batched.append(size / (time.perf_counter() - started))
        plugin.unload()
        entry = {
            "load_s": round(load_s, 3),
            "latency_ms_p50": round(statistics.median(single) * 1000, 1),
            "batch_size": size,
            "throughput_per_s_batch1": round(statistics.median(sequential), 3),
            "throughput_per_s_batched": round(statistics.median(batched), 3),
        }
        entry["batching_ratio"] = round(entry["throughput_per_s_batched"] / entry["throughput_per_s_batch1"], 2)
        figures[plugin_id] = entry
        rows.append((plugin_id, entry))

    print(f"device: {args.device}, repeats: {args.repeats}; baseline: the same requests one at a time (batch 1)")
    print(f"{'plugin':<18} {'load s':>8} {'latency ms':>11} {'batch':>6} {'req/s batch 1':>14} {'req/s batched':>14} {'ratio':>6}")
    for plugin_id, e in rows:
        print(f"{plugin_id:<18} {e['load_s']:>8.2f} {e['latency_ms_p50']:>11.1f} {e['batch_size']:>6} "
              f"{e['throughput_per_s_batch1']:>14.2f} {e['throughput_per_s_batched']:>14.2f} {e['batching_ratio']:>6.2f}")
    print(json.dumps({"device": args.device, "plugins": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
