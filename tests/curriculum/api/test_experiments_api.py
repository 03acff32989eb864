"""GET /api/v1/experiments and /api/v1/experiments/{id}: arms, split, status, outcomes; in the OpenAPI schema."""
import pytest
import yaml

from curriculum.experiments.services import create_experiment, start_experiment
from curriculum.services import promote_policy


@pytest.fixture
def experiment(make_curriculum, make_real_policy):
    demo = make_curriculum("demo", concepts=5)
    promote_policy(policy=make_real_policy(demo, seed=1), reason="test")
    return start_experiment(experiment=create_experiment(curriculum=demo, name="v2 vs v1", traffic=[60, 40],
                                                         candidates=[make_real_policy(demo, seed=2)]))


def test_the_list_shows_arms_split_and_status(api_client, experiment, make_curriculum):
    other = make_curriculum("other", concepts=2)
    body = api_client.get("/api/v1/experiments").json()
    (shown,) = body["experiments"]
    assert (shown["id"], shown["curriculum"], shown["status"], shown["mode"]) == (experiment.pk, "demo", "running", "split")
    assert shown["arms"] == [{"label": "A", "version": 1, "control": True, "traffic_percent": 60},
                             {"label": "B", "version": 2, "control": False, "traffic_percent": 40}]
    assert api_client.get("/api/v1/experiments", {"curriculum": other.key}).json() == {"experiments": []}
    assert api_client.get("/api/v1/experiments", {"curriculum": "../x"}).status_code == 400


def test_one_experiment_carries_its_outcomes(api_client, experiment):
    api_client.post("/api/v1/recommendations", {"curriculum": "demo", "learner": "u1"}, format="json")
    body = api_client.get(f"/api/v1/experiments/{experiment.pk}").json()
    assert [a["label"] for a in body["outcomes"]["arms"]] == ["A", "B"]
    assert sum(a["decisions"] for a in body["outcomes"]["arms"]) == 1
    assert set(body["outcomes"]["arms"][0]["recall_next"]) == {"mean", "ci95", "learners"}


def test_an_unknown_experiment_is_404_naming_the_id_and_a_token_is_needed(api_client, experiment, client):
    response = api_client.get("/api/v1/experiments/999")
    assert response.status_code == 404 and response.json()["error"]["fields"][0]["field"] == "id"
    assert client.get("/api/v1/experiments").status_code == 401


def test_the_schema_documents_the_experiment_routes_and_the_recommendation_id(client, db):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert {"/api/v1/experiments", "/api/v1/experiments/{experiment_id}"} <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert "outcomes" in components["ExperimentDetail"]["properties"]
    assert "recommendation_id" in components["Recommendation"]["properties"]
    assert "recommendation_id" in components["Review"]["properties"]


def test_the_schema_says_how_many_learners_the_outcomes_read_and_how_they_are_sampled(client, db):
    from curriculum.experiments.outcomes import MAX_LEARNERS_PER_ARM

    schema = yaml.safe_load(client.get("/api/schema/").content)
    description = schema["paths"]["/api/v1/experiments/{experiment_id}"]["get"]["description"]
    assert f"{MAX_LEARNERS_PER_ARM:,} learners per arm" in description and "uniform random sample" in description
    learners = schema["components"]["schemas"]["OutcomeMean"]["properties"]["learners"]["description"]
    assert f"{MAX_LEARNERS_PER_ARM:,}" in learners and "uniform random sample" in learners
