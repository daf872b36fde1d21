"""`make test` runs the suite in two test processes (scripts/run-tests.sh, tests/support/parallel_runs.py): what
goes together to one of them, and what each has of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.parallel_runs import scope_of

REPO = Path(__file__).resolve().parents[2]


def test_a_modules_tests_go_together_whatever_their_class_or_parameters():
    assert scope_of("tests/frontend/test_browser.py::test_one") == "tests/frontend/test_browser.py"
    assert scope_of("tests/frontend/test_browser.py::TestForms::test_two[chat]") == "tests/frontend/test_browser.py"


def test_a_stack_modules_backends_are_units_of_their_own():
    assert scope_of("tests/e2e/test_whole_path.py::test_a[embedded]") == "tests/e2e/test_whole_path.py on embedded"
    assert scope_of("tests/e2e/test_whole_path.py::test_a[postgres_redis]") == "tests/e2e/test_whole_path.py on postgres_redis"


def test_modules_of_one_xdist_group_go_together():
    # xdist appends "@<group>" to the ids of marked tests under --dist loadgroup
    assert scope_of("tests/e2e/test_builtin_plugins.py::test_a@models_stack") == "group models_stack"
    assert scope_of("tests/e2e/test_openai_client.py::test_b[x]@models_stack") == "group models_stack"
    assert scope_of("tests/api/test_x.py::test_c[a@b]") == "tests/api/test_x.py"  # an "@" inside a parameter is no group


@pytest.mark.timeout(120)
def test_each_test_process_has_a_data_folder_and_a_redis_database_of_its_own(tmp_path):
    """Two processes' tests would otherwise share the file-system broker's queues, stored files and rate-limit
    counters (both count their projects from 1): one's test reading what the other's wrote."""
    records = tmp_path / "records"
    records.mkdir()
    test = """
import json, os, pathlib
def test_NAME():
    from django.conf import settings
    (pathlib.Path(RECORDS) / "NAME").write_text(json.dumps({
        "process": os.environ["PYTEST_XDIST_WORKER"], "data": os.environ["ATELIER_DATA_DIR"],
        "redis": os.environ.get("REDIS_URL", ""), "media": str(settings.MEDIA_ROOT)}))
""".replace("RECORDS", repr(str(records)))
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"test_{name}.py").write_text(test.replace("NAME", name))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("ATELIER_DATA_DIR", None)  # this test process's: the run below chooses its own
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("ATELIER_TEST_PROCESS", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "tests.support.parallel_runs", "-n", "2", "--dist", "loadgroup",
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=110,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = [json.loads(path.read_text()) for path in records.iterdir()]
    assert len(seen) == 4
    by_process = {}
    for record in seen:
        by_process.setdefault(record["process"], set()).add((record["data"], record["redis"], record["media"]))
    assert len(by_process) == 2, by_process  # each module its own unit: both processes had work
    (first,), (second,) = by_process.values()
    assert first[0] != second[0] and first[2] != second[2]
    assert Path(first[0]).parent == Path(second[0]).parent  # under the run's folder, removed with it
    assert Path(first[2]).is_relative_to(first[0]) and Path(second[2]).is_relative_to(second[0])
    if os.environ.get("REDIS_URL", "").startswith("redis://"):
        assert first[1] != second[1]
        assert os.environ["REDIS_URL"] not in (first[1], second[1])  # nor this run's own
