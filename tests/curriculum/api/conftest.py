"""API fixtures: a token-authenticated client, and real DTLite policy versions from tiny random-weight models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CONCEPTS = 5


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    # a token remembered by one test must not authenticate in another (the serving caches are cleared by the
    # root conftest)
    # nor its throttle counts, which each process batches before the shared cache (keyed by user ids, handed out again)
    from curriculum.api.authentication import CachedTokenAuthentication
    from curriculum.api.throttling import TokenRateThrottle

    CachedTokenAuthentication.forget()
    TokenRateThrottle.batches.clear()
    yield
    CachedTokenAuthentication.forget()
    TokenRateThrottle.batches.clear()


@pytest.fixture
def throttle_rate(settings):
    """``set(rate)``: the API's per-token rate for this test (REST framework's syntax, e.g. "3/min"), counted from
    nothing: the shared cache is cleared before and after (counts of earlier tests, or runs with Redis)."""
    from django.core.cache import cache

    def set_rate(rate: str) -> str:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": rate}}
        return rate

    cache.clear()
    yield set_rate
    cache.clear()


@pytest.fixture
def api_user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create(username="client-app")


@pytest.fixture
def api_client(api_user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=api_user).key}")
    return client


@pytest.fixture(scope="session")
def dtlite_artifacts(tmp_path_factory):
    """seed -> a folder with the three artifact files of a tiny random Decision Transformer over CONCEPTS concepts."""
    import torch

    from training.rl.checkpoint import export_artifacts
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.encoder import EncoderConfig

    from training.rl.model_config import max_attention_window

    encoder = EncoderConfig(num_concepts=CONCEPTS)
    folders = {}
    for seed in (1, 2, 3, 4):  # 3 and 4: local attention (the per-step path serves them)
        torch.manual_seed(seed)
        model = DecisionTransformer(DTConfig(
            state_dim=encoder.state_dim, action_dim=CONCEPTS, hidden_dim=16, num_layers=2, num_heads=2,
            context_length=4, max_timestep=64, dropout=0.0,
            attention_window=max_attention_window(context_length=4, num_layers=2) if seed > 2 else None,
        )).eval()
        with torch.no_grad():  # std 0.02 weights score every concept about the same: make choices differ by seed
            for p in model.parameters():
                p.mul_(20.0)
        folder = tmp_path_factory.mktemp(f"policy-seed{seed}")
        export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i}" for i in range(CONCEPTS)],
                         encoder=encoder.to_dict(), target_return=1.0)
        folders[seed] = folder
    return folders


@pytest.fixture
def make_real_policy(dtlite_artifacts, evaluation_metrics, store_fallback):
    """Register a real policy version (seed 1 or 2; 3 or 4 with local attention) for a curriculum made with make_curriculum(concepts=CONCEPTS);
    ``fallback``: the fallback's stored mean under the protocol (None: not evaluated)."""
    from curriculum.services import register_policy

    def make(curriculum, *, seed: int = 1, recall: float = 0.5, fallback: float | None = 0.2):
        folder: Path = dtlite_artifacts[seed]
        config = json.loads((folder / "dt_lite_config.json").read_text())
        metrics = evaluation_metrics(recall=recall, protocol=curriculum.protocol.to_dict())
        policy = register_policy(curriculum=curriculum, artifact_dir=folder, config=config, metrics=metrics)
        if fallback is not None:
            store_fallback(curriculum, mean=fallback, num_concepts=config["action_dim"])
            policy.curriculum.refresh_from_db()
        return policy

    return make
