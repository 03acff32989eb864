"""How policies are made: synthetic cohorts, trajectory extraction, training runs (Celery) and the rl core."""
