"""Generated files in an S3-compatible object store, chosen by setting, served through the API."""

from __future__ import annotations

import socket

import pytest
from django.test import override_settings

from atelier_platform.catalog.registry import get_registry
from atelier_platform.jobs.models import OutputFile
from atelier_platform.jobs.submission import JobRequest, submit_job
from atelier_workers.runtime import JobRunner, ModelCache


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server: the S3 protocol over real HTTP on loopback (no cloud is reachable here)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket="atelier-outputs")
    storages = {
        "default": {"BACKEND": "storages.backends.s3.S3Storage",
                    "OPTIONS": {"bucket_name": "atelier-outputs", "endpoint_url": s3_server, "region_name": "us-east-1",
                                "default_acl": "private", "file_overwrite": False}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages):
        yield client


@pytest.mark.django_db(transaction=True)
def test_output_files_go_to_the_bucket_and_come_back_through_the_api(bucket, project, make_key, client_for):
    job = submit_job(project, JobRequest("reverse_text", {"text": "stored", "with_file": True}, {})).job
    JobRunner(get_registry(), ModelCache("cpu")).run(str(job.pk))
    stored = OutputFile.objects.get(output__job=job)
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="atelier-outputs")["Contents"]]
    assert keys == [stored.file.name] and keys[0].startswith(f"outputs/{project.pk}/{job.pk}/")
    api = client_for(make_key(project).raw)
    response = api.get(f"/api/v1/outputs/{stored.output_id}/files/{stored.pk}/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"derots"


def test_settings_choose_the_object_store_by_environment(tmp_path):
    import os
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.STORAGES['default']['BACKEND'], settings.STORAGES['default']['OPTIONS']['bucket_name'])"
    env = {**os.environ, "ATELIER_S3_BUCKET": "my-bucket", "ATELIER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "atelier_platform.settings"}
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["storages.backends.s3.S3Storage", "my-bucket"]
