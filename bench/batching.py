"""Dynamic batching, measured: the chatbot plugin through the real queue and worker, against the same
model called job by job (a plain batch-1 ``model.generate`` loop), in the same run.

    .venv/bin/python bench/batching.py [--jobs 32] [--new-tokens 32] [--model-dir DIR] [--device auto]

Starts web, worker (one process, as on a GPU host) and beat on a throw-away data directory
(embedded broker and SQLite; PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set).
Without --model-dir it builds a small Llama chat model (26 M parameters, or 4 M with --model-shape
tiny; random weights, the chat tokenizer trained on the demo knowledge base): the work per token is
real, the words are not. Throughput is measured in turns (the baseline's 32 jobs, then the platform's,
three rounds; the median round of each) after one untimed round at the measured batch size, and idle
latency (one job alone) in turns too, one baseline job then one platform job, so that a host whose
speed drifts during the run weighs on both alike. Prints a table,
then as its last line one JSON object: throughput_ratio, idle_latency_ms, baseline_idle_latency_ms,
max_wait_ms, tokens_per_second and the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from platform_stack import ApiClient, start_stack  # noqa: E402

DEMO_DATA = REPO / "plugins" / "atelier_plugins" / "demo_data"
#: Llama shapes for the built model. "small" (26 M parameters, still far below any real chat model) is the
#: default: with "tiny" (4 M) a batched job costs the CPU about 18 ms of model work, less than the platform's
#: own per-job work (HTTP submit, screening, storing), so the ratio would measure bookkeeping, not batching.
MODEL_SHAPES = {
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8, max_position_embeddings=1024, tie_word_embeddings=True),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=True),
}


def build_bench_model(target: Path, shape: str = "small") -> Path:
    """A Llama of ``MODEL_SHAPES[shape]`` with our chat tokenizer; random weights (the cost per token is what is measured)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from atelier_plugins.chatbot.chat_format import TURN_END, train_chat_tokenizer

    texts = [p.read_text(encoding="utf-8") for p in sorted((DEMO_DATA / "knowledge_base").rglob("*.md"))]
    tokenizer = train_chat_tokenizer(texts, 2000)
    torch.manual_seed(0)
    end = tokenizer.convert_tokens_to_ids(TURN_END)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=end,
                                         pad_token_id=tokenizer.pad_token_id, **MODEL_SHAPES[shape]))
    model.generation_config.eos_token_id = end
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def questions(count: int) -> list[str]:
    asked = [q["question"] for q in json.loads((DEMO_DATA / "eval_questions.json").read_text(encoding="utf-8"))]
    return [f"{asked[i % len(asked)]} (ticket {i})" for i in range(count)]


class Baseline:
    """The same model, job by job, in this process: encode the chatbot's prompt, ``model.generate`` with batch size 1.

    Loaded in the dtype the chatbot loads it in, with the attention kernels it decodes with: left to
    transformers' defaults, the baseline would run float32 where the platform runs bf16 on a GPU (or
    a bf16 file in bf16 on a CPU, where the platform runs float32), and the ratio would measure that."""

    def __init__(self, model_dir: Path, device: str, new_tokens: int) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from atelier_plugins.text.generation import inference_dtype

        self.device, self.new_tokens = device, new_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True,
                                                          dtype=inference_dtype(device)).to(device).eval()

    def one(self, question: str) -> int:
        """One job; returns the tokens it generated."""
        import torch

        from atelier_plugins.chatbot.plugin import ChatMessage, build_prompt
        from atelier_plugins.text.generation import attention_kernels

        text = self.tokenizer.apply_chat_template(build_prompt([ChatMessage(role="user", content=question)], []),
                                                  tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.device)
        with torch.inference_mode(), attention_kernels(self.device):
            out = self.model.generate(**ids, max_new_tokens=self.new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return int(out.shape[1] - ids["input_ids"].shape[1])

    def throughput(self, asked: list[str]) -> dict:
        self.one(asked[0])  # warm-up
        started = time.perf_counter()
        tokens = sum(self.one(question) for question in asked)
        return {"seconds": time.perf_counter() - started, "tokens": tokens}


def job_body(question: str, new_tokens: int) -> dict:
    return {"plugin": "chatbot", "input": {"messages": [{"role": "user", "content": question}], "use_knowledge": False},
            "params": {"max_new_tokens": new_tokens, "seed": 0}}


#: Clients posting at once in the ``concurrent_clients`` mode, each a job at a time until all are posted.
CONCURRENT_CLIENTS = 8


def through_platform(client: ApiClient, asked: list[str], new_tokens: int, mode: str) -> dict:
    """The jobs through web, queue and worker, submitted one of two ways: ``batch_request``, in one
    ``POST /jobs/batch/`` (all queued at once: what the worker's batching does with them), or
    ``concurrent_clients``, each job in its own request from ``CONCURRENT_CLIENTS`` threads (the web's
    per-request work then shares this machine's two cores with the model)."""
    time.sleep(1.0)  # idle again
    started = time.perf_counter()
    if mode == "batch_request":
        ids = client.submit_batch([job_body(question, new_tokens) for question in asked])
    else:
        with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as pool:
            ids = list(pool.map(lambda question: client.submit(**job_body(question, new_tokens)), asked))
    # One waiting request at a time (Prefer: wait), so that watching costs the server next to nothing:
    # a client polling every few milliseconds would take CPU from the worker it measures.
    jobs = [client.job(job_id, wait_s=60) for job_id in ids]
    failed = [job for job in jobs if job["status"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0].get('error')}")
    return {
        "seconds": time.perf_counter() - started,
        "tokens": sum(job["outputs"][0]["content"]["usage"]["completion_tokens"] for job in jobs),
        "batch_sizes": sorted(job["outputs"][0]["provenance"].get("batch_size", 1) for job in jobs),
    }


def throughputs(base: Baseline, client: ApiClient, asked: list[str], new_tokens: int, rounds: int) -> dict[str, dict]:
    """The baseline's run of all jobs and the platform's two, in turns, ``rounds`` times; each one's median
    round. In turns, so that a host whose speed drifts weighs on all alike; after one untimed round of
    each at the measured size, as the first batch of a size pays for memory the later ones reuse (the
    baseline's batch-1 shape is warmed the same way)."""
    through_platform(client, asked, new_tokens, "batch_request")
    runs: dict[str, list[dict]] = {"baseline": [], "batch_request": [], "concurrent_clients": []}
    for _ in range(rounds):
        runs["baseline"].append(base.throughput(asked))
        for mode in ("batch_request", "concurrent_clients"):
            runs[mode].append(through_platform(client, asked, new_tokens, mode))
    return {name: sorted(done, key=lambda run: run["seconds"])[len(done) // 2] for name, done in runs.items()}


def idle_latencies(base: Baseline, client: ApiClient, asked: list[str], new_tokens: int, runs: int) -> tuple[float, float]:
    """Median latency of one job on an idle system, the baseline's and ours, measured in turns (one
    baseline job, one platform job, ...) so that a machine whose speed drifts during the run (a shared
    host) weighs on both alike."""
    body = {"plugin": "chatbot", "params": {"max_new_tokens": new_tokens, "seed": 0}}
    theirs, ours = [], []
    time.sleep(1.0)
    for question in asked[:runs]:
        begun = time.perf_counter()
        base.one(question)
        theirs.append(time.perf_counter() - begun)
        time.sleep(0.3)
        begun = time.perf_counter()
        client.submit_and_wait(input={"messages": [{"role": "user", "content": question}], "use_knowledge": False}, **body)
        ours.append(time.perf_counter() - begun)
        time.sleep(0.3)
    return statistics.median(theirs), statistics.median(ours)


def batch_sizes(sizes: list[int]) -> list[int]:
    """The batches behind per-job sizes: [5, 5, 5, 5, 5, 27, ...] -> [5, 27]."""
    counts = {size: sizes.count(size) for size in set(sizes)}
    return sorted(size for size, count in counts.items() for _ in range(max(1, count // size)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--idle-runs", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each throughput run (median)")
    parser.add_argument("--model-dir", type=Path, help="a chat model directory (default: a model built here)")
    parser.add_argument("--model-shape", choices=sorted(MODEL_SHAPES), default="small",
                        help="shape of the built model: small (26 M parameters) or tiny (4 M)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-wait-ms", type=float, default=50.0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atelier_platform.settings")
    sys.path.insert(0, str(REPO))

    import torch

    device = ("cuda:0" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    models_root = Path(tempfile.mkdtemp(prefix="atelier-bench-models-"))
    try:
        model_dir = models_root / "demo" / "chat-lm"
        if args.model_dir:
            shutil.copytree(args.model_dir, model_dir)
        else:
            build_bench_model(model_dir, args.model_shape)
        asked = questions(args.jobs)

        baseline = Baseline(model_dir, device, args.new_tokens)
        stack = start_stack(models_root, ATELIER_DEVICE=device, ATELIER_BATCH_MAX_WAIT_MS=str(args.max_wait_ms))
        try:
            client = ApiClient(stack)
            client.submit_and_wait(**job_body("warm-up: load the model", args.new_tokens))
            ours = throughputs(baseline, client, asked, args.new_tokens, args.rounds)
            base = ours.pop("baseline")
            base["idle_latency_s"], ours["idle_latency_s"] = idle_latencies(baseline, client, asked, args.new_tokens, args.idle_runs)
        finally:
            stack.stop()
    finally:
        shutil.rmtree(models_root, ignore_errors=True)

    base_rate = args.jobs / base["seconds"]
    batched, clients = ours["batch_request"], ours["concurrent_clients"]
    rate = lambda run: args.jobs / run["seconds"]  # noqa: E731
    figures = {
        "backend": stack.backend, "device": device, "model": "given" if args.model_dir else args.model_shape,
        "jobs": args.jobs, "new_tokens": args.new_tokens, "rounds": args.rounds,
        "baseline_jobs_per_second": round(base_rate, 2), "jobs_per_second": round(rate(batched), 2),
        "throughput_ratio": round(rate(batched) / base_rate, 2),
        "concurrent_clients": CONCURRENT_CLIENTS,
        "concurrent_clients_jobs_per_second": round(rate(clients), 2),
        "throughput_ratio_concurrent_clients": round(rate(clients) / base_rate, 2),
        "baseline_tokens_per_second": round(base["tokens"] / base["seconds"], 1),
        "tokens_per_second": round(batched["tokens"] / batched["seconds"], 1),
        "baseline_idle_latency_ms": round(base["idle_latency_s"] * 1000, 1),
        "idle_latency_ms": round(ours["idle_latency_s"] * 1000, 1),
        "max_wait_ms": args.max_wait_ms,
        "idle_latency_budget_ms": round((base["idle_latency_s"] * 1000 + args.max_wait_ms) * 1.1, 1),
        "batch_sizes_seen": batch_sizes(batched["batch_sizes"]),
        "concurrent_clients_batch_sizes_seen": batch_sizes(clients["batch_sizes"]),
    }
    print(f"chatbot ({figures['model']} model), {args.jobs} jobs of {args.new_tokens} new tokens, {device}, "
          f"{stack.backend} broker and database; throughput: median of {args.rounds} rounds")
    columns = ("baseline: batch-1 generate", "Atelier: one batch request", f"Atelier: {CONCURRENT_CLIENTS} clients")
    print(f"{'':28}" + "".join(f"{c:>29}" for c in columns))
    print(f"{'throughput, jobs/s':28}{figures['baseline_jobs_per_second']:>29}{figures['jobs_per_second']:>29}"
          f"{figures['concurrent_clients_jobs_per_second']:>29}")
    print(f"{'throughput, tokens/s':28}{figures['baseline_tokens_per_second']:>29}{figures['tokens_per_second']:>29}"
          f"{round(clients['tokens'] / clients['seconds'], 1):>29}")
    print(f"{'throughput ratio':28}{'':>29}{'x' + str(figures['throughput_ratio']):>29}"
          f"{'x' + str(figures['throughput_ratio_concurrent_clients']):>29}")
    print(f"{'batch sizes seen':28}{'':>29}{str(figures['batch_sizes_seen']):>29}{str(figures['concurrent_clients_batch_sizes_seen']):>29}")
    print(f"{'idle latency, ms (median)':28}{figures['baseline_idle_latency_ms']:>29}{figures['idle_latency_ms']:>29}")
    print(f"throughput ratio x{figures['throughput_ratio']} (needs >= 3); idle latency {figures['idle_latency_ms']} ms "
          f"(budget: (baseline + max wait {args.max_wait_ms:.0f} ms) x 1.1 = {figures['idle_latency_budget_ms']} ms)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
