"""Image reference sets uploaded on the settings page as a ZIP (a cases file beside the images), refusals named by
line, column or file in the page's language, zip bombs and unsafe names refused; and an image run's page: FID, KID,
each case's reference beside its generated image, worst first, compared with another run."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from atelier_platform.evaluation import services, uploads
from atelier_platform.evaluation.models import ReferenceImage, ReferenceSet
from tests.evaluation.conftest import image_case, image_models_root, image_project, png_bytes  # noqa: F401 - fixtures


def a_zip(members: dict[str, bytes | str], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def upload(client, content: bytes, *, name="pictures", filename="set.zip"):
    return client.post("/settings/", {"action": "reference_set_upload", "name": name, "plugin": "image",
                                      "file": SimpleUploadedFile(filename, content)})


def refused(response) -> str:
    assert response.status_code == 400, response.status_code
    assert not ReferenceSet.objects.exists() and not ReferenceImage.objects.exists()
    return response.content.decode()


@pytest.fixture
def owner(image_project, signed_in):
    return signed_in(image_project, "owner")


@pytest.mark.django_db
class TestZipUpload:
    def test_a_csv_and_its_images_become_an_image_set(self, image_project, owner):
        csv = "prompt,image,steps,seed\na red cat,cat.png,4,7\na blue dog,pictures/dog.jpg,,\n"
        response = upload(owner, a_zip({"set/cases.csv": csv, "set/cat.png": png_bytes(1),
                                        "set/pictures/dog.jpg": png_bytes(2, kind="JPEG")}))
        assert response.status_code == 302, response.content.decode()[-2000:]
        saved = ReferenceSet.objects.get()
        assert saved.plugin_id == "image" and saved.cases[0]["input"] == {"prompt": "a red cat", "steps": 4, "seed": 7}
        assert [case["reference"]["media_type"] for case in saved.cases] == ["image/png", "image/jpeg"]
        assert saved.images.count() == 2

    def test_json_lines_name_their_images_too(self, owner):
        lines = [json.dumps({"input": {"prompt": "a red cat", "steps": 2}, "reference": "cat.png"})]
        assert upload(owner, a_zip({"cases.jsonl": "\n".join(lines), "cat.png": png_bytes(1)})).status_code == 302
        assert ReferenceSet.objects.get().cases[0]["reference"]["width"] == 32

    def test_a_missing_or_bad_image_is_named_by_its_line_and_column(self, owner):
        csv = "prompt,image\na cat,cat.png\na dog,dog.png\na cow,notes.png\n"
        page = refused(upload(owner, a_zip({"cases.csv": csv, "cat.png": png_bytes(1), "notes.png": b"not a picture"})))
        assert "Line 3: no file" in page and "dog.png" in page
        page = refused(upload(owner, a_zip({"cases.csv": "prompt,image\na cat,cat.png\na cow,notes.png\n",
                                            "cat.png": png_bytes(1), "notes.png": b"not a picture"})))
        assert "Line 3, image: Not a PNG or JPEG image that can be read." in page

    def test_refusals_are_in_the_pages_language(self, owner):
        owner.cookies["django_language"] = "zh-hans"
        with translation.override("zh-hans"):
            page = refused(upload(owner, a_zip({"cases.csv": "prompt,image\na cat,gone.png\n"})))
            assert "第 2 行：压缩包中没有文件 gone.png。" in page
            page = refused(upload(owner, a_zip({"cases.csv": "prompt,image\na cat,notes.png\n",
                                                "notes.png": b"not a picture"})))
            assert "不是可读取的 PNG 或 JPEG 图像。" in page  # the checker's refusal, worded by its code
            page = refused(upload(owner, b"question,reference\n", filename="cases.csv"))
            assert "图像参考集请上传一个包含 cases.csv 或 cases.jsonl 以及图像的 .zip 文件。" in page

    @pytest.mark.parametrize("members, said", [
        ({"cat.png": png_bytes(1)}, "needs one cases.csv or cases.jsonl"),
        ({"cases.csv": "prompt,image\na,x.png\n", "x/cases.jsonl": ""}, "needs one cases.csv or cases.jsonl"),
        ({"cases.csv": "prompt,image\na,../x.png\n", "../x.png": png_bytes(1)}, "unsafe file name"),
        ({"cases.csv": "prompt,image\na,x.png\n", "/etc/x.png": png_bytes(1)}, "unsafe file name"),
    ])
    def test_archives_without_a_cases_file_or_with_unsafe_names_are_refused(self, owner, members, said):
        assert said in refused(upload(owner, a_zip(members)))

    def test_not_a_zip(self, owner):
        assert "not a ZIP archive" in refused(upload(owner, b"PK\x03\x04 but nothing more"))

    def test_a_zip_bomb_is_refused_without_inflating_it(self, owner, monkeypatch):
        monkeypatch.setattr(uploads, "MAX_ZIP_UNCOMPRESSED_BYTES", 2 * 1024 * 1024)
        bomb = a_zip({"cases.csv": "prompt,image\na,big.png\n", "big.png": b"\0" * (3 * 1024 * 1024)})
        assert len(bomb) < 20_000  # compresses to almost nothing
        assert "inflates to more than 2 MiB" in refused(upload(owner, bomb))

    def test_an_image_named_by_every_case_is_inflated_once(self, owner, monkeypatch):
        """Each case read its image again, counted again against the archive's limit: an image of 200 KB named by
        500 cases was refused as a zip bomb of 100 MB."""
        picture = png_bytes(1)
        csv = "prompt,image\n" + "".join(f"prompt {n},same.png\n" for n in range(5))
        monkeypatch.setattr(uploads, "MAX_ZIP_UNCOMPRESSED_BYTES", len(csv) + 2 * len(picture))
        assert upload(owner, a_zip({"cases.csv": csv, "same.png": picture})).status_code == 302
        saved = ReferenceSet.objects.get()
        assert len(saved.cases) == 5 and saved.images.count() == 1

    def test_too_many_members(self, owner, monkeypatch):
        monkeypatch.setattr(uploads, "MAX_ZIP_MEMBERS", 3)
        members = {"cases.csv": "prompt,image\n", **{f"{n}.png": b"x" for n in range(3)}}
        assert "The archive holds 4 files; at most 3." in refused(upload(owner, a_zip(members)))


@pytest.mark.django_db(transaction=True)
def test_an_image_runs_page_shows_fid_kid_and_each_cases_images_worst_first(image_project, signed_in):
    from atelier_workers.evaluation_tasks import score_evaluation
    from tests.evaluation.test_runs import run_all

    viewer = signed_in(image_project, "viewer")
    cases = [image_case(prompt, png_bytes(n)) for n, prompt in enumerate(["a red cat", "a blue dog", "an old house"])]
    reference_set = services.create_reference_set(image_project, plugin_id="image", name="pictures", cases=cases,
                                                  actor="test")
    runs = []
    for _ in range(2):
        run = run_all(services.start_run(image_project, reference_set, actor="test"))
        page = viewer.get(f"/evaluation/runs/{run.pk}/").content.decode()
        assert 'id="run-scoring"' in page  # answered, waiting for its scores
        score_evaluation.apply(args=[str(run.pk)])
        run.refresh_from_db()
        runs.append(run)
    first, second = runs
    page = viewer.get(f"/evaluation/runs/{first.pk}/").content.decode()
    assert f'{first.metrics["fid"]:.2f}' in page and 'class="mono metric-kid"' in page
    similarities = sorted(case["similarity"] for case in first.results)
    order = [page.index(f'{value:.3f}</td>') for value in similarities]
    assert order == sorted(order)  # the least similar first
    for case in first.results:
        image = case["image"]
        assert f'/api/v1/outputs/{image["output_id"]}/files/{image["file_id"]}/?project={image_project.slug}' in page
        reference_url = f'/api/v1/evaluation/reference-sets/{reference_set.pk}/images/{case["reference"]["image"]}/'
        assert f"{reference_url}?project={image_project.slug}" in page
        fetched = viewer.get(f"{reference_url}?project={image_project.slug}")  # the browser's fetch, signed in
        assert fetched.status_code == 200 and fetched["Content-Type"] == "image/png"
    compared = viewer.get(f"/evaluation/runs/{first.pk}/?compare={second.pk}").content.decode()
    assert 'id="compared-metrics"' in compared and compared.count('class="mono other-similarity"') == 3


@pytest.mark.django_db
def test_the_settings_page_lists_an_image_set_with_fid_columns(image_project, signed_in):
    owner = signed_in(image_project, "owner")
    services.create_reference_set(image_project, plugin_id="image", name="pictures",
                                  cases=[image_case("a cat", png_bytes(1))], actor="test")
    page = owner.get("/settings/").content.decode()
    assert "<th>FID</th>" in page and 'option value="image"' in page and 'id="image-set-help"' in page
