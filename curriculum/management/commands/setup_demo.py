"""Prepare the quick-start demo: the `demo` curriculum, a small trained policy promoted to active, and an
admin login with a random password."""
from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import BaseCommand

from curriculum import selectors, services
from curriculum.services import ensure_curriculum

DEMO_CONCEPTS = 20
# Small enough to train in a few minutes on 2 CPU cores (305 s measured on a shared machine); the admin's training runs
# do the real ones.
DEMO_REASON = "make run: demo policy"
DEMO_TRAINING = ["--num_users", "300", "--interactions", "60", "--epochs", "3", "--eval_students", "100"]


class Command(BaseCommand):
    help = "Create the demo curriculum and an admin user (its random password is printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--curriculum", default="demo")
        parser.add_argument("--no-training", dest="training", action="store_false",
                            help="do not train a demo policy when the curriculum has no active one")

    def handle(self, *args, username: str, curriculum: str, training: bool, **options):
        demo = ensure_curriculum(
            key=curriculum, name="Demo curriculum", concept_keys=[f"c{i:02d}" for i in range(DEMO_CONCEPTS)]
        )
        self.stdout.write(f"Curriculum {demo.key!r} with {demo.concepts.count()} concepts.")
        active = selectors.active_policy(curriculum=demo)
        latest = selectors.policy_versions(curriculum=demo).first()
        if active is not None:
            self.stdout.write(f"Active policy: {demo.key} v{active.version}. Its artifacts: {self._artifact_location(active)}")
        elif latest is not None:
            self.stdout.write(f"Policy {demo.key} v{latest.version} is a {latest.status} version (not active): the fallback "
                              f"answers until a version is promoted on the Policy orchestrator page.")
        elif training:
            self.stdout.write(f"Training a small demo policy for {demo.key!r} (a few minutes on 2 cores), then promoting it...")
            Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="crl-demo-", dir=settings.VAR_DIR) as tmp:
                call_command("train_crl_policy", "--curriculum", demo.key, "--output_dir", tmp, "--register",
                             *DEMO_TRAINING, *([] if options.get("verbosity", 1) else ["--no-progress"]),
                             stdout=self.stdout, stderr=self.stderr)
            policy = selectors.policy_versions(curriculum=demo).first()
            self.stdout.write(f"Artifacts of {demo.key} v{policy.version} are kept in "
                              f"{self._artifact_location(policy)} (the training folder named above is gone).")
            try:  # through the gate like any version: a demo that evaluates below random is not served
                services.promote_policy(policy=policy, reason=DEMO_REASON)
                self.stdout.write(f"Promoted {demo.key} v{policy.version}: it answers recommendations now.")
            except services.PolicyError as exc:
                self.stdout.write(f"{demo.key} v{policy.version} stays a candidate: {exc}. The fallback answers "
                                  f"recommendations until a version passes the gate (Policy orchestrator).")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"Admin user {username!r} already exists (forgot the password? "
                f"`.venv/bin/python manage.py changepassword {username}`)."
            )
        else:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(self.style.SUCCESS(f"Admin login: {username} / {password}  (shown once; not stored anywhere else)"))

    @staticmethod
    def _artifact_location(policy) -> str:
        """The folder holding the version's files: a local path, or the storage's name for them (object stores)."""
        names = [entry["path"] for entry in policy.artifacts.values() if entry.get("path")]
        if not names:
            return "(no files recorded)"
        folder = str(Path(names[0]).parent)
        try:
            return storages["artifacts"].path(folder)
        except NotImplementedError:  # e.g. S3: no local path
            return f"{folder} in the artifact storage ({type(storages['artifacts']).__name__})"
