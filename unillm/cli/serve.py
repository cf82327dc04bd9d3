"""`unillm serve`: the OpenAI-compatible server from the command line.

FastAPI and uvicorn are imported only when the command runs, so `unillm --help` stays fast and
works without the `serve` extra.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from .messages import fail, print_warning
from .options import parse_pairs


def serve(
    engine: Annotated[str, typer.Option("--engine", "-e", help="engine name (unillm engines)")],
    model: Annotated[str, typer.Option("--model", "-m", help="model path, hub id, or test:PRESET")],
    engine_option: Annotated[list[str], typer.Option(
        "--engine-option", "-o", help="engine option, key=value (repeatable)")] = [],  # noqa: B006
    host: Annotated[str, typer.Option(help="address to bind; loopback unless told otherwise")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="UNILLM_API_KEY", help="require 'Authorization: Bearer KEY' on every route but "
        "/health (or set UNILLM_API_KEY)", show_default=False)] = None,
    served_model_name: Annotated[str | None, typer.Option(
        help="the model name clients send and /v1/models lists (default: --model)")] = None,
    scheduling: Annotated[str, typer.Option(
        help="auto, continuous (the engine's running batch), batch (micro-batching) or "
             "direct (the engine schedules)")] = "auto",
    max_batch_size: Annotated[int, typer.Option(help="requests per engine batch")] = 64,
    batch_wait_ms: Annotated[float, typer.Option(
        help="quiet time (at least) that ends a gathering batch")] = 5.0,
    max_batch_wait_ms: Annotated[float, typer.Option(
        help="longest a request ever waits for others to join its batch")] = 500.0,
    max_queue: Annotated[int, typer.Option(help="requests waiting for the engine; past it 429")] = 512,
    max_concurrency: Annotated[int, typer.Option(
        help="direct scheduling: requests handed to the engine at once")] = 256,
    max_tokens_cap: Annotated[int, typer.Option(help="the largest max_tokens a request may ask")] = 4096,
    max_body_bytes: Annotated[int, typer.Option(help="largest request body")] = 2 * 1024 * 1024,
    trust_remote_code: Annotated[bool, typer.Option(
        help="let the engine run code shipped with the checkpoint")] = False,
    shutdown_timeout: Annotated[float, typer.Option(
        help="seconds to let in-flight requests finish on SIGTERM/SIGINT")] = 30.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    chat_template: Annotated[str | None, typer.Option(
        help="Jinja chat template (a file or the template itself) for models without one, or "
             "to override the model's", show_default=False)] = None,
    tool_parser: Annotated[str | None, typer.Option(
        help="the model's tool-call format (hermes, llama3_json, mistral, response_template) "
             "when its tokenizer and chat template do not tell (docs/tools.md)",
        show_default=False)] = None,
    replicas: Annotated[int | None, typer.Option(
        help="serve N copies of the engine on Ray (unillm.load(..., replicas=N)); "
             "placement options such as num_gpus go in --engine-option")] = None,
) -> None:
    """Serve a model over OpenAI's API (/v1/completions, /v1/chat/completions, /v1/models),
    with /health and Prometheus /metrics."""
    try:
        import uvicorn

        from unillm.serve import ServeConfig, create_app
        from unillm.serve.chat_template import load_template
    except ImportError as exc:
        raise fail(f"unillm serve needs the serve extra ({exc.name} is missing): "
                   "pip install 'unillm[serve]'") from None
    import unillm

    from .models import resolve_cli_model

    options = parse_pairs(engine_option, "--engine-option")
    if trust_remote_code:
        options["trust_remote_code"] = True
    if replicas is not None:
        options["replicas"] = replicas
    if tool_parser is not None:
        options["tool_parser"] = tool_parser
    try:
        config = ServeConfig(
            served_model_name=served_model_name or model, api_key=api_key or None,
            scheduling=scheduling,  # type: ignore[arg-type]
            max_batch_size=max_batch_size, batch_wait=batch_wait_ms / 1000,
            max_batch_wait=max_batch_wait_ms / 1000, max_queue=max_queue,
            max_concurrency=max_concurrency, max_tokens_cap=max_tokens_cap,
            max_body_bytes=max_body_bytes, chat_template=load_template(chat_template),
        )
    except ValueError as exc:
        raise fail(exc) from None
    if not config.api_key and not _is_loopback(host):
        print_warning(f"serving on {host} without --api-key: anyone who can reach this address "
                      "can use the model")
    try:
        gen = unillm.load(engine, resolve_cli_model(model), **options)
    except unillm.UnillmError as exc:
        raise fail(exc) from None
    app = create_app(gen, config, owns_generator=True)
    uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level=log_level,
        timeout_graceful_shutdown=shutdown_timeout, access_log=False,
    )).run()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

