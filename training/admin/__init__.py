"""The admin of the training jobs, by concern: ``console`` (what every job's admin has: list, live page, status
endpoint, cancel and retry), ``data_jobs`` (generation, review import, extraction), ``training_runs`` (the runs'
pages), ``protocol_evaluations`` (a version evaluated under its curriculum's protocol) and ``launch_form`` (the
training run's add form). The admin classes present and call services (training.jobs); importing this package
registers them."""
from . import data_jobs, protocol_evaluations, training_runs  # noqa: F401 - registers the admins
