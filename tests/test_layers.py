"""The import rules of docs/architecture.md, checked on the source: a layer that imports what it must not fails here.

* ``training/rl`` (the learning core) imports no Django, no ``curriculum`` and no other part of ``training``.
* The curriculum domain (everything in ``curriculum/`` but the admin-side UI modules) reads only ``training.rl`` of
  the training side: training depends on the curriculum, not the other way round.
* A web process (the WSGI application with every URL, the admin and the API loaded) never imports torch.
* No import circle among the project's modules, through any import: at module level, inside a function or
  under ``TYPE_CHECKING`` (the last two only hide a circle from the interpreter).

And one declaration per fact: the evaluation's defaults (students, seed, reviews per student), the training and
evaluation bounds, the default context length and a review's fields' bounds are written once; a second literal
declaration anywhere in the application fails here.
"""
from __future__ import annotations

import ast
import graphlib
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Admin-side modules may launch training jobs (they are the operator's UI, above both apps).
CURRICULUM_UI = {"admin.py", "admin_views.py", "views.py", "tasks.py"}


def import_statements(path: Path, *, root: Path = REPO) -> list[tuple[int, str, list[str]]]:
    """(line, dotted module, names) of every import in a file under `root`, relative imports resolved against its
    package; names are those of ``from module import a, b`` (empty for ``import module``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name, [alias.name for alias in node.names]))
    return found


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a file, relative imports resolved against its package."""
    return [(line, name) for line, name, _ in import_statements(path)]


def python_files(folder: str, *, skip: set[str] = frozenset(), root: Path = REPO) -> list[Path]:
    return sorted(p for p in (root / folder).rglob("*.py") if "migrations" not in p.parts and p.name not in skip)


def module_name(path: Path, *, root: Path = REPO) -> str:
    """The dotted name a file under `root` is imported as (a package's ``__init__.py`` as the package)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(folders: list[str], *, root: Path = REPO) -> dict[str, dict[str, int]]:
    """Module -> {module of these folders it imports: line of the first such import}; ``from package import
    module`` counts as importing that module."""
    modules = {module_name(path, root=root): path for folder in folders for path in python_files(folder, root=root)}
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for line, target, names in import_statements(path, root=root):
            for imported in [f"{target}.{n}" if f"{target}.{n}" in modules else target for n in names] or [target]:
                if imported in modules and imported != name:
                    edges.setdefault(imported, line)
        graph[name] = edges
    return graph


def import_circle(graph: dict[str, dict[str, int]]) -> list[str]:
    """One import circle of the graph as a path "a -> b -> ... -> a" (a imports b ...), or [] when there is none
    (the standard library's topological sort finds it)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return exc.args[1][::-1]  # graphlib lists each module before the one that imports it
    return []


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


def test_no_module_imports_itself_back_through_others():
    graph = import_graph(["crlsite", "curriculum", "training"])
    circle = import_circle(graph)
    assert [f"{a}:{graph[a][b]} imports {b}" for a, b in zip(circle, circle[1:])] == []


def test_the_circle_check_sees_function_local_and_type_checking_imports(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("import math\n\ndef load():\n    from .files import read\n")
    (package / "files.py").write_text("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from pkg import model\n")
    (package / "other.py").write_text("from . import files\n")
    graph = import_graph(["pkg"], root=tmp_path)
    assert graph["pkg.model"] == {"pkg.files": 4} and graph["pkg.other"] == {"pkg.files": 1}
    assert import_circle(graph) in (["pkg.files", "pkg.model", "pkg.files"], ["pkg.model", "pkg.files", "pkg.model"])
    (package / "files.py").write_text("import json\n")
    assert import_circle(import_graph(["pkg"], root=tmp_path)) == []


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


# ------------------------------------------------------------------------------------------- one declaration
# The evaluation's defaults (held-out students, their seed, reviews per student) and bounds are declared in
# training/rl/evaluation.py, the seeds' range in training/rl/seeds.py, the other training parameters' bounds in
# training/spec.py; everything else imports them. A literal second declaration in the application (a default, a
# pair of bounds, a comparison with a bound) would drift from the first: these checks name it.
APPLICATION = ("curriculum", "training", "crlsite")
EVALUATION_MODULE = "training/rl/evaluation.py"
BOUNDS_MODULES = {"training/spec.py", "training/rl/evaluation.py", "training/rl/seeds.py"}


def literal_int(node: ast.AST | None) -> int | None:
    """The integer an expression of integer literals stands for (``200``, ``100_000``, ``2**31 - 1``, ``-1``)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and (value := literal_int(node.operand)) is not None:
        return -value
    if isinstance(node, ast.BinOp) and type(node.op) in (ast.Add, ast.Sub, ast.Mult, ast.Pow):
        left, right = literal_int(node.left), literal_int(node.right)
        if left is not None and right is not None:
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right,
                    ast.Pow: left**right if 0 <= right < 64 else None}[type(node.op)]
    return None


def _named(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


def _call_name(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> str | None:
    """The parameter a call declares: the name it is assigned to (a field, a dataclass member), else its first
    string argument (``add_argument("--students", ...)``, ``add_integer_flag(parser, "students", ...)``)."""
    parent = parents.get(call)
    if isinstance(parent, ast.AnnAssign) and isinstance(parent.target, ast.Name):
        return parent.target.id
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
        return parent.targets[0].id
    for arg in call.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return _named(arg.value)
    return None


def declarations(source: str) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, tuple[int | None, int | None]]]]:
    """What a module declares with literals: defaults ``(line, name, value)`` (parameter defaults, class members,
    ``default=`` of a field or flag, ``_param``'s first argument) and bounds ``(line, name, (low, high))`` (a
    field's Min/MaxValueValidator pair, ``min_value``/``max_value`` or ``low``/``high`` keywords, a ``(low, high)``
    tuple keyed or assigned by name, ``_param``'s last two arguments; a comparison of a name with a literal gives
    one side: ``students < 2`` is ``(2, None)``, ``seed > 2**31 - 1`` is ``(None, 2**31 - 1)``)."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    defaults: list[tuple[int, str, int]] = []
    bounds: list[tuple[int, str, tuple[int | None, int | None]]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                     *zip(args.kwonlyargs, args.kw_defaults)]
            defaults += [(node.lineno, arg.arg, v) for arg, d in pairs if (v := literal_int(d)) is not None]
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if (v := literal_int(item.value)) is not None:
                        defaults.append((item.lineno, item.target.id, v))
        elif isinstance(node, ast.Call):
            name = _call_name(node, parents)
            if name is None:
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if (v := literal_int(keywords.get("default"))) is not None:
                defaults.append((node.lineno, name, v))
            if callee == "_param" and node.args and (v := literal_int(node.args[0])) is not None:
                defaults.append((node.lineno, name, v))
            if callee == "_param" and len(node.args) >= 4:
                bounds.append((node.lineno, name, (literal_int(node.args[2]), literal_int(node.args[3]))))
            for low, high in (("min_value", "max_value"), ("low", "high")):
                if low in keywords or high in keywords:
                    bounds.append((node.lineno, name, (literal_int(keywords.get(low)), literal_int(keywords.get(high)))))
            validators = keywords.get("validators")
            if isinstance(validators, (ast.List, ast.Tuple)):
                found = {v.func.id if isinstance(v.func, ast.Name) else v.func.attr: literal_int(v.args[0])
                         for v in validators.elts if isinstance(v, ast.Call) and v.args}
                if "MinValueValidator" in found or "MaxValueValidator" in found:
                    bounds.append((node.lineno, name, (found.get("MinValueValidator"), found.get("MaxValueValidator"))))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(value, ast.Tuple) \
                        and len(value.elts) == 2:
                    pair = (literal_int(value.elts[0]), literal_int(value.elts[1]))
                    if None not in pair:
                        bounds.append((node.lineno, key.value, pair))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            subject = node.left.id if isinstance(node.left, ast.Name) else getattr(node.left, "attr", None)
            value = literal_int(node.comparators[0])
            if subject is not None and value is not None:
                if isinstance(node.ops[0], (ast.Lt, ast.GtE)):
                    bounds.append((node.lineno, subject, (value, None)))
                elif isinstance(node.ops[0], (ast.Gt, ast.LtE)):
                    bounds.append((node.lineno, subject, (None, value)))
    return defaults, bounds


def evaluation_defaults() -> dict[str, int]:
    from training.rl.evaluation import EVALUATION_INTERACTIONS, EVALUATION_SEED, EVALUATION_STUDENTS

    return {"students": EVALUATION_STUDENTS, "seed": EVALUATION_SEED, "interactions": EVALUATION_INTERACTIONS}


def declared_bounds() -> dict[str, tuple[int | None, int | None]]:
    """Every bound the spec and the evaluation declare, by parameter name (a flag's, a field's, a protocol key's)."""
    from training.rl.evaluation import EVALUATION_BOUNDS
    from training.spec import TrainingSpec

    bounded = {name: TrainingSpec.bounds(name) for name in TrainingSpec.names() if TrainingSpec.bounds(name) != (None, None)}
    return {**bounded, **EVALUATION_BOUNDS}


def second_default_declarations(source: str, facts: dict[str, int]) -> list[str]:
    """Defaults in ``source`` that repeat a fact's value for a parameter named like it (``eval_students = 200``)."""
    defaults, _ = declarations(source)
    return [f"line {line}: {name} = {value}" for line, name, value in defaults
            for fact, expected in facts.items() if fact in name and value == expected]


def second_bound_declarations(source: str, facts: dict[str, tuple[int | None, int | None]]) -> list[str]:
    """Bounds in ``source`` that restate a declared bound of the parameter of that name: a whole pair, or one side
    of it in a comparison (``students < 2``)."""
    _, bounds = declarations(source)
    found = []
    for line, name, (low, high) in bounds:
        declared = facts.get(_named(name))
        if declared is None:
            continue
        same_low = low is not None and low == declared[0]
        same_high = high is not None and high == declared[1]
        if (same_low and same_high) or ((low is None or high is None) and (same_low or same_high)):
            found.append(f"line {line}: {name} bounds ({low}, {high})")
    return found


def application_sources(*, skip: set[str]) -> list[Path]:
    return [path for folder in APPLICATION for path in python_files(folder)
            if str(path.relative_to(REPO)) not in skip]


def test_the_evaluation_defaults_are_declared_once():
    offences = [f"{path.relative_to(REPO)}: {offence}"
                for path in application_sources(skip={EVALUATION_MODULE})
                for offence in second_default_declarations(path.read_text(), evaluation_defaults())]
    assert offences == [], f"import the default from {EVALUATION_MODULE} instead"


def test_the_training_and_evaluation_bounds_are_declared_once():
    offences = [f"{path.relative_to(REPO)}: {offence}"
                for path in application_sources(skip=BOUNDS_MODULES)
                for offence in second_bound_declarations(path.read_text(), declared_bounds())]
    assert offences == [], "take the bounds from TrainingSpec / training.rl.evaluation.EVALUATION_BOUNDS instead"


@pytest.mark.parametrize("duplicate", [
    "from dataclasses import dataclass\n@dataclass\nclass Protocol:\n    students: int = 200\n",
    "def evaluate(*, policy, interactions: int = 100):\n    pass\n",
    "parser.add_argument('--seed', type=int, default=1234)\n",
    "eval_students = TrainingRun._param(200, 'students', 2, 100_000)\n",
])
def test_the_default_check_finds_a_second_declaration(duplicate):
    assert second_default_declarations(duplicate, evaluation_defaults()), duplicate


@pytest.mark.parametrize("duplicate", [
    "_BOUNDS = {'students': (2, 100_000), 'seed': (0, 2**31 - 1)}\n",
    "class Job:\n    num_users = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(1_000_000)])\n",
    "def handle(students):\n    if students < 2:\n        raise CommandError('too few')\n",
    "seed = forms.IntegerField(min_value=0, max_value=2**31 - 1)\n",
    "epochs = _param(10, 'passes', 1, 1_000)\n",
])
def test_the_bounds_check_finds_a_second_declaration(duplicate):
    assert second_bound_declarations(duplicate, declared_bounds()), duplicate


def test_the_checks_pass_over_a_declaration_of_another_fact():
    # a generation job's own cap on reviews per learner, a training seed's default, a concept minimum on a count
    other = ("interactions = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(10_000)])\n"
             "def launch(*, seed: int = 42, students=None):\n    if len(keys) < 2:\n        pass\n")
    assert second_default_declarations(other, evaluation_defaults()) == []
    assert second_bound_declarations(other, declared_bounds()) == []


# ------------------------------------------------------------- one declaration: context length, review fields
# The default context length is declared in training/rl/model_config.py: DTConfig, DTLite's configs and the learner
# states of a curriculum without a policy read it. A review's fields (bounds, lengths, the earliest time) are declared
# in curriculum/reviews/fields.py: validation, the API schema, the importers and the model columns read them.
CONTEXT_LENGTH_MODULE = "training/rl/model_config.py"
REVIEW_FIELDS_MODULE = "curriculum/reviews/fields.py"
# Constants named like a review field's bound (ID_LENGTH, MAX_GRADE, RESPONSE_TIME_MS, EARLIEST...).
REVIEW_BOUND_NAME = re.compile(r"(ID|KEY)_LENGTH|GRADE|RESPONSE_TIME|EARLIEST")
# Where reviews are read, validated or described: a bound written there as a number restates the declaration.
REVIEW_MODULES = ("curriculum/api/", "curriculum/reviews/")
BOUND_KEYWORDS = {"max_length", "min_value", "max_value", "low", "high"}
# Model and form fields that hold a review's ids (a curriculum's or concept's key, a learner id, an idempotency key).
REVIEW_ID_FIELDS = {"key", "external_id", "idempotency_key", "learner", "concept"}


def bindings(tree: ast.AST) -> list[tuple[int, str, ast.expr]]:
    """(line, name, value) of every name bound to a value: assignments (also to attributes and in tuples),
    annotated assignments (dataclass fields), keyword arguments and parameter defaults."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                pairs = zip(target.elts, node.value.elts) if isinstance(target, ast.Tuple) and isinstance(
                    node.value, ast.Tuple) else [(target, node.value)]
                found += [(node.lineno, getattr(name, "id", None) or name.attr, value) for name, value in pairs
                          if isinstance(name, (ast.Name, ast.Attribute))]
        elif isinstance(node, ast.keyword) and node.arg:
            found.append((node.value.lineno, node.arg, node.value))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                     *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)]
            found += [(default.lineno, arg.arg, default) for arg, default in pairs]
    return found


def second_context_length_declarations(source: str) -> list[str]:
    """Numbers bound to a context length in ``source``: ``DEFAULT_CONTEXT_LENGTH = 20``, a dataclass field
    ``context_length: int = 20``, a keyword ``context_length=20``, a parameter's default."""
    return [f"line {line}: {name} = {value}" for line, name, node in bindings(ast.parse(source))
            if "context" in name.lower() and (value := literal_int(node)) is not None]


def review_bounds() -> set[int]:
    """The values of the review fields' declared bounds (0 and 1 are everywhere: alone they mean nothing)."""
    from curriculum.reviews.fields import REVIEW_FIELDS

    return {b for f in REVIEW_FIELDS for b in (f.max_length, f.min_value, f.max_value) if b is not None} - {0, 1}


def second_review_bound_declarations(source: str, *, review_module: bool) -> list[str]:
    """A review field's bound restated in ``source``: a constant named like one (``ID_LENGTH = 200``), a date in the
    earliest review time's year, a literal ``max_length`` of a field holding a review's id (``external_id =
    models.CharField(max_length=200)``) and, in a module that reads or describes reviews (``review_module``), a bound
    keyword with a declared bound's value (``max_length=200``, ``high=4``)."""
    from curriculum.reviews.fields import EARLIEST

    bounds, tree, found = review_bounds(), ast.parse(source), []
    for line, name, value in bindings(tree):
        number = literal_int(value)
        if name.isupper() and REVIEW_BOUND_NAME.search(name) and number is not None:
            found.append(f"line {line}: {name} = {number}")
        elif review_module and name in BOUND_KEYWORDS and number in bounds:
            found.append(f"line {line}: {name}={number}")
        elif name in REVIEW_ID_FIELDS and isinstance(value, ast.Call):
            found += [f"line {line}: {name} = ...(max_length={literal_int(k.value)})" for k in value.keywords
                      if k.arg == "max_length" and literal_int(k.value) in bounds]
    found += [f"line {node.lineno}: a date in {EARLIEST.year}, the earliest review time" for node in ast.walk(tree)
              if isinstance(node, ast.Call) and node.args and literal_int(node.args[0]) == EARLIEST.year]
    return found


def test_the_default_context_length_is_declared_once():
    # (tests build small models with short contexts on purpose: they are not scanned)
    offences = [f"{path.relative_to(REPO)}: {offence}"
                for path in application_sources(skip={CONTEXT_LENGTH_MODULE}) + python_files("bench")
                for offence in second_context_length_declarations(path.read_text())]
    assert offences == [], f"import DEFAULT_CONTEXT_LENGTH from {CONTEXT_LENGTH_MODULE} instead"


def test_the_review_fields_bounds_are_declared_once():
    # (the learning core cannot import the curriculum: it is not scanned)
    offences = [f"{relative}: {offence}"
                for path in application_sources(skip={REVIEW_FIELDS_MODULE})
                if not (relative := str(path.relative_to(REPO))).startswith("training/rl/")
                for offence in second_review_bound_declarations(path.read_text(),
                                                                review_module=relative.startswith(REVIEW_MODULES))]
    assert offences == [], f"import the bound from {REVIEW_FIELDS_MODULE} instead"


@pytest.mark.parametrize("duplicate", [
    "DEFAULT_CONTEXT_LENGTH = 20\n",
    "from dataclasses import dataclass\n@dataclass\nclass DTConfig:\n    context_length: int = 20\n",
    "config = DTConfig(state_dim=4, action_dim=1, context_length=20)\n",
    "def new_state(*, context_length=20):\n    pass\n",
])
def test_the_context_length_check_finds_a_second_declaration(duplicate):
    assert second_context_length_declarations(duplicate), duplicate


@pytest.mark.parametrize("duplicate, review_module", [
    ("ID_LENGTH = 200\n", False),
    ("MIN_GRADE, MAX_GRADE = 1, 4\n", False),
    ("EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)\n", False),
    ("class Learner(models.Model):\n    external_id = models.CharField(max_length=200, unique=True)\n", False),
    ("learner = forms.CharField(required=False, max_length=200)\n", False),
    ("candidates = serializers.ListField(child=serializers.CharField(max_length=200))\n", True),
    ("duration = row.integer('review_duration', low=0, high=2**31 - 1, required=False)\n", True),
    ("ease = row.integer('ease', low=0, high=4)\n", True),
])
def test_the_review_bounds_check_finds_a_second_declaration(duplicate, review_module):
    assert second_review_bound_declarations(duplicate, review_module=review_module), duplicate


def test_the_context_length_and_review_checks_pass_over_other_facts():
    # a curriculum's display name and an import batch's label (models), a seed's range, the epoch, a context read
    # from a config; in an importer, a file's own column range
    other = ("name = models.CharField(max_length=200)\nbatch = models.CharField(max_length=100)\n"
             "SEED_MAX = 2**31 - 1\nEPOCH = dt.datetime(1970, 1, 1)\nT = min(len(steps), config.context_length)\n")
    assert second_context_length_declarations(other) == []
    assert second_review_bound_declarations(other, review_module=False) == []
    assert second_review_bound_declarations("kind = row.integer('type', low=0, high=5)\n", review_module=True) == []
