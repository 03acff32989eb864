"""A simulated experiment through the API: a Decision Transformer version against round robin (the curriculum's
fallback rule, no version active), the built-in students answering; prints Markdown.

    .venv/bin/python bench/experiment_simulation.py [--learners 2000] [--steps 4] [--concepts 5] [--epsilon 0.8]
        [--gap-s 600] [--seed 1] [--bootstrap 1000] [--control round_robin] [--candidate trained]
        [--train-learners 300] [--train-reviews 40] [--epochs 4] [--train-seed 42] [--eval-students 100]
        [--policy-dir DIR] [--keep-policy DIR]

How: in one process, against a throwaway SQLite database and artifact folder in a temporary directory (unless
DATABASE_URL / MEDIA_ROOT are set), migrated at start. Requests go through Django's test client (the full URL
resolution, token authentication, throttling, serializers and views, no socket), with a real API token; the
recommendation log is written synchronously (``SynchronousRecommendationLogWriter``, as the tests do), so every
served decision is stored before the outcomes are read. Per step, every learner is asked for a recommendation in
batches of 1,000 (``POST /api/v1/recommendations/batch``), the built-in students (``training/rl/students/builtin.py``,
seeded by ``--seed``) review the recommended concepts, and the reviews go back with their ``recommendation_id``
(``POST /api/v1/reviews``); steps are ``--gap-s`` apart.

The arms, 50/50 by the experiment's hash of the learner: A, the control, the curriculum's fallback rule
(``--control``: ``round_robin``, issue #24's baseline, or ``lowest_recall``; ``Curriculum.fallback_rule``); B, the
candidate (``--candidate``): by default a Decision Transformer trained now by the project's pipeline
(``training.services.train_and_register``: ``--train-learners`` built-in students x ``--train-reviews`` reviews,
``--epochs``, the default architecture, CPU; evaluated on ``--eval-students`` held-out students against the
baselines, and registered, not promoted), or ``untrained``, the test fixtures' tiny untrained DT (hidden 16, 2
layers, weights scaled by 20 so that its choices are decisive: a known large difference from lowest_recall, the
earlier figures), or ``--policy-dir``, a folder ``train_crl_policy`` exported over 5 concepts c0...c4. The
curriculum explores epsilon-greedily (``--epsilon``), so that every logged propensity is at least epsilon / concepts
and off-policy estimates are usable.

Reports: the candidate's simulator evaluation against the control's rule; per arm the outcomes
(``experiment_outcomes``: recall at the next review, estimated recall at the horizon, reviews per learner, 95%
intervals), B - A with its 95% interval and whether it excludes 0 (detected at the 95% level); then each version's
off-policy estimates (IPS, SNIPS, per-decision IS, doubly robust with ``logged_estimates``' default direct method,
and doubly robust with the memory model alone) from the OTHER arm's log, against its own arm's observed mean
return per learner (the true on-policy value on these learners, with its 95% interval), with the effective sample
size and ``|z|`` of the difference (estimate - observed over the two standard errors combined).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KEY = "bench-experiment"


def setup(workdir: Path) -> None:
    """Point the database and artifacts at ``workdir`` unless the environment names them, then start Django."""
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}")
    os.environ.setdefault("MEDIA_ROOT", str(workdir / "media"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host name is allowed
    call_command("migrate", verbosity=0)


def make_untrained_candidate(curriculum, *, concepts: int, workdir: Path):
    """A tiny untrained DT registered as a candidate version of ``curriculum`` (``--candidate untrained``)."""
    import torch

    from curriculum.services import register_policy
    from training.rl.checkpoint import export_artifacts
    from training.rl.dt import DecisionTransformer, DTConfig
    from training.rl.encoder import EncoderConfig

    encoder = EncoderConfig(num_concepts=concepts)
    torch.manual_seed(1)
    model = DecisionTransformer(DTConfig(state_dim=encoder.state_dim, action_dim=concepts, hidden_dim=16, num_layers=2,
                                         num_heads=2, max_timestep=64, dropout=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20.0)
    folder = workdir / "candidate"
    export_artifacts(model=model, output_dir=folder, concept_keys=[f"c{i}" for i in range(concepts)],
                     encoder=encoder.to_dict(), target_return=1.0)
    config = json.loads((folder / "dt_lite_config.json").read_text())
    metrics = {"metric": "mean_final_recall", "results": {"dt": {"mean": 0.5, "ci95": [0.49, 0.51]}}}
    return register_policy(curriculum=curriculum, artifact_dir=folder, config=config, metrics=metrics), None


def make_trained_candidate(curriculum, *, args, workdir: Path):
    """A Decision Transformer trained by the project's pipeline (``training.services.train_and_register``: synthetic
    built-in students, the default architecture) on ``--train-learners`` x ``--train-reviews``, ``--epochs``
    passes, evaluated on ``--eval-students`` held-out students, and registered as a candidate (not promoted).
    Returns (the version, seconds spent)."""
    from training.services import train_and_register
    from training.spec import TrainingSpec

    spec = TrainingSpec(num_users=args.train_learners, interactions=args.train_reviews, epochs=args.epochs,
                        seed=args.train_seed, no_cuda=True, eval_students=args.eval_students)
    t0 = time.perf_counter()
    trained = train_and_register(spec=spec, output_dir=workdir / "candidate", curriculum=curriculum, register=True,
                                 eval_processes=1)
    return trained.policy, time.perf_counter() - t0


def register_existing(curriculum, *, folder: Path):
    """An exported policy folder (``--policy-dir``: dt_lite.npz, dt_lite_config.json, evaluation.json as
    train_crl_policy writes them, over the curriculum's concepts c0, c1...) registered as a candidate."""
    from curriculum.services import register_policy

    config = json.loads((folder / "dt_lite_config.json").read_text())
    evaluation = folder / "evaluation.json"
    metrics = json.loads(evaluation.read_text()) if evaluation.exists() else {}
    return register_policy(curriculum=curriculum, artifact_dir=folder, config=config, metrics=metrics), None


def run(args, workdir: Path) -> dict:
    """Set up, serve ``args.steps`` rounds to ``args.learners`` simulated learners, and read the results."""
    from django.test import Client

    from curriculum.experiments.logged_estimates import logged_estimates
    from curriculum.experiments.outcomes import experiment_outcomes
    from curriculum.experiments.recommendation_log import SynchronousRecommendationLogWriter, set_writer
    from curriculum.experiments.services import create_experiment, start_experiment
    from curriculum.management.commands.create_api_token import issue_token
    from curriculum.models import Curriculum, Experiment
    from curriculum.services import ensure_curriculum
    from training.rl.students.builtin import Cohort

    set_writer(SynchronousRecommendationLogWriter())
    curriculum = ensure_curriculum(key=KEY, name="experiment bench", concept_keys=[f"c{i}" for i in range(args.concepts)])
    Curriculum.objects.filter(pk=curriculum.pk).update(exploration="epsilon_greedy", exploration_epsilon=args.epsilon,
                                                       fallback_rule=args.control)
    curriculum.refresh_from_db()
    if args.policy_dir:
        candidate, training_s = register_existing(curriculum, folder=Path(args.policy_dir))
    elif args.candidate == "untrained":
        candidate, training_s = make_untrained_candidate(curriculum, concepts=args.concepts, workdir=workdir)
    else:
        candidate, training_s = make_trained_candidate(curriculum, args=args, workdir=workdir)
        if args.keep_policy:  # for --policy-dir in later runs (other seeds, the same trained DT)
            import shutil

            shutil.copytree(workdir / "candidate", args.keep_policy, dirs_exist_ok=True)
    experiment = start_experiment(experiment=create_experiment(curriculum=curriculum, name=f"DT vs {args.control}",
                                                               candidates=[candidate]))
    cohort = Cohort(num_students=args.learners, num_concepts=args.concepts, interactions=args.steps, seed=args.seed)
    start = float(cohort.schedule().min())
    Experiment.objects.filter(pk=experiment.pk).update(started_at=dt.datetime.fromtimestamp(start - 1, tz=dt.timezone.utc))
    experiment.refresh_from_db()
    token, _, _ = issue_token(username="bench-experiment")
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")

    def post(url: str, body) -> dict:
        response = client.post(url, data=json.dumps(body), content_type="application/json")
        if response.status_code not in (200, 201):
            raise RuntimeError(f"{url}: {response.status_code} {response.content[:300]!r}")
        return response.json()

    learners = [f"s{s}" for s in range(args.learners)]
    served_s = 0.0
    for k in range(args.steps):
        now = start + k * args.gap_s
        at = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).isoformat()
        t0 = time.perf_counter()
        answers = []
        for i in range(0, len(learners), 1000):
            answers += post("/api/v1/recommendations/batch",
                            {"curriculum": KEY, "learners": learners[i:i + 1000], "at": at})["results"]
        served_s += time.perf_counter() - t0
        outcome = cohort.review(np.array([int(a["concept"][1:]) for a in answers]), np.full(args.learners, now))
        reviewed = dt.datetime.fromtimestamp(now + 1, tz=dt.timezone.utc).isoformat()
        reviews = [{"curriculum": KEY, "learner": a["learner"], "concept": a["concept"], "correct": bool(outcome.correct[s]),
                    "grade": int(outcome.grade[s]), "recommendation_id": a["recommendation_id"], "reviewed_at": reviewed}
                   for s, a in enumerate(answers)]
        for i in range(0, len(reviews), 1000):
            post("/api/v1/reviews", reviews[i:i + 1000])

    t0 = time.perf_counter()
    outcomes = experiment_outcomes(experiment=experiment)
    outcomes_s = time.perf_counter() - t0
    arms = {a.label: a for a in experiment.arms.select_related("policy")}
    t0 = time.perf_counter()
    everything = args.learners * args.steps
    estimates = {}
    for target, logging in (("B", "A"), ("A", "B")):
        if arms[target].policy is None:
            continue  # the fallback is not a version: it has no serving distribution to estimate
        found = logged_estimates(policy=arms[target].policy, arm=arms[logging], since=experiment.started_at,
                                 max_decisions=everything, bootstrap_samples=args.bootstrap)
        plain = logged_estimates(policy=arms[target].policy, arm=arms[logging], since=experiment.started_at,
                                 max_decisions=everything, bootstrap_samples=args.bootstrap,
                                 direct_method="memory_model").estimates.get("dr")
        if plain is not None:  # the direct method without the future term, for comparison
            found.estimates["dr (memory model alone)"] = plain
        estimates[target] = (found, logged_estimates(policy=arms[target].policy, arm=arms[target],
                                                     since=experiment.started_at, max_decisions=everything).on_policy)
    estimates_s = time.perf_counter() - t0
    candidate.refresh_from_db()
    return {"outcomes": outcomes, "estimates": estimates, "served_s": served_s, "outcomes_s": outcomes_s,
            "estimates_s": estimates_s, "training_s": training_s, "simulator": candidate.metrics or {}}


def interval(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"


def report(args, result: dict) -> None:
    """Print the Markdown tables (see the module)."""
    from curriculum.experiments.outcomes import METRIC_NAMES, METRICS, Z95

    outcomes = result["outcomes"]
    what = (f"an exported policy ({args.policy_dir})" if args.policy_dir else "a tiny untrained DT"
            if args.candidate == "untrained" else f"a DT trained on {args.train_learners} x {args.train_reviews} "
            f"reviews, {args.epochs} epochs, seed {args.train_seed}")
    print(f"## Experiment: {what} (B) against the fallback rule {args.control} (A), {args.learners} learners x "
          f"{args.steps} decisions, epsilon-greedy {args.epsilon}, {args.concepts} concepts, seed {args.seed}\n")
    results = result["simulator"].get("results", {})
    if "dt" in results and args.control in results:
        dt_, base = results["dt"], results[args.control]
        print(f"The candidate's simulator evaluation (mean final recall, {result['simulator'].get('students')} held-out "
              f"students): DT {dt_['mean']:.4f} [{dt_['ci95'][0]:.4f}, {dt_['ci95'][1]:.4f}], {args.control} "
              f"{base['mean']:.4f} [{base['ci95'][0]:.4f}, {base['ci95'][1]:.4f}].\n")
    print("| arm | version | learners | decisions | " + " | ".join(METRIC_NAMES[m] for m in METRICS) + " |")
    print("|---|---|---|---|" + "---|" * len(METRICS))
    for a in outcomes.arms:
        cells = [f"{a.metrics[m].mean:.3f} {interval(a.metrics[m].ci95)}" if a.metrics[m].mean is not None else "n/a"
                 for m in METRICS]
        print(f"| {a.label} | {'v%d' % a.version if a.version else 'fallback'} | {a.learners} | {a.decisions} | "
              + " | ".join(cells) + " |")
    for d in outcomes.differences:
        detected = d.ci95 is not None and (d.ci95[0] > 0 or d.ci95[1] < 0)
        print(f"\nB - A, recall at the next review: {d.difference:.3f} {interval(d.ci95)}: "
              f"{'detected' if detected else 'NOT detected'} at the 95% level. {d.sentence}.")
    print("\n## Off-policy estimates of a version from the other arm's log, against its own arm's observed value\n")
    print("| version (arm) | from arm's log | estimator | estimate [95%] | ESS / learners | observed on-policy [95%] | "
          "observed in estimate's interval | estimate in observed's interval | abs z |")
    print("|---|---|---|---|---|---|---|---|---|")
    for target, (result_, observed) in result["estimates"].items():
        for name, e in result_.estimates.items():
            se = math.hypot((e.ci95[1] - e.ci95[0]) / (2 * Z95), (observed.ci95[1] - observed.ci95[0]) / (2 * Z95))
            print(f"| v{result_.version} ({target}) | {'A' if target == 'B' else 'B'} | {name} | {e.value:.3f} "
                  f"{interval(e.ci95)} | {e.ess:.0f} / {e.learners} | {observed.mean:.3f} {interval(observed.ci95)} | "
                  f"{'yes' if e.contains(observed.mean) else 'no'} | "
                  f"{'yes' if observed.ci95[0] <= e.value <= observed.ci95[1] else 'no'} | "
                  f"{abs(e.value - observed.mean) / se:.2f} |")
        if result_.error:
            print(f"\n(v{result_.version}: {result_.error})")
    if result["training_s"] is not None:
        print(f"\nTraining, evaluating and registering the candidate: {result['training_s']:.1f} s.")
    print(f"\nServing {args.learners * args.steps} recommendations through the API: {result['served_s']:.1f} s; "
          f"outcomes: {result['outcomes_s']:.1f} s; off-policy estimates: {result['estimates_s']:.1f} s.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=4, help="decisions per learner")
    parser.add_argument("--concepts", type=int, default=5)
    parser.add_argument("--epsilon", type=float, default=0.8, help="the curriculum's epsilon-greedy exploration")
    parser.add_argument("--gap-s", type=float, default=600.0, help="seconds between a learner's decisions")
    parser.add_argument("--seed", type=int, default=1, help="the students' traits and dice")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per estimate")
    parser.add_argument("--control", choices=["round_robin", "lowest_recall"], default="round_robin",
                        help="the curriculum's fallback rule, which serves arm A (no version is active)")
    parser.add_argument("--candidate", choices=["trained", "untrained"], default="trained",
                        help="arm B: a DT trained now by the pipeline, or the test fixtures' tiny untrained one")
    parser.add_argument("--policy-dir", help="arm B from an exported policy folder instead (5 concepts c0...)")
    parser.add_argument("--keep-policy", help="copy the trained candidate's folder here (for --policy-dir)")
    parser.add_argument("--train-learners", type=int, default=300, help="simulated training learners")
    parser.add_argument("--train-reviews", type=int, default=40, help="reviews per training learner (and per "
                        "evaluation student)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs")
    parser.add_argument("--train-seed", type=int, default=42, help="the training cohort's and the model's seed")
    parser.add_argument("--eval-students", type=int, default=100, help="held-out students of the simulator evaluation")
    args = parser.parse_args(argv)
    if args.learners < 4 or args.steps < 1 or args.concepts < 2 or not 0 < args.epsilon <= 1:
        parser.error("--learners >= 4, --steps >= 1, --concepts >= 2, 0 < --epsilon <= 1")
    with tempfile.TemporaryDirectory(prefix="crl-experiment-bench-") as tmp:
        workdir = Path(tmp)
        setup(workdir)
        from curriculum.experiments.exploration import seed_draws

        seed_draws(args.seed)  # exploration's draws in this thread (the test client serves in it)
        report(args, run(args, workdir))


if __name__ == "__main__":
    main()
