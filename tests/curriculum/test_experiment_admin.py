"""The admin shows the recommendation log and experiments read-only."""
from django.urls import reverse

from curriculum.experiments.services import create_experiment
from curriculum.models import RecommendationLog


def test_the_log_and_experiments_are_listed_and_never_editable(admin_client, make_curriculum, make_policy):
    from django.utils import timezone

    demo = make_curriculum("demo", concepts=2)
    experiment = create_experiment(curriculum=demo, name="x", candidates=[make_policy(demo)])
    RecommendationLog.objects.create(curriculum=demo, learner="u1", concept="c0", candidates=2, propensity=0.5,
                                     at=timezone.now())

    listing = admin_client.get(reverse("admin:curriculum_recommendationlog_changelist")).content.decode()
    assert "u1" in listing and "fallback" in listing
    assert admin_client.get(reverse("admin:curriculum_recommendationlog_add")).status_code == 403
    page = admin_client.get(reverse("admin:curriculum_experiment_change", args=[experiment.pk])).content.decode()
    assert reverse("curriculum:experiment", args=[experiment.pk]) in page and 'name="name"' not in page
    assert admin_client.get(reverse("admin:curriculum_experiment_add")).status_code == 403


def test_the_exploration_settings_are_on_the_curriculum_form(admin_client, make_curriculum):
    demo = make_curriculum("demo", concepts=2)
    page = admin_client.get(reverse("admin:curriculum_curriculum_change", args=[demo.pk])).content.decode()
    assert 'name="exploration"' in page and 'name="exploration_temperature"' in page and 'name="exploration_epsilon"' in page


def test_the_fallback_rule_is_chosen_on_the_curriculum_form_and_shown_on_its_experiments_page(admin_client,
                                                                                            make_curriculum):
    demo = make_curriculum("demo", concepts=2)
    page = admin_client.get(reverse("admin:curriculum_curriculum_change", args=[demo.pk])).content.decode()
    assert 'name="fallback_rule"' in page and 'value="round_robin"' in page
    type(demo).objects.filter(pk=demo.pk).update(fallback_rule="round_robin")
    page = admin_client.get(reverse("curriculum:experiments", args=[demo.pk])).content.decode()
    assert "Fallback rule (the control when no version is active): <strong>round robin</strong>" in page
