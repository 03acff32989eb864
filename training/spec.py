"""TrainingSpec: the parameters of a training run (the `train_crl_policy` flags, the admin's training-run form,
the TrainingRun model's fields), each declared once here with its default, help text and bounds.

Everything else is derived: `add_arguments` (argparse flags), `model_field` (TrainingRun's columns and their
validators), `form_field_options` (the admin form's min/max), `validate` (the pipeline's check). The bounds are
the ones the pipeline has always enforced (the command's runs were made with them); the admin's narrower ones
(interactions <= 10,000, concepts <= 1,000, evaluation students >= 10) were the odd ones out.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_CONCEPTS = 20  # a synthetic curriculum's concept count when neither the flag nor a curriculum says


# Seeds: NumPy refuses negative ones and PyTorch ones past 64 bits; 0 to 2**31 - 1 also fits every database's
# integer column, so the flag, the admin form and the stored run accept the same values.
SEED_MAX = 2**31 - 1


def _param(default: Any, help: str, low: int | None = None, high: int | None = None) -> Any:
    return field(default=default, metadata={"help": help, "low": low, "high": high})


@dataclass(frozen=True)
class TrainingSpec:
    """What a training run is made with. ``concepts`` None: the curriculum's count (else DEFAULT_CONCEPTS)."""

    num_users: int = _param(500, "learners simulated for the training data (synthetic data source only)", 1, 1_000_000)
    interactions: int = _param(
        100, "reviews per simulated training learner (synthetic data source); also the reviews per evaluation "
        "student, but only when the curriculum has no evaluation protocol yet (the first run sets it)", 2, 100_000)
    concepts: int | None = _param(None, "concepts of a synthetic curriculum (default: the curriculum's, else 20)",
                                  2, 5_000)
    epochs: int = _param(10, "passes over the trajectory dataset", 1, 1_000)
    batch_size: int = _param(64, "trajectory windows per optimiser step", 1, 8_192)
    seed: int = _param(42, "seed of the synthetic cohort and of training", 0, SEED_MAX)
    no_cuda: bool = _param(False, "train on the CPU even when CUDA is available")
    eval_students: int = _param(
        200, "held-out simulated students of the evaluation against the baselines, but only when the curriculum "
        "has no evaluation protocol yet (the first run sets it; later runs use the protocol's)", 2, 100_000)

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
    def _field(cls, name: str):
        for f in fields(cls):
            if f.name == name:
                return f
        raise KeyError(f"TrainingSpec has no parameter {name!r}")

    # ---------------------------------------------------------------------------------------- checking
    @classmethod
    def check(cls, name: str, value: Any) -> None:
        """Raise ValueError "--NAME: expected LOW to HIGH, got VALUE" when ``value`` is out of bounds."""
        low, high = cls.bounds(name)
        if value is None or isinstance(value, bool) or (low is None and high is None):
            return
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"--{name}: expected {low} to {high}, got {value}")

    def validate(self) -> None:
        """Raise ValueError naming the first parameter out of bounds and what it accepts."""
        for name in self.names():
            self.check(name, getattr(self, name))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ---------------------------------------------------------------------------------- derived: argparse
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One ``--name`` flag per parameter (``--no_cuda`` a switch); out-of-bounds values are a parser error."""
        for name in cls.names():
            default, help_text = cls.default(name), cls.help_text(name)
            if isinstance(default, bool):
                parser.add_argument(f"--{name}", action="store_true", help=help_text)
                continue
            low, high = cls.bounds(name)
            shown = "; ".join(
                [*([f"{low:,} to {high:,}"] if low is not None and high is not None else []),
                 *([f"default {default}"] if default is not None else [])])
            shown = f" ({shown})" if shown else ""
            parser.add_argument(f"--{name}", type=cls._argparse_type(name), default=default, help=help_text + shown)

    @classmethod
    def _argparse_type(cls, name: str):
        def parse(text: str) -> int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            try:
                cls.check(name, value)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--{name}: ")) from None
            return value

        parse.__name__ = name  # argparse names the type in some messages
        return parse

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

        default, help_text = cls.default(name), cls.help_text(name)
        help_text = help_text[0].upper() + help_text[1:] + "."
        if isinstance(default, bool):
            return models.BooleanField(default=default, help_text=help_text)
        low = cls.bounds(name)[0]
        validators = cls.validators(name)
        # seed (low 0) keeps the signed column it had before it had bounds: rows of runs that failed with a
        # negative seed still migrate (a positive column adds a CHECK that they would fail)
        kind = models.PositiveIntegerField if low is not None and low >= 1 else models.IntegerField
        if default is None:
            return kind(null=True, blank=True, validators=validators, help_text=help_text)
        return kind(default=default, validators=validators, help_text=help_text)

    @classmethod
    def form_field_options(cls, name: str) -> dict[str, Any]:
        """min_value/max_value for the admin form's field (the browser refuses what the model would)."""
        low, high = cls.bounds(name)
        return {k: v for k, v in (("min_value", low), ("max_value", high)) if v is not None}
