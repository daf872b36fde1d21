"""The compiled blocklists and allow lists a process keeps: within a budget in bytes, not a count of lists."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from atelier_sdk.safety import BlocklistTerm, ScreenContext

from atelier_plugins.safety import blocklist as blocklist_module
from atelier_plugins.safety.allowlist import compile_allowed_terms
from atelier_plugins.safety.blocklist import BlocklistCheck, compile_blocklist
from atelier_plugins.safety.compiled_lists import CompiledListCache, compiled_lists


@pytest.fixture
def budget():
    """Set this process's budget for a test; the cache starts empty and is put back as it was. Entries may be
    dropped as soon as they are stored (no ``recent_s``), so that a test's lists, all used within a second, do."""
    before, recent = compiled_lists.budget_bytes, compiled_lists.recent_s
    compiled_lists.clear()
    compiled_lists.recent_s = 0
    yield compiled_lists.set_budget_bytes
    compiled_lists.clear()
    compiled_lists.recent_s = recent
    compiled_lists.set_budget_bytes(before)


def project_list(project: int, size: int = 20) -> tuple[BlocklistTerm, ...]:
    return tuple(BlocklistTerm(pattern=f"p{project}term{index}") for index in range(size))


def test_many_projects_small_lists_stay_compiled(budget):
    """Forty projects screening in turn: each list compiles once. A cache of 16 lists compiled every project's
    list again on each round (each batch of each project paid a compile)."""
    budget(64 * 2**20)
    lists = [project_list(project) for project in range(40)]
    before = blocklist_module.compile_count
    for _round in range(3):
        for terms in lists:
            # a fresh tuple each time, as the platform builds after reading a changed list
            assert compile_blocklist(tuple(terms[:])).find(f"say {terms[3].pattern} now")
    assert blocklist_module.compile_count == before + 40
    allowed_before = compiled_lists.stats().compiles
    for _round in range(3):
        for project in range(40):
            compile_allowed_terms((f"wool{project}", f"merino{project}"))
    assert compiled_lists.stats().compiles == allowed_before + 40


def test_the_budget_bounds_what_is_kept_and_drops_the_least_recently_used(budget):
    one = compile_blocklist(project_list(1, 2000)).estimated_bytes()
    budget(int(one * 3.5))  # room for three lists of this size
    lists = {project: project_list(project, 2000) for project in range(1, 6)}
    compiled = {project: compile_blocklist(terms) for project, terms in lists.items()}
    stats = compiled_lists.stats()
    assert stats.bytes <= stats.budget_bytes and stats.entries == 3
    assert stats.evictions >= 2
    before = blocklist_module.compile_count
    assert compile_blocklist(lists[5]) is compiled[5] and compile_blocklist(lists[3]) is compiled[3]
    assert blocklist_module.compile_count == before  # the three most recent are kept
    compile_blocklist(lists[1])  # the oldest was dropped: compiled again...
    assert blocklist_module.compile_count == before + 1
    compile_blocklist(lists[5])  # ...and 4, the least recently used since, made room; 5 was used just now
    assert blocklist_module.compile_count == before + 1
    compile_blocklist(lists[4])
    assert blocklist_module.compile_count == before + 2


def test_a_list_larger_than_the_whole_budget_is_used_and_kept_alone(budget):
    budget(10_000)
    small = compile_blocklist(project_list(1, 3))
    huge_terms = project_list(2, 5000)
    huge = compile_blocklist(huge_terms)
    assert huge.estimated_bytes() > 10_000
    assert BlocklistCheck().check_text("this p2term4321 here", ScreenContext(blocklist=huge_terms))
    stats = compiled_lists.stats()
    assert stats.entries == 1 and stats.bytes == huge.estimated_bytes()
    before = blocklist_module.compile_count
    assert compile_blocklist(huge_terms) is huge
    assert compile_blocklist(project_list(1, 3)) is not small
    assert blocklist_module.compile_count == before + 1


def test_an_equal_list_read_afresh_is_adopted_and_needs_no_hashing_next_time(budget, monkeypatch):
    first_read = project_list(7, 500)
    compiled = compile_blocklist(first_read)
    second_read = tuple(BlocklistTerm(pattern=t.pattern) for t in first_read)  # equal, not the same objects
    assert compile_blocklist(second_read) is compiled
    assert compiled.terms is second_read  # the old tuple can be freed: only one copy is kept
    hashed = []
    real_key = blocklist_module.blocklist_key
    monkeypatch.setattr(blocklist_module, "blocklist_key", lambda terms: hashed.append(1) or real_key(terms))
    for _ in range(5):
        assert compile_blocklist(second_read) is compiled
    assert hashed == []


def _kept_bytes(compile) -> tuple[object, int]:
    """What the cache keeps for one list (its entry, the compiled form and the terms it holds), by tracemalloc,
    after one untimed compile of other words that fills the process's one-off caches (normalised characters).
    ``compile(run)`` makes run ``run``'s own words: the regex module keeps compiled patterns, so a pattern compiled
    before would cost nothing. Only allocations made from this file or the safety checks count: tracemalloc sees
    every thread's, and a test process has others (servers, listeners) that allocate meanwhile."""
    ours = [tracemalloc.Filter(True, __file__, all_frames=True),
            tracemalloc.Filter(True, "*/atelier_plugins/safety/*", all_frames=True)]

    def kept(snapshot) -> int:
        return sum(stat.size for stat in snapshot.filter_traces(ours).statistics("filename"))

    compile(0)
    compiled_lists.clear()
    gc.collect()
    tracemalloc.start(12)  # frames enough to reach this file from inside pydantic's term objects
    try:
        before = kept(tracemalloc.take_snapshot())
        compiled = compile(1)
        gc.collect()
        after = kept(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    return compiled, after - before


@pytest.mark.parametrize("size", [200, 1500])
def test_the_estimate_is_near_what_the_cache_really_keeps(budget, size):
    """The budget is only as good as the estimates it adds up: each within a quarter of what tracemalloc sees
    the cache keep for a list (blocklist: pydantic terms, some regular expressions; allow list: strings)."""
    def words(run):
        return (f"r{run}w{index}x{'y' * (index % 9)}" for index in range(size))

    compiled, real = _kept_bytes(lambda run: compile_blocklist(tuple(
        BlocklistTerm(pattern=rf"\br{run}w{index}\s+(?:a|b)\b" if index % 10 == 0 else word, is_regex=index % 10 == 0)
        for index, word in enumerate(words(run)))))
    assert 0.75 * real <= compiled.estimated_bytes() <= 1.25 * real, (compiled.estimated_bytes(), real)
    allowed, real = _kept_bytes(lambda run: compile_allowed_terms(tuple(words(run))))
    assert 0.75 * real <= allowed.estimated_bytes() <= 1.25 * real, (allowed.estimated_bytes(), real)


def test_a_smaller_budget_drops_entries_at_once_and_negative_is_refused():
    cache = CompiledListCache(budget_bytes=1000, recent_s=0)
    for key in "abcd":
        cache.put(key, key.upper(), 300)
    assert cache.stats().entries == 3 and cache.get("a") is None
    cache.set_budget_bytes(600)
    assert [cache.get(key) for key in "bcd"] == [None, "C", "D"]
    with pytest.raises(ValueError, match="0 or more"):
        cache.set_budget_bytes(-1)


def test_what_was_used_in_the_last_second_is_kept_past_the_budget(budget):
    """A screening uses a project's list as read and its compiled form together: where the two outgrow the budget
    together, storing one dropped the other, and every text read and compiled the list again."""
    cache = CompiledListCache(budget_bytes=1000)
    cache.put("read list", "terms", 600)
    cache.put("compiled", "automaton", 600)  # together over the budget: both were used just now
    assert cache.get("read list") == "terms" and cache.get("compiled") == "automaton"
    assert cache.stats().bytes == 1200
    cache.recent_s = 0  # as if a second had passed: the next entry stored makes room
    cache.put("another project", "x", 300)
    assert cache.get("read list") is None and cache.get("compiled") == "automaton"
