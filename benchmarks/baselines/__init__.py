"""Direct calls to each engine's own API, for benchmarks/overhead.py.

One module per engine, each with `direct(gen, prompts, params) -> callable`: a zero-argument
function that runs the same work as `gen.generate(prompts, params)` through the engine's own
API, on the same loaded model, with the same settings, and returns the number of tokens made.
"""
