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
    assert set(compose["services"]) == {"postgres", "redis", "web", "worker-cpu", "worker-gpu", "beat", "flower"}


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
