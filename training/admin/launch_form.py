"""The training run's launch form: the fields of the chosen data source (which data sources read each parameter is
declared on TrainingSpec and given by training.jobs.parameter_sources), and the sentence about a curriculum's fixed
evaluation protocol."""
from __future__ import annotations

from typing import Any

from django import forms

from curriculum.evaluation_protocol import EvaluationProtocol

from .. import jobs
from ..models import ATTENTION_WINDOW_MESSAGE, TrainingRun
from ..rl.model_config import DEFAULT_ATTENTION_WINDOW
from ..rl.students import parse_families


def protocol_note(protocol: EvaluationProtocol) -> str:
    """The sentence the add form and a run's page show about a curriculum's fixed protocol."""
    return (f"The curriculum's evaluation protocol decides the evaluation: {protocol.students} students, "
            f"{protocol.interactions} reviews each (seed {protocol.seed}); the run's \"Evaluation students\" and "
            f"the evaluation's share of \"Reviews per learner\" are not used.")


class TrainingRunLaunchForm(forms.ModelForm):
    """The add form: the fields of the chosen data source; ``concepts`` is the curriculum's
    (training.jobs.launch_training_run resolves it); ``attention_window`` the model's local attention (any source);
    ``policy_gradient_rounds`` the fine-tuning after the offline training (shown for any source, so that the run
    refuses rounds on a review log or a dataset with a field error rather than dropping them unseen).

    The page hides the fields the chosen data source does not read, but their inputs are still sent: they are no
    part of the run (``clean`` leaves them out, so that the run is validated as it will be launched), and ``unused``
    holds those that said something else than the run keeps, for the admin to say so when it launches the run.
    """

    class Meta:
        model = TrainingRun
        fields = [name for name in jobs.PARAMETERS[TrainingRun] if name != "concepts"]
        # the labels are the model's verbose names: TrainingSpec.label, declared once with each parameter
        help_texts = {
            "curriculum": "Its concepts are the actions: the run takes the concept count from the curriculum.",
            "interactions": "Reviews per simulated learner (synthetic data source). Also the reviews per evaluation "
                            "student, but only while the curriculum has no evaluation protocol (the first run "
                            "sets it).",
            "eval_students": "Held-out simulated students of the evaluation, only while the curriculum has no "
                             "evaluation protocol (the first run sets it; later runs use the protocol's).",
        }

    # Optional: empty is the default model's widest exact window, 0 full attention (the model's help text). The bounds
    # are in the page (min/max) and refused with the model's message, which names what the field takes.
    attention_window = TrainingRun._meta.get_field("attention_window").formfield(
        max_value=DEFAULT_ATTENTION_WINDOW,
        error_messages={"min_value": ATTENTION_WINDOW_MESSAGE, "max_value": ATTENTION_WINDOW_MESSAGE})
    # Optional: empty, or a form posted without it (a script's), is 0, off (the model's default; clean_ below).
    policy_gradient_rounds = TrainingRun._meta.get_field("policy_gradient_rounds").formfield(required=False)

    unused: dict[str, Any] = {}

    def clean_families(self) -> str:
        """The student families normalised ("builtin,actr"); left empty, the default (builtin). A form error naming
        an unknown family."""
        try:
            return ",".join(parse_families(self.cleaned_data.get("families") or None))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_policy_gradient_rounds(self) -> int:
        """The rounds of policy-gradient fine-tuning; left empty, 0 (off). Whether the data source allows them is
        TrainingRun.clean's rule (a field error on this field)."""
        rounds = self.cleaned_data.get("policy_gradient_rounds")
        return 0 if rounds is None else rounds

    def clean(self):
        data = super().clean()
        source = data.get("data_source") or ""
        self.unused = jobs.unused_parameters(data_source=source, parameters=data)
        for name in jobs.ignored_parameters(data_source=source):
            data.pop(name, None)  # the run keeps its default: launch_training_run drops it as well
        return data

    def launch_parameters(self) -> dict[str, Any]:
        """The cleaned parameters for training.jobs.launch_training_run, but the curriculum (its own argument)."""
        return {name: self.cleaned_data[name] for name in jobs.PARAMETERS[TrainingRun]
                if name in self.cleaned_data and name != "curriculum"}

    def unused_message(self) -> str:
        """What the admin says about ``unused`` ("" when nothing the operator entered was left out)."""
        if not self.unused:
            return ""
        source = TrainingRun.DataSource(self.cleaned_data["data_source"]).label
        shown = ", ".join(f"{self.fields[name].label} {value}" for name, value in self.unused.items())
        return f"Not used by a run on the {source}, so not part of it: {shown}."
