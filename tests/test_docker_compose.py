"""docker-compose.yml cannot be started here (no Docker engine): check it is consistent instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from atelier_platform.config import AtelierConfig

REPO = Path(__file__).resolve().parents[1]
ATELIER_SERVICES = ("web", "worker-cpu", "worker-gpu", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def known_environment_names() -> set[str]:
    names = set()
    for name, field in AtelierConfig.model_fields.items():
        names.add(f"ATELIER_{name.upper()}")
        alias = field.validation_alias
        if alias is not None:
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def test_has_every_service_of_the_design(compose):
    assert set(compose["services"]) == {"postgres", "redis", "web", "worker-cpu", "worker-exports", "worker-gpu", "beat",
                                          "flower"}


def test_every_service_has_an_image_or_a_build_context(compose):
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = service["build"] if isinstance(service["build"], str) else service["build"]["context"]
            assert (REPO / context / "Dockerfile").is_file(), name


def test_dependencies_name_existing_services(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for name in ATELIER_SERVICES:
        assert {"postgres", "redis"} <= set(services[name]["depends_on"]), name


def test_atelier_services_are_configured_only_by_known_variables(compose):
    known = known_environment_names()
    for name in ATELIER_SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://") and "@postgres:" in environment["DATABASE_URL"]
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?"), "a missing SECRET_KEY must stop compose"
        unknown = set(environment) - known
        assert not unknown, f"{name} sets variables Atelier does not read: {unknown}"


def test_workers_consume_the_right_queues(compose):
    def queues(service):
        command = compose["services"][service]["command"]
        return set(command[command.index("--queues") + 1].split(","))

    assert queues("worker-cpu") == {"cpu", "platform"}
    assert queues("worker-gpu") == {"gpu"}
    gpu = compose["services"]["worker-gpu"]
    assert gpu["command"][gpu["command"].index("--concurrency") + 1] == "1"  # one process per GPU
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_commands_name_real_modules(compose):
    for name in ATELIER_SERVICES:
        command = " ".join(compose["services"][name]["command"])
        for module in re.findall(r"atelier_[a-z_.]+", command):
            assert (REPO / "platform" / (module.replace(".", "/") + ".py")).is_file(), (name, module)


def test_web_and_workers_share_media(compose):
    def volumes(service):
        return {v.split(":")[0] for v in compose["services"][service].get("volumes", [])}

    assert "media" in volumes("web") and "media" in volumes("worker-gpu") and "media" in volumes("worker-cpu")
    assert set(compose["volumes"]) >= {"media", "models", "postgres"}


DOCKERFILE = (REPO / "Dockerfile").read_text()


def image_environment() -> dict[str, str]:
    """The ENV instructions of the Dockerfile."""
    environment: dict[str, str] = {}
    for line in DOCKERFILE.replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            environment.update(pair.split("=", 1) for pair in line[4:].split())
    return environment


def test_the_image_build_leaves_no_secret_key_in_the_image(tmp_path):
    """The build ran the settings without a SECRET_KEY, which generated one into /data of the image: every
    container of it, started without SECRET_KEY, signed sessions with a key anyone with the image can read."""
    import os
    import shlex
    import subprocess
    import sys

    step = next(part.strip() for part in re.split(r"&&|RUN ", DOCKERFILE.replace("\\\n", " ")) if "collectstatic" in part)
    words = shlex.split(step)
    assignments = dict(word.split("=", 1) for word in words[: words.index("python")])
    data_dir = tmp_path / "data"
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("ATELIER_", "DJANGO_")) and name not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    environment.update({name: value.replace("/data", str(data_dir)) for name, value in image_environment().items()})
    result = subprocess.run([sys.executable, *words[words.index("python") + 1:]], cwd=REPO, capture_output=True, text=True,
                            env={**environment, **assignments}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (data_dir / "secret_key").exists()
    assert image_environment()["ATELIER_PRODUCTION"] == "true"  # so a container without SECRET_KEY stops and says so


def test_the_volumes_mount_on_folders_the_image_user_owns(compose):
    """Docker makes a missing mount point owned by root: the workers, running as the image's user, could not
    write generated files into the media volume."""
    made = {path for group in re.findall(r"mkdir -p ([^&\n]+)", DOCKERFILE) for path in group.split()}
    assert re.search(r"chown -R (\S+) /data", DOCKERFILE).group(1) == re.search(r"^USER (\S+)", DOCKERFILE, re.M).group(1)
    for name in ATELIER_SERVICES:
        for volume in compose["services"][name].get("volumes", []):
            assert volume.split(":")[1] in made, f"{name}: {volume}"


def test_flower_is_reachable_from_this_host_only(compose):
    """It shows every task's arguments and the workers' configuration, with no sign-in."""
    assert all(str(port).startswith("127.0.0.1:") for port in compose["services"]["flower"]["ports"])


def test_every_queue_a_task_is_sent_to_has_a_worker(compose):
    """Each task the platform sends (jobs by resource class, indexing, image evaluation scoring, sweeps, webhook
    deliveries) lands on a queue that a compose worker reads: a queue nobody reads keeps its work for ever (image
    evaluation runs stay ``running`` with ``scoring: pending``)."""
    from atelier_platform.celery_app import JOB_QUEUES, SCORE_EVALUATION_TASK, app

    read = set()
    for name in ("worker-cpu", "worker-gpu", "worker-exports"):
        command = compose["services"][name]["command"]
        read |= set(command[command.index("--queues") + 1].split(","))
    sent = {route["queue"] for route in app.conf.task_routes.values()} | set(JOB_QUEUES)
    sent |= {entry["options"]["queue"] for entry in app.conf.beat_schedule.values()}
    assert sent <= read, f"queues no compose worker reads: {sent - read}"
    assert app.conf.task_routes[SCORE_EVALUATION_TASK]["queue"] in read


def test_the_cpu_worker_finds_the_image_feature_extractor_in_the_models_volume(compose):
    """Image evaluation scoring loads ``ATELIER_EVALUATION_IMAGE_FEATURES`` (relative to the models root) on the
    worker of the ``cpu`` queue: it must mount the models volume where ``ATELIER_MODELS_ROOT`` points and pass
    the setting through from ``.env`` (a compose file passes on only the variables it names)."""
    worker = compose["services"]["worker-cpu"]
    environment = worker["environment"]
    assert "models:" + environment["ATELIER_MODELS_ROOT"] in worker["volumes"]
    assert environment["ATELIER_EVALUATION_IMAGE_FEATURES"] == "${ATELIER_EVALUATION_IMAGE_FEATURES:-demo/image-features}"


def test_the_image_installs_what_pyproject_requires():
    """The Dockerfile installs the project itself (``pip install .``), so every pinned dependency of pyproject.toml
    (torchmetrics and lightning-utilities for image evaluation included) comes with it, torch at the same pin."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    install = " ".join(DOCKERFILE.replace("\\\n", " ").split())
    assert re.search(r"RUN pip install \. ", install), "the image must install the project with its dependencies"
    torch_pin = next(requirement for requirement in project["dependencies"] if requirement.startswith("torch=="))
    assert torch_pin in install
    assert {"torchmetrics", "lightning-utilities"} <= {requirement.split("==")[0] for requirement in project["dependencies"]}
