"""The ``--ray`` options of ``constrain serve`` and ``constrain batch``, checked without importing Ray.

Bad values fail in milliseconds with one line naming the option, before Ray starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from constrain.errors import InvalidRequestError


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Scaling:
    """A fixed number of replicas, or an autoscaling range (MIN may be 0: scale to zero when idle)."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None

    def check(self) -> Scaling:
        if self.autoscale is None:
            if not _whole(self.replicas) or self.replicas < 1:
                raise InvalidRequestError(f"--replicas must be a whole number >= 1, got {self.replicas!r}",
                                          param="--replicas")
            return self
        low, high = self.autoscale
        if not (_whole(low) and _whole(high)) or low < 0 or high < 1 or low > high:
            raise InvalidRequestError(f"--autoscale MIN:MAX needs 0 <= MIN <= MAX and MAX >= 1, got {low!r}:{high!r}",
                                      param="--autoscale")
        return self

    def describe(self) -> str:
        if self.autoscale is not None:
            return f"{self.autoscale[0]} to {self.autoscale[1]} replicas (autoscaling)"
        return f"{self.replicas} replica{'s' if self.replicas != 1 else ''}"


def parse_autoscale(value: str) -> tuple[int, int]:
    """``MIN:MAX`` (``--autoscale 1:4``) as two whole numbers; a clear error otherwise."""
    low, sep, high = value.partition(":")
    try:
        if not sep:
            raise ValueError(value)
        pair = (int(low), int(high))
    except ValueError:
        raise InvalidRequestError(f"--autoscale must be MIN:MAX (two whole numbers, e.g. 1:4), got {value!r}",
                                  param="--autoscale") from None
    Scaling(autoscale=pair).check()
    return pair


def check_resources(cpus: float, gpus: float, *, option: str) -> None:
    """What each replica or actor reserves: CPUs > 0, GPUs >= 0."""
    if not isinstance(cpus, int | float) or cpus <= 0:
        raise InvalidRequestError(f"--{option}-cpus must be a number > 0, got {cpus!r}", param=f"--{option}-cpus")
    if not isinstance(gpus, int | float) or gpus < 0:
        raise InvalidRequestError(f"--{option}-gpus must be a number >= 0, got {gpus!r}", param=f"--{option}-gpus")


def serve_scaling(args: argparse.Namespace) -> Scaling | None:
    """``constrain serve``'s Ray options: the scaling with ``--ray``; None without it, where the
    Ray-only options are refused by name."""
    if not args.ray:
        for option, value in (("--replicas", args.replicas), ("--autoscale", args.autoscale),
                              ("--ray-address", args.ray_address)):
            if value is not None:
                raise InvalidRequestError(f"{option} needs --ray (serving on a Ray cluster)", param=option)
        return None
    if args.replicas is not None and args.autoscale is not None:
        raise InvalidRequestError("give --replicas N or --autoscale MIN:MAX, not both", param="--autoscale")
    check_resources(args.replica_cpus, args.replica_gpus, option="replica")
    if args.autoscale is not None:
        return Scaling(autoscale=parse_autoscale(args.autoscale)).check()
    return Scaling(replicas=args.replicas if args.replicas is not None else 1).check()


def batch_actors(args: argparse.Namespace) -> int | None:
    """``constrain batch``'s Ray options: the number of model actors with ``--ray``, else None."""
    if not args.ray:
        for option, value in (("--actors", args.actors), ("--ray-address", args.ray_address)):
            if value is not None:
                raise InvalidRequestError(f"{option} needs --ray (a batch job on a Ray cluster)", param=option)
        return None
    actors = args.actors if args.actors is not None else 2
    if not _whole(actors) or actors < 1:
        raise InvalidRequestError(f"--actors must be a whole number >= 1, got {actors!r}", param="--actors")
    check_resources(args.actor_cpus, args.actor_gpus, option="actor")
    return int(actors)


def _ray_group(parser: argparse.ArgumentParser, title: str, ray_help: str, unit: str) -> Any:
    """The options ``serve --ray`` and ``batch --ray`` share: the switch, the cluster, and what
    each ``unit`` (a replica, an actor) reserves."""
    group = parser.add_argument_group(f"{title} (pip install 'constrain[ray]')")
    group.add_argument("--ray", action="store_true", help=ray_help)
    group.add_argument("--ray-address", default=None, metavar="ADDRESS",
                       help="with --ray: the cluster (default: RAY_ADDRESS, a cluster running here, else a new local one)")
    group.add_argument(f"--{unit}-cpus", type=float, default=1.0, metavar="N", help=f"CPUs each {unit} reserves (1)")
    group.add_argument(f"--{unit}-gpus", type=float, default=0.0, metavar="N", help=f"GPUs each {unit} reserves (0)")
    return group


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """``constrain serve --ray ...``."""
    group = _ray_group(parser, "Ray Serve", "serve on a Ray cluster: replicas of this server behind Ray Serve's "
                       "HTTP proxy", "replica")
    group.add_argument("--replicas", type=int, default=None, metavar="N", help="with --ray: N replicas (1)")
    group.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                       help="with --ray: between MIN and MAX replicas, by load (MIN may be 0)")


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """``constrain batch --ray ...``."""
    group = _ray_group(parser, "Ray Data", "spread the requests over a pool of model actors on a Ray cluster "
                       "(output in input order)", "actor")
    group.add_argument("--actors", type=int, default=None, metavar="N", help="with --ray: model actors (2)")


def quiet_local_cluster() -> None:
    """Defaults for a Ray cluster this process starts: no usage report sent out, and the proxy
    middleware that ends a stream cut off by a dead replica with an error event. An address given
    by the user (``--ray-address``, ``RAY_ADDRESS``) keeps that cluster's own settings."""
    import os

    from constrain.scale.proxy import PROXY_CALLBACK, PROXY_CALLBACK_ENV

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault(PROXY_CALLBACK_ENV, PROXY_CALLBACK)
