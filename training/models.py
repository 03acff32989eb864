"""Jobs that make policies: synthetic cohort generation, review-log imports, trajectory extraction, training runs, and
evaluating a registered version under its curriculum's protocol.

The row is the truth about a job (status, progress, heartbeat), not the broker: see training/jobs/.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from curriculum.evaluation_protocol import EvaluationProtocol, ProtocolError
from curriculum.models import Curriculum, PolicyModel, ReviewLog
from curriculum.reviews.fields import MAX_ID_LENGTH

from .rl.model_config import DEFAULT_ATTENTION_WINDOW, attention_window_range  # no PyTorch
from .rl.policies import BEHAVIOUR_POLICIES, normalise_mix  # NumPy only, no PyTorch
from .spec import DATASET, REVIEW_LOG, SYNTHETIC, TrainingSpec


class Job(models.Model):
    """What every job has: who launched it, its status, progress, heartbeat and a cancel request."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    curriculum = models.ForeignKey(Curriculum, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name="launched by",
    )
    created_at = models.DateTimeField("queued", auto_now_add=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    # Written every few seconds by the worker while it works; a running job whose heartbeat is older
    # than settings.CRL_JOB_STALE_SECONDS had its worker die and is marked failed (mark_stale_jobs).
    heartbeat_at = models.DateTimeField("last heartbeat", null=True, blank=True,
                                        help_text="When the worker last said it is alive.")
    cancel_requested = models.BooleanField(
        "cancellation requested", default=False,
        help_text="An operator asked to cancel it: a running job stops at its next checkpoint.")
    # Units of work done / to do (rows written, rows read, optimiser steps): the progress bar.
    step = models.PositiveBigIntegerField("work done", default=0)
    steps = models.PositiveBigIntegerField("work to do", default=0)
    phase = models.CharField(max_length=100, blank=True, help_text="What the worker is doing now.")
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed it.")
    worker = models.CharField(max_length=200, blank=True, help_text="The Celery worker that claimed it.")

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_percent(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 100.0
        return round(100.0 * min(self.step, self.steps) / self.steps, 1) if self.steps else 0.0


class SyntheticGenerationJob(Job):
    """A simulated cohort practising the curriculum under a mix of behaviour policies -> ReviewLog rows."""

    # A cohort's size and reviews per learner default to a training run's synthetic data (TrainingSpec); the
    # reviews per learner are capped lower here (10,000: every one is a stored row).
    num_users = models.PositiveIntegerField(TrainingSpec.label("num_users"), default=TrainingSpec.default("num_users"),
                                            validators=TrainingSpec.validators("num_users"))
    interactions = models.PositiveIntegerField(
        TrainingSpec.label("interactions"), default=TrainingSpec.default("interactions"), validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Reviews per learner.",
    )
    seed = models.IntegerField(default=42, validators=TrainingSpec.validators("seed"))  # the training seed's bounds
    policy_mix = models.JSONField(
        "behaviour-policy mix", default=dict, blank=True,
        help_text='Behaviour policy -> weight, e.g. {"random": 1, "leitner": 2}: each learner follows one policy, drawn '
                  'with these relative weights (rescaled to sum to 1). Names: ' + ", ".join(BEHAVIOUR_POLICIES)
                  + ". Empty for the default mix.",
    )
    rows_written = models.PositiveBigIntegerField("reviews written", default=0)

    class Meta(Job.Meta):
        verbose_name = "synthetic generation job"
        permissions = [("cancel_syntheticgenerationjob", "Can cancel synthetic generation jobs")]

    def __str__(self) -> str:
        return f"generation #{self.pk} ({self.curriculum.key}, {self.num_users}x{self.interactions})"

    def clean(self) -> None:
        errors = {}
        if self.curriculum_id and self.curriculum.concepts.count() < 2:
            errors["curriculum"] = f"curriculum {self.curriculum.key!r} needs at least 2 concepts to simulate practice"
        if self.policy_mix is None:  # the form's empty field: the default mix, as the help text says
            self.policy_mix = {}
        if not isinstance(self.policy_mix, dict):
            errors["policy_mix"] = 'expected an object of policy name -> weight, e.g. {"random": 1, "leitner": 2}'
        elif self.policy_mix:
            try:
                normalise_mix(self.policy_mix)
            except ValueError as exc:
                errors["policy_mix"] = str(exc).removeprefix("policy_mix: ")
        if errors:
            raise ValidationError(errors)

    @property
    def batch_tag(self) -> str:
        """ReviewLog.batch of the rows this job wrote."""
        return f"synthetic-{self.pk}"


class ReviewImportJob(Job):
    """A review-log file uploaded in the admin (kept in the artifacts storage) -> the curriculum's reviews, all or
    nothing; a dry run validates and counts only."""

    upload = models.CharField(max_length=500, help_text="Storage name of the uploaded file in the artifacts storage.")
    filename = models.CharField(max_length=255, help_text="The file's name as uploaded.")
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes.")
    format = models.CharField(max_length=16, blank=True, help_text="fsrs, anki or hlr; empty: from the header.")
    learner = models.CharField(max_length=MAX_ID_LENGTH, blank=True, help_text="The learner of an fsrs or anki file.")
    dry_run = models.BooleanField("dry run (validate only)", default=False,
                                  help_text="Validate and count only; store nothing.")
    result = models.JSONField(default=dict, blank=True, help_text="Counts: rows, created, duplicates, skipped, ...")

    class Meta(Job.Meta):
        verbose_name = "review import job"
        permissions = [("cancel_reviewimportjob", "Can cancel review import jobs")]

    def __str__(self) -> str:
        kind = "dry run" if self.dry_run else "import"
        return f"review {kind} #{self.pk} ({self.curriculum.key}, {self.filename})"


class TrajectoryExtractionJob(Job):
    """ReviewLog of a curriculum -> a versioned trajectory dataset artifact with its statistics."""

    version = models.PositiveIntegerField(null=True, blank=True, help_text="Dataset version, given on success.")
    dataset_path = models.CharField("dataset file", max_length=500, blank=True,
                                    help_text="Storage name in the artifacts storage.")
    statistics = models.JSONField(default=dict, blank=True)
    rows_read = models.PositiveBigIntegerField("reviews read", default=0)

    class Meta(Job.Meta):
        verbose_name = "trajectory extraction job"
        permissions = [("cancel_trajectoryextractionjob", "Can cancel trajectory extraction jobs")]
        constraints = [
            models.UniqueConstraint(
                fields=["curriculum", "version"], condition=Q(version__isnull=False), name="dataset_version_unique"
            ),
        ]

    def clean(self) -> None:
        if self.curriculum_id and not ReviewLog.objects.filter(curriculum_id=self.curriculum_id).exists():
            raise ValidationError(
                {"curriculum": f"curriculum {self.curriculum.key!r} has no reviews to extract (generate or import some first)"}
            )

    def __str__(self) -> str:
        shown = f"dataset v{self.version}" if self.version else f"extraction #{self.pk}"
        return f"{self.curriculum.key} {shown}"


# What a training run's attention window refuses, naming what it takes (model_config's rule; the launch form says the
# same): a window the default model cannot take, or a negative one.
ATTENTION_WINDOW_MESSAGE = (f"Expected {attention_window_range()}, or empty for the default, the widest "
                            f"({DEFAULT_ATTENTION_WINDOW} tokens); got %(show_value)s.")


class TrainingRun(Job):
    """A Decision Transformer training run: train, export, evaluate, register a candidate version."""

    LOSS_STEP_POINTS = 2000

    class DataSource(models.TextChoices):
        SYNTHETIC = SYNTHETIC, "synthetic cohort (simulated on the fly)"
        REVIEW_LOG = REVIEW_LOG, "the curriculum's review log (extracted on the fly)"
        DATASET = DATASET, "dataset from an extraction job"

    data_source = models.CharField("data source",
        max_length=16, choices=DataSource.choices, default=DataSource.SYNTHETIC,
        help_text="A synthetic cohort is simulated with the default behaviour mix; to train on a cohort generated with "
                  "your own policy mix, choose the curriculum's review log (or a dataset extracted from it).",
    )
    dataset = models.ForeignKey(
        TrajectoryExtractionJob, on_delete=models.PROTECT, null=True, blank=True, related_name="training_runs",
        help_text="Required when the data source is a dataset.",
    )
    # The parameters of `train_crl_policy`, as training/spec.py declares them (defaults, help, bounds).
    num_users = TrainingSpec.model_field("num_users")
    interactions = TrainingSpec.model_field("interactions")
    concepts = TrainingSpec.model_field("concepts")
    epochs = TrainingSpec.model_field("epochs")
    batch_size = TrainingSpec.model_field("batch_size")
    seed = TrainingSpec.model_field("seed")
    no_cuda = TrainingSpec.model_field("no_cuda")
    families = TrainingSpec.model_field("families")
    eval_students = TrainingSpec.model_field("eval_students")
    # `train_crl_policy --attention-window` (the pipeline's own argument, as on the command line; not a TrainingSpec
    # parameter): null the default model's widest exact window, 0 full attention, else 1 to that widest window.
    attention_window = models.PositiveSmallIntegerField(
        "attention window", null=True, blank=True,
        validators=[MinValueValidator(0, message=ATTENTION_WINDOW_MESSAGE),
                    MaxValueValidator(DEFAULT_ATTENTION_WINDOW, message=ATTENTION_WINDOW_MESSAGE)],
        help_text=f"Local attention, in tokens: each token attends to itself and the W - 1 tokens before it, so that "
                  f"the policy serves a learner step by step from cached keys and values. Empty: the default, the "
                  f"widest exact window ({DEFAULT_ATTENTION_WINDOW} tokens at the default model size); 0: full "
                  f"attention (the original Decision Transformer's); else 1 to {DEFAULT_ATTENTION_WINDOW}.")
    # `train_crl_policy --policy-gradient-rounds` (the pipeline's own argument): 0 off, the default of a run launched
    # here, so that a run trains as it did before the stage existed. The command's default (PolicyGradientConfig.rounds)
    # lives with PyTorch, which this module never imports: the help text names it, and a test checks that it agrees.
    policy_gradient_rounds = models.PositiveSmallIntegerField(
        "policy-gradient rounds", default=0, validators=[MaxValueValidator(1000)],
        help_text="Rounds of policy-gradient fine-tuning after the offline training: the policy then optimises its "
                  "own results in simulated students instead of imitating its teachers. 0: off; train_crl_policy "
                  "runs 50 by default for synthetic data. A round costs about 7 s on 2 CPU cores. Needs a "
                  "synthetic cohort without \"students like\".")
    # What happened.
    device = models.CharField(max_length=50, blank=True)
    epoch = models.PositiveIntegerField(default=0, help_text="Epochs completed.")
    loss_history = models.JSONField("loss per epoch", default=list, blank=True,
                                    help_text="Mean training loss per epoch.")
    loss = models.FloatField(null=True, blank=True, help_text="Latest training loss.")
    # [[optimiser step (1-based, over all epochs), mean loss of the steps since the previous point], ...]:
    # one point per progress report (about every 10 steps), thinned to at most LOSS_STEP_POINTS.
    loss_steps = models.JSONField("loss per optimiser step", default=list, blank=True,
                                  help_text="Training loss per optimiser step.")
    metrics = models.JSONField(default=dict, blank=True, help_text="Evaluation against the baselines.")
    # training.pipeline.training_hardware + "seconds" per stage, and "warning" (training.hardware.missing_gpu_warning)
    hardware = models.JSONField(default=dict, blank=True,
                                help_text="Where it trained: device, dtype, optimiser steps/s, seconds per stage.")
    policy = models.OneToOneField(
        PolicyModel, on_delete=models.PROTECT, null=True, blank=True, related_name="training_run",
        help_text="The candidate version this run registered.",
    )

    class Meta(Job.Meta):
        verbose_name = "training run"
        permissions = [("cancel_trainingrun", "Can cancel training runs")]
        constraints = [
            models.CheckConstraint(
                condition=Q(data_source__in=["synthetic", "review_log"]) | Q(dataset__isnull=False), name="training_run_dataset_given"
            ),
        ]

    def clean(self) -> None:
        errors = {}
        if self.data_source == self.DataSource.DATASET:
            if self.dataset_id is None:
                errors["dataset"] = "choose the dataset to train on (or use the synthetic data source)"
            elif self.dataset.status != Job.Status.SUCCEEDED:
                errors["dataset"] = f"{self.dataset} has not succeeded (it is {self.dataset.status})"
            elif self.curriculum_id and self.dataset.curriculum_id != self.curriculum_id:
                errors["dataset"] = (f"{self.dataset} was extracted from {self.dataset.curriculum.key!r}, not from "
                                     f"{self.curriculum.key!r}: choose that curriculum or another dataset")
        else:
            source = self.get_data_source_display().split(" (")[0]
            if self.dataset_id is not None:
                errors["dataset"] = f"leave it empty for the {source} data source, or choose the dataset data source"
            if (self.data_source == self.DataSource.REVIEW_LOG and self.curriculum_id
                    and not ReviewLog.objects.filter(curriculum_id=self.curriculum_id).exists()):
                errors["curriculum"] = (f"curriculum {self.curriculum.key!r} has no reviews to train on "
                                        f"(generate or import some first)")
        if self.policy_gradient_rounds and self.data_source != self.DataSource.SYNTHETIC:
            errors["policy_gradient_rounds"] = (
                "policy-gradient fine-tuning simulates the training students' families, so it needs the synthetic "
                "data source (the learners of a review log or a dataset are not simulated students): set it to 0 "
                "(off) or choose the synthetic data source")
        if self.curriculum_id and self.concepts is not None:
            try:
                TrainingSpec(concepts=self.concepts).concept_count(curriculum=self.curriculum.key,
                                                                   have=self.curriculum.concepts.count())
            except ValueError as exc:
                errors["concepts"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def __str__(self) -> str:
        return f"training run #{self.pk} ({self.curriculum.key})"


class ProtocolEvaluationJob(Job):
    """A registered policy version evaluated under its curriculum's evaluation protocol on a worker (closed-loop
    simulation of the version and every baseline: training.protocol_evaluation.evaluate_under_protocol), so that the
    promotion gate compares it with the active version or the fallback under the same students."""

    policy = models.ForeignKey(PolicyModel, on_delete=models.PROTECT, related_name="protocol_evaluation_jobs",
                               help_text="The version evaluated.")
    protocol = models.JSONField(default=dict, blank=True,
                                help_text="The curriculum's evaluation protocol when the job was launched: students, "
                                          "seed, reviews per student.")
    result = models.JSONField(default=dict, blank=True,
                              help_text="The DT's and each baseline's mean final recall under the protocol.")

    class Meta(Job.Meta):
        verbose_name = "protocol evaluation job"
        permissions = [("cancel_protocolevaluationjob", "Can cancel protocol evaluation jobs")]

    def __str__(self) -> str:
        version = f"v{self.policy.version}" if self.policy_id else "?"
        return f"{self.curriculum.key} {version} evaluation #{self.pk}"

    def clean(self) -> None:
        errors = {}
        if self.policy_id and self.curriculum_id and self.policy.curriculum_id != self.curriculum_id:
            errors["policy"] = (f"{self.policy} is a version of {self.policy.curriculum.key!r}, not of "
                                f"{self.curriculum.key!r}")
        try:
            EvaluationProtocol.from_dict(self.protocol)
        except (ProtocolError, TypeError) as exc:
            errors["protocol"] = str(exc)
        if errors:
            raise ValidationError(errors)
