"""The OpenAPI 3 schema at /api/schema/ and the interactive docs at /api/docs/."""
import pytest
import yaml
from drf_spectacular.validation import validate_schema


@pytest.mark.django_db
def test_the_schema_is_valid_openapi_3_with_the_three_paths(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on an invalid document
    assert {"/api/v1/reviews", "/api/v1/recommendations", "/api/v1/curricula/{key}/policy"} <= set(schema["paths"])
    responses = {
        path: set(operation["responses"]) for path, methods in schema["paths"].items() for operation in methods.values()
    }
    assert responses["/api/v1/reviews"] == {"201", "400", "401", "409", "415", "429", "503"}
    assert responses["/api/v1/recommendations"] == {"200", "400", "401", "415", "429", "503"}
    assert responses["/api/v1/curricula/{key}/policy"] == {"200", "401", "404", "429", "503"}
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    # the docs tell the two body variants apart by name: "Review | ReviewBatch", not "Review | Review"
    body = schema["paths"]["/api/v1/reviews"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ReviewOrBatch"}
    assert schema["components"]["schemas"]["ReviewOrBatch"]["oneOf"] == [{"$ref": "#/components/schemas/Review"}, {"$ref": "#/components/schemas/ReviewBatch"}]
    batch = schema["components"]["schemas"]["ReviewBatch"]
    assert batch["type"] == "array" and batch["items"] == {"$ref": "#/components/schemas/Review"}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/docs/redoc/"])
def test_the_docs_pages_are_served(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert b"/api/schema/" in response.content


@pytest.mark.django_db
def test_the_schema_says_what_the_server_accepts_for_learners_and_keys(client):
    """A learner id may be an integer wherever one is read (the server takes 42 as "42"); a key reused for another
    review is a 409, as docs/api.md says."""
    schemas = yaml.safe_load(client.get("/api/schema/").content)["components"]["schemas"]
    either = [{"type": "string", "maxLength": 200}, {"type": "integer"}]
    assert schemas["Review"]["properties"]["learner"]["oneOf"] == either
    assert schemas["RecommendationRequest"]["properties"]["learner"]["oneOf"] == either
    assert schemas["BatchRecommendationRequest"]["properties"]["learners"]["items"]["oneOf"] == either
    assert "409" in schemas["Review"]["properties"]["idempotency_key"]["description"]
