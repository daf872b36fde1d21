"""Where the time of bench/batching.py goes on this machine: a diagnostic, run by bench/gpu/run.sh (STEPS=probe).

1. Decoding in this process, no platform: the chatbot's decoding loop (``CausalChatLM``) against
   ``model.generate``, batch 1 and batch 32, in float32 and in the plugin's dtype; ms per token.
   With --profile DIR, torch.profiler's top operators of one batch-1 job of each.
2. The platform's timeline of the 32-clients run and of idle jobs: each job's created, started and
   finished times (from the API), its batch and its model time (``generate_seconds``).
3. The commit latency of SQLite in the data folder's file system (the embedded backend's).
4. (--only cold) Decoding on prompts and batch sizes not met before, with cuDNN's attention on and off.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atelier_platform.settings")

from batching import CONCURRENT_CLIENTS, build_bench_model, job_body, questions  # noqa: E402


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decoding(model_dir: Path, device: str, new_tokens: int, profile_dir: Path | None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from atelier_plugins.chatbot.plugin import ChatMessage, build_prompt
    from atelier_plugins.text.generation import CausalChatLM, inference_dtype

    asked = questions(32)
    lm = CausalChatLM(model_dir, device)
    tokenizer = lm.tokenizer
    chats = [build_prompt([ChatMessage(role="user", content=q)], []) for q in asked]
    plugin_dtype = inference_dtype(device)
    models = {"float32": AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True,
                                                              dtype=torch.float32).to(device).eval()}
    models[str(plugin_dtype).removeprefix("torch.")] = lm.model

    def engine(model, batch):
        lm.model = model
        out = lm.generate([{"messages": chat, "max_new_tokens": new_tokens} for chat in batch])
        return sum(c.completion_tokens for c in out)

    def generate(model, batch):
        tokenizer.padding_side = "left"
        texts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in batch]
        ids = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return int(out.shape[0] * (out.shape[1] - ids["input_ids"].shape[1]))

    rows = {}
    for dtype, model in models.items():
        for name, run in (("engine", engine), ("generate", generate)):
            for size in (1, 32):
                batch = chats[:size]
                run(model, batch)  # warm-up of this shape
                times, tokens = [], 0
                for _ in range(5 if size == 1 else 3):
                    sync(device)
                    begun = time.perf_counter()
                    tokens = run(model, batch)
                    sync(device)
                    times.append(time.perf_counter() - begun)
                seconds = statistics.median(times)
                rows[f"{name} {dtype} batch {size}"] = {"ms": round(seconds * 1000, 1), "tokens": tokens,
                                                         "ms_per_step": round(seconds * 1000 / new_tokens, 2),
                                                         "tokens_per_s": round(tokens / seconds, 1)}
    print(f"decoding in process, {new_tokens} new tokens, {device}")
    for name, row in rows.items():
        print(f"  {name:28} {row['ms']:>8} ms  {row['ms_per_step']:>6} ms/step  {row['tokens_per_s']:>8} tokens/s  ({row['tokens']} tokens)")
    if profile_dir is not None:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        for name, run, dtype in (("engine", engine, str(plugin_dtype).removeprefix("torch.")), ("generate", generate, "float32")):
            with profile(activities=activities) as prof:
                run(models[dtype], chats[:1])
                sync(device)
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
            (profile_dir / f"profile-{name}-{dtype}.txt").write_text(table)
            print(f"profile of one {name} {dtype} job: {profile_dir / f'profile-{name}-{dtype}.txt'}")
    return rows


def cold_shapes(model_dir: Path, device: str, new_tokens: int) -> dict:
    """The chatbot's decoding on prompts and batch sizes it has not met before, then again on the same
    ones, with the attention kernels the engine picks and with cuDNN's attention allowed (PyTorch's
    default): cuDNN builds a plan for every new shape."""
    import contextlib

    from atelier_plugins.chatbot.plugin import ChatMessage, build_prompt
    from atelier_plugins.text import generation

    lm = generation.CausalChatLM(model_dir, device)
    chosen = generation.attention_kernels
    lm.generate([{"messages": build_prompt([ChatMessage(role="user", content="warm-up")], []), "max_new_tokens": new_tokens}])
    figures = {}
    for variant, offset in (("engine's kernels", 1000), ("cuDNN allowed", 5000)):
        generation.attention_kernels = chosen if variant == "engine's kernels" else (lambda device: contextlib.nullcontext())
        asked = [q.replace("(ticket", f"(case {offset}, ticket") for q in questions(64)]
        runs = [asked[i:i + 1] for i in range(8)] + [asked[8:13], asked[13:24], asked[24:51]]
        for label in ("new shapes", "same shapes again"):
            times = []
            for batch in runs:
                sync(device)
                begun = time.perf_counter()
                lm.generate([{"messages": build_prompt([ChatMessage(role="user", content=q)], []), "max_new_tokens": new_tokens}
                             for q in batch])
                sync(device)
                times.append(time.perf_counter() - begun)
            figures[f"{variant}, {label}"] = {"batch 1 median ms": round(statistics.median(times[:8]) * 1000, 1),
                                             "batch 1 max ms": round(max(times[:8]) * 1000, 1),
                                             "batches of 5, 11, 27 ms": [round(t * 1000, 1) for t in times[8:]]}
    generation.attention_kernels = chosen
    print(f"decoding on new shapes, {new_tokens} new tokens, {device}:")
    for name, row in figures.items():
        print(f"  {name:38} {row}")
    return figures


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def timeline(jobs: list[dict], origin: float) -> list[str]:
    lines = []
    for job in sorted(jobs, key=lambda j: stamp(j["created_at"])):
        provenance = job["outputs"][0]["provenance"] if job["outputs"] else {}
        lines.append(f"    created +{(stamp(job['created_at']) - origin) * 1000:7.1f}  started +{(stamp(job['started_at']) - origin) * 1000:7.1f}"
                     f"  finished +{(stamp(job['finished_at']) - origin) * 1000:7.1f} ms  batch {provenance.get('batch_size')}"
                     f"  model {provenance.get('generate_seconds', 0) * 1000:.1f} ms")
    return lines


def platform_timeline(model_dir: Path, device: str, new_tokens: int) -> None:
    from platform_stack import ApiClient, start_stack

    models_root = model_dir.parents[1]
    stack = start_stack(models_root, ATELIER_DEVICE=device, ATELIER_BATCH_MAX_WAIT_MS="50")
    try:
        client = ApiClient(stack)
        client.submit_and_wait(**job_body("warm-up: load the model", new_tokens))
        asked = questions(32)
        clients = f"32 jobs from {CONCURRENT_CLIENTS} clients"
        for mode in ("batch request", clients, clients):
            time.sleep(1.0)
            begun_wall, begun = time.time(), time.perf_counter()
            if mode == "batch request":
                ids = client.submit_batch([job_body(q, new_tokens) for q in asked])
            else:
                with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as pool:
                    ids = list(pool.map(lambda q: client.submit(**job_body(q, new_tokens)), asked))
            posted = time.perf_counter() - begun
            jobs = [client.job(job_id, wait_s=60) for job_id in ids]
            total = time.perf_counter() - begun
            print(f"{mode}: posted in {posted * 1000:.0f} ms, all results in {total * 1000:.0f} ms; per job (from the client's start):")
            print("\n".join(timeline(jobs, begun_wall)))
        print("idle jobs, one at a time (client's time; the job's own times from its submit):")
        for question in asked[:5]:
            time.sleep(0.3)
            begun_wall, begun = time.time(), time.perf_counter()
            job = client.submit_and_wait(**job_body(question, new_tokens))
            total = time.perf_counter() - begun
            print(f"  client {total * 1000:.1f} ms;" + timeline([job], begun_wall)[0])
    finally:
        stack.stop()


def sqlite_commits(folder: Path) -> None:
    path = folder / "probe.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    times = []
    for i in range(100):
        begun = time.perf_counter()
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
        connection.execute("COMMIT")
        times.append(time.perf_counter() - begun)
    connection.close()
    fsyncs = []
    with open(folder / "probe.bin", "wb") as handle:
        for _ in range(50):
            handle.write(b"x" * 512)
            begun = time.perf_counter()
            os.fsync(handle.fileno())
            fsyncs.append(time.perf_counter() - begun)
    print(f"file system of {folder}: SQLite WAL commit median {statistics.median(times) * 1000:.2f} ms "
          f"(p90 {sorted(times)[89] * 1000:.2f}); fsync median {statistics.median(fsyncs) * 1000:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--profile", type=Path, help="write torch.profiler tables here")
    parser.add_argument("--only", nargs="*", default=["disk", "decoding", "platform"],
                        choices=["disk", "decoding", "cold", "platform"])
    args = parser.parse_args()
    import torch

    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    models_root = Path(tempfile.mkdtemp(prefix="atelier-probe-"))
    model_dir = build_bench_model(models_root / "demo" / "chat-lm", "small")
    results = {}
    if "disk" in args.only:
        sqlite_commits(Path(tempfile.mkdtemp()))
    if "decoding" in args.only:
        results["decoding"] = decoding(model_dir, device, args.new_tokens, args.profile)
    if "cold" in args.only:
        results["cold"] = cold_shapes(model_dir, device, args.new_tokens)
    if "platform" in args.only:
        platform_timeline(model_dir, device, args.new_tokens)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
