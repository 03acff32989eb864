"""GET /api/v1/curricula/{key}/policy: the active version's metadata, 404 without one."""
import pytest

from curriculum.services import promote_policy


@pytest.fixture
def demo(make_curriculum):
    return make_curriculum("demo", concepts=5)


def test_unknown_curriculum_is_404(api_client, demo):
    response = api_client.get("/api/v1/curricula/nope/policy")
    assert response.status_code == 404
    assert response.json()["error"] == {"message": "key: unknown curriculum 'nope'",
                                        "fields": [{"field": "key", "message": "unknown curriculum 'nope'"}]}


def test_no_active_policy_is_404(api_client, demo, make_real_policy):
    make_real_policy(demo)  # a candidate only
    response = api_client.get("/api/v1/curricula/demo/policy")
    assert response.status_code == 404
    assert response.json()["error"]["fields"] == [{"field": "key", "message": "curriculum 'demo' has no active policy version"}]


def test_the_active_version_is_described(api_client, demo, make_real_policy):
    make_real_policy(demo, seed=1)
    v2 = make_real_policy(demo, seed=2, recall=0.6)
    event = promote_policy(policy=v2, reason="test")
    body = api_client.get("/api/v1/curricula/demo/policy").json()
    assert body["curriculum"] == "demo" and body["version"] == 2 and body["status"] == "active"
    assert body["promoted_at"] is not None and body["created_at"] is not None
    assert body["metrics"]["results"]["dt"]["mean"] == 0.6
    assert body["concept_keys"] == [f"c{i}" for i in range(5)]
    assert (body["context_length"], body["action_dim"], body["state_dim"]) == (4, 5, 20)
    assert body["encoder"]["num_concepts"] == 5 and body["target_return"] == 1.0
    # the three policy files, and dt_policy.onnx where the onnx package exported one (training/rl/checkpoint.py)
    assert set(body["artifacts"]) == set(v2.artifacts)
    assert {"dt_model.pt", "dt_lite_weights.npz", "dt_lite_config.json"} <= set(body["artifacts"])
    assert body["artifacts"]["dt_lite_weights.npz"] == {
        "sha256": v2.artifacts["dt_lite_weights.npz"]["sha256"], "size": v2.artifacts["dt_lite_weights.npz"]["size"],
    }
    assert event.to_version == 2


def test_without_a_token_it_is_401(client, demo):
    response = client.get("/api/v1/curricula/demo/policy")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"



def test_the_active_version_says_its_attention_window_null_for_full_attention(api_client, demo, make_real_policy):
    # versions trained since 2026-12-07 attend locally by default; earlier configs (no key) read as full attention
    policy = make_real_policy(demo, seed=1)
    promote_policy(policy=policy, reason="test")
    assert "attention_window" not in policy.config
    assert api_client.get("/api/v1/curricula/demo/policy").json()["attention_window"] is None
    policy.config = {**policy.config, "attention_window": 3}
    policy.save(update_fields=["config"])
    assert api_client.get("/api/v1/curricula/demo/policy").json()["attention_window"] == 3
