"""How `make test` shares the suite between its test processes (pytest-xdist, started by scripts/run-tests.sh).

Most of the suite's time is spent waiting: on the web and worker processes of the end-to-end stacks, on
chromium, on timeouts that tests of faults wait out. Two processes fill that time with each other's tests.

What goes together to one process (``TestProcessScopes``):
- a test module's tests: its module-scoped fixtures (a stack, a chromium) start once, not once per process;
- the tests of one backend of a module that runs on each (``test_whole_path[embedded]`` and
  ``[postgres_redis]`` are two units: each starts its own stack anyway, and the module is the suite's longest);
- modules that share a session-wide stack, named with ``pytest.mark.xdist_group("<name>")``: one process starts
  it once for all of them.

The end-to-end tests go first (``pytest_collection_modifyitems``): they are the long units, and a long unit
handed out last would leave one process working alone at the end.

Each test process has a data folder, a PostgreSQL test database and a Redis database of its own
(tests/settings.py, pytest-django's per-process database suffix).
"""

from __future__ import annotations

import re

import pytest

#: the parameter ids of the backends a stack module runs on
_BACKEND = re.compile(r"\[(embedded|postgres_redis)\]")


def scope_of(nodeid: str) -> str:
    """The unit of work that the test ``nodeid`` is handed out with (see the module's docstring)."""
    # under --dist loadgroup xdist appends "@<group>" to the id of a test with an xdist_group mark
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return "group " + nodeid.rsplit("@", 1)[1]
    module = nodeid.split("::", 1)[0]
    backend = _BACKEND.search(nodeid)
    return f"{module} on {backend.group(1)}" if backend else module


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None  # the caller asked for another distribution: theirs
    from xdist.scheduler import LoadScopeScheduling

    class TestProcessScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    # in collection order (end-to-end first, below), not xdist's "most tests first"
    config.option.loadscopereorder = False
    return TestProcessScopes(config, log)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering of tests by their parametrized fixtures
def pytest_collection_modifyitems(config, items):
    if config.getoption("dist", "no") == "no":
        return  # one process: the order does not matter
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable: each group keeps its order
