"""The curriculum domain: curricula, concepts, learners, review logs, the policy registry and serving."""
