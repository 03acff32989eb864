"""Admin for the curriculum domain: usable with millions of reviews; policy versions are read-only."""
from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import smart_split, unescape_string_literal

from training.rl.evaluation import family_policies

from . import charts, selectors, services, token_admin  # noqa: F401 - token_admin: Curriculum > API tokens
from .admin_text import count_noun, format_when, permission_denied, protocol_columns  # noqa: F401 - permission_denied: for the other admins
from .admin_views import CalibrationView, ExportReviewsView, ImportReviewsView, recent_import_jobs
from .evaluation_protocol import encoder_fitted_to, students_like
from .learner_history import learner_curricula, recall_history
from .models import (
    Concept, Curriculum, Experiment, ExperimentArm, Learner, LearnerState, PolicyModel, PromotionEvent,
    RecommendationLog, ReviewLog,
)
from .reviews.validation import normalise_id


def _shown(keys, limit: int = 50) -> str:
    """Up to ``limit`` concept keys, then how many more."""
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


class LargeTablePaginator(Paginator):
    """Never COUNT(*) a huge table: the planner's estimate when unfiltered, a capped count otherwise."""

    cap = 100_000

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        query = getattr(qs, "query", None)
        if query is not None and not query.where and connections[qs.db].vendor == "postgresql":
            with connections[qs.db].cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [qs.model._meta.db_table])
                row = cursor.fetchone()
            if row and row[0] and row[0] > self.cap:
                return int(row[0])
        try:
            return qs.values("pk")[: self.cap].count()
        except (AttributeError, TypeError):
            return len(qs)


def search_terms(search_term: str) -> list[str]:
    """The words of an admin search as Django's ModelAdmin splits them (``smart_split``: a quoted phrase is one
    term, its quotes removed), each in Unicode NFC (``normalise_id``), the form every learner id and concept key is
    stored in: "José" typed with a decomposed é (e + U+0301, as macOS may send it) finds the learner stored composed."""
    terms = []
    for bit in smart_split(normalise_id(search_term or "")):
        if bit[:1] in {'"', "'"} and bit[-1:] == bit[0] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        terms.append(bit)
    return terms


class NfcSearchMixin:
    """A ModelAdmin whose search terms are compared in Unicode NFC (``normalise_id``), as the stored ids are."""

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(request, queryset, normalise_id(search_term or ""))


class ConceptInline(admin.TabularInline):
    """Concepts edited on the curriculum's page, for small curricula only (see CurriculumAdmin.get_inlines)."""

    max_rows = 200
    model = Concept
    fields = ("position", "key", "name")
    extra = 0
    ordering = ("position",)
    show_change_link = True


@admin.register(Curriculum)
class CurriculumAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "concept_count", "active_version", "created_at")
    search_fields = ("key", "name")
    readonly_fields = ("concept_list", "policy_coverage")

    def get_inlines(self, request, obj):
        # An inline of thousands of rows is a page nobody can load or save (and exceeds
        # DATA_UPLOAD_MAX_NUMBER_FIELDS): large curricula link to the concept list instead.
        if obj is not None and obj.concepts.count() > ConceptInline.max_rows:
            return []
        return [ConceptInline]

    @admin.display(description="concepts")
    def concept_count(self, obj: Curriculum) -> int:
        return obj.concepts.count()

    @admin.display(description="concept list")
    def concept_list(self, obj: Curriculum):
        if obj.pk is None:
            return "-"
        url = reverse("admin:curriculum_concept_changelist") + f"?curriculum__id__exact={obj.pk}"
        return format_html('<a href="{}">{} concepts</a>', url, obj.concepts.count())

    @admin.display(description="active version's coverage")
    def policy_coverage(self, obj: Curriculum):
        """Which concepts the active version cannot score (recommendations never offer them)."""
        if obj.pk is None:
            return "-"
        active = selectors.active_policy(curriculum=obj)
        if active is None:
            return "No active version: the fallback heuristic scores every concept."
        coverage = selectors.policy_coverage(curriculum=obj, policy=active)
        if coverage.from_features:
            return (f"v{active.version} scores every concept: trained on {coverage.trained}, "
                    f"{len(coverage.from_features)} scored from their features, not trained on "
                    f"({_shown(coverage.from_features)}).")
        missing = coverage.uncovered
        if not missing:
            return f"v{active.version} covers every concept."
        return format_html(
            '<strong class="errornote" id="uncovered-concepts">v{} does not cover {} of {} concepts: {}</strong><br>'
            "Recommendations never offer them (the API lists them as <code>unscored</code>) until a version trained "
            'on them is promoted (<a href="{}">orchestrator</a>).',
            active.version, len(missing), coverage.concept_count, _shown(missing),
            reverse("curriculum:orchestrator") + f"#curriculum-{obj.key}",
        )

    @admin.display(description="active version")
    def active_version(self, obj: Curriculum):
        active = selectors.active_policy(curriculum=obj)
        return f"v{active.version}" if active else "-"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The curriculum's recent review imports, with live progress (templates/admin/curriculum/_import_jobs.html).
        if request.user.has_perm("training.view_reviewimportjob"):
            curriculum = self.get_object(request, object_id)
            if curriculum is not None:
                extra_context = {**(extra_context or {}), "import_jobs": recent_import_jobs(curriculum=curriculum)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        # Review-log pages, linked from the change page (templates/admin/curriculum/curriculum/change_form.html).
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<path:object_id>/import-reviews/", self.admin_site.admin_view(ImportReviewsView.as_view(model_admin=self)),
                 name=f"{name}_import_reviews"),
            path("<path:object_id>/export-reviews.csv", self.admin_site.admin_view(ExportReviewsView.as_view(model_admin=self)),
                 name=f"{name}_export_reviews"),
            path("<path:object_id>/calibration/", self.admin_site.admin_view(CalibrationView.as_view(model_admin=self)),
                 name=f"{name}_calibration"),
        ] + super().get_urls()


@admin.register(Concept)
class ConceptAdmin(NfcSearchMixin, admin.ModelAdmin):
    list_display = ("key", "name", "curriculum", "position")
    list_filter = ("curriculum",)
    search_fields = ("key", "name")
    list_select_related = ("curriculum",)
    autocomplete_fields = ("curriculum",)


@admin.register(Learner)
class LearnerAdmin(NfcSearchMixin, admin.ModelAdmin):
    """A learner's page shows, per curriculum, the review timeline and each concept's estimated recall."""

    list_display = ("external_id", "created")
    search_fields = ("=external_id",)
    paginator = LargeTablePaginator
    show_full_result_count = False
    fields = ("external_id", "created", "history")
    # external_id is the learner's identity in the API (reviews and recommendations name it): never edited here
    readonly_fields = ("external_id", "created", "history")
    # a real deck has hundreds of concepts: the charts show the most recently reviewed and say how many are hidden
    SHOWN_CONCEPTS = 12

    def has_add_permission(self, request) -> bool:
        return False  # learners come with their reviews (the API, imports, generation): external_id is read-only

    def has_change_permission(self, request, obj=None) -> bool:
        # Nothing on a learner's page is editable: the admin then renders it view-only, without Save buttons.
        return False

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Learner) -> str:
        return format_when(obj.created_at)

    @admin.display(description="reviews and estimated recall")
    def history(self, obj: Learner):
        if obj.pk is None:
            return "-"
        # The counts are the database's (RecallHistory.review_count, concept_count), not the shown window's.
        parts = [format_html(
            "<h3>{}</h3>{}{}{}{}{}", curriculum.key,
            format_html('<p class="review-counts">{} of {}.</p>', count_noun(h.review_count, "review"),
                        count_noun(h.concept_count, "concept")),
            format_html('<p class="concepts-hidden">The {} most recently reviewed concepts are shown; {} other '
                        "reviewed concepts are hidden.</p>", self.SHOWN_CONCEPTS, f"{h.hidden:,}") if h.hidden else "",
            format_html("<p>The {} newest reviews are shown ({} older ones left out).</p>",
                        f"{h.review_count - h.truncated:,}", f"{h.truncated:,}") if h.truncated else "",
            charts.review_timeline(history=h), charts.estimated_recall(history=h),
        ) for curriculum in learner_curricula(learner=obj)
            for h in [self._recent_concepts(recall_history(learner=obj, curriculum=curriculum))]]
        if not parts:
            return "no reviews yet"
        return format_html('<div class="crl-charts">{}</div>', format_html_join("", "{}", ((p,) for p in parts)))

    @classmethod
    def _recent_concepts(cls, h):
        """``h`` limited to its SHOWN_CONCEPTS most recently reviewed concepts (reviews and recall alike), with
        ``hidden``: how many reviewed concepts are left out."""
        from dataclasses import replace

        last: dict[str, float] = {}
        for t, key, _, _ in h.reviews:
            last[key] = max(t, last.get(key, t))
        keep = set(sorted(last, key=last.get, reverse=True)[: cls.SHOWN_CONCEPTS])
        hidden = h.concept_count - len(keep)  # counted by the database: older reviews may name more concepts
        columns = [k for k, key in enumerate(h.concepts) if key in keep]
        limited = replace(h, reviews=[r for r in h.reviews if r[1] in keep],
                          concepts=[h.concepts[k] for k in columns], recall=h.recall[:, columns])
        object.__setattr__(limited, "hidden", hidden)
        return limited


@admin.register(LearnerState)
class LearnerStateAdmin(NfcSearchMixin, admin.ModelAdmin):
    list_display = ("learner", "curriculum", "review_count", "newest_review_at", "updated_at")
    list_filter = ("curriculum",)
    search_fields = ("=learner__external_id",)
    raw_id_fields = ("learner",)
    list_select_related = ("learner", "curriculum")
    readonly_fields = ("learner", "curriculum", "data", "review_count", "newest_review_at", "updated_at")
    paginator = LargeTablePaginator
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ReviewLog)
class ReviewLogAdmin(admin.ModelAdmin):
    """The first page operators open on a table of millions of reviews: a constant number of queries whatever the
    rows (one join for learner, curriculum and concept; the concept shown by its key, not Concept.__str__, which
    reads the concept's curriculum per row), no COUNT(*) of the table (LargeTablePaginator, no full result count),
    and the time filtered by bounded ranges (today, past 7 days, this month, this year: Django's
    DateFieldListFilter, whose choices need no query) instead of a date hierarchy, whose year list is a
    SELECT DISTINCT over every row. A search looks its term up in the small tables first (get_search_results), so
    every query of the review table reads an index. Timings: bench/review_admin.py."""

    list_display = ("reviewed_at", "learner", "curriculum", "concept_key", "correct", "grade", "source", "batch")
    list_filter = (("reviewed_at", admin.DateFieldListFilter), "source", "correct", "curriculum")
    # Exact-match searches hit indexes; a LIKE over millions of rows would not.
    search_fields = ("=learner__external_id", "=concept__key", "=batch", "=idempotency_key")
    raw_id_fields = ("learner", "concept", "curriculum")
    list_select_related = ("learner", "curriculum", "concept")
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="concept")
    def concept_key(self, obj: ReviewLog) -> str:
        return obj.concept.key

    def get_search_results(self, request, queryset, search_term):
        """Reviews matching every term (``search_terms``: NFC, quotes for a phrase) by one of ``search_fields``.

        Django's own search ORs ``UPPER(column) = UPPER(term)`` over the joined learner and concept tables, which
        no index serves: PostgreSQL read the table backwards by id, joining every row (5.6 s for one learner at 10M
        reviews). Here a term is first looked up where that is cheap: the learners whose id and the concepts whose
        key equal it, ignoring case as before (indexes on ``UPPER``, curriculum/migrations/0011; small tables);
        the reviews are then ``learner_id IN (...) OR concept_id IN (...) OR batch = term OR idempotency_key =
        term``, each served by an index of the review table (a bitmap OR, no sequential scan). Batch names and
        idempotency keys are matched exactly, case included: their indexes are on the column, and an idempotency
        key is the client's exact string. Returns (queryset, False): no join, so no duplicate rows."""
        for term in search_terms(search_term):
            learners = list(Learner.objects.filter(external_id__iexact=term).order_by().values_list("pk", flat=True))
            concepts = list(Concept.objects.filter(key__iexact=term).order_by().values_list("pk", flat=True))
            match = Q(batch=term) | Q(idempotency_key=term)
            if learners:
                match |= Q(learner_id__in=learners)
            if concepts:
                match |= Q(concept_id__in=concepts)
            queryset = queryset.filter(match)
        return queryset, False


@admin.register(PolicyModel)
class PolicyModelAdmin(admin.ModelAdmin):
    """Versions are immutable: nothing is editable here; promotion goes through the promotion service."""

    # The columns operators compare (within 1,400 px): where it came from, its evaluation under the curriculum's
    # protocol, what it is, and when (with seconds).
    list_display = ("__str__", "status", "source", "dt_recall", "lift_random", "short_description", "when")
    list_filter = ("status", "curriculum")
    search_fields = ("curriculum__key",)
    list_select_related = ("curriculum", "training_run")
    actions = ["promote_selected"]
    # The pictures first, the raw config last (folded).
    fields = ("curriculum", "version", "status", "created", "promoted", "evaluation", "loss_chart", "artifact_links",
              "notes", "config_pretty")
    readonly_fields = fields

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: PolicyModel) -> str:
        return format_when(obj.created_at)

    @admin.display(description="promoted", ordering="promoted_at")
    def promoted(self, obj: PolicyModel) -> str:
        return format_when(obj.promoted_at)

    @admin.display(description="evaluation")
    def evaluation(self, obj: PolicyModel):
        """The evaluation chart above its table (the training run's page shows the same)."""
        if not (obj.metrics or {}).get("results"):
            return "not evaluated"
        return format_html('<div class="crl-charts">{}</div>{}{}{}', charts.evaluation_chart(metrics=obj.metrics),
                           self.metrics_table(obj), self.families_table(obj), self.students_like_table(obj))

    def students_like_table(self, obj: PolicyModel) -> str:
        """The evaluation on students like the curriculum's own (``evaluation_protocol.students_like``): under the
        curriculum's protocol when the version has it, else its training-time evaluation's, said as such."""
        fitted_to = encoder_fitted_to(obj)  # for evaluations that do not say what their students were fitted to
        under = students_like(self._protocol_metrics(obj), fitted_to=fitted_to)
        return render_to_string("admin/curriculum/_students_like.html", {
            "like": under or students_like(obj.metrics, fitted_to=fitted_to), "under_protocol": under is not None,
            "dom_id": f"students-like-{obj.curriculum.key}-{obj.version}",
        })

    @staticmethod
    def families_table(obj: PolicyModel):
        """The evaluation per student family (``metrics["families"]``; "" for a version evaluated without)."""
        families = (obj.metrics or {}).get("families") or {}
        if not families:
            return ""
        shown = []
        for name, block in families.items():
            paired = block.get("paired") or {}
            rows = [{**r, "name": policy, "paired": paired.get(policy)}
                    for policy, r in sorted(family_policies(block).items(), key=lambda kv: -kv[1]["mean"])]
            shown.append({"name": name, "rows": rows, "best_behaviour": block.get("best_behaviour"),
                          "gap_closed": block.get("gap_closed")})
        return render_to_string("admin/curriculum/family_evaluation.html", {"families": shown})

    @admin.display(description="training loss")
    def loss_chart(self, obj: PolicyModel):
        run = getattr(obj, "training_run", None)
        steps = getattr(run, "loss_steps", None) or []
        config = obj.config or {}
        # a command-line version has no training run: dt_lite_config.json's extra holds its per-epoch losses
        extra = config.get("extra") if isinstance(config.get("extra"), dict) else {}
        history = getattr(run, "loss_history", None) or config.get("loss_history") or extra.get("loss_history") or []
        if not steps and not history:
            return "-"
        return charts.loss_curve(loss_steps=steps, loss_history=history)

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training runs, never typed in

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the audit trail refers to versions

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_promote_permission(self, request) -> bool:
        return request.user.has_perm("curriculum.promote_policymodel")

    @admin.display(description="DT mean")
    def dt_recall(self, obj: PolicyModel):
        return protocol_columns(self._protocol_metrics(obj))[0]

    @admin.display(description="lift over random")
    def lift_random(self, obj: PolicyModel) -> str:
        return protocol_columns(self._protocol_metrics(obj))[1]

    @staticmethod
    def _protocol_metrics(obj: PolicyModel):
        """The version's evaluation under its curriculum's protocol (None when it has none yet)."""
        return selectors.evaluation_under(policy=obj, protocol=obj.curriculum.protocol)

    @admin.display(description="data / run")
    def source(self, obj: PolicyModel):
        run = getattr(obj, "training_run", None)
        if run is None:
            return "-"
        return format_html('<a href="{}">run #{}</a> {}', reverse("admin:training_trainingrun_change", args=[run.pk]),
                           run.pk, run.data_source.replace("_", " "))

    @admin.display(description="created / promoted", ordering="created_at")
    def when(self, obj: PolicyModel):
        return format_html("{}<br>{}", format_when(obj.created_at), format_when(obj.promoted_at))

    @admin.display(description="description")
    def short_description(self, obj: PolicyModel) -> str:
        text = obj.description or ""
        return text if len(text) <= 40 else text[:39] + "\u2026"

    @admin.display(description="artifacts")
    def artifact_links(self, obj: PolicyModel):
        rows = [
            (reverse("curriculum:policy-artifact", args=[obj.pk, name]), name, entry.get("sha256", ""), entry.get("size", 0))
            for name, entry in sorted(obj.artifacts.items())
        ]
        return format_html(
            "<ul>{}</ul>", format_html_join("", '<li><a href="{}">{}</a> <code>sha256 {}</code> ({} bytes)</li>', rows)
        )

    @admin.display(description="evaluation")
    def metrics_table(self, obj: PolicyModel):
        results = (obj.metrics or {}).get("results") or {}
        if not results:
            return "not evaluated"
        rows = [
            (name, f"{r.get('mean', float('nan')):.4f}", f"[{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]" if r.get("ci95") else "")
            for name, r in results.items()
        ]
        return format_html(
            "<table><tr><th>policy</th><th>{}</th><th>95% CI</th></tr>{}</table>",
            obj.metrics.get("metric", "metric"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="config")
    def config_pretty(self, obj: PolicyModel):
        return format_html("<details><summary>dt_lite_config.json</summary><pre>{}</pre></details>",
                           json.dumps(obj.config, indent=2, sort_keys=True)[:20000])

    @admin.action(description="Promote the selected version to active", permissions=["promote"])
    def promote_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.ERROR)
            return
        policy = queryset.get()
        try:
            services.promote_policy(policy=policy, actor=request.user, reason="promoted from the admin list")
        except services.PolicyError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"{policy.curriculum.key} v{policy.version} is now active.", messages.SUCCESS)


@admin.register(PromotionEvent)
class PromotionEventAdmin(admin.ModelAdmin):
    """The audit trail of promotions and rollbacks: read-only; each moment to the second with its zone, the reason
    wrapped and readable however long (an experiment's write-up is read from here)."""

    list_display = ("when_listed", "curriculum", "kind", "change", "by", "forced", "reason_text")
    list_filter = ("kind", "forced", "curriculum")
    search_fields = ("curriculum__key", "actor_name", "reason")
    date_hierarchy = "at"
    fields = ("curriculum", "kind", "from_version", "to_version", "actor", "actor_name", "reason_text", "forced", "when")
    readonly_fields = fields

    @admin.display(description="when", ordering="at")
    def when(self, obj: PromotionEvent) -> str:
        return format_when(obj.at)

    @admin.display(description="when", ordering="at")
    def when_listed(self, obj: PromotionEvent):
        return format_html('<span style="white-space: nowrap">{}</span>', format_when(obj.at))  # one line

    @admin.display(description="versions")
    def change(self, obj: PromotionEvent) -> str:
        return f"{f'v{obj.from_version}' if obj.from_version else 'none'} \u2192 v{obj.to_version}"

    @admin.display(description="by", ordering="actor_name")
    def by(self, obj: PromotionEvent) -> str:
        return obj.actor_name or "-"

    @admin.display(description="reason")
    def reason_text(self, obj: PromotionEvent):
        # A long reason wraps, an unbroken one too, within the width left: it never pushes the table off the page.
        return format_html('<div class="crl-reason" style="white-space: pre-wrap; overflow-wrap: anywhere; '
                           'max-width: 40em">{}</div>', obj.reason or "-")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system only (the log, experiments changed from the orchestrator): viewable, never edited
    here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RecommendationLog)
class RecommendationLogAdmin(NfcSearchMixin, ReadOnlyAdmin):
    """Served recommendations with their propensities (curriculum.experiments.recommendation_log writes them)."""

    list_display = ("at", "curriculum", "learner", "concept", "version", "propensity", "candidates", "exploration",
                    "arm", "served")
    list_filter = ("served", "exploration", "curriculum")
    search_fields = ("=learner", "=id")
    date_hierarchy = "at"
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_select_related = ("curriculum", "policy", "arm")

    @admin.display(description="version")
    def version(self, obj: RecommendationLog) -> str:
        return f"v{obj.policy.version}" if obj.policy_id else "fallback"


class ExperimentArmInline(admin.TabularInline):
    model = ExperimentArm
    fields = ("label", "policy", "is_control", "traffic_percent")
    readonly_fields = fields
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    """Experiments between policy versions; created, started, stopped and decided on the orchestrator's experiment
    pages (permission run_experiment), which this page links to."""

    list_display = ("name", "curriculum", "mode", "status", "started_at", "stopped_at", "page")
    list_filter = ("status", "mode", "curriculum")
    search_fields = ("name", "curriculum__key")
    fields = ("curriculum", "name", "mode", "status", "horizon_s", "min_effect", "created_by", "created_at",
              "started_at", "stopped_at", "page")
    readonly_fields = fields
    inlines = [ExperimentArmInline]

    @admin.display(description="orchestrator")
    def page(self, obj: Experiment):
        return format_html('<a href="{}">results, start, stop, promote the winner</a>',
                           reverse("curriculum:experiment", args=[obj.pk]))
