"""``dpros sim-eval --ros``: the same episodes, but through the policy node over DDS.

This process hosts the sim node (``ros/sim_node.py``: realsense-ros / ros2_control topics, /clock) and
starts the policy node as its own process with ``use_sim_time`` and the sim deploy config, exactly as
``ros2 run`` would. Per episode: reset the scene, ``~/enable`` the policy, let the sim run (at
``real_time_factor``: the sim does not wait for the policy) until success or time-out, disable.
Latency is wall time from a cycle's sim time being published to its trajectory reaching the sim.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool
from tqdm import tqdm

from ..errors import SimError
from ..sim.env import Episode, SimEnv, eval_config, sim_config_path, task_embodiment
from ..sim.stats import summarize
from .sim_node import SimNode

POLICY_NODE = "/policy_node"


def _ros_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_ros_value(x) for x in v) + "]"
    return str(v)


def evaluate_ros(task: str, checkpoint: str, episodes: int, seed: int = 0, embodiment: str | None = None,
                 deploy_config: str | None = None, overrides: dict | None = None, out=None, videos: int = 2,
                 real_time_factor: float = 0.25, progress: bool = True, startup_timeout_s: float = 120.0) -> dict:
    embodiment = task_embodiment(task, embodiment)
    cfg = eval_config(task, checkpoint, embodiment, deploy_config, overrides)
    params_file = str(sim_config_path(embodiment, deploy_config))
    args = ["-p", f"checkpoint:={checkpoint}", "-p", "use_sim_time:=true", "-p", "start_enabled:=false"]
    for k, v in (overrides or {}).items():
        args += ["-p", f"{k}:={_ros_value(v)}"]
    log = tempfile.NamedTemporaryFile("w+", prefix="policy_node_", suffix=".log", delete=False)
    proc = None
    rclpy.init()
    env = SimEnv(task, cfg, embodiment)
    node = SimNode(env, parameter_overrides=[Parameter("task", value=task), Parameter("seed", value=seed),
                                             Parameter("real_time_factor", value=float(real_time_factor))])
    node.pause(True)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    eps: list[Episode] = []
    t0 = time.perf_counter()

    def check_alive():
        if node.error:
            raise SimError(node.error)
        if proc.poll() is not None:
            log.flush()
            tail = Path(log.name).read_text()[-1500:]
            raise SimError(f"policy node exited with code {proc.returncode}; its log ({log.name}) ends:\n{tail}")

    def enable(on: bool) -> None:
        """Call ~/enable; an unanswered call is sent again (idempotent). Fast DDS can drop the response
        to a client whose reader the server has not matched yet ("failed to send response")."""
        deadline = time.monotonic() + 30
        while True:
            fut = client.call_async(SetBool.Request(data=on))
            resend = time.monotonic() + 3
            while not fut.done() and time.monotonic() < min(resend, deadline):
                check_alive()
                time.sleep(0.01)
            if fut.done():
                res = fut.result()
                if res.success:
                    return
                # Refused (its publisher has not matched the sim's subscriber yet): ask again shortly.
                if time.monotonic() > deadline:
                    raise SimError(f"{POLICY_NODE}/enable: {res.message}")
                time.sleep(0.2)
                continue
            client.remove_pending_request(fut)
            if time.monotonic() > deadline:
                raise SimError(f"{POLICY_NODE}/enable: no answer within 30 s")

    try:
        proc = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.ros.policy_node", "--ros-args",
                                 "--params-file", params_file, *args], stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy())
        client = node.create_client(SetBool, f"{POLICY_NODE}/enable")
        deadline = time.monotonic() + startup_timeout_s
        while not client.wait_for_service(timeout_sec=0.5):
            check_alive()
            if time.monotonic() > deadline:
                raise SimError(f"policy node: {POLICY_NODE}/enable not up within {startup_timeout_s:.0f} s")
        bar = tqdm(range(seed, seed + episodes), desc=f"sim-eval --ros {task}", disable=not progress)
        for s in bar:
            ep = Episode(s, False, 0, node.episode_start(s))
            node.record_frames = len(eps) < videos and out is not None
            node.recording = ep
            end_ns = node.now_ns() + int(env.task.duration_s * 1e9)
            wall_limit = time.monotonic() + env.task.duration_s / real_time_factor * 3 + 30
            node.pause(False)
            enable(True)
            while not node.success and not env.task.failure(env.sim) and node.now_ns() < end_ns:
                check_alive()
                if time.monotonic() > wall_limit:
                    raise SimError(f"seed {s}: the sim made no progress for {env.task.duration_s * 3:.0f} s")
                time.sleep(0.02)
            enable(False)
            node.pause(True)
            node.recording = None
            ep.success, ep.failure = bool(node.success), env.task.failure(env.sim)
            stats = env.sim.follower.stats  # what the controller received, as JTC executes it
            ep.first_point_in_past, ep.max_handover_jump = stats.first_point_in_past, stats.max_jump
            eps.append(ep)
            bar.set_postfix(success=f"{sum(e.success for e in eps)}/{len(eps)}")
        return summarize(env.task, embodiment, checkpoint, eps, seed, list(node.latency_ms), time.perf_counter() - t0,
                         out, transport="ros", real_time_factor=real_time_factor, delay_ms="node",
                         execution=cfg.execution_label(),
                         trajectories_received=node.received, trajectories_rejected=node.rejected)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        log.close()
