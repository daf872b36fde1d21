"""Migrations of webhook endpoints keep what signs deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = ("webhooks", "0001_initial")
AFTER = ("webhooks", "0002_webhookendpoint_previous_secrets")


def migrate_to(target):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


def migrate_to_latest() -> None:
    """Every app to its last migration: the models as the code has them (later migrations, 0004's coded reasons),
    for the checks below that use them and for the tests after this one."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_a_previous_secret_still_signing_keeps_signing_after_the_migration(project):
    old_apps = migrate_to(BEFORE)
    try:
        Endpoint = old_apps.get_model("webhooks", "WebhookEndpoint")
        expires_at = timezone.now() + timedelta(hours=5)
        rotated = Endpoint.objects.create(project_id=project.pk, url="https://hooks.example/in", secret="whsec_new",
                                          previous_secret="whsec_old", previous_secret_expires_at=expires_at)
        never_rotated = Endpoint.objects.create(project_id=project.pk, url="https://hooks.example/in", secret="whsec_only")
    finally:
        new_apps = migrate_to(AFTER)

    Endpoint = new_apps.get_model("webhooks", "WebhookEndpoint")
    assert Endpoint.objects.get(pk=rotated.pk).previous_secrets == [{"secret": "whsec_old", "expires_at": expires_at.isoformat()}]
    assert Endpoint.objects.get(pk=never_rotated.pk).previous_secrets == []

    from atelier_platform.webhooks.models import WebhookEndpoint

    migrate_to_latest()
    assert WebhookEndpoint.objects.get(pk=rotated.pk).signing_secrets(timezone.now()) == ["whsec_new", "whsec_old"]
    assert WebhookEndpoint.objects.get(pk=rotated.pk).signing_secrets(expires_at) == ["whsec_new"]

    # and back: the old schema keeps the newest previous secret
    Endpoint = migrate_to(BEFORE).get_model("webhooks", "WebhookEndpoint")
    try:
        back = Endpoint.objects.get(pk=rotated.pk)
        assert (back.previous_secret, back.previous_secret_expires_at) == ("whsec_old", expires_at)
    finally:
        migrate_to_latest()
