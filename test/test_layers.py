"""The house rules, read from the source: imports point down the layers, no import cycles, and rclpy
only under ros/. Every import counts, module level or inside a function (a lazy import is still a
dependency). Pure ast: nothing is imported."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "diffusion_policy_ros"

# Bottom (0) to top. A module may import its own layer or any layer below it.
LAYERS = [
    {"__init__", "constants", "errors", "config", "geometry", "mujoco_gl"},
    {"model", "diffusion", "action"},
    {"perception", "embodiment"},
    {"checkpoint"},
    {"policy"},
    {"runtime"},
    {"io"},
    {"data", "sim", "train"},
    {"ros", "cli", "modes_demo"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The package module an import of ``name`` (dotted, package-relative) loads, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Package-internal modules that ``module`` imports (from any scope)."""
    is_pkg = path.name == "__init__.py"
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("diffusion_policy_ros"):
                stem = node.module.partition(".")[2]
            else:
                continue
            names = [f"{stem}.{a.name}" if stem else a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.partition(".")[2] for a in node.names if a.name.startswith("diffusion_policy_ros.")]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _room(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


def test_every_room_has_a_layer():
    rooms = {_room(m) for m in MODULES}
    assert rooms <= set(RANK), f"rooms without a layer in this test: {sorted(rooms - set(RANK))}"


def test_imports_point_down():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if RANK[_room(t)] > RANK[_room(m)]]
    assert not upward, "imports into a higher layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(GRAPH[m]):
            if t.startswith(m + ".") or m.startswith(t + "."):
                continue  # a package and its own modules
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_rclpy_only_in_ros(module):
    if _room(module) == "ros":
        return
    tree = ast.parse(MODULES[module].read_text())
    uses = [n.lineno for n in ast.walk(tree)
            if (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "rclpy" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "rclpy")]
    assert not uses, f"{module} imports rclpy (lines {uses}); only ros/ may"
