"""Chat messages -> prompt token ids, rendered by the server for token-id engines.

Why the server renders instead of `Generator.prepare(messages=...)`: vLLM's chat extras
(`chat_template_kwargs`, `add_generation_prompt`, `continue_final_message`,
`add_special_tokens`) and `--chat-template` change how the template is applied, which the
core's one-call API does not expose. The server renders with the model's Hugging Face
tokenizer (the same template the core would use) and hands the ids to `prepare`.

Every failure here is the caller's or the deployment's, never a 500: no template is a 400
naming `--chat-template`; a template that raises on these messages (roles that must
alternate...) is a 400 naming `messages`. A template file that does not parse is refused when
the server starts (`load_template`), not at the first request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..tools.messages import for_template
from .errors import APIError, bad_request

_RESERVED_KWARGS = frozenset({"conversation", "messages", "tools", "documents", "chat_template",
                              "add_generation_prompt", "continue_final_message", "tokenize",
                              "return_dict", "return_tensors", "padding", "truncation",
                              "max_length", "tokenizer_kwargs", "return_assistant_tokens_mask"})


def load_template(value: str | None) -> str | None:
    """`--chat-template`: a file holding a Jinja template, or the template itself. Checked by
    parsing it once, so a broken template stops the server at start-up."""
    if value is None:
        return None
    template = value
    if "{" not in value and os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            template = f.read()
    elif "{" not in value:
        raise ValueError(f"--chat-template {value!r} is neither a file nor a Jinja template")
    import jinja2

    try:
        jinja2.Environment().parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"--chat-template does not parse as Jinja: {exc}") from None
    return template


class ChatRenderer:
    """Renders conversations with the model's tokenizer and an optional override template."""

    def __init__(self, tokenizer: Any, override: str | None):
        self.hf = getattr(tokenizer, "hf", None)  # unillm's HFTokenizer wraps one
        self.override = override

    @property
    def can_render(self) -> bool:
        return self.hf is not None and hasattr(self.hf, "apply_chat_template")

    @property
    def has_template(self) -> bool:
        return self.override is not None or bool(getattr(self.hf, "chat_template", None))

    def no_template_error(self) -> APIError:
        return bad_request(
            "this model has no chat template, so /v1/chat/completions cannot format the "
            "messages: start the server with --chat-template (a Jinja template file or "
            "string), or send a prompt to /v1/completions", "messages", "chat_template_missing")

    def token_ids(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool,
                  continue_final_message: bool, add_special_tokens: bool,
                  kwargs: dict[str, Any], tools: list[dict[str, Any]] | None = None) -> list[int]:
        if not self.has_template:
            raise self.no_template_error()
        clash = sorted(set(kwargs) & _RESERVED_KWARGS)
        if clash:
            raise bad_request(f"chat_template_kwargs may not set {clash[0]!r}: it is a request "
                              "field or the server's own argument", "chat_template_kwargs")
        if continue_final_message:
            if add_generation_prompt:
                raise bad_request("continue_final_message needs add_generation_prompt to be "
                                  "false (the reply continues the last message)",
                                  "continue_final_message")
            if messages[-1]["role"] != "assistant":
                raise bad_request("continue_final_message needs the last message to be the "
                                  "assistant's", "continue_final_message")
        try:
            if tools:
                kwargs = {**kwargs, "tools": tools}
            text = self.hf.apply_chat_template(
                for_template(messages), chat_template=self.override, tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message, **kwargs)
        except APIError:
            raise
        except Exception as exc:  # noqa: BLE001 - the template refused these messages
            raise bad_request(f"the chat template cannot format these messages: "
                              f"{type(exc).__name__}: {exc}", "messages") from None
        if not isinstance(text, str):  # pragma: no cover - a tokenizer contract violation
            raise bad_request("the chat template did not render to text", "messages")
        return list(self.hf.encode(text, add_special_tokens=add_special_tokens))
