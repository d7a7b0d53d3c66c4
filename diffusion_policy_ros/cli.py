"""`dpros` command line: train, make-dataset, collect, convert, replay, sim-eval, demo, modes-demo, configs, info."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import ConfigError, DiffusionPolicyRosError


def _cmd_train(args) -> int:
    from .config import load_config
    from .train import Trainer

    cfg = load_config(args.config, variant=args.variant, overrides=args.set)
    deploy = _deploy(args.deploy_config, args.param) if args.deploy_config or args.param else None
    ckpt = Trainer(cfg, args.dataset, args.out, resume=args.resume, progress=not args.no_progress,
                   deploy=deploy).run()
    print(f"checkpoint: {ckpt}")
    return 0


def _cmd_distill(args) -> int:
    from .config import resolve_shipped_checkpoint
    from .train import Distiller

    ckpt = Distiller(resolve_shipped_checkpoint(args.checkpoint), args.dataset, args.out,
                     student_steps=args.student_steps, max_steps=args.steps, batch_size=args.batch_size,
                     lr=args.lr, seed=args.seed, resume=args.resume, progress=not args.no_progress).run()
    print(f"checkpoint: {ckpt}")
    return 0


def _cmd_make_dataset(args) -> int:
    from .data.synthetic import ObstacleScene, make_obstacle_dataset

    scene = ObstacleScene(num_points=args.num_points, image_size=args.image_size)
    path = make_obstacle_dataset(args.out, n_episodes=args.episodes, seed=args.seed, scene=scene)
    print(f"dataset: {path} ({args.episodes} episodes, two modes: left/right of the box)")
    return 0


def _parse_sets(items: list[str]) -> dict:
    import yaml


    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected KEY=VALUE, got '{item}'")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _cmd_collect(args) -> int:
    from .sim.metaworld_tasks import is_metaworld

    if is_metaworld(args.task):  # in .venv-metaworld (make setup-metaworld)
        from .sim import metaworld_tasks as MW

        if args.format != "zarr":
            raise ConfigError(f"--format: Meta-World tasks collect to zarr only, got {args.format}")
        summary = MW.collect(args.task, args.episodes, args.out, seed=args.seed,
                             num_points=args.num_points or MW.NUM_POINTS, crop=args.crop, rgb_size=args.rgb_size,
                             overwrite=args.overwrite, progress=not args.no_progress, episode_end=args.episode_end,
                             pool=args.pool)
        print(json.dumps(summary, indent=2) if args.json else
              f"dataset: {summary['dataset']} ({summary['episodes']} successful expert episodes, {summary['steps']} "
              f"steps, seeds {summary['seeds'][0]}–{summary['seeds'][1]}; failed: {summary['failed_seeds'] or 'none'}); "
              f"train with: dpros train dp3 " + " ".join(f"--set {o}" for o in MW.config_overrides()) +
              (" (or dpros train dp_image " + " ".join(f"--set {o}" for o in MW.image_config_overrides(args.rgb_size))
               + ")" if args.rgb_size else ""))
        return 0 if summary["episodes"] == args.episodes else 1
    if args.format == "bags":
        from .sim.record import BagOptions, collect_bags

        opts = BagOptions(storage=args.storage, typestore=args.typestore, compressed_color=args.compressed_color)
        summary = collect_bags(args.task, args.episodes, args.out, seed=args.seed, opts=opts,
                               progress=not args.no_progress, expert=args.expert)
        print(json.dumps(summary, indent=2) if args.json else
              f"bags: {args.out} ({summary['episodes']} episodes; expert failures (episode.json success false): "
              f"{summary['failed_seeds'] or 'none'})")
        return 0
    if args.takeover:
        from .sim.experts import collect_takeover

        summary = collect_takeover(args.task, args.takeover, args.episodes, args.out, seed=args.seed,
                                   delay=args.delay_ms, draws=args.takeover_draws,
                                   num_points=args.num_points or 256, expert=args.expert or "servo",
                                   progress=not args.no_progress)
        print(json.dumps(summary, indent=2) if args.json else
              f"dataset: {summary['dataset']} (+{summary['segments']} expert take-overs, {summary['steps']} steps; "
              f"{summary['episodes']} episodes in all; skipped: {summary['skipped']})")
        return 0
    from .sim.experts import collect

    summary = collect(args.task, args.episodes, args.out, seed=args.seed, num_points=args.num_points or 256,
                      embodiment=args.embodiment, progress=not args.no_progress, overwrite=args.overwrite,
                      expert=args.expert)
    print(json.dumps(summary, indent=2) if args.json else
          f"dataset: {summary['dataset']} ({summary['episodes']} episodes, {summary['steps']} steps; "
          f"expert failures left out: {summary['failed_seeds'] or 'none'})")
    return 0


def _bag_paths(items: list[str], include_failed: bool) -> list:
    """Bag folders/files; a folder without metadata.yaml → the bags inside it, in name order. Partial
    recordings (``*.partial``) and failed episodes (episode.json success false) are left out."""
    from pathlib import Path

    from .errors import BagError

    out = []
    for item in items:
        p = Path(item)
        if not p.exists():
            raise BagError(f"bag: expected a rosbag2 folder, a bag file or a folder of bags, got '{p}' (not found)")
        found = [p] if p.is_file() or (p / "metadata.yaml").exists() else sorted(
            c for c in p.iterdir() if c.is_dir() and ((c / "metadata.yaml").exists() or c.suffix == ".partial"))
        if not found:
            raise BagError(f"bag: no rosbag2 folders (with metadata.yaml) in '{p}'")
        for b in found:
            if b.suffix == ".partial":
                print(f"skipped {b}: partial recording (the recorder stopped before closing it)", file=sys.stderr)
                continue
            meta = b / "episode.json"
            if not include_failed and meta.exists() and json.loads(meta.read_text()).get("success") is False:
                print(f"skipped {b}: episode marked unsuccessful (--include-failed to keep it)", file=sys.stderr)
                continue
            out.append(b)
    return out


def _deploy(path: str | None, params: list[str], default: str = "arm.yaml"):
    from .config import load_deploy_config, resolve_shipped

    return load_deploy_config(path or resolve_shipped("config", default, "--deploy-config"),
                              overrides=_parse_sets(params))


def _cmd_convert(args) -> int:
    from pathlib import Path

    from .checkpoint import checkpoint_config
    from .config import load_config
    from .data.convert import convert_bags

    if Path(args.config).is_dir():  # a checkpoint folder: the config it was trained with
        cfg = checkpoint_config(args.config)
    else:
        cfg = load_config(args.config, variant=args.variant, overrides=args.set)
    summary = convert_bags(_bag_paths(args.bags, args.include_failed), cfg, _deploy(args.deploy_config, args.param),
                           args.out, action=args.action, command_topic=args.command_topic,
                           typestore=args.typestore, overwrite=args.overwrite, progress=not args.no_progress,
                           format=args.format, segments=args.segments)
    print(json.dumps(summary, indent=2) if args.json else
          f"dataset ({summary['format']}): {summary['dataset']}: +{summary['episodes']} episodes ({summary['steps']} steps), "
          f"{summary['total_episodes']} in all; skipped: {len(summary['skipped'])}; "
          f"messages dropped: {sum(summary['dropped_messages'].values())}")
    return 0 if summary["episodes"] else 1


def _cmd_replay(args) -> int:
    from .config import resolve_shipped_checkpoint
    from .io.replay import replay
    from .runtime.deployment import load_policy

    deploy = _deploy(args.deploy_config, args.param)
    policy = load_policy(deploy, resolve_shipped_checkpoint(args.checkpoint))
    s = replay(args.bag, policy, deploy, args.out, rate=args.rate, typestore=args.typestore,
               progress=not args.no_progress, rerun=args.rerun)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    err = f"action RMSE {s['action_rmse']:.4f} (per dim {s['action_rmse_per_dim']})" if "action_rmse" in s else \
        "no action error (too few recorded states)"
    print(f"{s['bag']}: {s['cycles']} cycles, {s['commands']} trajectories, {s['holds']} holds {s['hold_reasons']}, "
          f"{s['overrun_cycles']} overrun; {err}; cycle p50/p99 {s.get('cycle_p50_ms', 0):.1f}/"
          f"{s.get('cycle_p99_ms', 0):.1f} ms\nwritten: {s['bag_out']}, {args.out}/summary.json"
          + (f", {s['plot']}" if "plot" in s else ""))
    return 0


def _sim_list() -> str:
    from .config import share_dirs
    from .sim.env import SIM_CONFIGS
    from .sim.tasks import TASKS

    lines = ["tasks:"] + [f"  {n:<10} {t().embodiment:<6} {t().description}" for n, t in TASKS.items()]
    lines += ["embodiments: " + ", ".join(SIM_CONFIGS), "shipped checkpoints:"]
    for d in share_dirs("checkpoints"):
        lines += [f"  {p}" for p in sorted(d.iterdir()) if (p / "checkpoint").is_dir() or p.is_dir()]
    return "\n".join(lines)


def _cmd_sim_eval(args) -> int:
    from .config import resolve_shipped_checkpoint
    from .sim.closed_loop import evaluate
    from .sim.report import results_table

    if args.list:
        print(_sim_list())
        return 0
    from .sim.metaworld_tasks import is_metaworld

    if is_metaworld(args.task):  # in .venv-metaworld; through PolicyRuntime (or DP3's loop with --direct)
        from .sim.metaworld_tasks import evaluate as evaluate_mw

        if args.ros or args.guidance is not None or args.deploy_config or args.embodiment:
            raise ConfigError("metaworld tasks: --ros, --guidance, --deploy-config and --embodiment do not apply "
                              "(the environment is Meta-World's; --set changes the runtime's parameters)")
        summary = evaluate_mw(args.task, str(resolve_shipped_checkpoint(args.checkpoint)), args.episodes,
                              args.seed, progress=not args.no_progress, direct=args.direct, delay=args.delay_ms,
                              overrides=_parse_sets(args.set))
        lo, hi = summary["ci95"]
        print(json.dumps(summary, indent=2) if args.json else
              f"{summary['task']}: {summary['successes']}/{summary['episodes']} ({100 * lo:.1f}–{100 * hi:.1f} %), "
              f"seeds {summary['seeds'][0]}–{summary['seeds'][1]}, {summary['evaluation']}, inference p50 "
              f"{summary['p50_inference_ms']:.0f} ms")
        return 0
    sets = _parse_sets(args.set)
    if args.guidance is not None:
        sets["guidance.strength"] = args.guidance
    kwargs = dict(seed=args.seed, embodiment=args.embodiment, deploy_config=args.deploy_config, overrides=sets,
                  out=args.out, videos=args.videos, progress=not args.no_progress)
    checkpoint = str(resolve_shipped_checkpoint(args.checkpoint))
    if args.ros:
        from .ros.sim_eval import evaluate_ros

        if args.delay_ms not in ("0", "measured"):
            raise ConfigError("--delay-ms with --ros: the node's own inference time is the delay; leave it out")

        if args.rerun:  # the node process draws it: its `rerun` parameter
            kwargs["overrides"] = {**sets, "rerun": args.rerun}
        summary = evaluate_ros(args.task, checkpoint, args.episodes, real_time_factor=args.real_time_factor, **kwargs)
    else:
        summary = evaluate(args.task, checkpoint, args.episodes, delay=args.delay_ms, rerun=args.rerun, **kwargs)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "per_episode"}, indent=2))
    else:
        print(results_table(summary))
        for name, path in summary.get("files", {}).items():
            print(f"{name}: {path}")
    return 0


def _cmd_demo(args) -> int:
    from .sim.closed_loop import evaluate
    from .sim.report import results_table
    from .config import resolve_shipped_checkpoint

    print(f"diffusion_policy_ros demo: the shipped DP3 checkpoint '{args.checkpoint}' pushes a cube in the MuJoCo "
          f"arm simulator, {args.episodes} closed-loop episodes (seeds {args.seed}..{args.seed + args.episodes - 1}, "
          "never used for its demonstrations), through the same runtime the ROS policy node runs.", flush=True)
    summary = evaluate("push", str(resolve_shipped_checkpoint(args.checkpoint)), args.episodes, seed=args.seed,
                       out=args.out, videos=args.videos)
    print(results_table(summary))
    for name, path in summary["files"].items():
        print(f"{name}: {path}")
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "per_episode"}, indent=2))
    return 0


def _cmd_modes_demo(args) -> int:
    from .modes_demo import run_demo

    summary = run_demo(args.out, config=args.config, episodes=args.episodes, max_steps=args.max_steps,
                       samples=args.samples, seed=args.seed)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


def _cmd_configs(args) -> int:
    import yaml

    from .config import resolve_config_path, shipped_configs

    for name in shipped_configs():
        data = yaml.safe_load(resolve_config_path(name).read_text())
        variants = ", ".join(sorted(data.get("variants") or {})) or "-"
        print(f"{name:<12} {data.get('description', ''):<40} variants: {variants}")
    return 0


def _cmd_info(args) -> int:
    from .checkpoint import read_checkpoint_meta

    meta = read_checkpoint_meta(args.checkpoint)
    meta.pop("config", None) if not args.full else None
    print(json.dumps(meta, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpros", description="diffusion_policy_ros command line")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a policy on a zarr dataset or a LeRobotDataset v3 folder")
    t.add_argument("config", help="shipped config name (dpros configs) or a .yaml path")
    t.add_argument("--dataset", required=True, help="zarr store in the Diffusion Policy / DP3 layout, or a local "
                   "LeRobotDataset v3 folder (observations rebuilt from its sensors)")
    t.add_argument("--deploy-config", default=None, help="LeRobot datasets: the perception settings (crop box, "
                   "force filter) as a ROS parameter file (default: the ones the dataset was written with)")
    t.add_argument("--param", action="append", default=[], metavar="PARAM=VALUE",
                   help="LeRobot datasets: override a perception setting, e.g. --param point_cloud.num_points=512")
    t.add_argument("--out", required=True, help="output folder (checkpoint/, metrics.jsonl, loss.png)")
    t.add_argument("--variant", help="a named variant from the config file, e.g. small")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=500 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists, on --dataset "
                   "(fine-tuning: another dataset, e.g. takeover corrections, and a higher train.max_steps)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    ds = sub.add_parser("distill", help="distil a checkpoint into a one- or two-step student checkpoint")
    ds.add_argument("checkpoint", help="the teacher: a checkpoint folder or a shipped name")
    ds.add_argument("--dataset", required=True, help="zarr store whose observations the student learns on "
                    "(the teacher's training set)")
    ds.add_argument("--out", required=True, help="output folder (checkpoint/, metrics.jsonl, loss.png)")
    ds.add_argument("--student-steps", type=int, default=1, choices=(1, 2), help="denoising steps of the student")
    ds.add_argument("--steps", type=int, default=1000, help="optimisation steps")
    ds.add_argument("--batch-size", type=int, default=64)
    ds.add_argument("--lr", type=float, default=1e-4)
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists")
    ds.add_argument("--no-progress", action="store_true", help="no progress bar")
    ds.set_defaults(func=_cmd_distill)

    d = sub.add_parser("make-dataset", help="generate two-mode obstacle demonstrations (zarr)")
    d.add_argument("--out", required=True)
    d.add_argument("--episodes", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--num-points", type=int, default=256)
    d.add_argument("--image-size", type=int, default=96)
    d.set_defaults(func=_cmd_make_dataset)

    co = sub.add_parser("collect", help="record scripted demonstrations in the simulator (zarr, DP3 layout)")
    co.add_argument("--task", default="push", help="a sim task (dpros sim-eval --list), or metaworld/<name> "
                    "(any Meta-World v3 task; DP3's protocol; run from .venv-metaworld: make setup-metaworld)")
    co.add_argument("--embodiment", default=None,
                    help="default: the task's (arm), or the oracle gripper for the aerial tasks")
    co.add_argument("--episodes", type=int, default=100)
    co.add_argument("--out", required=True, help="zarr store to create")
    co.add_argument("--seed", type=int, default=1000, help="first seed (keep evaluation seeds apart)")
    co.add_argument("--num-points", type=int, default=None, help="points per cloud (the policy config's; "
                    "default 256, Meta-World 512 as DP3)")
    co.add_argument("--crop", choices=("dp3", "world"), default="dp3", help="metaworld tasks: DP3's crop (its "
                    "oblique box, most of the table top out) or the axis-aligned world box (table top in)")
    co.add_argument("--rgb-size", type=int, default=84, help="metaworld tasks: colour images (img) of this size "
                    "for dp_image, 0 for none")
    co.add_argument("--episode-end", choices=("full", "success"), default="success", help="metaworld tasks: "
                    "success (stop at the first) or full (DP3's generator: all 200 steps, kept with success on 5+)")
    co.add_argument("--pool", type=int, default=0, help="metaworld tasks: take the demonstrations from seeds S … "
                    "S+pool-1 spread over the task's initial conditions (farthest first), not consecutively")
    co.add_argument("--expert", choices=("reactive", "planned", "regulating", "servo", "proportional", "overshoot"),
                    default=None, help="press: reactive (default: stops when the force reads 15 N), planned (slows "
                    "before the part, stops on the depth that gives 15 N), regulating (half the demonstrations "
                    "overshoot, then correct slowly to 15 N), servo (in contact, steps of 0.15 x (15 N - force) / "
                    "the spring's stiffness) or proportional (0.15 x (15 N - force) / the stiffest spring's: a "
                    "function of the force alone; the descent's last 12 mm at 20 mm/s) or overshoot (reactive with "
                    "that slow descent; half the demonstrations one step past 15 N, then hold); docs/realtime.md")
    co.add_argument("--takeover", default="", metavar="CHECKPOINT",
                    help="press: DAgger under latency: roll CHECKPOINT out (--delay-ms per inference) and record the "
                    "expert (--expert servo, the default, or proportional) taking over in contact; added to --out if "
                    "it exists")
    co.add_argument("--delay-ms", default="400", help="with --takeover: latency charged to each inference")
    co.add_argument("--takeover-draws", type=int, default=2, help="with --takeover: roll-outs per seed, each "
                    "handed over after 0-30 periods in contact (drawn)")
    co.add_argument("--overwrite", action="store_true")
    co.add_argument("--no-progress", action="store_true")
    co.add_argument("--json", action="store_true")
    co.add_argument("--format", choices=("zarr", "bags"), default="zarr",
                    help="bags: one rosbag2 per episode with the robot's topics (then dpros convert / replay)")
    co.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="with --format bags")
    co.add_argument("--typestore", default="jazzy", help="with --format bags: message definitions (jazzy, humble)")
    co.add_argument("--compressed-color", action="store_true", help="with --format bags: jpeg CompressedImage")
    co.set_defaults(func=_cmd_collect)

    cv = sub.add_parser("convert", help="recorded rosbags (one episode each) → zarr or LeRobotDataset v3")
    cv.add_argument("bags", nargs="+", help="rosbag2 folders, or folders holding them")
    cv.add_argument("--config", required=True,
                    help="training config (name or .yaml), or a checkpoint folder: observations, action")
    cv.add_argument("--variant", help="a named variant of the config, e.g. small")
    cv.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    cv.add_argument("--out", required=True, help="zarr store (episodes are appended if it exists), or the "
                    "LeRobot dataset folder to create")
    cv.add_argument("--format", choices=("zarr", "lerobot"), default="zarr",
                    help="lerobot: LeRobotDataset v3 (parquet + mp4) with depth, wrench and camera intrinsics/extrinsic")
    cv.add_argument("--segments", choices=("all", "takeover"), default="all",
                    help="takeover: only the stretches a person drove (topics.takeover true), one episode each")
    cv.add_argument("--deploy-config", default=None,
                    help="ROS parameter file with the topics, rates and camera extrinsic (default: config/arm.yaml)")
    cv.add_argument("--param", action="append", default=[], metavar="PARAM=VALUE",
                    help="override a node parameter, e.g. --param topics.color=/cam/color (repeatable)")
    cv.add_argument("--action", choices=("measured", "commanded"), default="measured",
                    help="measured: the robot's state one period later; commanded: the command topic")
    cv.add_argument("--command-topic", default="", help="default: the deploy config's topics.command")
    cv.add_argument("--typestore", default="jazzy", help="for bags without message definitions (humble sqlite3)")
    cv.add_argument("--include-failed", action="store_true", help="keep episodes marked success: false")
    cv.add_argument("--overwrite", action="store_true", help="replace OUT instead of appending")
    cv.add_argument("--no-progress", action="store_true")
    cv.add_argument("--json", action="store_true")
    cv.set_defaults(func=_cmd_convert)

    rp = sub.add_parser("replay", help="a recorded bag through the policy node's runtime: action error, plots, bag")
    rp.add_argument("bag", help="rosbag2 folder (MCAP or sqlite3)")
    rp.add_argument("--checkpoint", required=True, help="checkpoint folder or a shipped name")
    rp.add_argument("--out", required=True, help="output folder (replay/ bag, summary.json, PNG)")
    rp.add_argument("--deploy-config", default=None, help="ROS parameter file (default: config/arm.yaml)")
    rp.add_argument("--param", action="append", default=[], metavar="PARAM=VALUE",
                    help="override a node parameter (repeatable)")
    rp.add_argument("--rate", type=float, default=0.0,
                    help="play at this multiple of real time, inference in real time (0: as fast as possible)")
    rp.add_argument("--typestore", default="jazzy", help="for bags without message definitions (humble sqlite3)")
    rp.add_argument("--rerun", nargs="?", const="spawn", default="", metavar="FILE.rrd",
                    help="live view in Rerun: a viewer window, or with FILE.rrd a recording to open later")
    rp.add_argument("--no-progress", action="store_true")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=_cmd_replay)

    se = sub.add_parser("sim-eval", help="closed-loop episodes of a checkpoint in the simulator: success table")
    se.add_argument("--task", default="push")
    se.add_argument("--embodiment", default=None, help="default: the task's (arm | aerial); oracle: the floating "
                    "gripper the aerial demonstrations come from (an upper bound)")
    se.add_argument("--checkpoint", default="push_dp3", help="checkpoint folder or a shipped name (--list)")
    se.add_argument("--episodes", type=int, default=50)
    se.add_argument("--seed", type=int, default=0, help="first seed (demonstrations use 1000 and up)")
    se.add_argument("--guidance", type=float, default=None, help="guidance.strength (0: unguided)")
    se.add_argument("--deploy-config", default=None, help="ROS parameter file (default: config/sim_<embodiment>.yaml)")
    se.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                    help="override a node parameter, e.g. --set sampling.solver=dpmsolver++ (repeatable)")
    se.add_argument("--out", default=None, help="folder for the video, plot and results table")
    se.add_argument("--videos", type=int, default=2, help="episodes to record into the video")
    se.add_argument("--delay-ms", default="0", metavar="D",
                    help="latency charged to each inference in sim time: 0 (lockstep), milliseconds, or 'measured' "
                    "/ 'measured*F' (each inference's wall time x F); the arm executes meanwhile")
    se.add_argument("--ros", action="store_true",
                    help="run the policy node as its own process over DDS (sim time), not the runtime in process")
    se.add_argument("--real-time-factor", type=float, default=0.25,
                    help="with --ros: sim seconds per wall second (the sim does not wait for the policy)")
    se.add_argument("--direct", action="store_true", help="metaworld tasks: DP3's own evaluation loop (the policy "
                    "called on the adapter's clouds, lockstep) instead of PolicyRuntime")
    se.add_argument("--list", action="store_true", help="list tasks, embodiments and shipped checkpoints")
    se.add_argument("--no-progress", action="store_true")
    se.add_argument("--json", action="store_true")
    se.add_argument("--rerun", nargs="?", const="spawn", default="", metavar="FILE.rrd",
                    help="live view in Rerun: a viewer window, or with FILE.rrd a recording to open later")
    se.set_defaults(func=_cmd_sim_eval)

    dm = sub.add_parser("demo", help="what `make demo` runs: the shipped checkpoint in the simulator, closed loop")
    dm.add_argument("--out", default="demo_out")
    dm.add_argument("--checkpoint", default="push_dp3")
    dm.add_argument("--episodes", type=int, default=10)
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--videos", type=int, default=2)
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=_cmd_demo)

    m = sub.add_parser("modes-demo", help="train on generated two-mode demonstrations, check samples commit to a mode")
    m.add_argument("--out", default="modes_demo_out")
    m.add_argument("--config", default="dp3")
    m.add_argument("--episodes", type=int, default=100)
    m.add_argument("--max-steps", type=int, default=None, help="training steps (default: the small variant's)")
    m.add_argument("--samples", type=int, default=64)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_modes_demo)

    c = sub.add_parser("configs", help="list shipped configs and their variants")
    c.set_defaults(func=_cmd_configs)

    i = sub.add_parser("info", help="print a checkpoint's metadata")
    i.add_argument("checkpoint")
    i.add_argument("--full", action="store_true", help="include the full config")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiffusionPolicyRosError as e:
        print(f"dpros {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
