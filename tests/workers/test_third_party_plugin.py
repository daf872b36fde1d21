"""A third-party plugin written, packaged and installed as the README's "Writing a plugin" says, end to end.

The plugin's code and its ``pyproject.toml`` entry point are read from the README itself, so the example a plugin
author copies is the one tested. The package is "installed" into a folder of this test only: its module beside a
``.dist-info`` holding the ``entry_points.txt`` that setuptools writes from that ``pyproject.toml`` table (pip
cannot build it offline in a fresh ``make`` venv, whose setuptools lacks ``bdist_wheel``). Nothing is installed into
the project's environment. The platform must then find it through the ``atelier.plugins`` entry-point group, as it
finds the built-in ones, enable it for new projects, take jobs of it through the API and run them in the worker's
job runner.
"""

from __future__ import annotations

import re
import tomllib
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from atelier_platform.accounts.services import create_project, issue_api_key
from atelier_platform.catalog.registry import get_registry, replace_registry
from atelier_platform.catalog.services import enabled_plugin_ids
from atelier_platform.jobs.models import Job, JobStatus
from atelier_workers.runtime import JobRunner, ModelCache

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_plugin_example() -> tuple[str, dict]:
    """The README's plugin module and the entry-point table of its ``pyproject.toml``."""
    text = README.read_text()
    section = text[text.index("## Writing a plugin"):]
    section = section[: section.index("\n## ", 1)]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    table = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    return code, table["project"]["entry-points"]


@pytest.fixture
def installed_example(tmp_path, monkeypatch):
    """The README's package, installed as pip would lay it out in a site-packages folder on ``sys.path``."""
    code, groups = readme_plugin_example()
    assert list(groups) == ["atelier.plugins"], "the README registers the plugin in the atelier.plugins group"
    site = tmp_path / "site-packages"
    entry_points = "".join(f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in names.items()) + "\n"
                           for group, names in groups.items())
    # the module the README's entry point names (``my_package.shout:Shout``)
    module_path = next(iter(groups["atelier.plugins"].values())).split(":")[0].split(".")
    package = site.joinpath(*module_path[:-1])
    package.mkdir(parents=True)
    for depth in range(1, len(module_path)):
        site.joinpath(*module_path[:depth], "__init__.py").write_text("")
    package.joinpath(f"{module_path[-1]}.py").write_text(code)
    dist_info = site / "my_package-1.0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 1.0.0\n")
    (dist_info / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(site))
    replace_registry(None)  # the next read discovers the installed entry points, as a fresh process does
    yield groups["atelier.plugins"]
    replace_registry(None)


@pytest.mark.django_db(transaction=True)
def test_the_readme_plugin_is_found_through_its_entry_point_and_its_jobs_run(installed_example, client, sent_messages):
    registry = get_registry()
    record = next(record for record in registry.records() if record.name == "shout")
    assert record.state == "ok" and record.source == f"entry point {installed_example['shout']}", record
    out = StringIO()
    call_command("plugins", stdout=out)
    assert re.search(r"^shout\s+ok\s+1\.0\.0\s+cpu\s+16\s+entry point my_package\.shout:Shout$", out.getvalue(), re.M)

    project = create_project("plugin-author", "Plugin author")  # created after the install: the plugin is on
    assert "shout" in enabled_plugin_ids(project)
    key = issue_api_key(project, scopes=["jobs:read", "jobs:write"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key.raw}"
    schemas = {plugin["id"]: plugin for plugin in client.get("/api/v1/plugins/").json()}
    assert schemas["shout"]["editable_output_fields"] == ["text"]

    def submit(prompt: str) -> Job:
        answer = client.post("/api/v1/jobs/", {"plugin": "shout", "input": {"prompt": prompt}}, content_type="application/json")
        assert answer.status_code == 201, answer.content
        job = Job.objects.get(pk=answer.json()["id"])
        assert sent_messages[-1]["queue"] == "cpu" and sent_messages[-1]["args"] == [str(job.pk)]  # its resource class
        return job

    runner = JobRunner(registry, ModelCache("cpu"))
    loud, refused = submit("hello plugin"), submit("a forbidden word")
    assert runner.run(str(loud.pk)) == JobStatus.SUCCEEDED
    loud.refresh_from_db()
    assert [output.content for output in loud.outputs.all()] == [{"text": "HELLO PLUGIN"}]
    assert loud.outputs.get().provenance["plugin"] == "shout"

    # the second job ran in the first one's batch (company of the same plugin), and the PluginError the plugin put
    # in its place failed it alone
    refused.refresh_from_db()
    assert refused.status == JobStatus.FAILED
    assert (refused.error_code, refused.error_message) == ("invalid_input", "Say it differently.")
