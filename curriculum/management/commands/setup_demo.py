"""Prepare the quick-start demo: the `demo` curriculum and an admin login with a random password."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from curriculum.services import ensure_curriculum

DEMO_CONCEPTS = 20


class Command(BaseCommand):
    help = "Create the demo curriculum and an admin user (its random password is printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--curriculum", default="demo")

    def handle(self, *args, username: str, curriculum: str, **options):
        demo = ensure_curriculum(
            key=curriculum, name="Demo curriculum", concept_keys=[f"c{i:02d}" for i in range(DEMO_CONCEPTS)]
        )
        self.stdout.write(f"Curriculum {demo.key!r} with {demo.concepts.count()} concepts.")
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
