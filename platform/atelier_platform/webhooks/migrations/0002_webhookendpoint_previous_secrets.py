"""One previous secret per endpoint becomes a list of them, each with its own expiry.

A previous secret still signing when this runs keeps signing until the expiry it had; one without
an expiry (never written so) or already expired signed nothing and is dropped.
"""

from django.db import migrations, models


def previous_secret_into_list(apps, schema_editor):
    WebhookEndpoint = apps.get_model("webhooks", "WebhookEndpoint")
    rotated = WebhookEndpoint.objects.exclude(previous_secret="").exclude(previous_secret_expires_at=None)
    for endpoint in rotated.only("pk", "previous_secret", "previous_secret_expires_at").iterator():
        endpoint.previous_secrets = [{"secret": endpoint.previous_secret,
                                      "expires_at": endpoint.previous_secret_expires_at.isoformat()}]
        endpoint.save(update_fields=["previous_secrets"])


def newest_previous_secret_back(apps, schema_editor):
    """Going back keeps the newest previous secret: the old schema has room for one."""
    WebhookEndpoint = apps.get_model("webhooks", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.exclude(previous_secrets=[]).only("pk", "previous_secrets").iterator():
        newest = endpoint.previous_secrets[0]
        endpoint.previous_secret = newest["secret"]
        endpoint.previous_secret_expires_at = newest["expires_at"]
        endpoint.save(update_fields=["previous_secret", "previous_secret_expires_at"])


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='webhookendpoint',
            name='previous_secrets',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(previous_secret_into_list, newest_previous_secret_back, elidable=False),
        migrations.RemoveField(
            model_name='webhookendpoint',
            name='previous_secret',
        ),
        migrations.RemoveField(
            model_name='webhookendpoint',
            name='previous_secret_expires_at',
        ),
    ]
