"""Benchmark: a real Anki deck end to end with the commands' defaults: import the review log, then
`train_crl_policy --from-db` (extract, train 10 epochs, export, evaluate), each timed in a fresh process.

    OMP_NUM_THREADS=1 .venv/bin/python bench/real_deck.py [--file bench/data/fsrs-real-half.csv] [--curriculum real]

Uses the configured database (DATABASE_URL); the curriculum is deleted first so the import starts from nothing.
Target (bench/README.md): both together in at most 10 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str]) -> tuple[float, float, str]:
    """Run `manage.py *args` in a fresh process: (seconds, peak RSS MiB of the children, output tail)."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, rss, (out.stdout + out.stderr)[-600:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(ROOT / "bench/data/fsrs-real-half.csv"))
    parser.add_argument("--curriculum", default="real")
    parser.add_argument("--learner", default="a")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crlsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from curriculum.models import Curriculum

    Curriculum.objects.filter(key=args.curriculum).delete()
    rows = []
    seconds, rss, _ = timed(["import_reviewlogs", args.file, "--curriculum", args.curriculum, "--learner", args.learner])
    rows.append(("import_reviewlogs", seconds, rss))
    with tempfile.TemporaryDirectory() as out:
        seconds, rss, tail = timed(["train_crl_policy", "--from-db", "--curriculum", args.curriculum,
                                    "--output_dir", out, "--no_cuda"])
    rows.append(("train_crl_policy --from-db", seconds, rss))
    curriculum = Curriculum.objects.get(key=args.curriculum)
    print(f"\nReal deck {Path(args.file).name}: {curriculum.reviews.count():,} reviews, "
          f"{curriculum.concepts.count()} concepts, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")
    print("| step | seconds | peak RSS MiB (children so far) |")
    print("| --- | ---: | ---: |")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:.0f} |")
    print(f"| total | {sum(r[1] for r in rows):.1f} | |")
    print(f"\nlast output of train_crl_policy:\n{tail}", file=sys.stderr)


if __name__ == "__main__":
    main()
