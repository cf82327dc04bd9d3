"""`unillm serve`'s /v1/completions with echo and logprobs (and vLLM's prompt_logprobs field),
read with the clients that use them: the openai package, and lm-eval's local-completions
model, whose log-likelihoods must be the library's `Generator.score`."""

from __future__ import annotations

import httpx
import pytest

from ..serve.conftest import MODEL, running_server

pytest.importorskip("fastapi", reason="unillm serve needs the serve extra")

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def live(hf_generator):
    with running_server(hf_generator) as server:
        yield server


def _post(live, body, status=200):
    r = httpx.post(f"{live.v1}/completions", json={"model": MODEL, **body}, timeout=60)
    assert r.status_code == status, r.text
    return r.json()


def test_echo_with_max_tokens_0_returns_the_prompt_and_its_logprobs(live, hf_generator):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0)
    out = client.completions.create(model=MODEL, prompt=PROMPT, echo=True, logprobs=2,
                                    max_tokens=0)
    choice = out.choices[0]
    assert choice.text == PROMPT
    ids = hf_generator.tokenizer.encode(PROMPT)
    lp = choice.logprobs
    assert len(lp.tokens) == len(ids) == out.usage.prompt_tokens
    assert out.usage.completion_tokens == 0
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    expected = hf_generator.score(({"prompt_token_ids": ids[:1]}, {"prompt_token_ids": ids[1:]}))
    assert lp.token_logprobs[1:] == pytest.approx(list(expected.token_logprobs), abs=1e-5)
    for token, value, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert top[token] == value and len(top) in (2, 3)  # the token and the 2 most likely
    offsets = [0]
    for token in lp.tokens[:-1]:
        offsets.append(offsets[-1] + len(token))
    assert lp.text_offset == offsets


def test_echo_with_generation_appends_the_completion(live):
    body = _post(live, {"prompt": PROMPT, "echo": True, "logprobs": 1, "max_tokens": 3,
                        "temperature": 0})
    alone = _post(live, {"prompt": PROMPT, "logprobs": 1, "max_tokens": 3, "temperature": 0})
    choice, plain = body["choices"][0], alone["choices"][0]
    assert choice["text"] == PROMPT + plain["text"]
    prompt_tokens = body["usage"]["prompt_tokens"]
    assert choice["logprobs"]["token_logprobs"][prompt_tokens:] == \
        plain["logprobs"]["token_logprobs"]
    assert body["usage"]["completion_tokens"] == alone["usage"]["completion_tokens"] == 3


def test_token_id_prompts_and_echo_without_logprobs(live, hf_generator):
    ids = hf_generator.tokenizer.encode(PROMPT)
    body = _post(live, {"prompt": [ids, ids[:3]], "echo": True, "logprobs": 0, "max_tokens": 0})
    assert [c["text"] for c in body["choices"]] == [PROMPT, hf_generator.tokenizer.decode(ids[:3])]
    assert [len(c["logprobs"]["tokens"]) for c in body["choices"]] == [len(ids), 3]
    plain = _post(live, {"prompt": PROMPT, "echo": True, "max_tokens": 2})
    assert plain["choices"][0]["text"].startswith(PROMPT)
    assert plain["choices"][0]["logprobs"] is None


def test_vllm_prompt_logprobs_field(live, hf_generator):
    body = _post(live, {"prompt": PROMPT, "prompt_logprobs": 1, "max_tokens": 1})
    entries = body["choices"][0]["prompt_logprobs"]
    ids = hf_generator.tokenizer.encode(PROMPT)
    assert entries[0] is None and len(entries) == len(ids)
    for token_id, entry in zip(ids[1:], entries[1:]):
        own = entry[str(token_id)]
        assert set(own) == {"logprob", "rank", "decoded_token"} and own["rank"] >= 1
        assert min(e["rank"] for e in entry.values()) == 1  # the most likely token is there


def test_what_cannot_be_served_is_a_named_400(live):
    assert _post(live, {"prompt": PROMPT, "max_tokens": 0}, 400)["error"]["param"] == \
        "max_tokens"  # no echo: nothing to return
    assert _post(live, {"prompt": PROMPT, "echo": True, "stream": True}, 400)["error"][
        "param"] == "echo"
    assert _post(live, {"prompt": PROMPT, "prompt_logprobs": 21}, 400)["error"][
        "param"] == "prompt_logprobs"


def test_lm_evals_local_completions_scores_as_the_library(live, hf_generator, tiny_llama):
    """lm-eval's own OpenAI-completions model against unillm serve: its loglikelihoods are the
    library's (`add_bos_token=True`: unillm, like lm-eval's HF model, starts with the
    tokenizer's BOS; docs/scoring.md)."""
    pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'unillm[eval]')")
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    lm = LocalCompletionsAPI(base_url=f"{live.v1}/completions", model=MODEL,
                             tokenizer_backend="huggingface", tokenizer=tiny_llama,
                             add_bos_token=True, max_length=2048, max_retries=1)
    pairs = [("The quick brown fox", " jumps over"), ("Question: is it? Answer: ", "yes"),
             ("", "Hello there"), ("def f(x):\n", "    return x")]
    got = lm.loglikelihood([Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i)
                            for i, p in enumerate(pairs)])
    for (logprob, greedy), score in zip(got, hf_generator.score(pairs)):
        assert logprob == pytest.approx(score.logprob, abs=1e-4)
        assert greedy == score.is_greedy


def test_echo_matches_vllms_own_server(live, vllm_server, tiny_llama, hf_generator):
    """The same request to vLLM's server on the same model: the same prompt log-probs."""
    _, options = vllm_server(tiny_llama)
    body = {"model": "test-model", "prompt": PROMPT, "echo": True, "logprobs": 1, "max_tokens": 0}
    theirs = httpx.post(f"{options['base_url']}/completions", json=body, timeout=120).json()
    ours = _post(live, {**body, "model": MODEL})
    a, b = ours["choices"][0], theirs["choices"][0]
    assert a["text"] == b["text"]
    assert set(a["logprobs"]) == set(b["logprobs"])
    assert a["logprobs"]["token_logprobs"][0] is None and b["logprobs"]["token_logprobs"][0] is None
    assert a["logprobs"]["token_logprobs"][1:] == pytest.approx(
        b["logprobs"]["token_logprobs"][1:], abs=1e-4)
    assert a["logprobs"]["tokens"][1:] == b["logprobs"]["tokens"][1:]
