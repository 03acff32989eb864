"""The docs stay true to the code: what README.md, docs/ and bench/ (its Markdown) name must exist.

* A module path (``training/rl/dt.py``, ``curriculum/reviews/``) or a file named in backticks (``fsrs6.py``) exists;
  a dotted name (``training.tasks.mark_stale_jobs``) is a module and a name defined in it, or a permission.
* A management command written after ``manage.py`` exists, and so does every flag written after a command's name.
* An environment variable (``CRL_JOB_STALE_SECONDS``) is read by the code, or the name is defined in the code
  (a setting, a constant), or read by a library the project configures through it (boto3, OpenBLAS).
* ``make TARGET`` is a Makefile target; a flag written after a ``bench/*.py`` script is one of that script's; a
  relative link leads to a file.

And the reference is complete: docs/configuration.md names every environment variable the application reads,
docs/architecture.md places every module, docs/commands.md has a section per management command, bench/README.md
one per benchmark script, docs/README.md links every page of docs/.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
APPLICATION = ("crlsite", "curriculum", "training")
CODE = (*APPLICATION, "tests", "bench")


def doc_pages() -> list[Path]:
    """The documentation's pages: README.md, docs/*.md and bench/README.md (bench/data/README.md describes a data
    file's origin in another repository)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py") if "migrations" not in p.parts)


def application_modules() -> list[str]:
    """Repository-relative paths of the application's modules (no package ``__init__.py``, no migration)."""
    return [str(p.relative_to(REPO)) for p in python_files(*APPLICATION) if p.name != "__init__.py"]


# ------------------------------------------------------------------------------------------- text segments
CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
BACKTICKS = re.compile(r"`([^`\n]+)`")


def segments(text: str) -> list[str]:
    """The spans of a page that may hold a command line: each backtick span outside code blocks, and each logical
    line of a code block (a line ending in a backslash, or followed by indented lines, continues)."""
    found = []
    for block in CODE_BLOCK.findall(text):
        logical: list[str] = []
        for line in block.splitlines():
            if logical and (logical[-1].endswith("\\") or line[:1].isspace()):
                logical[-1] = logical[-1].rstrip("\\") + " " + line.strip()
            else:
                logical.append(line)
        found += logical
    found += BACKTICKS.findall(CODE_BLOCK.sub("", text))
    return found


# ------------------------------------------------------------------------------------------- module paths
PATH = re.compile(r"(?<![\w/.-])((?:crlsite|curriculum|training|tests|bench|templates|docs)/[\w./-]*[\w/])")
FILE_NAME = re.compile(r"^[\w-]+\.py$")
DOTTED = re.compile(r"(?<![\w.])((?:crlsite|curriculum|training)(?:\.\w+)+)")
PERMISSION = re.compile(r"(\w+)\.((?:add|change|delete|view|cancel|promote|run)_\w+)")


@functools.cache
def repository_file_names() -> frozenset[str]:
    nested = {p.name for folder in (*CODE, "templates", "docs") for p in (REPO / folder).rglob("*")}
    return frozenset(nested | {p.name for p in REPO.iterdir()})


def unknown_paths(text: str) -> list[str]:
    """Module paths and backticked file names (``name.py``) in ``text`` that are not in the repository."""
    missing = [path for path in PATH.findall(text) if not (REPO / path).exists()]
    missing += [name for name in BACKTICKS.findall(text) if FILE_NAME.match(name) and name not in repository_file_names()]
    return missing


def defined_names(tree: ast.Module) -> dict[str, ast.AST]:
    """The names a module (or class body) defines: functions, classes, assignments, imports."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


@functools.cache
def permissions() -> frozenset[str]:
    """``app_label.codename`` of every model permission of the project's apps (default and declared ones)."""
    from django.apps import apps

    found = set()
    for label in ("curriculum", "training"):
        for model in apps.get_app_config(label).get_models():
            opts = model._meta
            found |= {f"{label}.{action}_{opts.model_name}" for action in opts.default_permissions}
            found |= {f"{label}.{codename}" for codename, _ in opts.permissions}
    return frozenset(found)


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module of the project, optionally followed by a name it defines (and, for a class,
    a name its body defines), or a model permission."""
    if PERMISSION.fullmatch(dotted):
        return dotted in permissions()
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:end])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            break
    else:
        return False
    rest = parts[end:]
    if not rest:
        return True
    names = defined_names(ast.parse(module.read_text()))
    if rest[0] not in names:
        return False
    node = names[rest[0]]
    if len(rest) > 1 and isinstance(node, ast.ClassDef):
        return rest[1] in defined_names(ast.Module(body=node.body, type_ignores=[]))
    return True


def unknown_dotted_names(text: str) -> list[str]:
    return [name for name in DOTTED.findall(text) if not resolves(name)]


# ------------------------------------------------------------------------------------------- commands and flags
MANAGE = re.compile(r"manage\.py\s+([\w-]+)")
FLAG = re.compile(r"(?<![\w-])(--[a-zA-Z][\w-]*)")
MAKE = re.compile(r"(?<![\w/.-])make\s+([a-z][\w-]*)")
BENCH_SCRIPT = re.compile(r"(?<![\w/])(?:bench/)?(\w+\.py)")  # bench/README.md's table names them without bench/


@functools.cache
def commands() -> dict[str, str]:
    """Every management command Django knows here: name -> app."""
    from django.core.management import get_commands

    return dict(get_commands())


@functools.cache
def project_commands() -> frozenset[str]:
    return frozenset(name for name, app in commands().items() if app in APPLICATION)


@functools.cache
def command_flags(name: str) -> frozenset[str]:
    """The option strings of a management command's parser (``--help`` lists the same)."""
    from django.core.management import load_command_class

    parser = load_command_class(commands()[name], name).create_parser("manage.py", name)
    return frozenset(option for action in parser._actions for option in action.option_strings)


def _declared_flags(tree: ast.AST) -> set[str]:
    """The option strings of the ``add_argument("--x", ...)`` calls anywhere in tree."""
    return {
        arg.value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
        for arg in node.args if isinstance(arg, ast.Constant) and str(arg.value).startswith("-")
    }


@functools.cache
def script_flags(script: str) -> frozenset[str]:
    """The option strings a bench script's argparse parser declares (``add_argument("--x", ...)``), including those
    of a parser it gets from another bench module (``import training_recipe as recipe`` then
    ``recipe.experiment_parser(...)``: that function's add_argument calls)."""
    tree = ast.parse((REPO / "bench" / script).read_text())
    flags = _declared_flags(tree)
    modules = {alias.asname or alias.name: alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if (REPO / "bench" / f"{alias.name}.py").is_file()}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in modules):
            other = ast.parse((REPO / "bench" / f"{modules[node.func.value.id]}.py").read_text())
            for function in ast.walk(other):
                if isinstance(function, ast.FunctionDef) and function.name == node.func.attr:
                    flags |= _declared_flags(function)
    return frozenset(flags)


@functools.cache
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))


def _flags_after(segment: str, start: int) -> list[str]:
    # the flags of one command line: up to a comment, the next manage.py, or the next shell command
    rest = re.split(r"\s#|manage\.py|&&|;", segment[start:], maxsplit=1)[0]
    return FLAG.findall(rest)


def unknown_commands(text: str) -> list[str]:
    """Commands after ``manage.py`` that do not exist, flags after a command's name (with or without ``manage.py``
    before it) that it does not have, ``make`` targets the Makefile lacks, and flags after a bench script it lacks."""
    missing = []
    for segment in segments(text):
        for match in MANAGE.finditer(segment):
            name = match.group(1)
            if name not in commands():
                missing.append(f"manage.py {name}")
                continue
            missing += [f"{name} {flag}" for flag in _flags_after(segment, match.end()) if flag not in command_flags(name)]
        first = re.match(r"\s*([a-z_]+)\b", segment)
        if first and first.group(1) in project_commands() and "manage.py" not in segment:
            name = first.group(1)
            missing += [f"{name} {flag}" for flag in _flags_after(segment, first.end()) if flag not in command_flags(name)]
        for match in BENCH_SCRIPT.finditer(segment):
            script = match.group(1)
            if (REPO / "bench" / script).is_file():
                missing += [f"bench/{script} {flag}" for flag in _flags_after(segment, match.end())
                            if flag not in script_flags(script)]
        missing += [f"make {target}" for target in MAKE.findall(segment) if target not in make_targets()]
    return missing


def sections(text: str, level: str) -> dict[str, str]:
    """Heading (the backticked name in it, else its text) -> the section's text, for headings of ``level`` (``##``)."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    found = {}
    for heading, body in zip(parts[1::2], parts[2::2]):
        name = re.search(r"`([^`]+)`", heading)
        found[name.group(1) if name else heading.strip()] = body
    return found


def flags_outside_their_command(text: str) -> list[str]:
    """In a page with a section per command (``## `name```), flags of a section that its command does not have."""
    return [
        f"{name} {flag}"
        for name, body in sections(text, "##").items() if name in commands()
        for flag in FLAG.findall(body) if flag not in command_flags(name)
    ]


# ------------------------------------------------------------------------------------------- environment variables
ENV_NAME = re.compile(r"(?<![\w$-])([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])(?![\w-])")
ENV_GLOB = re.compile(r"(?<![\w$-])([A-Z][A-Z0-9]*_(?:[A-Z0-9]+_)*)\*")
ENV_CALLS = {"os.environ.get", "os.getenv", "os.environ.setdefault", "os.environ.pop", "env_bool", "env_int", "env_list"}
# Read by a library the project configures through the environment, not by the project's code.
LIBRARY_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "boto3's credential chain (S3 artifact storage)",
    "AWS_SECRET_ACCESS_KEY": "boto3's credential chain (S3 artifact storage)",
    "OPENBLAS_NUM_THREADS": "OpenBLAS, NumPy's BLAS (one thread per web request thread)",
    "DJANGO_SETTINGS_MODULE": "Django",
    "DJANGO_ALLOW_ASYNC_UNSAFE": "Django (set by the browser tests)",
}
# Names in the docs that look like variables but are neither: a WSGI header name, a typing constant.
OTHER_NAMES = {"HTTP_X_FORWARDED_PROTO": "the WSGI name of X-Forwarded-Proto", "TYPE_CHECKING": "typing"}


def _dotted(node: ast.AST) -> str:
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def environment_reads(path: Path) -> set[str]:
    """The environment variables a Python file reads or sets by name: ``os.environ.get("X")``, ``os.environ["X"]``,
    the settings' ``env_bool/env_int/env_list("X")``, names listed in a literal a loop reads ``os.environ`` with, and
    ``DATABASE_URL`` where ``dj_database_url.config()`` reads it."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) in ENV_CALLS and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        elif isinstance(node, ast.Call) and _dotted(node.func) == "dj_database_url.config":
            env = next((k.value for k in node.keywords if k.arg == "env"), None)
            found.add(env.value if isinstance(env, ast.Constant) else "DATABASE_URL")
        elif isinstance(node, ast.Subscript) and _dotted(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                found.add(node.slice.value)
        elif isinstance(node, (ast.comprehension, ast.For)) and isinstance(node.iter, (ast.Tuple, ast.List)):
            scope = getattr(node, "body", None) or [parent for parent in ast.walk(tree)
                                                     if isinstance(parent, (ast.DictComp, ast.ListComp, ast.SetComp,
                                                                            ast.GeneratorExp)) and node in parent.generators]
            if any(_dotted(n) == "os.environ" for part in scope for n in ast.walk(part)):
                found |= {c.value for c in ast.walk(node.iter) if isinstance(c, ast.Constant)
                          and isinstance(c.value, str) and ENV_NAME.fullmatch(c.value)}
    return found


@functools.cache
def application_variables() -> frozenset[str]:
    """The environment variables the application (crlsite, curriculum, training, and gunicorn's settings file at the
    repository's root) reads."""
    return frozenset(name for path in (*python_files(*APPLICATION), REPO / "gunicorn.conf.py")
                     for name in environment_reads(path))


@functools.cache
def environment_variables() -> frozenset[str]:
    """Every environment variable the code (application, tests, benchmarks), the Makefile or the CI script reads or
    sets, and the library variables above."""
    found = set(LIBRARY_VARIABLES)
    for path in (*python_files(*CODE), REPO / "gunicorn.conf.py"):
        found |= environment_reads(path)
    found |= set(re.findall(r"^(\w+)\s*[?:]?=", (REPO / "Makefile").read_text(), re.M))
    found |= set(re.findall(r"\bexport\s+(\w+)=", (REPO / ".ci" / "run").read_text()))
    return frozenset(found)


@functools.cache
def known_names() -> frozenset[str]:
    """Every name a page may write in capitals: the environment variables above, and the names the code defines at
    module or class level (settings, constants, class attributes)."""
    found = set(environment_variables()) | set(OTHER_NAMES)
    for path in python_files(*CODE):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Module):
                found |= set(defined_names(node))
            elif isinstance(node, ast.ClassDef):
                found |= set(defined_names(ast.Module(body=node.body, type_ignores=[])))
    return frozenset(found)


def unknown_environment_names(text: str) -> list[str]:
    """Capitalised names (``CRL_X_SECONDS``, ``SECURE_*``) in ``text`` that the code neither reads nor defines."""
    missing = [name for name in ENV_NAME.findall(text) if name not in known_names()]
    missing += [f"{prefix}*" for prefix in ENV_GLOB.findall(text)
                if not any(name.startswith(prefix) for name in known_names())]
    return missing


def configuration_table_names(text: str) -> list[str]:
    """The backticked names in the first column of every table row of docs/configuration.md."""
    return [name for row in re.findall(r"^\| (.+?) \|", text, re.M) for name in BACKTICKS.findall(row)]


def configuration_problems(text: str) -> tuple[list[str], list[str]]:
    """(names the configuration tables list that are no environment variable the code or a library reads, the
    application's environment variables the page does not name)."""
    listed = configuration_table_names(text)
    named = set(ENV_NAME.findall(text)) | set(BACKTICKS.findall(text))
    return [n for n in listed if n not in environment_variables()], sorted(application_variables() - named)


# ------------------------------------------------------------------------------------------- links
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def broken_links(page: Path, text: str) -> list[str]:
    """Relative Markdown links of ``page`` that lead to no file (web addresses and anchors are not followed)."""
    targets = [t.split("#")[0] for t in LINK.findall(text) if not re.match(r"[a-z]+:|#", t)]
    return [t for t in targets if t and not (page.parent / t).exists()]


# ------------------------------------------------------------------------------------------- the pages as they are
PAGES = {str(page.relative_to(REPO)): page for page in doc_pages()}


@pytest.mark.parametrize("name", PAGES)
def test_every_module_path_a_page_names_exists(name):
    text = PAGES[name].read_text()
    assert unknown_paths(text) + unknown_dotted_names(text) == []


@pytest.mark.parametrize("name", PAGES)
def test_every_command_flag_and_make_target_a_page_names_exists(name):
    text = PAGES[name].read_text()
    assert unknown_commands(text) + flags_outside_their_command(text) == []


@pytest.mark.parametrize("name", PAGES)
def test_every_environment_variable_a_page_names_is_read_or_defined_by_the_code(name):
    assert unknown_environment_names(PAGES[name].read_text()) == []


@pytest.mark.parametrize("name", PAGES)
def test_every_relative_link_of_a_page_leads_to_a_file(name):
    assert broken_links(PAGES[name], PAGES[name].read_text()) == []


def test_the_configuration_page_lists_exactly_the_variables_the_code_reads():
    assert configuration_problems((REPO / "docs" / "configuration.md").read_text()) == ([], [])


def test_the_architecture_page_places_every_module():
    lines = (REPO / "docs" / "architecture.md").read_text().splitlines()
    text = "\n".join(lines)

    def placed(module: str) -> bool:
        folder, name = module.rsplit("/", 1)
        return module in text or any(f"{folder}/`" in line and f"`{name}`" in line for line in lines)

    assert [module for module in application_modules() if not placed(module)] == []


def test_the_commands_page_has_a_section_per_management_command():
    names = sections((REPO / "docs" / "commands.md").read_text(), "##")
    assert sorted(project_commands() - set(names)) == []


def test_the_bench_page_has_a_section_per_benchmark_script():
    names = sections((REPO / "bench" / "README.md").read_text(), "###")
    assert sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name not in names) == []


def test_the_docs_index_links_every_page():
    index = (REPO / "docs" / "README.md").read_text()
    assert [p.name for p in (REPO / "docs").glob("*.md") if p.name != "README.md" and f"]({p.name})" not in index] == []


def test_the_code_points_only_at_docs_pages_that_exist():
    pointers = {m for path in python_files(*CODE) for m in re.findall(r"\bdocs/[\w-]+\.md\b", path.read_text())}
    assert sorted(p for p in pointers if not (REPO / p).is_file()) == []


# ------------------------------------------------------------------------------------------- the checks can fail
WRONG_PAGE = """
The encoder lives in `training/rl/encoder/no_such_part.py` and `curriculum/nowhere/`; see `not_a_module.py`,
`training.tasks.no_such_task`, `curriculum.services.promote_policy` and `training.no_such_permission_x`.

```
python manage.py train_policy --epochs 3
python manage.py evaluate_policy --policy_dir DIR --no-such-flag
.venv/bin/python bench/dtlite.py --repeats 10 --no-such-option
```

Run `make deploy`, `make test`, `train_crl_policy --epochs 2 --learning-rate 0.1`; set `CRL_NO_SUCH_SECONDS`,
`CRL_JOB_STALE_SECONDS`, `NO_SUCH_*` and `SECURE_*`. More in [the guide](no-such-page.md) and [api](api.md).
"""


def test_the_checks_name_each_wrong_path_command_flag_variable_and_link():
    assert unknown_paths(WRONG_PAGE) == ["training/rl/encoder/no_such_part.py", "curriculum/nowhere/", "not_a_module.py"]
    assert unknown_dotted_names(WRONG_PAGE) == ["training.tasks.no_such_task", "training.no_such_permission_x"]
    assert unknown_commands(WRONG_PAGE) == [
        "manage.py train_policy", "evaluate_policy --no-such-flag", "bench/dtlite.py --no-such-option",
        "make deploy", "train_crl_policy --learning-rate",
    ]
    assert unknown_environment_names(WRONG_PAGE) == ["CRL_NO_SUCH_SECONDS", "NO_SUCH_*"]
    assert broken_links(REPO / "docs" / "api.md", WRONG_PAGE) == ["no-such-page.md"]


def test_a_flag_in_another_commands_section_is_named():
    page = "## `create_api_token`\n\nUSERNAME [`--rotate`]; not `--json`.\n\n## `calibration_report`\n\n`--json`.\n"
    assert flags_outside_their_command(page) == ["create_api_token --json"]


def test_a_configuration_table_must_list_only_and_every_variable_the_code_reads():
    table = "| variable | default |\n| --- | --- |\n| `CRL_ENV` | x |\n| `CELERY_BEAT_SCHEDULE` | y |\n"
    not_variables, undocumented = configuration_problems(table)
    assert not_variables == ["CELERY_BEAT_SCHEDULE"]  # a setting the code defines, not an environment variable
    assert "CRL_ENV" not in undocumented and {"DATABASE_URL", "SECRET_KEY", "AWS_LOCATION"} <= set(undocumented)
