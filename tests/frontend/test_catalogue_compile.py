"""The translations are compiled by every process that loads the dashboard (atelier_frontend.i18n): the test
processes of `make test` and gunicorn's workers start together and compile at the same moment."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo

from atelier_frontend.i18n import LOCALE_DIR, compile_catalogues


@pytest.fixture
def locale_copy(tmp_path) -> Path:
    copy = tmp_path / "locale"
    shutil.copytree(LOCALE_DIR, copy, ignore=shutil.ignore_patterns("*.mo", "*.tmp"))
    return copy


def test_a_compiled_catalogue_is_readable_by_everyone_and_leaves_no_temporary_file(locale_copy):
    (written,) = compile_catalogues(locale_copy)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644  # a server running as another user reads it
    assert sorted(path.name for path in written.parent.iterdir()) == ["django.mo", "django.po"]


def test_processes_compiling_at_once_leave_one_whole_catalogue(locale_copy):
    """Eight processes compile the same catalogue at once (each finds it missing): each writes a file of its
    own and renames it into place, so the catalogue is always one of theirs, whole. Written into one shared
    temporary file, one process's rename could take another's half-written catalogue."""
    go = locale_copy.parent / "go"
    # each process imports everything first, says so, then waits for the others: they compile at one moment
    code = ("import sys, time; from pathlib import Path; from atelier_frontend.i18n import compile_catalogues; "
            "import babel.messages.mofile, babel.messages.pofile; print('ready', flush=True)\n"
            "while not Path(sys.argv[2]).exists(): time.sleep(0.001)\n"
            "compile_catalogues(Path(sys.argv[1]))")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(locale_copy), str(go)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for process in processes:
        assert process.stdout.readline() == "ready\n"
    go.touch()
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert all(process.returncode == 0 for process in processes), errors
    assert not any("cannot compile" in error for error in errors), errors
    folder = locale_copy / "zh_Hans" / "LC_MESSAGES"
    assert sorted(path.name for path in folder.iterdir()) == ["django.mo", "django.po"]
    with (folder / "django.mo").open("rb") as handle:
        catalogue = read_mo(handle)
    assert catalogue.get("Jobs").string == "任务"
