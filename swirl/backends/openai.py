"""Generation on any OpenAI-compatible server (vLLM, SGLang, llama-cpp-python's server).

Requests go to ``/v1/completions`` (one per prompt, up to ``max_concurrency`` in flight with
asyncio + httpx) and, for the judge, ``/v1/chat/completions``. Timeouts, connection errors, 429
and 5xx answers are retried with exponential backoff and jitter; any other 4xx raises
:class:`BackendHTTPError` naming the status and the server's message.

Token ids, and what happens where a server cannot give them:

- Prompt. Sent as a list of token ids (vLLM, SGLang accept it), so the server runs exactly the
  ids the environment built. With ``prompt_format="auto"`` (the default) one probe request finds
  out whether the server takes id prompts; one that does not (llama-cpp-python's server takes only
  strings) gets the decoded text with special tokens kept, and re-tokenises it itself: the ids it runs are then its own tokenisation of
  that text, which can differ from the environment's ids where a sampled token split is not the
  canonical one.
- Completion. The request asks for ``return_token_ids`` (vLLM >= 0.10.2 returns
  ``choices[0].token_ids``, the exact sampled ids). With ``logprob_ids=True`` it also asks for
  ``logprobs=0`` with ``return_tokens_as_token_ids`` (older vLLM: ``logprobs.tokens`` then reads
  ``"token_id:123"``). Where no ids come back (llama-cpp-python's server gives token strings
  only), the completion text is re-tokenised with the local tokenizer and the
  :class:`Completion` says ``exact_token_ids=False`` (the environment records that in the
  trajectory's metadata).
- Stop at the closing action tag. The closing tags are sent as ``stop`` strings with
  ``include_stop_str_in_output`` (vLLM, SGLang keep the tag in the text). A server that strips the
  stop string (llama-cpp-python) returns text ending just before it; the tag that stopped it is
  then taken from ``stop_reason`` when given, else it is the closing tag of the action left open
  at the end of the text, and it is appended (such completions are never exact).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from swirl.backends.base import Completion, FinishReason, Message, SamplingParams, params_per_prompt
from swirl.tags import CLOSE_TAGS, OPEN_TAGS, find_action_stop

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
T = TypeVar("T")
PromptFormat = Literal["auto", "ids", "text"]

_RETRY_STATUS = frozenset({408, 409, 425, 429})
_CLOSE_TAG_LIST = sorted(set(CLOSE_TAGS.values()))


class BackendHTTPError(RuntimeError):
    """The server refused a request (4xx other than 408/409/425/429): retrying will not help."""

    def __init__(self, url: str, status: int, message: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {message}")
        self.url = url
        self.status = status
        self.message = message


class BackendUnavailableError(RuntimeError):
    """The server kept timing out or failing (5xx, 429, connection errors) through every retry."""


def _server_message(response: httpx.Response) -> str:
    """The server's own explanation from an error body (OpenAI, FastAPI or plain text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])[:500]
        if error:
            return str(error)[:500]
    return str(body)[:500]


def _api_root(base_url: str) -> str:
    """``http://host:port`` or ``http://host:port/v1`` -> ``http://host:port/v1``."""
    root = base_url.rstrip("/")
    if not root.startswith(("http://", "https://")):
        raise ValueError(f"--base-url must start with http:// or https://, got {base_url!r}")
    return root if root.endswith("/v1") else root + "/v1"


class OpenAIBackend:
    """A :class:`~swirl.backends.GenerationBackend` over an OpenAI-compatible HTTP server.

    ``tokenizer`` is the served model's tokenizer (prompts are built and, where the server
    returns none, completion ids are made with it). ``model`` is the served model name (None:
    the first of ``/v1/models``). ``context_length`` None: the server's ``max_model_len`` when
    it reports one, else the tokenizer's limit capped at 4096.
    """

    def __init__(
        self,
        base_url: str,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model: str | None = None,
        api_key: str | None = None,
        context_length: int | None = None,
        max_concurrency: int = 32,
        timeout: float = 300.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        prompt_format: PromptFormat = "auto",
        logprob_ids: bool = False,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("max_concurrency >= 1, max_retries >= 0 and timeout > 0 are required")
        self.root = _api_root(base_url)
        self.tokenizer = tokenizer
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.prompt_format: PromptFormat = prompt_format
        self.logprob_ids = logprob_ids
        self.name = model or ""
        self._context_length = context_length
        if not self.name or self._context_length is None:
            self._describe_server()

    @property
    def context_length(self) -> int:
        return int(self._context_length or 4096)

    # -- public API ---------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams],
    ) -> list[Completion]:
        """One completion per prompt (see :class:`swirl.backends.GenerationBackend`)."""
        per_row = params_per_prompt(params, len(prompts))
        return _run(self._generate_all([list(p) for p in prompts], per_row))

    def chat(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[str]:
        """Reply text per conversation from ``/v1/chat/completions`` (the server's template)."""
        per_row = params_per_prompt(params, len(conversations))
        return _run(self._chat_all([list(c) for c in conversations], per_row))

    # -- requests -----------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        return httpx.AsyncClient(headers=self.headers, timeout=self.timeout, limits=limits)

    async def _post(self, client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> Any:
        """POST with retries on timeouts, connection errors, 408/409/425/429 and 5xx."""
        url = f"{self.root}/{path}"
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                response = await client.post(url, json=payload)
            except httpx.TimeoutException:
                problem = f"timed out after {self.timeout:g} s"
                continue
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    raise BackendHTTPError(url, response.status_code, "reply is not JSON") from None
            if response.status_code >= 500 or response.status_code in _RETRY_STATUS:
                problem = f"HTTP {response.status_code}: {_server_message(response)}"
                continue
            raise BackendHTTPError(url, response.status_code, _server_message(response))
        raise BackendUnavailableError(
            f"{url}: no answer after {self.max_retries + 1} attempts; last: {problem}"
        )

    def _describe_server(self) -> None:
        """Fill in the model name and context length from ``/v1/models``."""
        url = f"{self.root}/models"
        try:
            response = httpx.get(url, headers=self.headers, timeout=min(self.timeout, 30.0))
        except httpx.HTTPError as error:
            raise BackendUnavailableError(f"{url}: cannot reach the server: {error}") from None
        if response.status_code >= 400:
            raise BackendHTTPError(url, response.status_code, _server_message(response))
        models = response.json().get("data") or []
        if not models:
            raise ValueError(f"{url}: the server lists no model; pass the model name")
        entry = next((m for m in models if m.get("id") == self.name), models[0])
        self.name = self.name or str(entry["id"])
        if self._context_length is None and entry.get("max_model_len"):
            self._context_length = int(entry["max_model_len"])
        if self._context_length is None:
            limit = getattr(self.tokenizer, "model_max_length", 4096) or 4096
            self._context_length = min(int(limit), 4096)

    async def _generate_all(
        self, prompts: list[list[int]], params: list[SamplingParams]
    ) -> list[Completion]:
        async with self._client() as client:
            gate = asyncio.Semaphore(self.max_concurrency)

            async def one(prompt: list[int], p: SamplingParams) -> Completion:
                async with gate:
                    return await self._complete(client, prompt, p)

            if not prompts:
                return []
            if self.prompt_format == "auto":
                await self._settle_prompt_format(client, prompts[0])
            return list(
                await asyncio.gather(*(one(q, p) for q, p in zip(prompts, params, strict=True)))
            )

    async def _settle_prompt_format(self, client: httpx.AsyncClient, prompt: list[int]) -> None:
        """Probe once whether the server takes token-id prompts (one token, no retries: servers
        answer an unsupported prompt type with 400, 422 or even 500)."""
        url = f"{self.root}/completions"
        probe = {"model": self.name, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        try:
            response = await client.post(url, json=probe)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code < 400:
            self.prompt_format = "ids"
            return
        probe["prompt"] = self._prompt_text(prompt)
        await self._post(client, "completions", probe)  # raises if text does not work either
        reason = "no answer" if response is None else f"HTTP {response.status_code}"
        log.warning(
            "%s does not take token-id prompts (%s); prompts go as text, which the server "
            "re-tokenises",
            url,
            reason,
        )
        self.prompt_format = "text"

    async def _complete(
        self, client: httpx.AsyncClient, prompt: list[int], params: SamplingParams
    ) -> Completion:
        payload: dict[str, Any] = {
            "model": self.name,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # Sample exactly softmax(logits / T) within top_p: servers default to truncating
            # more (llama.cpp: top_k 40, min_p 0.05), which would sample another distribution.
            "top_k": -1,
            "min_p": 0.0,
            "return_token_ids": True,
            "skip_special_tokens": False,
            "logprobs": 1,  # each sampled token's log-prob (vLLM, llama.cpp)
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if self.logprob_ids:
            payload["return_tokens_as_token_ids"] = True
        if params.stop_at_action:
            payload["stop"] = _CLOSE_TAG_LIST
            payload["include_stop_str_in_output"] = True
        as_text = self.prompt_format == "text"
        payload["prompt"] = self._prompt_text(prompt) if as_text else prompt
        reply = await self._post(client, "completions", payload)
        return self._completion(reply, params, prompt)

    def _prompt_text(self, prompt: list[int]) -> str:
        return self.tokenizer.decode(prompt, skip_special_tokens=False)

    def _completion(
        self, reply: dict[str, Any], params: SamplingParams, prompt: list[int]
    ) -> Completion:
        """Turn a ``/v1/completions`` reply to ``prompt`` (token ids) into a Completion (see the
        module docstring)."""
        try:
            choice = reply["choices"][0]
            text = str(choice.get("text") or "")
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"{self.root}/completions: malformed reply: {str(reply)[:300]}"
            ) from None
        server_reason = choice.get("finish_reason")
        ids, logprobs = _returned_ids(choice), _returned_logprobs(choice)
        exact = ids is not None
        if params.stop_at_action and server_reason == "stop" and find_action_stop(text) < 0:
            # The action may have been opened at the end of the prompt: decode only its tail,
            # and only in this rare case.
            prompt_tail = self._prompt_text(prompt[-32:])
            tag = _stopping_tag(prompt_tail + text, choice.get("stop_reason"))
            if tag is not None:  # the server cut the stop string off
                text += tag
                exact = False
        reason: FinishReason
        if params.stop_at_action and find_action_stop(text) >= 0:
            reason = "action"
        elif server_reason == "length":
            reason = "length"
        else:
            reason = "eos"
        eos = self.tokenizer.eos_token_id
        if exact:
            token_ids = [int(i) for i in ids]
        else:
            token_ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if reason == "eos" and eos is not None and (not token_ids or token_ids[-1] != eos):
            token_ids.append(eos)  # the turn ended on EOS, which servers leave out of the text
        known = exact and logprobs is not None and len(logprobs) == len(token_ids)
        return Completion(
            token_ids=token_ids,
            text=self.tokenizer.decode(token_ids, skip_special_tokens=False),
            finish_reason=reason,
            exact_token_ids=exact,
            logprobs=logprobs if known else None,
        )

    async def _chat_all(
        self, conversations: list[list[Message]], params: list[SamplingParams]
    ) -> list[str]:
        async with self._client() as client:
            gate = asyncio.Semaphore(self.max_concurrency)

            async def one(messages: list[Message], p: SamplingParams) -> str:
                payload: dict[str, Any] = {
                    "model": self.name,
                    "messages": [dict(m) for m in messages],
                    "max_tokens": p.max_new_tokens,
                    "temperature": p.temperature,
                    "top_p": p.top_p,
                }
                if p.seed is not None:
                    payload["seed"] = p.seed
                async with gate:
                    reply = await self._post(client, "chat/completions", payload)
                try:
                    return str(reply["choices"][0]["message"]["content"] or "").strip()
                except (KeyError, IndexError, TypeError):
                    raise ValueError(
                        f"{self.root}/chat/completions: malformed reply: {str(reply)[:300]}"
                    ) from None

            return list(
                await asyncio.gather(
                    *(one(c, p) for c, p in zip(conversations, params, strict=True))
                )
            )


def _returned_ids(choice: dict[str, Any]) -> list[int] | None:
    """The sampled ids a server put in a completion choice: ``token_ids`` (vLLM >= 0.10.2),
    ``logprobs.tokens`` written as ``"token_id:N"`` (vLLM's ``return_tokens_as_token_ids``), or
    ``logprobs.content[].id`` (llama.cpp; it drops them when a stop string cut the text)."""
    ids = choice.get("token_ids")
    if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
        return ids
    content = (choice.get("logprobs") or {}).get("content")
    if isinstance(content, list) and content:
        found = [entry.get("id") if isinstance(entry, dict) else None for entry in content]
        if all(isinstance(i, int) for i in found):
            return found
    tokens = (choice.get("logprobs") or {}).get("tokens")
    if isinstance(tokens, list) and tokens:
        parsed = [
            t[len("token_id:") :]
            for t in tokens
            if isinstance(t, str) and t.startswith("token_id:")
        ]
        if len(parsed) == len(tokens) and all(p.isdigit() for p in parsed):
            return [int(p) for p in parsed]
    return None


def _returned_logprobs(choice: dict[str, Any]) -> list[float] | None:
    """The sampler's log-prob of each returned token: ``logprobs.token_logprobs`` (vLLM; with
    ``--logprobs-mode processed_logprobs`` those of the tempered distribution it sampled from)
    or ``logprobs.content[].logprob`` (llama.cpp)."""
    logprobs = choice.get("logprobs") or {}
    values = logprobs.get("token_logprobs")
    if values is None and isinstance(logprobs.get("content"), list):
        values = [e.get("logprob") if isinstance(e, dict) else None for e in logprobs["content"]]
    if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values):
        return [float(v) for v in values]
    return None


def _stopping_tag(text: str, stop_reason: object) -> str | None:
    """The closing tag a server stopped on and cut off, or None if it stopped on EOS."""
    if isinstance(stop_reason, str) and stop_reason in _CLOSE_TAG_LIST:
        return stop_reason
    if stop_reason is not None:
        return None  # vLLM: an int stop_reason is a stop token id, i.e. EOS
    kind, tag = max(OPEN_TAGS.items(), key=lambda item: text.rfind(item[1]))
    opened = text.rfind(tag)
    if opened < 0 or find_action_stop(text, opened) >= 0:
        return None  # no action left open: the server stopped on EOS
    return CLOSE_TAGS[kind]


def _run(coroutine: Awaitable[T]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()  # type: ignore[arg-type]
