"""TrainingSpec: the parameters of a training run (the `train_crl_policy` flags, the admin's training-run form,
the TrainingRun model's fields), each declared once here with its default, help text, bounds, label in words (the
forms' and pages' "learners to simulate", not "Num users") and the data sources that read it.

Everything else is derived: `add_arguments` (argparse flags), `model_field` (TrainingRun's columns and their
validators), `form_field_options` (the admin form's min/max), `validate` (the pipeline's check), `ignored_by` (what
a launch drops for a data source), `concept_count` (the one rule for ``concepts`` against a curriculum). The
evaluation's parameters (``eval_students``, and ``interactions``, which is also the reviews per evaluation student
of a curriculum's first protocol) take the evaluation's defaults and bounds (training/rl/evaluation.py), the seed
the project's seed range (training/rl/seeds.py); the others are declared here.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .rl.cpu_threads import AUTO, check_processes
from .rl.evaluation import EVALUATION_BOUNDS, EVALUATION_INTERACTIONS, EVALUATION_STUDENTS
from .rl.seeds import SEED_MAX, SEED_MIN
from .rl.students import BUILTIN, parse_families

DEFAULT_CONCEPTS = 20  # a synthetic curriculum's concept count when neither the flag nor a curriculum says

# Where a run's trajectories come from (TrainingRun.DataSource's values).
SYNTHETIC, REVIEW_LOG, DATASET = "synthetic", "review_log", "dataset"
DATA_SOURCES = (SYNTHETIC, REVIEW_LOG, DATASET)


def _param(default: Any, help: str, low: int | None = None, high: int | None = None, *,
           sources: tuple[str, ...] = DATA_SOURCES, label: str) -> Any:
    return field(default=default, metadata={"help": help, "low": low, "high": high, "sources": sources,
                                            "label": label})


@dataclass(frozen=True)
class TrainingSpec:
    """What a training run is made with. ``concepts`` None: the curriculum's count (else DEFAULT_CONCEPTS)."""

    num_users: int = _param(500, "learners simulated for the training data (synthetic data source only)", 1, 1_000_000,
                            sources=(SYNTHETIC,), label="learners to simulate")
    interactions: int = _param(
        EVALUATION_INTERACTIONS, "reviews per simulated training learner (synthetic data source); also the reviews "
        "per evaluation student, but only when the curriculum has no evaluation protocol yet (the first run sets it)",
        *EVALUATION_BOUNDS["interactions"], label="reviews per learner")
    concepts: int | None = _param(None, f"concepts of a synthetic curriculum (default: the curriculum's, else "
                                  f"{DEFAULT_CONCEPTS})",
                                  2, 5_000, label="concepts")
    epochs: int = _param(10, "passes over the trajectory dataset", 1, 1_000, label="epochs")
    batch_size: int = _param(64, "trajectory windows per optimiser step", 1, 8_192, label="batch size")
    seed: int = _param(42, "seed of the synthetic cohort and of training", SEED_MIN, SEED_MAX, label="seed")
    no_cuda: bool = _param(False, "train on the CPU even when CUDA is available", label="CPU only")
    families: str = _param(
        BUILTIN, "student families the synthetic training learners are drawn from, comma-separated (builtin, fsrs6, "
        "actr, hlr, fitted: see training/rl/students/); several mix them, one family per learner (domain "
        "randomisation). builtin alone keeps the older students: the built-in ones, or with --students-like those "
        "like the curriculum's own; fitted needs --students-like", sources=(SYNTHETIC,),
        label="student families")
    eval_students: int = _param(
        EVALUATION_STUDENTS, "held-out simulated students of the evaluation against the baselines, but only when the "
        "curriculum has no evaluation protocol yet (the first run sets it; later runs use the protocol's)",
        *EVALUATION_BOUNDS["students"], label="evaluation students")

    # ------------------------------------------------------------------------------------ the declaration
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The parameters, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def bounds(cls, name: str) -> tuple[int | None, int | None]:
        """(low, high), inclusive; None where unbounded. KeyError for a name that is not a parameter."""
        meta = cls._field(name).metadata
        return meta["low"], meta["high"]

    @classmethod
    def default(cls, name: str) -> Any:
        return cls._field(name).default

    @classmethod
    def help_text(cls, name: str) -> str:
        return cls._field(name).metadata["help"]

    @classmethod
    def label(cls, name: str) -> str:
        """The parameter in words, for forms and pages ("learners to simulate", not "num_users"); lower case, as
        Django's verbose_name (forms capitalise it)."""
        return cls._field(name).metadata["label"]

    @classmethod
    def sources(cls, name: str) -> tuple[str, ...]:
        """The data sources whose runs read the parameter (the others ignore it)."""
        return cls._field(name).metadata["sources"]

    @classmethod
    def ignored_by(cls, source: str) -> tuple[str, ...]:
        """The parameters a run on ``source`` does not read (``num_users`` but for synthetic data); ValueError naming
        ``source`` for an unknown data source."""
        if source not in DATA_SOURCES:
            raise ValueError(f"data_source: expected one of {', '.join(DATA_SOURCES)}, got {source!r}")
        return tuple(name for name in cls.names() if source not in cls.sources(name))

    @classmethod
    def _field(cls, name: str):
        for f in fields(cls):
            if f.name == name:
                return f
        raise KeyError(f"TrainingSpec has no parameter {name!r}")

    # ---------------------------------------------------------------------------------------- checking
    @classmethod
    def check(cls, name: str, value: Any) -> None:
        """Raise ValueError "--NAME: expected LOW to HIGH, got VALUE" when ``value`` is out of bounds (for
        ``families``: "--families: unknown student family ...")."""
        if isinstance(value, str):
            parse_families(value, field=f"--{name}")
            return
        if value is None or isinstance(value, bool):
            return
        problem = _outside(cls.bounds(name), value)
        if problem:
            raise ValueError(f"--{name}: {problem}")

    def validate(self) -> None:
        """Raise ValueError naming the first parameter out of bounds and what it accepts."""
        for name in self.names():
            self.check(name, getattr(self, name))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def concept_count(self, *, curriculum: str | None, have: int) -> int:
        """The number of concepts (actions) the run's policy has: the curriculum's ``have`` concepts, which
        ``concepts`` must then be None or equal (a policy for a curriculum uses exactly its concepts); with none
        (no curriculum, or one without concepts yet), ``concepts`` or DEFAULT_CONCEPTS.

        The one rule for ``concepts``: the pipeline, a launched training run and the TrainingRun model apply it.
        Raises ValueError "curriculum KEY has N concepts: ..., so set concepts to N (or leave it out)".
        """
        if not have:
            return self.concepts or DEFAULT_CONCEPTS
        if self.concepts is not None and self.concepts != have:
            raise ValueError(f"curriculum {curriculum!r} has {have} concepts: a policy for it uses exactly those, so "
                             f"set concepts to {have} (or leave it out)")
        return have

    # ---------------------------------------------------------------------------------- derived: argparse
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--name`` flag per parameter (``--no_cuda`` a switch); out-of-bounds values are a parser error."""
        for name in cls.names():
            default, help_text = cls.default(name), cls.help_text(name)
            if isinstance(default, bool):
                parser.add_argument(f"--{name}", action="store_true", help=help_text)
                continue
            if isinstance(default, str):
                parser.add_argument(f"--{name}", type=_families_argument, default=default,
                                    help=f"{help_text} (default {default})")
                continue
            add_integer_flag(parser, name, default=default, bounds=cls.bounds(name), help=help_text)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainingSpec:
        """The spec from parsed command options (other keys ignored)."""
        return cls(**{name: options[name] for name in cls.names() if name in options})

    # ----------------------------------------------------------------------------- derived: model and form
    @classmethod
    def validators(cls, name: str) -> list:
        """Django validators for a parameter's bounds (none where unbounded), for any column that holds it."""
        from django.core.validators import MaxValueValidator, MinValueValidator

        low, high = cls.bounds(name)
        return [*([MinValueValidator(low)] if low is not None else []),
                *([MaxValueValidator(high)] if high is not None else [])]

    @classmethod
    def model_field(cls, name: str):
        """The TrainingRun column for a parameter: its default, help text and bounds as validators."""
        from django.db import models

        default, help_text, label = cls.default(name), cls.help_text(name), cls.label(name)
        help_text = help_text[0].upper() + help_text[1:] + "."
        if isinstance(default, bool):
            return models.BooleanField(label, default=default, help_text=help_text)
        if isinstance(default, str):
            # blank: a form or client that leaves it out gets the default (parse_families reads "" as builtin)
            return models.CharField(label, max_length=100, default=default, blank=True,
                                    validators=[_families_validator], help_text=help_text)
        low = cls.bounds(name)[0]
        validators = cls.validators(name)
        # seed (low 0) keeps the signed column it had before it had bounds: rows of runs that failed with a
        # negative seed still migrate (a positive column adds a CHECK that they would fail)
        kind = models.PositiveIntegerField if low is not None and low >= 1 else models.IntegerField
        if default is None:
            return kind(label, null=True, blank=True, validators=validators, help_text=help_text)
        return kind(label, default=default, validators=validators, help_text=help_text)

    @classmethod
    def form_field_options(cls, name: str) -> dict[str, Any]:
        """min_value/max_value for the admin form's field (the browser refuses what the model would)."""
        low, high = cls.bounds(name)
        return {k: v for k, v in (("min_value", low), ("max_value", high)) if v is not None}


def add_integer_flag(parser: argparse.ArgumentParser, name: str, *, default: int | None,
                     bounds: tuple[int | None, int | None], help: str) -> None:
    """``--name`` taking an integer within ``bounds`` (low, high; inclusive, None unbounded): any other value is a
    parser error "argument --name: expected LOW to HIGH, got VALUE"; the help ends with the bounds and default."""
    low, high = bounds
    shown = "; ".join([*([f"{low:,} to {high:,}"] if low is not None and high is not None else []),
                       *([f"default {default}"] if default is not None else [])])
    parser.add_argument(f"--{name}", type=_bounded_integer(name, low, high), default=default,
                        help=help + (f" ({shown})" if shown else ""))


def add_processes_flag(parser: argparse.ArgumentParser, *flags: str, help: str) -> None:
    """A flag (``flags``: its spellings, the first naming it) taking "auto" (the default: one worker process per
    available core, ``training.rl.cpu_threads.AUTO``) or a positive integer; any other value is a parser error
    "argument FLAG: expected a positive integer or 'auto', got VALUE"."""
    parser.add_argument(*flags, type=_processes, default=AUTO, metavar="N|auto",
                        help=help + " (a positive integer, or auto: one per core; default auto)")


def _processes(text: str) -> int | str:
    """argparse type of a processes flag: "auto" or a positive integer."""
    value: int | str = AUTO if text.strip().lower() == AUTO else text
    if value != AUTO:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive integer or {AUTO!r}, got {text!r}") from None
    try:
        check_processes(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return value


def _families_argument(text: str) -> str:
    """argparse type of ``--families``: the names normalised ("builtin,actr"); an unknown one is a parser error."""
    try:
        return ",".join(parse_families(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def _families_validator(value: str) -> None:
    """Django validator of a ``families`` column: ValidationError naming an unknown family."""
    from django.core.exceptions import ValidationError

    try:
        parse_families(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _bounded_integer(name: str, low: int | None, high: int | None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        problem = _outside((low, high), value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _outside(bounds: tuple[int | None, int | None], value: int) -> str:
    """"expected LOW to HIGH, got VALUE" when ``value`` is outside ``bounds``, else ""."""
    low, high = bounds
    if (low is not None and value < low) or (high is not None and value > high):
        return f"expected {low} to {high}, got {value}"
    return ""
