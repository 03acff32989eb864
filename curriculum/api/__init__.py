"""The REST API (v1, DESIGN.md section 6): review ingestion, recommendations, the active policy's metadata."""
