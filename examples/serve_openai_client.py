"""Serve a local test model with `unillm serve`'s app and query it with the official openai client.

    python examples/serve_openai_client.py

Runs offline: the model is built locally; the server listens on 127.0.0.1 only, on a free port,
and stops at the end. In production run `unillm serve --engine ... --model ...` instead.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from openai import OpenAI

import unillm
from unillm.serve import ServeConfig, create_app
from _model import example_model


def main() -> None:
    gen = unillm.load("transformers", example_model())
    app = create_app(gen, ServeConfig(served_model_name="tiny"), owns_generator=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="unused")
        out = client.completions.create(model="tiny", prompt="def fibonacci(n):", max_tokens=16,
                                        temperature=0)
        print("completion:", repr(out.choices[0].text), out.usage)
        print("chat stream: ", end="")
        for chunk in client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=16,
                temperature=0, stream=True):
            print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
    finally:
        server.should_exit = True
        thread.join(30)


if __name__ == "__main__":
    main()
