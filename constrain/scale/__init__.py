"""Beyond one process: constrain on a Ray cluster (``pip install 'constrain[ray]'``).

- :func:`ray_app` (``constrain serve --ray``): the HTTP app of ``constrain serve`` on Ray Serve
  replicas, each with its own models and batch, behind Ray Serve's HTTP proxy.
- :func:`run_file_ray` (``constrain batch --ray``): the batch job with its rows spread over a pool
  of model actors by Ray Data.

Ray is imported on first use only, so that ``import constrain.scale`` works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constrain.errors import InvalidRequestError

if TYPE_CHECKING:
    from constrain.scale.ray_batch import run_file_ray
    from constrain.scale.ray_serve import build_app, ray_app

__all__ = ["build_app", "ray_app", "require_ray", "run_file_ray"]

INSTALL_HINT = "pip install 'constrain[ray]'"


def require_ray(option: str = "--ray") -> None:
    """Fail with a one-line error naming ``option`` when Ray (with Serve and Data) is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise InvalidRequestError(f"{option} needs Ray Serve and Ray Data ({INSTALL_HINT}): {exc}",
                                  param=option) from None


def __getattr__(name: str) -> Any:
    if name in ("ray_app", "build_app"):
        require_ray("constrain.scale")
        from constrain.scale import ray_serve

        return getattr(ray_serve, name)
    if name == "run_file_ray":
        require_ray("constrain.scale")
        from constrain.scale import ray_batch

        return ray_batch.run_file_ray
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
