"""Experiments between policy versions: the recommendation log (every served recommendation with its propensity),
exploration rules, and off-policy estimates from that log."""
