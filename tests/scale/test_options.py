"""The ``--ray`` options: bad values are one line naming the option, before Ray starts; the Python
entry points check what they are given before any replica or actor exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from constrain.cli import main
from constrain.errors import InvalidRequestError
from constrain.scale.options import Scaling, parse_autoscale

CONSTRAIN = str(Path(sys.executable).with_name("constrain"))


@pytest.mark.parametrize(("argv", "option", "message"), [
    (["serve", "--replicas", "2"], "--replicas", "needs --ray"),
    (["serve", "--autoscale", "1:2"], "--autoscale", "needs --ray"),
    (["serve", "--ray-address", "auto"], "--ray-address", "needs --ray"),
    (["serve", "--ray", "--replicas", "0"], "--replicas", ">= 1"),
    (["serve", "--ray", "--autoscale", "3:1"], "--autoscale", "MIN <= MAX"),
    (["serve", "--ray", "--autoscale", "0:0"], "--autoscale", "MAX >= 1"),
    (["serve", "--ray", "--autoscale", "two"], "--autoscale", "MIN:MAX"),
    (["serve", "--ray", "--replicas", "2", "--autoscale", "1:3"], "--autoscale", "not both"),
    (["serve", "--ray", "--replica-cpus", "0"], "--replica-cpus", "> 0"),
    (["serve", "--ray", "--replica-gpus", "-1"], "--replica-gpus", ">= 0"),
    (["batch", "README.md", "-o", "out.jsonl", "--actors", "2"], "--actors", "needs --ray"),
    (["batch", "README.md", "-o", "out.jsonl", "--ray", "--actors", "0"], "--actors", ">= 1"),
    (["batch", "README.md", "-o", "out.jsonl", "--ray", "--actor-cpus", "0"], "--actor-cpus", "> 0"),
])
def test_bad_ray_options_name_the_option(argv, option, message, capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # README.md: an input file that exists
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"constrain: error [{option}]:") and message in err, err
    assert "\n" not in err  # one line, no traceback


def test_bad_option_from_the_real_command_is_one_line(tmp_path):
    done = subprocess.run([CONSTRAIN, "serve", "--ray", "--autoscale", "4:2"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "constrain: error [--autoscale]: --autoscale MIN:MAX needs 0 <= MIN <= MAX and MAX >= 1, got 4:2"]


def test_help_lists_the_ray_options():
    done = subprocess.run([CONSTRAIN, "serve", "--help"], capture_output=True, text=True, timeout=120)
    assert "--replicas N" in done.stdout and "--autoscale MIN:MAX" in done.stdout
    done = subprocess.run([CONSTRAIN, "batch", "--help"], capture_output=True, text=True, timeout=120)
    assert "--actors N" in done.stdout


def test_autoscale_parsing():
    assert parse_autoscale("1:4") == (1, 4)
    assert parse_autoscale("0:2") == (0, 2)  # scale to zero when idle
    assert Scaling(replicas=3).check().describe() == "3 replicas"
    assert Scaling(autoscale=(1, 4)).check().describe() == "1 to 4 replicas (autoscaling)"


# --------------------------------------------------------------------------- Python entry points (no cluster)


@pytest.fixture(scope="module")
def ray_serve():
    pytest.importorskip("ray.serve", reason="Ray is not installed: pip install 'constrain[ray]'")
    from constrain.scale import ray_serve

    return ray_serve


def test_ray_app_checks_options_before_deploying(ray_serve):
    with pytest.raises(InvalidRequestError, match="max_batchh") as info:
        ray_serve.ray_app(None, max_batchh=4)
    assert info.value.param == "max_batchh"
    with pytest.raises(InvalidRequestError) as info:
        ray_serve.ray_app(None, max_batch=0)  # create_app's own check, run here
    assert info.value.param == "max_batch"
    with pytest.raises(InvalidRequestError, match="--replicas"):
        ray_serve.ray_app(None, replicas=0)


def test_ray_app_refuses_a_loaded_model(ray_serve):
    from constrain.model import Model

    loaded = Model.__new__(Model)  # the type is what counts; nothing is loaded
    with pytest.raises(InvalidRequestError, match="loaded Model cannot be sent"):
        ray_serve.ray_app(loaded)
    with pytest.raises(InvalidRequestError, match="loaded Model cannot be sent"):
        ray_serve.ray_app({"a": "smollm2-135m", "b": loaded})


def test_ray_app_deployment_options(ray_serve):
    app = ray_serve.ray_app("smollm2-135m", autoscale=(0, 3), max_batch=8, max_queue=10, num_cpus=2,
                            api_keys=["k"], runtime="llama.cpp")
    deployment = app._bound_deployment
    config = deployment._deployment_config
    assert deployment.name == "ConstrainServer"
    assert config.max_ongoing_requests == 8  # a replica's batch; more wait in Ray's router
    assert config.max_queued_requests == 10
    assert config.autoscaling_config.min_replicas == 0 and config.autoscaling_config.max_replicas == 3
    assert config.autoscaling_config.initial_replicas == 1
    assert deployment.ray_actor_options["num_cpus"] == 2
    model, options = deployment.init_args  # what each replica is built from
    assert model == "smollm2-135m"
    assert options["threads"] == 2  # llama.cpp's threads: the CPUs the replica reserved
    assert options["api_keys"] == ["k"] and options["runtime"] == "llama.cpp"


def test_build_app_for_ray_configs(ray_serve, monkeypatch):
    """``import_path: constrain.scale.ray_serve:build_app`` with string arguments, as ``serve run`` passes them."""
    monkeypatch.setenv("CONSTRAIN_API_KEYS", "env-key")
    app = ray_serve.build_app({"model": "smollm2-135m", "replicas": "2", "max_batch": "4", "api_keys": "a,b"})
    deployment = app._bound_deployment
    assert deployment._deployment_config.max_ongoing_requests == 4 and deployment.num_replicas == 2
    assert deployment.init_args[1]["api_keys"] == ["a", "b", "env-key"]
    # What `serve run` / `serve deploy` / KubeRay do with `import_path` and `args`:
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    built = call_user_app_builder_with_args_if_necessary(ray_serve.build_app, {"autoscale": "1:3"})
    assert built._bound_deployment._deployment_config.autoscaling_config.max_replicas == 3
    with pytest.raises(InvalidRequestError, match="--autoscale"):
        ray_serve.build_app({"autoscale": "5"})
    with pytest.raises(InvalidRequestError) as info:
        ray_serve.build_app({"max_batch": "many"})
    assert info.value.param == "max_batch"


def test_proxy_middleware_finishes_a_cut_stream():
    """Without the replica's last body message, the proxy side adds the error event and the end."""
    import asyncio

    from constrain.scale.proxy import FinishCutStreams

    async def cut_stream(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})

    async def whole_json(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    async def run(app):
        sent = []

        async def send(message):
            sent.append(message)

        await FinishCutStreams(app)({"type": "http"}, None, send)
        return sent

    sent = asyncio.run(run(cut_stream))
    assert sent[-1]["more_body"] is False
    event = json.loads(sent[-1]["body"].decode()[len("data: "):])
    assert event["error"]["type"] == "replica_unavailable" and event["error"]["code"] == "replica_lost"
    assert event["error"]["http_status_code"] == 503  # as the server's own error events
    assert len(asyncio.run(run(whole_json))) == 2  # a finished response is left alone


def test_torch_keeps_its_threads_unless_every_model_runs_on_llama_cpp():
    import torch

    from constrain.loading import one_torch_thread_under_llama_cpp
    from constrain.model import Model

    before = torch.get_num_threads()
    assert not one_torch_thread_under_llama_cpp([None], "transformers")
    assert not one_torch_thread_under_llama_cpp([Model.__new__(Model)], "auto")  # not a path: leave it
    assert not one_torch_thread_under_llama_cpp(["/no/such/model"], "auto")  # its load reports that
    assert torch.get_num_threads() == before
