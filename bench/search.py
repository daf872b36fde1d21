"""The searches of a big project's jobs and outputs, with the indexes that serve them and without, same run.

    .venv/bin/python bench/search.py [--jobs 200000] [--repeat 5] [--plans]

PostgreSQL only (DATABASE_URL's server): the searches' indexes (``atelier_platform.jobs.search_indexes``) are
pg_trgm's, which the embedded SQLite has not; on SQLite the script says so and measures nothing. It makes a database
of its own on that server (removed at the end, whatever happens), migrates it, and stores ``--jobs`` jobs of one
project with an output each: customer-service chats (about 85%, an English or Chinese question with a reply, most
approved or released, some pending, rejected or blocked) and image prompts (an image has no text of its own), their
words drawn from a vocabulary of a few thousand words with a natural language's frequencies (Zipf's law), the texts
stored as the platform stores them (``searchable_text``, ``output_search_text``).

Then, for each search (none, a rare word, a common word, two letters, a Chinese word, a word no text holds) and each
of the three ways a person searches, it times the whole request in this process (Django's test client: no network,
no server; the view's queries, rendering and serialising all counted): the content library's first page
(``/library/?q=``: ``library.final_outputs(project, LibraryFilters(q=...))``), the jobs page (``/jobs/?q=``, its
prompt and plugin search), and ``GET /api/v1/outputs/?q=`` (a cursor page). First without the indexes (the
baseline: the database as it was before jobs 0010 and 0011), then with them, built as those migrations build them
(``CONCURRENTLY``; the time it took and their sizes are printed): the three trigram indexes, and the B-tree ones
added with them (outputs newest first, a project's evaluation jobs). Each figure is the median of ``--repeat``
requests after one that is not counted (so that both read a warm cache). Each request's search statements (those with
a ``LIKE``: the search itself, and the library's two counts that choose how it searches, ``library.search``) are run
again under ``EXPLAIN ANALYZE``: their execution time is shown beside the request's, with the indexes their plans read
(``--plans`` prints the plans, and the request's other statements of 10 ms or more).

A query under 3 characters holds no trigram: no index finds it, and the planner reads the rows newest first until a
page is full, as it did without (the two-letter rows show what that costs).

Prints a table, then as its last line one JSON object: ``jobs``, ``outputs``, ``postgresql``, ``repeat``,
``index_build_s``, ``index_mb`` (by index), ``matches`` (jobs and outputs that hold each query), and ``results``: by
path and search, ``without_index_ms``, ``with_index_ms``, ``speedup`` (without / with), the same of the search
statements (``search_sql_...``) and ``index_used`` (the indexes read, by mode).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
# the checkout's code, not an installed copy of it
for folder in ("workers", "frontend", "plugins", "platform"):
    sys.path.insert(0, str(REPO / folder))

#: (name, query): what each row searches for (the first: nothing, the list alone). The rare word is in about 1 text of 5,000, the common one in about a
#: quarter of them (both put there on purpose, as are the Chinese texts); no text holds the missing word.
QUERIES = [("no search", ""), ("rare word", "kintsugi"), ("common word", "order"), ("two letters", "ok"), ("chinese", "退货政策"),
           ("miss", "xylograph")]
PATHS = ["library", "jobs page", "api"]
MODES = ["without index", "with index"]
RARE_SHARE = 1 / 5000
COMMON_SHARE = 0.25
BATCH = 2000

COMMON_WORDS = (
    "the a to and of i my is for in it you with on this that be can your have was not but at me we are do how "
    "please when what order delivery refund package account help need would like get thanks hello day days "
    "item price shipping payment card return size colour email number store week still yet again just new "
    "wrong broken missing arrived received sent tracking address change cancel support service time"
).split()
SYLLABLES = ("ka ri to ne sa mo lu pe ti da ro ve ni so ba ke mi ru ha yo ze po li na fu te wa gi de mu "
             "bel cor dan fel gar hin jor kel lam mor nel par quin ros sel tam vor wen zal bra cle dri fro "
             "gla pli sto tra").split()
CHINESE_SENTENCES = ["我的订单什么时候发货", "请问退货政策是什么", "包裹还没有收到", "我想更改收货地址", "可以退款吗",
                     "商品有破损怎么办", "优惠券无法使用", "请帮我查一下物流", "发票怎么开", "会员积分如何使用"]
IMAGE_SUBJECTS = ("a red bicycle leaning on a brick wall; a bowl of ramen on a wooden table; a lighthouse at dusk; "
                  "a cat asleep on a windowsill; a mountain lake in autumn; a product shot of white sneakers; "
                  "a city street in the rain at night; a watercolour of a fox in the snow").split("; ")


class Vocabulary:
    """Words with a natural language's frequencies: the n-th most frequent about 1/n as often as the first."""

    def __init__(self, rng: random.Random, size: int = 6000) -> None:
        made = set(COMMON_WORDS)
        words = list(COMMON_WORDS)
        while len(words) < size:
            word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3, 3, 4))))
            if word not in made:
                made.add(word)
                words.append(word)
        self.words = words
        self.cumulative = []
        total = 0.0
        for rank in range(1, len(words) + 1):
            total += 1 / rank
            self.cumulative.append(total)

    def sentence(self, rng: random.Random, low: int, high: int) -> str:
        words = rng.choices(self.words, cum_weights=self.cumulative, k=rng.randint(low, high))
        return " ".join(words).capitalize() + rng.choice(".?!")


def with_markers(rng: random.Random, text: str) -> str:
    """``text`` with the rare and the common word in their share of texts (the common one also comes naturally)."""
    if rng.random() < RARE_SHARE:
        text = f"{text} Kintsugi?"
    if rng.random() < COMMON_SHARE:
        text = f"About my order: {text}"
    return text


def made_up_job(rng: random.Random, vocabulary: Vocabulary) -> tuple[str, dict, dict, str]:
    """(plugin, input, output content, review state) of one job and its output."""
    states = ["approved"] * 60 + ["released"] * 20 + ["pending"] * 12 + ["rejected"] * 5 + ["blocked"] * 3
    state = rng.choice(states)
    if rng.random() < 0.15:
        prompt = with_markers(rng, f"{rng.choice(IMAGE_SUBJECTS)}, {vocabulary.sentence(rng, 3, 10)}")
        content = {"index": 0, "width": 512, "height": 512, "seed": rng.randrange(2**31), "steps": 20, "guidance": 7.5}
        return "image", {"prompt": prompt, "negative_prompt": "", "count": 1}, content, state
    if rng.random() < 0.05:
        question = rng.choice(CHINESE_SENTENCES) + "？" + rng.choice(CHINESE_SENTENCES)
        reply = "您好，" + rng.choice(CHINESE_SENTENCES) + "。我们会尽快为您处理。"
    else:
        question = with_markers(rng, " ".join(vocabulary.sentence(rng, 6, 18) for _ in range(rng.randint(1, 3))))
        reply = with_markers(rng, " ".join(vocabulary.sentence(rng, 8, 20) for _ in range(rng.randint(2, 4))))
    messages = [{"role": "user", "content": question}]
    if rng.random() < 0.2:  # a conversation: an earlier turn
        messages = [{"role": "user", "content": vocabulary.sentence(rng, 5, 12)},
                    {"role": "assistant", "content": vocabulary.sentence(rng, 8, 20)}, *messages]
    content = {"reply": reply, "sources": [], "usage": {"prompt_tokens": 40, "completion_tokens": 60},
               "finish_reason": "stop", "conversation_id": None}
    return "chatbot", {"messages": messages}, content, state


# --- the database -----------------------------------------------------------------------------------------------

def bench_database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def admin(server_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(statement)


def configure_django(database_url: str, data_dir: str) -> None:
    """This process's settings: the real ones on the bench database, nothing of the caller's configuration."""
    for name in [name for name in os.environ if name.startswith("ATELIER_")]:
        del os.environ[name]
    os.environ.update({
        "DATABASE_URL": database_url, "ATELIER_DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "atelier_platform.settings",
        "SECRET_KEY": "bench-search-not-secret-" + "x" * 40, "ATELIER_ALLOWED_HOSTS": "localhost",
        "ATELIER_RATE_LIMIT_PER_MINUTE": "0",
        # a web process's 30 s limit: not for the bench's own statements (VACUUM, index builds on big tables)
        "ATELIER_DATABASE_STATEMENT_TIMEOUT_S": "0",
    })
    os.environ.pop("REDIS_URL", None)  # the embedded cache and broker: nothing here needs Redis
    import django

    django.setup()


def fill(project, jobs: int, seed: int, progress) -> dict:
    """``jobs`` jobs of ``project`` with an output each; how many of each query's texts there are."""
    from atelier_platform.jobs.library import output_search_text
    from atelier_platform.jobs.models import Job, Output, searchable_text

    rng = random.Random(seed)
    vocabulary = Vocabulary(rng)
    made = 0
    while made < jobs:
        rows = []
        for _ in range(min(BATCH, jobs - made)):
            plugin, job_input, content, state = made_up_job(rng, vocabulary)
            job = Job(id=uuid.uuid4(), project=project, plugin_id=plugin, plugin_version="1.0.0", resource_class="cpu",
                      input=job_input, params={}, seed=rng.randrange(2**31), status="succeeded",
                      search_text=searchable_text(job_input))
            rows.append((job, Output(id=uuid.uuid4(), job=job, index=0, content=content, review_state=state,
                                     search_text=output_search_text(plugin, content))))
        Job.objects.bulk_create([job for job, _ in rows])
        Output.objects.bulk_create([output for _, output in rows])
        made += len(rows)
        progress(f"stored {made:,} of {jobs:,} jobs")
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("jobs_job", "jobs_output"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    return {name: {"jobs": Job.objects.filter(project=project, search_text__contains=q.casefold()).count(),
                   "outputs": Output.objects.filter(job__project=project, search_text__contains=q.casefold()).count()}
            for name, q in QUERIES}


# --- the measurements ---------------------------------------------------------------------------------------------

class Searcher:
    """The three searches as a person makes them, as requests in this process."""

    def __init__(self, project) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from atelier_platform.accounts.services import add_member, issue_api_key

        person = get_user_model().objects.create_user("bench-viewer", password=uuid.uuid4().hex)
        add_member(project, person, "viewer")
        self.dashboard = Client(HTTP_HOST="localhost")
        self.dashboard.force_login(person)
        key = issue_api_key(project, scopes=["jobs:read"]).raw
        self.api = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {key}")

    def request(self, path: str, q: str):
        query = urlencode({"q": q} if q else {})
        if path == "library":
            answer = self.dashboard.get(f"/library/?{query}")
        elif path == "jobs page":
            answer = self.dashboard.get(f"/jobs/?{query}")
        else:
            answer = self.api.get(f"/api/v1/outputs/?{query}")
        if answer.status_code != 200:
            raise RuntimeError(f"{path} ?q={q!r} answered {answer.status_code}: {answer.content[:300]!r}")
        return answer

    def time(self, path: str, q: str, repeat: int) -> float:
        self.request(path, q)  # not counted: the same warm cache for every figure
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            self.request(path, q)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    def plans(self, path: str, q: str) -> tuple[list[str], float, list[tuple[float, str]]]:
        """The plans (EXPLAIN ANALYZE) of the request's statements that search a text, the time the database took
        to run them (by their plans), and the request's other statements that took 10 ms or more (ms, SQL)."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            self.request(path, q)
        searching = [query["sql"] for query in captured.captured_queries if " LIKE " in query["sql"]]
        slow_others = [(float(query["time"]) * 1000, query["sql"]) for query in captured.captured_queries
                       if " LIKE " not in query["sql"] and float(query["time"]) >= 0.010]
        plans, search_ms = [], 0.0
        with connection.cursor() as cursor:
            for sql in searching:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                plans.append(plan)
                search_ms += float(plan.rsplit("Execution Time: ", 1)[1].split()[0])
        return plans, search_ms, slow_others


SHORT_NAMES = {"job_search_text_trgm": "job trgm", "output_search_text_trgm": "output trgm",
               "job_plugin_id_trgm": "plugin trgm", "output_newest": "output newest",
               "job_project_evaluations": "evaluations"}
#: The B-tree indexes added with the trigram ones (jobs 0011), dropped and built with them: the library's and the API's
#: newest-first order, and the jobs page's question whether the project has evaluation jobs.
BTREE_INDEXES = (("jobs", "Output", "output_newest"), ("jobs", "Job", "job_project_evaluations"))


def _btree_indexes():
    from django.apps import apps

    for app, model_name, name in BTREE_INDEXES:
        model = apps.get_model(app, model_name)
        yield model, next(index for index in model._meta.indexes if index.name == name)


def drop_indexes() -> None:
    """The database as it was before these indexes: none of them."""
    from django.db import connection

    from atelier_platform.jobs import search_indexes

    search_indexes.drop_search_indexes(connection)
    with connection.cursor() as cursor:
        for _model, index in _btree_indexes():
            cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{index.name}"')


def create_indexes() -> None:
    """All of them, built as the migrations build them (CONCURRENTLY)."""
    from django.db import connection

    from atelier_platform.jobs import search_indexes

    if not search_indexes.create_search_indexes(connection):
        raise RuntimeError("the search indexes could not be built (pg_trgm): see the warning above")
    with connection.schema_editor(atomic=False) as editor:
        for model, index in _btree_indexes():
            editor.add_index(model, index, concurrently=True)


def index_names() -> list[str]:
    from atelier_platform.jobs.search_indexes import SEARCH_INDEXES

    return [index.name for index in SEARCH_INDEXES] + [name for _app, _model, name in BTREE_INDEXES]


def indexes_read(plans: list[str]) -> list[str]:
    """Which of these indexes the plans read."""
    return [name for name in index_names() if any(f" {name} " in plan or plan.endswith(f" {name}") for plan in plans)]


def index_sizes_mb() -> dict[str, float]:
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for name in index_names():
            cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
            sizes[name] = round(cursor.fetchone()[0] / 2**20, 1)
    return sizes


def measure(searcher: Searcher, repeat: int, show_plans: bool, progress) -> tuple[dict, dict, dict, float, dict]:
    from django.db import connection

    times: dict = {path: {name: {} for name, _ in QUERIES} for path in PATHS}
    search_times: dict = {path: {name: {} for name, _ in QUERIES} for path in PATHS}
    used: dict = {path: {name: {} for name, _ in QUERIES} for path in PATHS}
    build_s = 0.0
    for mode in MODES:
        if mode == "without index":
            drop_indexes()
        else:
            started = time.perf_counter()
            create_indexes()
            build_s = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobs_job")
            cursor.execute("ANALYZE jobs_output")
        for path in PATHS:
            for name, q in QUERIES:
                times[path][name][mode] = searcher.time(path, q, repeat)
                plans, search_times[path][name][mode], slow_others = searcher.plans(path, q)
                used[path][name][mode] = indexes_read(plans)
                if show_plans:
                    print(f"\n--- {path}, {name} ({q!r}), {mode} ---\n" + "\n\n".join(plans), flush=True)
                    for took, sql in slow_others:
                        print(f"(another statement of the request, {took:.1f} ms: {sql[:500]})", flush=True)
                progress(f"{mode}: {path}, {name}: {times[path][name][mode]:.1f} ms")
    return times, search_times, used, build_s, index_sizes_mb()


# --- the report ---------------------------------------------------------------------------------------------------

def report(args, version: str, matches: dict, times: dict, search_times: dict, used: dict, build_s: float,
           sizes: dict) -> dict:
    print(f"\nSearches of one project's {args.jobs:,} jobs and {args.jobs:,} outputs, PostgreSQL {version}: the whole "
          f"request (median of {args.repeat}) and its search statements alone (EXPLAIN ANALYZE), ms")
    print(f"{'':<36} {'hits':^15}  {'request':^26}  {'search statements':^26}")
    print(f"{'path':<10} {'search':<12} {'query':<12} {'jobs':>7} {'outputs':>7}  "
          f"{'no index':>8} {'index':>8} {'ratio':>8}  {'no index':>8} {'index':>8} {'ratio':>8}  indexes read (with)")
    results: dict = {}
    for path in PATHS:
        for name, q in QUERIES:
            without, with_ = times[path][name]["without index"], times[path][name]["with index"]
            sql_without, sql_with = search_times[path][name]["without index"], search_times[path][name]["with index"]
            results.setdefault(path, {})[name] = {
                "query": q, "without_index_ms": round(without, 2), "with_index_ms": round(with_, 2),
                "speedup": ratio(without, with_), "search_sql_without_index_ms": round(sql_without, 2),
                "search_sql_with_index_ms": round(sql_with, 2), "search_sql_speedup": ratio(sql_without, sql_with),
                "index_used": used[path][name]}
            read = ", ".join(SHORT_NAMES.get(index, index) for index in used[path][name]["with index"]) or "none"
            statements = (f"{sql_without:>8.1f} {sql_with:>8.1f} {ratio(sql_without, sql_with) or float('nan'):>7.1f}x  {read}" if q
                          else f"{'-':>8} {'-':>8} {'-':>8}")
            print(f"{path:<10} {name:<12} {q:<12} {matches[name]['jobs']:>7,} {matches[name]['outputs']:>7,}  "
                  f"{without:>8.1f} {with_:>8.1f} {ratio(without, with_) or float('nan'):>7.1f}x  {statements}")
    print(f"\nratio: without the indexes / with them. Indexes built (CONCURRENTLY) in {build_s:.1f} s: "
          + ", ".join(f"{name} {size} MB" for name, size in sizes.items()))
    return {"jobs": args.jobs, "outputs": args.jobs, "postgresql": version, "repeat": args.repeat,
            "index_build_s": round(build_s, 2), "index_mb": sizes, "matches": matches, "results": results}


def ratio(without: float, with_: float) -> float | None:
    """without / with; None where there is nothing to divide by (no search statement): the JSON line stays JSON that
    any parser reads (``Infinity`` is Python's, not JSON's)."""
    return round(without / with_, 2) if with_ > 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs (each with one output) in the project")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per figure (the median is shown)")
    parser.add_argument("--seed", type=int, default=7, help="the made-up texts' random seed")
    parser.add_argument("--plans", action="store_true", help="print each search's EXPLAIN ANALYZE")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.repeat < 1:
        parser.error("--jobs and --repeat: at least 1")

    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url.startswith(("postgres://", "postgresql://")):
        message = ("bench/search.py measures PostgreSQL's trigram indexes: set DATABASE_URL to a PostgreSQL server "
                   "(a role that may create databases). The embedded SQLite has no such index: nothing measured.")
        print(message)
        print(json.dumps({"skipped": message}))
        return 0

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    name = f"atelier_bench_search_{uuid.uuid4().hex[:10]}"
    admin(server_url, f'CREATE DATABASE "{name}"')
    progress(f"database {name} (removed at the end)")
    try:
        with tempfile.TemporaryDirectory(prefix="atelier-bench-search-") as data_dir:
            configure_django(bench_database_url(server_url, name), data_dir)
            from django.core.management import call_command
            from django.db import connection, connections

            from atelier_platform.accounts.services import create_project

            try:
                call_command("migrate", verbosity=0, interactive=False)
                with connection.cursor() as cursor:
                    cursor.execute("SHOW server_version")
                    version = cursor.fetchone()[0].split()[0]
                project = create_project("bench-search")
                drop_indexes()  # the rows go in faster without them
                matches = fill(project, args.jobs, args.seed, progress)
                times, search_times, used, build_s, sizes = measure(Searcher(project), args.repeat, args.plans, progress)
            finally:
                connections.close_all()
        figures = report(args, version, matches, times, search_times, used, build_s, sizes)
    finally:
        admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
