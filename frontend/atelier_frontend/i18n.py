"""The dashboard's translations: ``locale/*/LC_MESSAGES/django.po`` in git, compiled to ``.mo``
when the app loads (only when a catalogue is missing or older than its source).

Compiling with Babel (from PyPI) rather than ``compilemessages`` keeps a fresh machine free of
GNU gettext: ``make run`` and the tests need nothing beyond the Python packages.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

logger = logging.getLogger("atelier.frontend")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def compile_catalogues(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Write each ``django.mo`` that is missing or stale; returns those written."""
    written = []
    for po_path in sorted(locale_dir.glob("*/LC_MESSAGES/django.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with po_path.open("rb") as source:
            catalogue = read_po(source)
        temporary = None
        try:
            # A temporary file of this process's own: processes starting together (the test run's, gunicorn's)
            # each compile, and one writing into the file another is renaming would leave half a catalogue.
            with tempfile.NamedTemporaryFile(dir=mo_path.parent, prefix="django.", suffix=".mo.tmp", delete=False) as target:
                temporary = Path(target.name)
                write_mo(target, catalogue)
            temporary.chmod(0o644)  # mkstemp's 0600 would hide it from a server running as another user
            temporary.replace(mo_path)  # a process reading the catalogue never sees half of one
        except OSError as exc:  # a read-only install: serve the languages that were compiled
            logger.warning("cannot compile %s (%s); that language shows in English", po_path, exc)
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            continue
        written.append(mo_path)
    return written
