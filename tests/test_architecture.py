"""The floors of docs/architecture.md, checked on every product file's imports (module level and inside
functions alike), read with the standard library's ``ast``:

(a) a package imports only its own floor and the floors below it;
(b) no import cycle exists between files;
(c) services never import a tasks module: they enqueue by name (common/taskqueue.py), and every name
    enqueued anywhere is a registered Celery task.

The checker is tested too: on small planted trees it must name the offending import.
"""

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The floors, lowest first (docs/architecture.md). A package may import its own floor and the ones below.
FLOORS = {
    "common": 0,  # the ground floor: imports no app
    "audit": 1,  # the trail of operator actions, which every app may record to
    "bitrix24": 2,
    "idgtl": 2,  # the clients of the remote APIs (HTTP; idgtl also keeps its accounts)
    "fakes": 2,  # stand-ins for the remote APIs (tests, the sandbox): their contracts only
    "providers": 3,
    "sendernames": 3,  # the domain apps
    "b24sms": 4,  # settings, URLs, Celery wiring, the operator pages
}
FLOOR_NAMES = {
    0: "the ground floor",
    1: "the audit trail",
    2: "the clients",
    3: "the domain apps",
    4: "the project's wiring",
}
ENQUEUE_FUNCTIONS = {"enqueue", "enqueue_on_commit", "enqueue_later"}
GENERIC_ENQUEUERS = {"common.taskqueue", "common.debounce"}  # enqueue a name they are given


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the project module imported
    path: str  # the importing file, relative to the root
    line: int
    lazy: bool  # inside a function

    def __str__(self):
        where = "inside a function" if self.lazy else "at module level"
        return f"{self.path}:{self.line} imports {self.target} ({where})"


def product_modules(root: Path) -> dict[str, Path]:
    """Every .py file of the product packages (migrations included), by module name."""
    modules = {}
    for package in FLOORS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict) -> str | None:
    """The project module ``name`` stands for: itself, or the module holding it (``pkg.mod.function``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _lazy_nodes(tree: ast.AST) -> set[int]:
    lazy = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy.update(id(inner) for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom)))
    return lazy


def imports_of(module: str, path: Path, modules: dict, root: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy = _lazy_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append(Import(module, target, str(path.relative_to(root)), node.lineno, id(node) in lazy))
    return found


def import_graph(root: Path = ROOT) -> list[Import]:
    modules = product_modules(root)
    return [found for module, path in modules.items() for found in imports_of(module, path, modules, root)]


def floor_of(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def floor_violations(imports: list[Import]) -> list[str]:
    return [
        f"{found}: {FLOOR_NAMES[floor_of(found.source)]} may not import {FLOOR_NAMES[floor_of(found.target)]}"
        for found in imports
        if floor_of(found.target) > floor_of(found.source)
    ]


def import_cycles(imports: list[Import]) -> list[list[Import]]:
    """One cycle (as the imports that make it) per group of files that import each other."""
    edges: dict[str, dict[str, Import]] = {}
    for found in imports:
        edges.setdefault(found.source, {}).setdefault(found.target, found)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start = min(group)
        path, seen = [start], {start: None}
        while True:  # walk inside the group until a file comes back
            here = path[-1]
            target = min(t for t in edges[here] if t in group)
            if target in seen:
                path.append(target)
                path = path[path.index(target) :]
                break
            seen[target] = here
            path.append(target)
        cycles.append([edges[a][b] for a, b in zip(path, path[1:], strict=False)])
    return cycles


def services_importing_tasks(imports: list[Import]) -> list[str]:
    return [
        f"{found}: a service enqueues by name (common/taskqueue.py), it does not import tasks"
        for found in imports
        if "services" in found.source.split(".") and "tasks" in found.target.split(".")
    ]


def enqueued_task_names(root: Path = ROOT) -> dict[str, list[str]]:
    """Every task name passed to enqueue*(), with where: a string, or a module-level ``*_TASK`` constant."""
    modules = product_modules(root)
    constants = {}
    trees = {}
    for module, path in modules.items():
        trees[module] = tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.endswith("_TASK"):
                        constants.setdefault(target.id, set()).add(node.value.value)
    names: dict[str, list[str]] = {}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func == "DebouncedRun":  # DebouncedRun(task=...): enqueued by common/debounce.py
                first = next((k.value for k in node.keywords if k.arg == "task"), None)
            elif func in ENQUEUE_FUNCTIONS and node.args and module not in GENERIC_ENQUEUERS:
                first = node.args[0]
            else:
                continue
            if first is None:
                continue
            where = f"{modules[module].relative_to(root)}:{node.lineno}"
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                values = {first.value}
            else:
                constant = first.attr if isinstance(first, ast.Attribute) else getattr(first, "id", "")
                values = constants.get(constant) or {f"<unreadable: {ast.unparse(first)}>"}
            for value in values:
                names.setdefault(value, []).append(where)
    return names


# --- The product ---------------------------------------------------------------------------------------
def test_no_floor_imports_a_higher_floor():
    violations = floor_violations(import_graph())
    assert not violations, "imports against the floors (docs/architecture.md):\n" + "\n".join(violations)


def test_no_import_cycle_between_files():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(str(found) for found in cycle) for cycle in cycles)


def test_services_enqueue_tasks_by_name_only():
    offending = services_importing_tasks(import_graph())
    assert not offending, "\n".join(offending)


def test_every_task_enqueued_by_name_is_registered():
    from celery import current_app

    names = enqueued_task_names()
    assert {
        "providers.tasks.register_provider",
        "providers.tasks.send_waiting_messages",  # the checker reads
        "providers.tasks.apply_callback_events",  # DebouncedRun(task=...)
        "providers.tasks.report_installation_statuses",
        "sendernames.tasks.submit_application",
    } <= set(names)
    unknown = {name: where for name, where in names.items() if name not in current_app.tasks}
    assert not unknown, f"enqueued but no task is registered under that name: {unknown}"


# --- The checker, on planted trees -----------------------------------------------------------------------
def plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for package in FLOORS:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_the_checker_names_an_upward_import_even_inside_a_function(tmp_path):
    root = plant(
        tmp_path,
        {
            "bitrix24/client.py": """
            def save(installation):
                from providers.models import Installation
                return Installation
        """,
            "providers/models.py": "Installation = object\n",
        },
    )
    violations = floor_violations(import_graph(root))
    assert violations == [
        "bitrix24/client.py:3 imports providers.models (inside a function): the clients may not import the domain apps"
    ]


def test_the_checker_names_an_import_cycle_through_a_lazy_relative_import(tmp_path):
    root = plant(
        tmp_path,
        {
            "providers/services/__init__.py": "",
            "providers/tasks/__init__.py": "",
            "providers/services/sending.py": """
            def schedule():
                from ..tasks.messages import send
                send()
        """,
            "providers/tasks/messages.py": "from providers.services.sending import schedule\n",
        },
    )
    imports = import_graph(root)
    cycles = import_cycles(imports)
    assert [[str(found) for found in cycle] for cycle in cycles] == [
        [
            "providers/services/sending.py:3 imports providers.tasks.messages (inside a function)",
            "providers/tasks/messages.py:1 imports providers.services.sending (at module level)",
        ]
    ]
    assert floor_violations(imports) == []
    assert services_importing_tasks(imports) == [
        "providers/services/sending.py:3 imports providers.tasks.messages (inside a function): "
        "a service enqueues by name (common/taskqueue.py), it does not import tasks"
    ]


def test_the_checker_reads_task_names_from_strings_and_constants(tmp_path):
    root = plant(
        tmp_path,
        {
            "sendernames/services.py": """
            from common.taskqueue import enqueue_on_commit
            SUBMIT_TASK = "sendernames.tasks.submit_application"
            def queue(pk):
                enqueue_on_commit(SUBMIT_TASK, pk)
                enqueue_on_commit("sendernames.tasks.renamed_away", pk)
        """,
        },
    )
    assert enqueued_task_names(root) == {
        "sendernames.tasks.submit_application": ["sendernames/services.py:5"],
        "sendernames.tasks.renamed_away": ["sendernames/services.py:6"],
    }


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_every_product_package_is_on_a_floor(package):
    assert (ROOT / package / "__init__.py").exists()
