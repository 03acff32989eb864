"""A synthetic generation's progress: the simulation phase cannot count (the simulator says nothing until the whole
cohort is simulated), so it is shown without a count rather than as a stuck "0% (0 / N)" (a newcomer's finding);
the write counts the rows."""
import pytest

from training import jobs, tasks
from training.jobs import lifecycle, runner
from training.jobs.stages import stage_bar

pytestmark = pytest.mark.django_db(transaction=True)


def test_simulating_the_cohort_shows_no_count_and_writing_counts_the_rows(curriculum, monkeypatch):
    monkeypatch.setattr(lifecycle, "_enqueue", lambda *, job: None)
    labels, original = [], runner.JobRun.report

    def recording(self, **fields):
        original(self, **fields)
        if "phase" in fields:
            labels.append((fields["phase"], self.job.step, self.job.steps, stage_bar(self.job)["bar_label"]))

    monkeypatch.setattr(runner.JobRun, "report", recording)
    job = jobs.launch_synthetic_generation(curriculum=curriculum, num_users=6, interactions=7, seed=3)
    tasks.run_synthetic_generation(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert [e for e in labels if e[0] == "simulating the cohort"] == [
        ("simulating the cohort", 0, 0, "stage 1 of 2: simulating the cohort")]
    writing = [e for e in labels if e[0] == "writing reviews"]
    assert writing[0][1:3] == (0, 42) and writing[0][3] == "stage 2 of 2: writing reviews, 0% (0 / 42)"
