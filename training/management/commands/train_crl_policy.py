"""`manage.py train_crl_policy`: train a Decision Transformer policy and export DTLite artifacts.

On synthetic students by default (the original script's flags and defaults, declared in training/spec.py), on a
curriculum's ReviewLog with --from-db, or on one of its extracted datasets with --dataset VERSION; --register
creates the next PolicyModel version, --promote activates it. The work is training.services.train_and_register's,
as for the admin's training runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from curriculum import services as curriculum_services
from curriculum.evaluation_protocol import students_like_label
from curriculum.models import Curriculum
from curriculum.reviews.fields import curriculum_key_argument
from curriculum.storage import StorageFull
from training import hardware, pipeline, services
from training.management.commands.evaluate_policy import format_results
from training.rl.evaluation import format_report
from training.models import TrainingRun
from training.pipeline import TRAIN_DEFAULTS
from training.rl.policy_gradient import PolicyGradientConfig
from training.rl.trainer import LR_SCHEDULES
from training.spec import TrainingSpec, add_processes_flag


class Command(BaseCommand):
    help = "Train a Decision Transformer curriculum policy and export dt_model.pt + DTLite artifacts."

    def add_arguments(self, parser):
        parser.add_argument("--output_dir", default="./models", help="where the artifacts are written (default ./models)")
        TrainingSpec.add_arguments(parser)  # --num_users ... --eval_students: defaults, help and bounds declared there
        parser.add_argument("--curriculum", type=curriculum_key_argument,
                            help="curriculum key: its concepts are the actions (created if missing)")
        data = parser.add_mutually_exclusive_group()
        data.add_argument("--from-db", "--from_db", dest="from_db", action="store_true",
                          help="train on the curriculum's ReviewLog instead of synthetic students")
        data.add_argument("--dataset", metavar="VERSION",
                          help="train on the curriculum's extracted dataset VERSION (3, v3 or latest; "
                               "see Trajectory extraction jobs in the admin)")
        parser.add_argument("--students-like", "--students_like", dest="students_like", metavar="CURRICULUM",
                            type=curriculum_key_argument,
                            help="synthetic students (and a second evaluation population) whose memory follows FSRS-6 "
                                 "fitted to this curriculum's ReviewLog, with per-learner spread")
        parser.add_argument("--attention-window", "--attention_window", dest="attention_window", type=int,
                            metavar="W",
                            help="local attention: each token attends to the last W tokens only, at most "
                                 "(3 x context_length - 2) // num_layers + 1 (the error says the bound), so DTLite "
                                 "can serve a learner step by step from cached keys and values; default: the "
                                 "widest exact window (30 at the default size); 0: full attention")
        parser.add_argument("--policy-gradient-rounds", "--policy_gradient_rounds", dest="policy_gradient_rounds",
                            type=int, default=None, metavar="N",
                            help="after the offline training, N rounds of policy-gradient fine-tuning (REINFORCE "
                                 "with a leave-one-out baseline, 256 students x 4 samples a round, whatever "
                                 "--num_users) in the training students' families, keeping the weights that teach a "
                                 "separate set of training students best: the policy learns from its own results "
                                 "instead of imitating its teachers (docs/learning.md). A round takes about 7 s on 2 "
                                 "CPU cores at 100 --interactions (more with more reviews or concepts), so the default "
                                 "adds about 6 minutes. Default: "
                                 f"{PolicyGradientConfig.rounds} rounds (chosen on validation seeds) for synthetic "
                                 "data without --students-like, off with --from-db, --dataset or --students-like "
                                 "(where N > 0 is refused); 0: off")
        recipe = parser.add_argument_group("the training recipe (default: the one chosen on validation seeds, "
                                           "pipeline.TRAIN_DEFAULTS)")
        recipe.add_argument("--lr-schedule", "--lr_schedule", dest="lr_schedule", choices=LR_SCHEDULES,
                            help=f"the learning rate after the warm-up (default {TRAIN_DEFAULTS.lr_schedule})")
        recipe.add_argument("--coverage", type=_coverage, metavar="X",
                            help=f"how many times an epoch samples each dataset step, on average: an epoch is X x "
                                 f"steps / context_length windows (default {TRAIN_DEFAULTS.coverage:g})")
        arithmetic = recipe.add_mutually_exclusive_group()
        arithmetic.add_argument("--cpu-bfloat16", "--cpu_bfloat16", dest="cpu_bfloat16", action="store_const",
                                const=True, default=None,
                                help="on the CPU, train under bfloat16 autocast (weights and optimiser in float32), "
                                     "even where the CPU has no bfloat16 matrix units (then slower); default: where "
                                     "it has them (Intel AMX, AVX512-BF16), float32 elsewhere; CUDA always uses it")
        arithmetic.add_argument("--cpu-float32", "--cpu_float32", dest="cpu_bfloat16", action="store_const",
                                const=False, help="on the CPU, train in float32 even where bfloat16 would be faster")
        parser.add_argument("--register", action="store_true", help="register the result as the next candidate version")
        parser.add_argument("--promote", action="store_true", help="promote the registered version (implies --register)")
        parser.add_argument("--force", action="store_true", help="with --promote: promote even if it evaluates worse")
        parser.add_argument("--reason", default="", help="why (recorded in the promotion history)")
        parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
        add_processes_flag(parser, "--eval-processes", "--eval_processes", help="worker processes of the "
                           "closed-loop evaluation and of the policy-gradient stage's rollouts, one thread each "
                           "(the results are the same for any number)")

    def handle(self, *args, **options):
        spec = TrainingSpec.from_options(options)
        if options["dataset"] and not options["curriculum"]:
            raise CommandError("--dataset needs --curriculum KEY (whose extracted dataset to train on)")
        if options["force"] and not options["reason"]:
            raise CommandError("--force needs --reason (it is recorded in the promotion history)")
        source, dataset = TrainingRun.DataSource.SYNTHETIC, None
        if options["from_db"]:
            source = TrainingRun.DataSource.REVIEW_LOG
        elif options["dataset"]:
            source = TrainingRun.DataSource.DATASET
            try:
                dataset = pipeline.find_dataset(curriculum_key=options["curriculum"], version=options["dataset"])
            except pipeline.PipelineError as exc:
                raise CommandError(str(exc)) from exc

        window = {} if options.get("attention_window") is None else {"attention_window": options["attention_window"]}
        changed = {name: options[name] for name in ("lr_schedule", "coverage", "cpu_bfloat16") if options.get(name) is not None}
        recipe = replace(TRAIN_DEFAULTS, **changed) if changed else None
        window.update(changed)  # recorded in the version's notes with the spec
        if options.get("policy_gradient_rounds") is not None:
            window["policy_gradient_rounds"] = options["policy_gradient_rounds"]
        progress = _ProgressBars(enabled=options["progress"], stream=self.stderr._out if hasattr(self.stderr, "_out") else sys.stderr)
        # whether the curriculum's protocol was fixed before this run (else the run's own, sized from the deck, and
        # registering fixes it): the summary says which
        existing = Curriculum.objects.filter(key=options["curriculum"]).first() if options["curriculum"] else None
        fixed_before = (existing is not None
                        and curriculum_services.fixed_evaluation_protocol(curriculum=existing) is not None)
        started = time.monotonic()
        try:
            made = services.train_and_register(
                spec=spec, output_dir=Path(options["output_dir"]), source=source, curriculum=options["curriculum"],
                dataset=dataset, students_like=options.get("students_like"), register=options["register"],
                promote=options["promote"], force=options["force"],
                reason=options["reason"] or "train_crl_policy --promote",
                notes=f"train_crl_policy {json.dumps({**spec.as_dict(), 'source': str(source), **window})}",
                progress=progress, eval_processes=options["eval_processes"],
                attention_window=options.get("attention_window"), train_config=recipe,
                policy_gradient_rounds=options.get("policy_gradient_rounds"),
            )
        except (pipeline.PipelineError, StorageFull) as exc:
            raise CommandError(str(exc)) from exc
        except services.NotPromoted as exc:
            # what was trained, evaluated and registered is still worth reading beside the refusal
            progress.close()
            self._summary(exc.outcome.result, exc.outcome.policy, time.monotonic() - started, spec=spec,
                          fixed_before=fixed_before)
            raise CommandError(str(exc)) from exc
        finally:
            progress.close()
        self._summary(made.result, made.policy, time.monotonic() - started, spec=spec, fixed_before=fixed_before)

    def _summary(self, result, registered, seconds: float, *, spec: TrainingSpec, fixed_before: bool) -> None:
        out = self.stdout
        out.write("")
        out.write(f"Artifacts in {result.output_dir}:")
        for name, sha in sorted(result.files.items()):
            out.write(f"  {name:<22} sha256 {sha}")
        out.write(f"Trained on: {hardware.describe(result.hardware) or result.device}")
        out.write(f"Final loss: {result.final_loss:.4f}   "
                  f"target return: {result.config.get('target_return', float('nan')):.4f}   "
                  f"dataset: {result.dataset_stats.get('episodes')} episodes, {result.dataset_stats.get('steps')} steps")
        out.write(f"Evaluation: {result.metrics.get('metric')} on {result.metrics.get('students')} held-out students "
                  f"(seed {result.metrics.get('seed')}; written to {result.output_dir / pipeline.EVALUATION_FILE})")
        out.write(format_results(result.metrics))
        protocol = result.metrics.get("protocol") or {}
        if result.curriculum is not None:
            for line in _protocol_lines(protocol, spec=spec, key=result.curriculum.key, fixed_before=fixed_before,
                                        registered=registered, concepts=result.config.get("action_dim")):
                out.write(self.style.WARNING(line))
        for warning in (result.metrics.get("training_data") or {}).get("warnings") or []:
            out.write(self.style.WARNING(f"Warning: {warning}."))
        if "students_like" in result.metrics:
            heading, detail = students_like_label(result.metrics.get("students_like_fitted_to"))
            out.write(f"{heading} ({detail}):")
            out.write(format_results(result.metrics, key="students_like"))
        if result.metrics.get("families"):
            out.write("Per student family (paired dt - policy on the same students):")
            out.write(format_report(result.metrics))
        if registered is not None:
            out.write(self.style.SUCCESS(f"Registered {registered.curriculum.key} v{registered.version} ({registered.status})"))
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items() if k != "total")
        out.write(f"Done in {seconds:.0f} s ({stages}).")


def _protocol_lines(protocol: dict, *, spec: TrainingSpec, key: str, fixed_before: bool, registered,
                    concepts: int | None) -> list[str]:
    """What the summary says about the evaluation protocol of a curriculum's run: where it came from where it differs
    from the run's --eval_students / --interactions (naming only what differs), and that registering the
    curriculum's first version (v1, with no protocol before the run) fixed it. ``fixed_before``: whether the
    curriculum had a protocol when the run started."""
    students, interactions = protocol.get("students"), protocol.get("interactions")
    differs = [f"{value} {what}, not {flag} {asked}" for value, what, flag, asked in (
        (students, "students", "--eval_students", spec.eval_students),
        (interactions, "reviews each", "--interactions", spec.interactions)) if value != asked]
    lines = []
    if differs:
        if fixed_before:
            why = (f"the evaluation protocol of curriculum {key!r}: every version of a curriculum is evaluated alike "
                   "(an operator changes it on the Policy orchestrator)")
        else:
            why = (f"curriculum {key!r} has no protocol yet, so its first is sized from its deck of {concepts} concepts "
                   "to meet every concept (EvaluationProtocol.sized_for, docs/operations.md)")
        lines.append(f"Evaluated with {'; '.join(differs)} (seed {protocol.get('seed')}): {why}.")
    if registered is not None and registered.version == 1 and not fixed_before:
        lines.append(f"Registering {key} v{registered.version} fixed its evaluation protocol: {students} students, "
                     f"{interactions} reviews each, seed {protocol.get('seed')}, for every later version (change it "
                     "on the Policy orchestrator).")
    return lines


def _coverage(text: str) -> float:
    """--coverage: a positive number (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


class _ProgressBars:
    """tqdm bars for the pipeline's stages; the pipeline reports (stage, done, total, info)."""

    def __init__(self, *, enabled: bool, stream) -> None:
        self.enabled, self.stream = enabled, stream
        self.bar: tqdm | None = None
        self.stage: str | None = None

    def __call__(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        if not self.enabled:
            return
        total = total or None  # a stage without counts: a counter, not a bar
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, file=self.stream, dynamic_ncols=True, leave=True)
        assert self.bar is not None
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        if info:
            self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in info.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.stage = None
