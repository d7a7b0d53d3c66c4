"""Launch files and deployment configs, tested without `launch` (not installable here): they compile,
every parameter they set is one the node declares, every file they name exists; the real launch
description is built only where `launch` imports."""
import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from diffusion_policy_ros.config import load_deploy_config
from diffusion_policy_ros.ros import policy_node, recorder_node, teleop_node

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR, CONFIG_DIR = ROOT / "launch", ROOT / "config"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))
BUILTIN = {"use_sim_time"}  # declared by every rclpy node
DECLARED = {"policy_node": policy_node.declared_parameters(), "recorder_node": recorder_node.declared_parameters(),
            "teleop_node": teleop_node.declared_parameters()}  # executable → its parameters and defaults
CONFIGS = {"arm.yaml": ["policy_node"], "aerial.yaml": ["policy_node"], "ur.yaml": ["policy_node"],
           "record.yaml": ["recorder_node", "teleop_node"]}


def sections(path: Path) -> dict[str, dict]:
    """A shipped parameter file's node sections. Every one uses the wildcard form `/**/<node>`: a plain
    `policy_node:` matches only /policy_node, so under namespace:=robot1 the node would silently run on
    its defaults."""
    data = yaml.safe_load(path.read_text())
    assert all(k.startswith("/**/") for k in data), (path.name, sorted(data))
    return {k[len("/**/"):]: v for k, v in data.items()}


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
    assert {p.name for p in LAUNCH_FILES} >= {"arm.launch.py", "aerial.launch.py", "record.launch.py"}
    for path in LAUNCH_FILES:
        compile(path.read_text(), str(path), "exec")


def declared_arguments(tree) -> dict[str, object]:
    """A launch file's DeclareLaunchArgument names → default: a string, a shipped file (Path), or None."""
    out = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument":
            kw = {k.arg: k.value for k in call.keywords}
            default = kw.get("default_value")
            if isinstance(default, ast.Constant):
                default = default.value
            elif isinstance(default, ast.Call) and getattr(default.func, "id", None) == "PathJoinSubstitution":
                parts = [getattr(e, "value", None) for e in default.args[0].elts]
                default = ROOT.joinpath(*[p for p in parts[1:] if p])  # share/diffusion_policy_ros/… = source tree
            out[call.args[0].value] = default
    return out


def launch_defaults(path: Path, **given) -> dict[str, str]:
    args = declared_arguments(ast.parse(path.read_text()))
    return {k: str(v) if v is not None else "" for k, v in args.items()} | given


BUILDERS = {"arm.launch.py": ("arm", "policy_node"), "aerial.launch.py": ("aerial", "policy_node"),
            "record.launch.py": (None, "recorder_node")}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_declare_what_their_nodes_read_and_set_only_declared_parameters(path):
    from diffusion_policy_ros.ros import launch_parts as L

    kind, exe = BUILDERS[path.name]
    tree = ast.parse(path.read_text())
    needed = L.POLICY_ARGS[kind] if kind else L.RECORDER_ARGS
    assert set(needed) <= set(declared_arguments(tree)), set(needed) - set(declared_arguments(tree))
    args = launch_defaults(path, checkpoint="/ckpt")
    config, overrides = L.policy_node_parameters(kind, args) if kind else L.recorder_node_parameters(args)
    assert Path(config).is_file() and Path(config).name in CONFIGS and exe in CONFIGS[Path(config).name]
    assert set(overrides) <= set(DECLARED[exe]) | BUILTIN, set(overrides) - set(DECLARED[exe])
    if kind:
        load_deploy_config(config, overrides={k: v for k, v in overrides.items() if k != "use_sim_time"})
    # teleop_node reads the same parameter file (plain Node in the launch file).
    for kw in node_calls(tree):
        if getattr(kw.get("package"), "value", None) == "diffusion_policy_ros":
            assert kw["executable"].value in CONFIGS[Path(config).name]


def test_launch_arguments_reach_nodes_as_typed_strings_paths_expanded_and_files_checked(tmp_path, monkeypatch):
    from diffusion_policy_ros.errors import ConfigError
    from diffusion_policy_ros.ros import launch_parts as L

    monkeypatch.setenv("HOME", str(tmp_path))
    rec = launch_defaults(LAUNCH_DIR / "record.launch.py", output_dir="~/demos/wipe", task="1", note="grip: firm")
    _, o = L.recorder_node_parameters(rec)
    # `task:=1` stays the string "1", a YAML-looking note stays text, `~` is the home folder, not ./~
    assert o["output_dir"] == str(tmp_path / "demos" / "wipe") and o["task"] == "1" and o["note"] == "grip: firm"
    with pytest.raises(ConfigError, match="config:=/nope/my_record.yaml"):
        L.recorder_node_parameters(rec | {"config": "/nope/my_record.yaml"})
    arm = launch_defaults(LAUNCH_DIR / "arm.launch.py", checkpoint="~/ckpt")
    config, o = L.policy_node_parameters("arm", arm)
    assert o["checkpoint"] == str(tmp_path / "ckpt") and "topics.command" not in o  # the file's topic kept
    _, o = L.policy_node_parameters("arm", arm | {"controller": "scaled_joint_trajectory_controller"})
    assert o["topics.command"] == "/scaled_joint_trajectory_controller/joint_trajectory"
    aerial = launch_defaults(LAUNCH_DIR / "aerial.launch.py", checkpoint="/c")
    for output in ("multidof", "pose", "px4"):
        _, o = L.policy_node_parameters("aerial", aerial | {"output": output})
        assert o["output"] == output and o["topics.command"] == L.AERIAL_COMMAND_TOPICS[output]
    assert len(set(L.AERIAL_COMMAND_TOPICS.values())) == 3
    with pytest.raises(ConfigError, match="output:=joint_trajectory"):
        L.policy_node_parameters("aerial", aerial | {"output": "joint_trajectory"})


def test_record_launch_takeover_points_teleop_at_the_policy_nodes_takeover_topics():
    from diffusion_policy_ros.config import DeployConfig
    from diffusion_policy_ros.ros import launch_parts as L

    rec = launch_defaults(LAUNCH_DIR / "record.launch.py")
    assert set(L.TELEOP_ARGS) <= set(rec)
    config, o = L.teleop_node_parameters(rec)
    assert Path(config).name == "record.yaml" and "takeover_topic" not in o  # default: the arm's own twist input
    _, o = L.teleop_node_parameters(rec | {"takeover": "true"})
    assert set(o) <= set(DECLARED["teleop_node"]) | BUILTIN
    t = DeployConfig().topics  # what policy_node listens on
    assert (o["twist_topic"], o["gripper_topic"], o["takeover_topic"]) == (t.teleop_twist, t.teleop_gripper, t.takeover)
    assert recorder_node.declared_parameters()["takeover_topic"] == t.takeover  # and the recorder marks it


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_files_set_only_declared_parameters_with_their_types(name):
    data = sections(CONFIG_DIR / name)
    assert sorted(data) == sorted(CONFIGS[name])
    for node, params in data.items():
        declared = DECLARED[node]
        for key in flat_keys(params["ros__parameters"]):
            assert key in declared, f"{name} sets undeclared parameter {node}.{key}"
            default, value = declared[key], params["ros__parameters"]
            for part in key.split("."):
                value = value[part]
            if isinstance(default, float):
                assert isinstance(value, (int, float)) and not isinstance(value, bool), key
            elif isinstance(default, list):
                assert isinstance(value, list), key
            else:
                assert type(value) is type(default), (key, value, default)


def test_record_config_builds_the_teleop_mapping_and_records_its_commands():
    from diffusion_policy_ros.runtime.teleop import TeleopConfig

    data = sections(CONFIG_DIR / "record.yaml")
    teleop = data["teleop_node"]["ros__parameters"]
    TeleopConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in teleop.items()
                    if k in TeleopConfig.__dataclass_fields__})
    topics = data["recorder_node"]["ros__parameters"]["topics"]
    assert teleop["twist_topic"] in topics and teleop["gripper_topic"] in topics
    buttons = [v for k, v in teleop.items() if k.endswith("_button") and v >= 0]
    assert len(buttons) == len(set(buttons))


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


def test_package_xml_depends_on_every_package_the_launch_files_start():
    import xml.etree.ElementTree as ET

    deps = {e.text for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}
    sources = [p.read_text() for p in LAUNCH_FILES] + [(ROOT / "diffusion_policy_ros/ros/launch_parts.py").read_text()]
    started = set()
    for tree in map(ast.parse, sources):
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Node", "FindPackageShare"):
                value = call.args[0] if call.args else {k.arg: k.value for k in call.keywords}.get("package")
                if isinstance(value, ast.Constant):
                    started.add(value.value)
    assert {"realsense2_camera", "joy"} <= started
    assert started - {"diffusion_policy_ros"} <= deps, started - deps
    assert "rclpy_lifecycle" not in deps  # no such rosdep key (rclpy has the lifecycle API)
