"""Off-policy estimates against the truth, on simulated students: a softmax-exploring behaviour policy's log, a
different target policy's value estimated from it, and that target run on the same students. Prints Markdown.

    python bench/off_policy.py [--students 2000] [--concepts 10] [--interactions 20] [--seed 7]
        [--behaviour lowest_recall] [--behaviour-temperature 0.5] [--target target_recall]
        [--target-temperature 0.2] [--direct-method memory_model] [--bootstrap 2000] [--repeats 1]

Policies are softmax policies over a baseline's preference (``PREFERENCES``: ``lowest_recall``, ``target_recall``,
``round_robin``, from ``training/rl/policies.py``'s rules) at a temperature, so both have a probability for every
concept: the behaviour samples the logged concept and records its propensity pi_b(a|s); the target's probability of
that concept in the same state is pi_e(a|s). The reward is the encoder's per-review reward (``encoder/memory.py``:
the rise of the estimated mean recall a horizon (one day) ahead; a learner's return is that recall after its last
review), computable from the log alone.

The direct method (for doubly robust) is the encoder's memory model, one step ahead:
``q(s, a) = mean_c R_h(c) + gain_a / C - M``, the expected reward of reviewing concept a (``R_h`` the estimated
recall at t + horizon without the review, ``gain_a`` the model's ``expected_recall_gain``, ``M`` the potential of the
last review); ``v(s) = sum_a pi_e(a|s) q(s, a)``. It models the immediate reward only (not what the choice does to
later rewards), so doubly robust stays unbiased and reduces the variance of each step's own reward.
``--direct-method memory_model+future`` adds to q and v of step t the log's mean reward-to-go after step t (one
number per step, the same for every concept, from the behaviour's log: a crude stand-in for the value of the
future that leaves doubly robust unbiased, since a per-state constant added to both q and v changes each learner's
term by ``sum_t c_t (w_{t-1} - w_t)``, whose mean is 0 under the behaviour; c_t is fitted on that same log, a
small dependence this bench does not separate out).

With ``--repeats R`` the check runs for seeds seed, seed + 1, ... (new students, new dice each) and a second table
gives per estimator how often the interval held the truth and the estimate lay in the truth's interval, the mean
error (estimate - truth), its root mean square, the mean interval width and the mean ESS.

The truth: the target policy driving the same students (same traits, schedule and dice: ``make_cohort`` with the
same seed) on-policy; its mean return with a bootstrap interval over learners.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curriculum.experiments.off_policy import Estimate, estimate_all, ips  # noqa: E402
from training.rl.encoder import FEATURES_PER_CONCEPT, STATE_FEATURES, EncoderConfig, StateEncoder  # noqa: E402
from training.rl.policies import Observation, Policy, TargetRecallPolicy  # noqa: E402
from training.rl.simulator import make_cohort, policy_rng, run_policies  # noqa: E402


def _reviewed(obs: Observation) -> np.ndarray:
    """bool [m, C]: which concepts each learner has reviewed (``obs.reviewed``, else the encoded review count > 0,
    as policies.py)."""
    if obs.reviewed is not None:
        return obs.reviewed
    return obs.states[:, STATE_FEATURES.index("reviews")::FEATURES_PER_CONCEPT] > 0


def _recall(obs: Observation) -> np.ndarray:
    """float64 [m, C]: the encoder's estimated recall of every learner (``run_policies`` may compute it on demand)."""
    return obs.recall_of(np.arange(len(obs.t)))


def lowest_recall_preference(obs: Observation, num_concepts: int) -> np.ndarray:
    """lowest_recall's rule as scores float64 [m, C] (higher = preferred): 1 for a never-reviewed concept, else
    minus the estimated recall; its argmax is ``lowest_recall_choice`` (ties to the lowest position)."""
    return np.where(_reviewed(obs), -_recall(obs), 1.0)


def target_recall_preference(obs: Observation, num_concepts: int) -> np.ndarray:
    """target_recall's rule (``TargetRecallPolicy``, its target 0.25) as scores: 1 for a never-reviewed concept, else
    minus the distance of the estimated recall from the target."""
    return np.where(_reviewed(obs), -np.abs(_recall(obs) - TargetRecallPolicy.target), 1.0)


def round_robin_preference(obs: Observation, num_concepts: int) -> np.ndarray:
    """round_robin's rule as scores: 1 for the concept of this step (step mod C), 0 for the others."""
    scores = np.zeros((len(obs.t), num_concepts))
    scores[:, obs.step % num_concepts] = 1.0
    return scores


PREFERENCES = {
    "lowest_recall": lowest_recall_preference,
    "target_recall": target_recall_preference,
    "round_robin": round_robin_preference,
}


@dataclass(frozen=True)
class Softmax:
    """A softmax policy: pi(a|s) proportional to exp(score(s, a) / temperature) over a baseline's scores."""

    preference: str
    temperature: float

    def __post_init__(self) -> None:
        if self.preference not in PREFERENCES:
            raise ValueError(f"preference: unknown {self.preference!r}; expected one of {sorted(PREFERENCES)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {self.temperature!r}")

    @property
    def name(self) -> str:
        return f"softmax({self.preference}, T={self.temperature:g})"

    def probabilities(self, obs: Observation, num_concepts: int) -> np.ndarray:
        """float64 [m, C], rows summing to 1."""
        z = PREFERENCES[self.preference](obs, num_concepts) / self.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def _sample(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One concept per row drawn from its distribution (inverse CDF), int64 [m]."""
    u = rng.random(probabilities.shape[0])
    chosen = (np.cumsum(probabilities, axis=1) <= u[:, None]).sum(axis=1)
    return np.minimum(chosen, probabilities.shape[1] - 1).astype(np.int64)  # a cumsum 1 - 1e-16 < u


class _WatchedEncoder(StateEncoder):
    """The state encoder, keeping the memory ``run_policies`` makes so the direct method can read it."""

    memory = None

    def init_memory(self, n: int):
        self.memory = super().init_memory(n)
        return self.memory


class SoftmaxPolicy(Policy):
    """Chooses by ``behaviour`` and, when ``target`` is given, logs what off-policy evaluation needs, per step:
    pi_b and pi_e of the chosen concept and the memory model's q (of the chosen concept) and v (arrays [m, steps])."""

    name = "softmax"
    uses_expected_gain = True  # the direct method's gain (run_policies computes it for these learners)

    def __init__(self, *, num_learners: int, num_concepts: int, rng: np.random.Generator, behaviour: Softmax,
                 target: Softmax | None = None, encoder: _WatchedEncoder | None = None) -> None:
        super().__init__(num_learners=num_learners, num_concepts=num_concepts, rng=rng)
        self.behaviour, self.target, self.encoder = behaviour, target, encoder
        self.logged: dict[str, list[np.ndarray]] = {"propensity": [], "target_probability": [], "q_hat": [],
                                                    "v_hat": []}

    def select(self, obs: Observation) -> np.ndarray:
        pb = self.behaviour.probabilities(obs, self.num_concepts)
        chosen = _sample(pb, self.rng)
        if self.target is not None:
            rows = np.arange(self.num_learners)
            pe = self.target.probabilities(obs, self.num_concepts)
            q = self._model_q(obs)
            self.logged["propensity"].append(pb[rows, chosen])
            self.logged["target_probability"].append(pe[rows, chosen])
            self.logged["q_hat"].append(q[rows, chosen])
            self.logged["v_hat"].append(np.sum(pe * q, axis=1))
        return chosen

    def _model_q(self, obs: Observation) -> np.ndarray:
        """The memory model's expected reward of reviewing each concept now, float64 [m, C] (module docstring)."""
        memory, config = self.encoder.memory, self.encoder.config
        unreviewed = self.encoder.recall(memory, obs.t + config.horizon_s).mean(axis=1)
        return unreviewed[:, None] + obs.expected_gain / self.num_concepts - memory.potential[:, None]

    def log(self) -> dict[str, np.ndarray]:
        return {key: np.stack(values, axis=1) for key, values in self.logged.items()}


@dataclass(frozen=True)
class Check:
    """One run of the simulated check: every estimate, the target's truth and the behaviour's own mean return."""

    estimates: dict[str, Estimate]
    truth: Estimate
    behaviour_value: float
    seconds: float


DIRECT_METHODS = ("memory_model", "memory_model+future")


def simulated_check(*, students: int, concepts: int, interactions: int, seed: int, behaviour: Softmax,
                    target: Softmax, bootstrap_samples: int = 2000, direct_method: str = "memory_model") -> Check:
    """Log ``behaviour`` on ``students`` built-in students, estimate ``target``'s mean return from the log with every
    estimator (doubly robust with ``direct_method``, one of ``DIRECT_METHODS``, see the module docstring), and run
    ``target`` on the same students for the truth (``Check``)."""
    if direct_method not in DIRECT_METHODS:
        raise ValueError(f"direct_method: expected one of {DIRECT_METHODS}, got {direct_method!r}")
    started = time.perf_counter()

    def cohort():
        return make_cohort(num_students=students, num_concepts=concepts, interactions=interactions, seed=seed)

    rows = np.arange(students)
    encoder = _WatchedEncoder(EncoderConfig(num_concepts=concepts))
    logging = SoftmaxPolicy(num_learners=students, num_concepts=concepts, behaviour=behaviour, target=target,
                            encoder=encoder, rng=policy_rng(seed=seed, held_out=False, name="off_policy_behaviour"))
    logged = run_policies(cohort=cohort(), groups=[(logging, rows)], encoder=encoder)
    reward = logged.rewards.astype(np.float64)
    log = logging.log()
    if direct_method == "memory_model+future":
        to_go = np.cumsum(reward[:, ::-1], axis=1)[:, ::-1]  # reward-to-go from step t, [students, steps]
        after = np.append(to_go[:, 1:].mean(axis=0), 0.0)  # the log's mean reward after step t, [steps]
        log["q_hat"], log["v_hat"] = log["q_hat"] + after, log["v_hat"] + after
    estimates = estimate_all(reward=reward, seed=seed, bootstrap_samples=bootstrap_samples, **log)

    on_policy = SoftmaxPolicy(num_learners=students, num_concepts=concepts, behaviour=target,
                              rng=policy_rng(seed=seed, held_out=False, name="off_policy_target"))
    truth_rollout = run_policies(cohort=cohort(), groups=[(on_policy, rows)],
                                 encoder=StateEncoder(EncoderConfig(num_concepts=concepts)))
    returns = truth_rollout.rewards.astype(np.float64).sum(axis=1)
    ones = np.ones_like(returns)  # on-policy: every ratio 1, so IPS is the plain mean, with the same bootstrap
    truth = ips(propensity=ones, target_probability=ones, reward=returns, seed=seed,
                bootstrap_samples=bootstrap_samples)
    return Check(estimates=estimates, truth=truth, behaviour_value=float(reward.sum(axis=1).mean()),
                 seconds=time.perf_counter() - started)


def table(check: Check) -> str:
    truth = check.truth
    lines = ["| estimator | estimate | 95% CI | ESS | on-policy truth [95% CI] | truth in CI "
             "| estimate in truth's CI |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in check.estimates.items():
        lines.append(f"| {name} | {e.value:.4f} | [{e.ci95[0]:.4f}, {e.ci95[1]:.4f}] | {e.ess:.1f} | "
                     f"{truth.value:.4f} [{truth.ci95[0]:.4f}, {truth.ci95[1]:.4f}] | "
                     f"{'yes' if e.contains(truth.value) else 'no'} | {'yes' if truth.contains(e.value) else 'no'} |")
    return "\n".join(lines)


def coverage_table(checks: list[Check]) -> str:
    """Per estimator over several checks: truth in the interval and estimate in the truth's (counts), mean error,
    RMSE, interval width, ESS."""
    lines = ["| estimator | truth in CI | estimate in truth's CI | mean error | RMSE | mean CI width | mean ESS |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in checks[0].estimates:
        estimates = [c.estimates[name] for c in checks]
        errors = np.array([e.value - c.truth.value for e, c in zip(estimates, checks)])
        held = sum(e.contains(c.truth.value) for e, c in zip(estimates, checks))
        inside = sum(c.truth.contains(e.value) for e, c in zip(estimates, checks))
        width = np.mean([e.ci95[1] - e.ci95[0] for e in estimates])
        rmse = float(np.sqrt(np.mean(errors ** 2)))
        lines.append(f"| {name} | {held}/{len(checks)} | {inside}/{len(checks)} | {errors.mean():+.4f} | {rmse:.4f} "
                     f"| {width:.4f} | {np.mean([e.ess for e in estimates]):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--interactions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--behaviour", choices=sorted(PREFERENCES), default="lowest_recall")
    parser.add_argument("--behaviour-temperature", type=float, default=0.5)
    parser.add_argument("--target", choices=sorted(PREFERENCES), default="target_recall")
    parser.add_argument("--target-temperature", type=float, default=0.2)
    parser.add_argument("--direct-method", choices=DIRECT_METHODS, default="memory_model",
                        help="doubly robust's model (default memory_model: the immediate reward only)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--repeats", type=int, default=1, help="checks on seeds seed, seed + 1, ... (default 1)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats: expected an integer >= 1")
    behaviour = Softmax(args.behaviour, args.behaviour_temperature)
    target = Softmax(args.target, args.target_temperature)
    checks = [simulated_check(students=args.students, concepts=args.concepts, interactions=args.interactions,
                              seed=args.seed + k, behaviour=behaviour, target=target,
                              bootstrap_samples=args.bootstrap, direct_method=args.direct_method)
              for k in range(args.repeats)]
    check = checks[0]
    print(f"## Off-policy estimates of {target.name} from {behaviour.name}'s log\n")
    print(f"{args.students} built-in students x {args.interactions} reviews, {args.concepts} concepts, seed "
          f"{args.seed}, doubly robust's direct method {args.direct_method}; the behaviour's own mean return "
          f"{check.behaviour_value:.4f}; {check.seconds:.1f} s\n")
    print(table(check))
    weak = [name for name, e in check.estimates.items() if e.ess < 0.05 * e.learners]
    if weak:
        print(f"\nESS below 5% of the learners ({', '.join(weak)}): a few learners carry the estimate, so its "
              "interval says little.")
    if args.repeats > 1:
        print(f"\n## Over {args.repeats} seeds ({args.seed}-{args.seed + args.repeats - 1}), "
              f"{sum(c.seconds for c in checks):.1f} s\n")
        print(coverage_table(checks))


if __name__ == "__main__":
    main()
