"""The REST API (v1, docs/contracts.md): review ingestion, recommendations, the active policy's metadata."""
