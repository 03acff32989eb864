"""The import rules of docs/architecture.md, checked on the source: a layer that imports what it must not fails here.

* ``training/rl`` (the learning core) imports no Django, no ``curriculum`` and no other part of ``training``.
* The curriculum domain (everything in ``curriculum/`` but the admin-side UI modules) reads only ``training.rl`` of
  the training side: training depends on the curriculum, not the other way round.
* A web process (the WSGI application with every URL, the admin and the API loaded) never imports torch.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Admin-side modules may launch training jobs (they are the operator's UI, above both apps).
CURRICULUM_UI = {"admin.py", "admin_views.py", "views.py", "tasks.py"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a file, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def python_files(folder: str, *, skip: set[str] = frozenset()) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "migrations" not in p.parts and p.name not in skip)


def test_the_learning_core_imports_no_django_and_nothing_above_it():
    offences = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in python_files("training/rl")
        for line, name in imported_modules(path)
        if name.split(".")[0] in {"django", "curriculum", "crlsite", "rest_framework", "celery"}
        or (name.startswith("training.") and not name.startswith("training.rl"))
    ]
    assert offences == []


def test_the_curriculum_domain_reads_only_the_learning_core_of_training():
    offences = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in python_files("curriculum", skip=CURRICULUM_UI)
        for line, name in imported_modules(path)
        if (name == "training" or name.startswith("training.")) and not name.startswith("training.rl")
    ]
    assert offences == []


def test_a_web_process_never_imports_torch(run_without_torch):
    # The WSGI application, every URL pattern (admin, orchestrator, API) and the serving path load without torch.
    child = """
from django.core.wsgi import get_wsgi_application
get_wsgi_application()
from django.urls import get_resolver
get_resolver().resolve("/api/v1/recommendations")
get_resolver().resolve("/admin/")
import curriculum.serving, curriculum.api.views, curriculum.admin, training.admin
print("ok", sorted(m for m in sys.modules if m.split(".")[0] == "torch"))
"""
    done = run_without_torch(child, env={**os.environ, "DJANGO_SETTINGS_MODULE": "crlsite.settings"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok []"


@pytest.mark.parametrize("folder", ["curriculum", "training", "crlsite", "tests", "bench", "docs", "templates"])
def test_nothing_refers_to_files_outside_the_repository(folder):
    # The repository stands alone: no path into a sibling folder of the checkout, no design document it lacks.
    offences = [
        str(path.relative_to(REPO))
        for path in (REPO / folder).rglob("*")
        if path.suffix in {".py", ".html", ".md", ".txt", ".toml"} and path.is_file()
        and any(word in path.read_text(errors="replace") for word in ("../shared", "DESIGN.md"))
        and path.name != "test_layers.py"
    ]
    assert offences == []
