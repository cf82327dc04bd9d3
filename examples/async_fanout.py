"""Async fan-out: many concurrent requests from one event loop, plus an async stream."""

import asyncio

import unillm
from _model import example_model


async def main() -> None:
    with unillm.load("transformers", example_model()) as gen:
        params = unillm.SamplingParams(max_tokens=16, temperature=0.0)
        prompts = [f"Question {i}:" for i in range(8)]
        # One agenerate call runs the list as a native batch ...
        batch = await gen.agenerate(prompts, params)
        # ... and independent coroutines can run side by side.
        singles = await asyncio.gather(*(gen.agenerate(p, params) for p in prompts))
        assert [c.text for c in batch] == [c.text for c in singles]
        text = "".join([chunk.text async for chunk in gen.astream(prompts[0], params)])
        assert text == batch[0].text
        print(f"{len(batch)} completions, batch throughput {batch.run.output_throughput:.0f} tok/s; "
              "async batch == async singles == async stream")


asyncio.run(main())
