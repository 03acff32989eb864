"""Data model: what learners did (ReviewLog), the concepts they did it on, and the registry of policy versions."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Upper
from rest_framework.authtoken.models import TokenProxy

from .reviews.fields import CURRICULUM_KEY_LENGTH, MAX_ID_LENGTH
from .reviews.validation import normalise_id


class Curriculum(models.Model):
    key = models.SlugField(max_length=CURRICULUM_KEY_LENGTH, unique=True,
                           help_text="Stable identifier used by the API.")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField("created", auto_now_add=True)
    # {"students", "seed", "interactions", "horizon_s"} (curriculum.evaluation_protocol); {} = the defaults.
    evaluation_protocol = models.JSONField("evaluation protocol",
        default=dict, blank=True,
        help_text='How every version of this curriculum is evaluated, e.g. {"students": 200, "seed": 1234, '
        '"interactions": 100}. Empty: the first registered version sets it from its run\'s evaluation students and '
        'reviews per learner (200 and 100 by default), the reviews raised to at least 3 per concept on a large deck '
        'and the students lowered to keep students x reviews within 100,000. Versions are compared only under the '
        'same protocol.',
    )
    # The fallback rule (what serves with no active version) evaluated under a protocol, computed once per protocol
    # and concept count by a worker: {curriculum.evaluation_protocol.fallback_key: evaluation} (the promotion gate's
    # bar for a first promotion; training.protocol_evaluation.evaluate_fallback_under_protocol writes it).
    fallback_evaluations = models.JSONField("the fallback rule's evaluations", default=dict, blank=True,
                                            editable=False)
    # What serves with no active version (and an experiment's control arm then): curriculum.serving's fallback rules,
    # each the evaluation baseline of that name (curriculum.evaluation_protocol.FALLBACK_RULES).
    fallback_rule = models.CharField(
        "fallback rule", max_length=16, default="lowest_recall",
        choices=[("lowest_recall", "lowest estimated recall first"), ("round_robin", "round robin")],
        help_text="What serves while no version is active: the concept with the lowest estimated recall (never "
        "reviewed ones first), or round robin (the concepts in turn, by the learner's number of reviews). The "
        "first version promoted must beat this rule's evaluation.",
    )
    # How serving draws the concept from the deciding policy's distribution (curriculum.experiments.exploration):
    # argmax never explores (every logged propensity is 1); softmax and epsilon-greedy do, so that the log supports
    # off-policy estimates of other versions.
    exploration = models.CharField(
        max_length=16, default="argmax",
        choices=[("argmax", "argmax (no exploration)"), ("softmax", "softmax with a temperature"),
                 ("epsilon_greedy", "epsilon-greedy")],
        help_text="How the served concept is drawn: the policy's most likely concept (argmax), a draw from its "
        "scores sharpened or flattened by a temperature (softmax), or the argmax except with probability epsilon a "
        "uniformly random candidate (epsilon-greedy).",
    )
    exploration_temperature = models.FloatField("softmax temperature",
        default=1.0, validators=[MinValueValidator(0.05), MaxValueValidator(20.0)],
        help_text="softmax only: 1 draws from the policy's own scores, below 1 sharpens them, above 1 flattens them.",
    )
    exploration_epsilon = models.FloatField("epsilon (chance of a random candidate)",
        default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="epsilon-greedy only: the probability of a uniformly random candidate.",
    )

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "curricula"

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .evaluation_protocol import ProtocolError, EvaluationProtocol

        try:
            EvaluationProtocol.from_dict(self.evaluation_protocol if isinstance(self.evaluation_protocol, dict) else None)
        except ProtocolError as exc:
            raise ValidationError({"evaluation_protocol": str(exc)}) from None
        if not isinstance(self.evaluation_protocol, dict):
            raise ValidationError({"evaluation_protocol": "expected a JSON object"})

    @property
    def protocol(self):
        """The curriculum's EvaluationProtocol (curriculum.evaluation_protocol)."""
        from .evaluation_protocol import EvaluationProtocol

        return EvaluationProtocol.from_dict(self.evaluation_protocol)


class Concept(models.Model):
    """A thing to practise; ``position`` is its action index in every policy of the curriculum."""

    curriculum = models.ForeignKey(Curriculum, on_delete=models.CASCADE, related_name="concepts")
    key = models.CharField(max_length=MAX_ID_LENGTH)
    name = models.CharField(max_length=300, blank=True)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["curriculum", "position"]
        constraints = [
            models.UniqueConstraint(fields=["curriculum", "key"], name="concept_key_unique_per_curriculum"),
            models.UniqueConstraint(fields=["curriculum", "position"], name="concept_position_unique_per_curriculum"),
        ]
        # The admin's review search finds a concept by its key whatever the case (curriculum.admin.ReviewLogAdmin).
        indexes = [models.Index(Upper("key"), name="concept_key_upper")]

    def __str__(self) -> str:
        return f"{self.curriculum.key}:{self.key}" if self.curriculum_id else self.key

    def clean(self) -> None:
        """The key in Unicode NFC (``normalise_id``), as every review and request names it, before the form's
        uniqueness check: a key typed in the admin with a decomposed é is the concept the API's composed one is."""
        super().clean()
        self.key = normalise_id(self.key or "")

    def save(self, *args, **kwargs) -> None:
        self.key = normalise_id(self.key or "")
        super().save(*args, **kwargs)


class Learner(models.Model):
    """A learner, identified by the client system's id string."""

    external_id = models.CharField("learner id", max_length=MAX_ID_LENGTH, unique=True)
    created_at = models.DateTimeField("first seen", auto_now_add=True)

    class Meta:
        ordering = ["external_id"]
        # The admin's searches find a learner by id whatever the case (curriculum.admin.ReviewLogAdmin).
        indexes = [models.Index(Upper("external_id"), name="learner_external_id_upper")]

    def __str__(self) -> str:
        return self.external_id

    def save(self, *args, **kwargs) -> None:
        """Stored in Unicode NFC (``normalise_id``), the form every route compares learner ids in."""
        self.external_id = normalise_id(self.external_id or "")
        super().save(*args, **kwargs)


class ReviewLog(models.Model):
    """One interaction: a learner reviewed a concept at a time, with an outcome."""

    class Source(models.TextChoices):
        SYNTHETIC = "synthetic"
        IMPORTED = "imported"
        LIVE = "live"

    # No single-column indexes on learner and curriculum: the composite indexes below lead with them
    # (each extra index costs every insert of a bulk load).
    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="reviews", db_index=False)
    # Denormalised from concept so that "all of a curriculum in (learner, time) order" is one index scan.
    curriculum = models.ForeignKey(Curriculum, on_delete=models.CASCADE, related_name="reviews", db_index=False)
    concept = models.ForeignKey(Concept, on_delete=models.CASCADE, related_name="reviews")
    reviewed_at = models.DateTimeField("reviewed")
    correct = models.BooleanField()
    grade = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 (again) to 4 (easy).")
    response_time_ms = models.PositiveIntegerField("response time (ms)", null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LIVE)
    batch = models.CharField(max_length=100, blank=True, default="", help_text="Job or import that wrote it.")
    idempotency_key = models.CharField("idempotency key", max_length=MAX_ID_LENGTH, null=True, blank=True,
                                       unique=True)
    # The recommendation this review answers, when the client sends it back (RecommendationLog.id; not a foreign
    # key: the log is written off the request path and may not hold the row yet, or may have dropped it).
    recommendation_id = models.UUIDField("answers recommendation", null=True, blank=True)
    created_at = models.DateTimeField("stored", auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["learner", "reviewed_at"], name="review_learner_time"),
            models.Index(fields=["curriculum", "learner", "reviewed_at", "id"], name="review_curr_learner_time"),
            models.Index(fields=["batch"], name="review_batch"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(grade__isnull=True) | Q(grade__gte=1, grade__lte=4), name="review_grade_1_to_4"
            ),
            # A review's identity on every route: (learner, concept, time, outcome); every route keeps times to
            # the millisecond (curriculum.reviews.validation), so equal-to-the-millisecond is equal here.
            models.UniqueConstraint(
                F("learner"), F("concept"), F("reviewed_at"), F("correct"), Coalesce(F("grade"), Value(0)),
                name="review_natural_identity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.learner_id} {self.concept_id} @ {self.reviewed_at:%Y-%m-%d %H:%M}"


class LearnerState(models.Model):
    """Per-(learner, curriculum) serving state, updated as reviews are recorded: O(1) reads per request."""

    learner = models.ForeignKey(Learner, on_delete=models.CASCADE, related_name="states")
    curriculum = models.ForeignKey(Curriculum, on_delete=models.CASCADE, related_name="learner_states")
    data = models.JSONField(default=dict)
    # The history's encoded states (float32 [k, state_dim], row-major, native order), kept out of ``data`` (where
    # they were base64, about 0.8 of its size) so that serving reads them as bytes: StateSpec.stored / load. NULL:
    # inside ``data`` (a row written before this column) or no state.
    history_states = models.BinaryField("history states", null=True, blank=True, editable=False)
    review_count = models.PositiveIntegerField("reviews", default=0)
    newest_review_at = models.DateTimeField("newest review", null=True, blank=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["learner", "curriculum"], name="learner_state_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.learner_id}/{self.curriculum_id}"


class PolicyModel(models.Model):
    """One trained policy version: its artifacts, config and training-time metrics never change; ``status``,
    ``promoted_at``, ``description`` and ``evaluations`` (re-evaluations under other protocols) do."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    curriculum = models.ForeignKey(Curriculum, on_delete=models.PROTECT, related_name="policies")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    # {"dt_model.pt": {"path": <storage name>, "sha256": ..., "size": ...}, "dt_lite_weights.npz": ..., ...}
    artifacts = models.JSONField(default=dict)
    config = models.JSONField(default=dict, help_text="The DTLite config (dt_lite_config.json).")
    # The hash of config's encoder and context length (curriculum.state_specs.policy_identity), filled at
    # registration: serving finds a version's state spec, and a stored state's fitness, by it. "": no encoder.
    encoder_identity = models.CharField("encoder identity", max_length=64, blank=True, default="", editable=False)
    metrics = models.JSONField(default=dict, blank=True, help_text="Evaluation against the baselines.")
    notes = models.TextField(blank=True)
    description = models.TextField(blank=True, help_text="What this version is, for operators (editable).")
    # Re-evaluations under evaluation protocols other than the one in ``metrics``: {protocol key: metrics}
    # (curriculum.selectors.evaluation_under reads both).
    evaluations = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField("created", auto_now_add=True)
    promoted_at = models.DateTimeField("last promoted", null=True, blank=True)

    class Meta:
        ordering = ["curriculum", "-version"]
        get_latest_by = "version"
        constraints = [
            models.UniqueConstraint(fields=["curriculum", "version"], name="policy_version_unique"),
            models.UniqueConstraint(
                fields=["curriculum"], condition=Q(status="active"), name="one_active_policy_per_curriculum"
            ),
        ]
        permissions = [("promote_policymodel", "Can promote and roll back policy versions")]

    def __str__(self) -> str:
        return f"{self.curriculum.key} v{self.version} ({self.status})"

    @property
    def dt_mean_final_recall(self) -> float | None:
        try:
            return float(self.metrics["results"]["dt"]["mean"])
        except (KeyError, TypeError, ValueError):
            return None


class PromotionEvent(models.Model):
    """Audit trail: every promotion and rollback, who did it and why."""

    class Kind(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback"

    curriculum = models.ForeignKey(Curriculum, on_delete=models.PROTECT, related_name="promotion_events")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PROMOTE)
    from_version = models.PositiveIntegerField("from version", null=True, blank=True)
    to_version = models.PositiveIntegerField("to version")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_name = models.CharField("actor's username", max_length=150, blank=True,
                                  help_text="Kept when the user is deleted.")
    reason = models.TextField(blank=True)
    forced = models.BooleanField(default=False)
    # The experiment whose winner this promotion is ("promote the winner"), if any.
    experiment = models.ForeignKey("Experiment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["curriculum", "-at"], name="promotion_curriculum_at")]

    def __str__(self) -> str:
        return f"{self.curriculum.key}: v{self.from_version} -> v{self.to_version} ({self.kind})"


class ApiToken(TokenProxy):
    """An API client's token (Django REST framework's authtoken ``Token``, the same table) as the admin shows it:
    under Curriculum > API tokens, its key masked (curriculum/token_admin.py). As DRF's TokenProxy, its ``pk`` is
    the user's id, so that no URL or form of the admin carries the key."""

    class Meta:
        proxy = True
        verbose_name = "API token"
        verbose_name_plural = "API tokens"

    def __str__(self) -> str:
        return f"{self.user}'s token"  # Token's own __str__ is the key: titles, breadcrumbs and history show this


class RecommendationLog(models.Model):
    """One served recommendation: who, which version (None: the fallback), what was chosen among how many
    candidates, and the probability with which the serving distribution chose it (the propensity). Written off the
    request path by curriculum.experiments.recommendation_log; read by experiments' outcomes and off-policy
    estimates. ``served`` is False for a shadow arm's choice (logged, never shown to the learner)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, help_text="The recommendation_id.")
    curriculum = models.ForeignKey(Curriculum, on_delete=models.CASCADE, related_name="recommendations",
                                   db_index=False)
    # The learner's external id (a learner never seen is not stored on a read, so no foreign key).
    learner = models.CharField(max_length=MAX_ID_LENGTH)
    policy = models.ForeignKey("PolicyModel", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
                               help_text="The version that chose; empty: the fallback rule.")
    concept = models.CharField(max_length=MAX_ID_LENGTH, help_text="The chosen concept's key.")
    candidates = models.PositiveIntegerField(help_text="How many concepts it chose among.")
    propensity = models.FloatField(help_text="The serving distribution's probability of the chosen concept, (0, 1].")
    exploration = models.CharField(max_length=16, default="argmax")
    arm = models.ForeignKey("ExperimentArm", on_delete=models.CASCADE, null=True, blank=True,
                            related_name="recommendations")
    served = models.BooleanField(default=True, help_text="False: a shadow arm's choice, logged but not served.")
    at = models.DateTimeField(help_text="The moment of the decision (the request's `at`, else the server clock).")
    # What off-policy estimates need to score a version on the same choice (curriculum.experiments.logged_estimates):
    # ``candidates`` counts the decider's own set, which may be this one narrowed to the concepts it scores.
    offered = models.TextField(null=True, blank=True, help_text=(
        "The concepts the request offered (its `candidates`) as positions in the curriculum's concept order, "
        "comma-separated; empty: every concept; null: not recorded (logged before this column)."))

    class Meta:
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["curriculum", "learner", "at"], name="reclog_curr_learner_at"),
            models.Index(fields=["arm", "at"], name="reclog_arm_at"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(propensity__gt=0) & Q(propensity__lte=1), name="reclog_propensity_0_1"),
        ]

    def __str__(self) -> str:
        return f"{self.learner} -> {self.concept} ({self.at:%Y-%m-%d %H:%M})"


class Experiment(models.Model):
    """A comparison of policy versions on a curriculum's real learners: a control arm (the active version when
    started, or the fallback) against up to MAX_CANDIDATES candidates. ``split``: each learner is assigned to one arm
    for good (a hash of the experiment and the learner) and that arm serves; ``shadow``: the control serves every
    learner while the learner's candidate arm chooses and logs only. At most one running experiment per curriculum
    (a database constraint)."""

    MAX_CANDIDATES = 7

    class Mode(models.TextChoices):
        SPLIT = "split", "traffic split"
        SHADOW = "shadow", "shadow (the control serves)"

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        STOPPED = "stopped"

    curriculum = models.ForeignKey(Curriculum, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=200)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SPLIT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    horizon_s = models.PositiveIntegerField("horizon (seconds)",
        default=86400, help_text="Outcome 'estimated recall at a horizon': seconds after each learner's last review.")
    min_effect = models.FloatField("minimum effect",
        default=0.01, validators=[MinValueValidator(1e-4), MaxValueValidator(1.0)],
        help_text="The difference in recall the sample size is computed to confirm.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", verbose_name="created by")
    created_at = models.DateTimeField("created", auto_now_add=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    stopped_at = models.DateTimeField("stopped", null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["curriculum"], condition=Q(status="running"),
                                    name="one_running_experiment_per_curriculum"),
        ]
        permissions = [("run_experiment", "Can start, stop and promote the winner of experiments")]

    def __str__(self) -> str:
        return f"{self.curriculum.key}: {self.name} ({self.status})" if self.curriculum_id else self.name


class ExperimentArm(models.Model):
    """One arm of an experiment: a policy version (None: the fallback rule) and its share of the traffic in percent
    (split: of the learners served; shadow: of the learners whose candidate choice is logged; the control's share
    is then 100, it serves everyone)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    label = models.CharField(max_length=8, help_text="A for the control, then B, C...")
    policy = models.ForeignKey(PolicyModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    is_control = models.BooleanField(default=False)
    traffic_percent = models.PositiveSmallIntegerField(validators=[MaxValueValidator(100)])

    class Meta:
        ordering = ["experiment", "label"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "label"], name="experiment_arm_label_unique"),
            models.CheckConstraint(condition=Q(traffic_percent__lte=100), name="experiment_arm_traffic_0_100"),
        ]

    def __str__(self) -> str:
        version = f"v{self.policy.version}" if self.policy_id else "fallback"
        return f"{self.label} ({version})"
