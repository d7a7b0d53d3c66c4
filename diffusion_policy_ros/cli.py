"""`dpros` command line: train, make-dataset, demo, configs, info."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import DiffusionPolicyRosError


def _cmd_train(args) -> int:
    from .config import load_config
    from .train import Trainer

    cfg = load_config(args.config, variant=args.variant, overrides=args.set)
    ckpt = Trainer(cfg, args.dataset, args.out, resume=args.resume, progress=not args.no_progress).run()
    print(f"checkpoint: {ckpt}")
    return 0


def _cmd_make_dataset(args) -> int:
    from .data.synthetic import ObstacleScene, make_obstacle_dataset

    scene = ObstacleScene(num_points=args.num_points, image_size=args.image_size)
    path = make_obstacle_dataset(args.out, n_episodes=args.episodes, seed=args.seed, scene=scene)
    print(f"dataset: {path} ({args.episodes} episodes, two modes: left/right of the box)")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

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

    t = sub.add_parser("train", help="train a policy on a zarr dataset")
    t.add_argument("config", help="shipped config name (dpros configs) or a .yaml path")
    t.add_argument("--dataset", required=True, help="zarr store in the Diffusion Policy / DP3 layout")
    t.add_argument("--out", required=True, help="output folder (checkpoint/, metrics.jsonl, loss.png)")
    t.add_argument("--variant", help="a named variant from the config file, e.g. small")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.max_steps=500 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("make-dataset", help="generate two-mode obstacle demonstrations (zarr)")
    d.add_argument("--out", required=True)
    d.add_argument("--episodes", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--num-points", type=int, default=256)
    d.add_argument("--image-size", type=int, default=96)
    d.set_defaults(func=_cmd_make_dataset)

    m = sub.add_parser("demo", help="end-to-end: generate demonstrations, train, sample, plot")
    m.add_argument("--out", default="demo_out")
    m.add_argument("--config", default="dp3")
    m.add_argument("--episodes", type=int, default=100)
    m.add_argument("--max-steps", type=int, default=None, help="training steps (default: the small variant's)")
    m.add_argument("--samples", type=int, default=64)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_demo)

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
