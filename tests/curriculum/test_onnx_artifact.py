"""dt_policy.onnx, when training wrote one, is registered with the version (SHA-256), verified and downloadable."""
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from curriculum.services import ArtifactIntegrityError, artifact_storage, register_policy, verify_policy_artifacts
from training.rl.artifacts import ONNX_FILE, sha256_hex

GRAPH = b"\x08\x07onnx graph bytes"


@pytest.fixture
def onnx_policy(make_curriculum, fake_artifact_dir):
    folder = fake_artifact_dir("with-onnx")
    (folder / ONNX_FILE).write_bytes(GRAPH)
    return register_policy(curriculum=make_curriculum(), artifact_dir=folder, config={"v": 1})


@pytest.mark.django_db
def test_the_onnx_file_is_registered_with_its_sha256(onnx_policy):
    entry = onnx_policy.artifacts[ONNX_FILE]
    assert entry["sha256"] == sha256_hex(GRAPH) and entry["size"] == len(GRAPH)
    with artifact_storage().open(entry["path"], "rb") as fh:
        assert fh.read() == GRAPH
    verify_policy_artifacts(policy=onnx_policy)


@pytest.mark.django_db
def test_a_version_without_an_onnx_file_registers_and_verifies(make_curriculum, make_policy):
    policy = make_policy(make_curriculum())
    assert ONNX_FILE not in policy.artifacts
    verify_policy_artifacts(policy=policy)


@pytest.mark.django_db
def test_a_changed_onnx_file_fails_verification(onnx_policy):
    path = onnx_policy.artifacts[ONNX_FILE]["path"]
    storage = artifact_storage()
    storage.delete(path)
    storage.save(path, ContentFile(b"tampered"))
    with pytest.raises(ArtifactIntegrityError, match=ONNX_FILE):
        verify_policy_artifacts(policy=onnx_policy)


@pytest.mark.django_db
def test_the_onnx_file_is_downloadable_from_the_versions_page(admin_client, onnx_policy):
    page = admin_client.get(reverse("admin:curriculum_policymodel_change", args=[onnx_policy.pk]))
    url = reverse("curriculum:policy-artifact", args=[onnx_policy.pk, ONNX_FILE])
    assert url.encode() in page.content
    download = admin_client.get(url)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == GRAPH


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kind"), [("dt_model.pt", "application/octet-stream"), (ONNX_FILE, "application/octet-stream"),
                                            ("dt_lite_weights.npz", "application/octet-stream"),
                                            ("dt_lite_config.json", "application/json")])
def test_each_artifact_downloads_with_the_type_of_what_it_is(admin_client, onnx_policy, name, kind):
    """Not the system's guess from the extension (a .pt file was served as a "SNES page table")."""
    download = admin_client.get(reverse("curriculum:policy-artifact", args=[onnx_policy.pk, name]))
    assert download.status_code == 200 and download["Content-Type"] == kind
    assert download["Content-Disposition"].startswith("attachment")
