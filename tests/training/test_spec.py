"""TrainingSpec declares the training parameters once: the command's flags, the admin form and the TrainingRun
model accept and refuse exactly the same values, at every bound the spec gives."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.management import CommandError
from django.test import RequestFactory

from training.management.commands.train_crl_policy import Command
from training.models import TrainingRun
from training.spec import TrainingSpec

BOUNDED = [name for name in TrainingSpec.names() if TrainingSpec.bounds(name) != (None, None)]
# Each bounded parameter at and just past both of its bounds: (name, value, accepted).
CASES = [
    case
    for name in BOUNDED
    for low, high in [TrainingSpec.bounds(name)]
    for case in [(name, low - 1, False), (name, low, True), (name, high, True), (name, high + 1, False)]
]


def test_the_bounds_are_the_pipelines_and_every_number_is_bounded():
    assert BOUNDED == ["num_users", "interactions", "concepts", "epochs", "batch_size", "seed", "eval_students"]
    assert TrainingSpec.bounds("seed") == (0, 2**31 - 1)  # NumPy refuses negative seeds; every database's int
    assert TrainingSpec.bounds("interactions") == (1, 100_000)  # the evaluation's: it is also a protocol's reviews
    assert TrainingSpec.bounds("concepts") == (2, 5_000)
    assert TrainingSpec.bounds("eval_students") == (2, 100_000)


def command_accepts(name: str, value: int) -> bool:
    parser = Command().create_parser("manage.py", "train_crl_policy")
    try:
        options = vars(parser.parse_args([f"--{name}", str(value)]))
    except CommandError as exc:
        assert f"--{name}" in str(exc)  # the message names the flag
        return False
    assert options[name] == value
    return True


def model_accepts(name: str, value: int) -> bool:
    run = TrainingRun(**{name: value})
    try:
        run.clean_fields(exclude=[f.name for f in TrainingRun._meta.fields if f.name != name])
    except ValidationError as exc:
        assert set(exc.message_dict) == {name}
        return False
    return True


@pytest.fixture
def add_form(admin_user):
    request = RequestFactory().get("/")
    request.user = admin_user
    return admin.site._registry[TrainingRun].get_form(request)()


def form_accepts(form, name: str, value: int) -> bool:
    field = form.fields[name]
    try:
        field.clean(str(value))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("name", "value", "accepted"), CASES)
def test_command_form_and_model_agree_at_each_bound(add_form, name, value, accepted):
    assert command_accepts(name, value) is accepted
    if name != "concepts":  # the admin's launch form takes the concept count from the curriculum
        assert form_accepts(add_form, name, value) is accepted
    assert model_accepts(name, value) is accepted


@pytest.mark.django_db
def test_the_admin_form_shows_the_spec_bounds_and_defaults(add_form):
    for name in BOUNDED:
        if name == "concepts":
            continue
        low, high = TrainingSpec.bounds(name)
        attrs = add_form.fields[name].widget.attrs
        assert (attrs["min"], attrs["max"]) == (low, high), name
    assert add_form.fields["epochs"].initial == TrainingSpec.default("epochs") == 10
    assert "concepts" not in add_form.fields  # the curriculum's own concept count


def test_the_command_defaults_are_the_spec_defaults():
    options = vars(Command().create_parser("manage.py", "train_crl_policy").parse_args([]))
    assert TrainingSpec.from_options(options) == TrainingSpec()
    assert (options["num_users"], options["interactions"], options["epochs"], options["batch_size"],
            options["seed"], options["no_cuda"], options["concepts"]) == (500, 100, 10, 64, 42, False, None)


def test_validate_names_the_parameter_out_of_bounds():
    with pytest.raises(ValueError, match=r"--batch_size: expected 1 to 8192, got 0"):
        TrainingSpec(batch_size=0).validate()
    with pytest.raises(ValueError, match=r"--seed: expected 0 to 2147483647, got -5"):
        TrainingSpec(seed=-5).validate()
    TrainingSpec(concepts=None).validate()  # concepts None: the curriculum's


def test_the_help_shows_each_flags_bounds_and_default():
    text = Command().create_parser("manage.py", "train_crl_policy").format_help()
    assert "1 to 1,000,000; default 500" in " ".join(text.split())
    assert "0 to 2,147,483,647; default 42" in " ".join(text.split())


def test_only_synthetic_data_reads_the_number_of_learners_to_simulate_and_their_families():
    assert TrainingSpec.ignored_by("synthetic") == ()
    assert TrainingSpec.ignored_by("review_log") == TrainingSpec.ignored_by("dataset") == ("num_users", "families")
    with pytest.raises(ValueError, match="data_source: expected one of synthetic, review_log, dataset, got 'csv'"):
        TrainingSpec.ignored_by("csv")


def test_the_concept_count_is_the_curriculums_and_a_different_one_is_refused_naming_it():
    assert TrainingSpec().concept_count(curriculum="algebra", have=5) == 5
    assert TrainingSpec(concepts=5).concept_count(curriculum="algebra", have=5) == 5
    assert TrainingSpec(concepts=7).concept_count(curriculum=None, have=0) == 7  # a new synthetic curriculum's
    assert TrainingSpec().concept_count(curriculum=None, have=0) == 20
    with pytest.raises(ValueError, match=r"curriculum 'algebra' has 5 concepts: .* set concepts to 5"):
        TrainingSpec(concepts=7).concept_count(curriculum="algebra", have=5)


def test_the_student_families_default_to_builtin_and_an_unknown_one_is_named():
    assert TrainingSpec().families == "builtin"
    TrainingSpec(families="builtin,actr,hlr,fsrs6").validate()
    with pytest.raises(ValueError, match="--families: unknown student family 'ebbinghaus'"):
        TrainingSpec(families="builtin,ebbinghaus").validate()
    parser = Command().create_parser("manage.py", "train_crl_policy")
    assert parser.parse_args(["--families", "actr, hlr"]).families == "actr,hlr"
    with pytest.raises(CommandError, match="unknown student family 'x'"):
        parser.parse_args(["--families", "x"])


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["trainingrun", "syntheticgenerationjob"])
def test_launch_forms_and_job_pages_label_parameters_in_words_not_field_names(admin_client, make_curriculum, model):
    import re

    from django.urls import reverse

    from training.models import SyntheticGenerationJob

    curriculum = make_curriculum("algebra", concepts=5)
    job = (TrainingRun if model == "trainingrun" else SyntheticGenerationJob).objects.create(curriculum=curriculum)
    field_names = {"num_users", "no_cuda", "eval_students", "policy_mix", "interactions"}
    for url in (reverse(f"admin:training_{model}_add"), reverse(f"admin:training_{model}_change", args=[job.pk])):
        page = admin_client.get(url).content.decode()
        labels = {" ".join(re.sub(r"<[^>]+>", "", label).split()).rstrip(":")
                  for label in re.findall(r"<label[^>]*>(.*?)</label>", page, flags=re.S)}
        assert {"Learners to simulate", "Reviews per learner"} <= labels, (url, labels)
        assert not {label for label in labels if label.lower().replace(" ", "_") in field_names}, (url, labels)
        if model == "trainingrun":  # a run's page shows its evaluation protocol instead of its evaluation students
            assert {"CPU only", "Student families"} <= labels, (url, labels)
            assert "Evaluation students" in labels or url.endswith("/change/"), (url, labels)
        else:
            assert "Behaviour-policy mix" in labels, (url, labels)


def test_every_parameter_has_a_label_in_words():
    assert TrainingSpec.label("num_users") == "learners to simulate" and TrainingSpec.label("no_cuda") == "CPU only"
    for name in TrainingSpec.names():
        assert TrainingSpec.label(name) and "_" not in TrainingSpec.label(name)
        assert TrainingRun._meta.get_field(name).verbose_name == TrainingSpec.label(name)
