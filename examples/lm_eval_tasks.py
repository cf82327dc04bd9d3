"""lm-evaluation-harness through unillm: the shipped multiple-choice and generation tasks (local
data, no download) on a loaded Generator; any lm-eval task works the same way.

    python examples/lm_eval_tasks.py        # needs unillm[eval]
    # the same from the command line:
    # unillm eval --engine transformers --model test:llama-tiny -o dtype=float32 \
    #     --tasks unillm_mc,unillm_gen
"""

import lm_eval

import unillm
import unillm.eval
from unillm.testing import resolve_model

with unillm.load("transformers", resolve_model("test:llama-tiny"), dtype="float32") as gen:
    results = lm_eval.simple_evaluate(
        model=unillm.eval.UnillmLM(generator=gen, batch_size=16),
        tasks=["unillm_mc", "unillm_gen"], task_manager=unillm.eval.task_manager())

for task, figures in sorted(results["results"].items()):
    shown = {k: round(float(v), 3) for k, v in figures.items() if "," in k and "stderr" not in k}
    print(f"{task}: {shown}")
