"""Launch files and deployment configs, tested without `launch` (not installable here): they compile,
every parameter they set is one the node declares, every file they name exists; the real launch
description is built only where `launch` imports."""
import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from diffusion_policy_ros.config import load_deploy_config
from diffusion_policy_ros.ros.policy_node import declared_parameters

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR, CONFIG_DIR = ROOT / "launch", ROOT / "config"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))
BUILTIN = {"use_sim_time"}  # declared by every rclpy node


def flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out += flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return out


def node_calls(tree):
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Node":
            yield {kw.arg: kw.value for kw in call.keywords}


def test_launch_files_exist_and_compile():
    assert {p.name for p in LAUNCH_FILES} >= {"arm.launch.py", "aerial.launch.py"}
    for path in LAUNCH_FILES:
        compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_sets_only_declared_parameters_and_names_existing_files(path):
    tree = ast.parse(path.read_text())
    declared = set(declared_parameters()) | BUILTIN
    nodes = [kw for kw in node_calls(tree) if getattr(kw.get("executable"), "value", None) == "policy_node"]
    assert len(nodes) == 1
    params = nodes[0]["parameters"]
    set_keys = [k.value for d in ast.walk(params) if isinstance(d, ast.Dict) for k in d.keys]
    assert set_keys and set(set_keys) <= declared, set(set_keys) - declared
    # Files it names inside this package's share folder exist in the source tree (installed by setup.py).
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "PathJoinSubstitution":
            parts = [getattr(e, "value", None) for e in call.args[0].elts]
            if "diffusion_policy_ros" in ast.unparse(call):
                assert (ROOT.joinpath(*[p for p in parts[1:] if p])).is_file(), parts
    # The default config it passes is a parameter file the node accepts.
    cfg_name = "aerial.yaml" if "aerial" in path.name else "arm.yaml"
    assert cfg_name in path.read_text()
    load_deploy_config(CONFIG_DIR / cfg_name)


@pytest.mark.parametrize("name", ["arm", "aerial"])
def test_deployment_configs_set_only_declared_parameters_with_their_types(name):
    data = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())["policy_node"]["ros__parameters"]
    declared = declared_parameters()
    for key in flat_keys(data):
        assert key in declared, f"{name}.yaml sets undeclared parameter {key}"
        default, value = declared[key], data
        for part in key.split("."):
            value = value[part]
        if isinstance(default, float):
            assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        elif default == [] or isinstance(default, list):
            assert isinstance(value, list), key
        else:
            assert type(value) is type(default), (key, value, default)


def _launch_installed() -> bool:
    try:  # the repository's launch/ folder also imports as an (empty) namespace package
        from launch import LaunchDescription  # noqa: F401
        import launch_ros  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _launch_installed(), reason="ROS 2 launch / launch_ros are not installed here")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities
