"""The OpenAI-compatible backend: retry/backoff/4xx logic against a deliberately flaky loopback
server, reply parsing for servers with and without token ids, and a real llama.cpp server
running the embedded GGUF."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from swirl.backends.base import GenerationBackend, SamplingParams
from swirl.backends.openai import BackendHTTPError, BackendUnavailableError, OpenAIBackend
from swirl.backends.server_process import free_port


@pytest.fixture(scope="module")
def tokenizer():
    from swirl.model import load_tokenizer

    return load_tokenizer()


class FlakyServer:
    """A loopback HTTP server answering each path from a script of (status, body, delay)."""

    def __init__(self) -> None:
        self.script: dict[str, deque] = defaultdict(deque)
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                server.requests.append((self.path, body))
                script = server.script[self.path]
                status, reply, delay = script.popleft() if len(script) > 1 else script[0]
                if callable(reply):
                    status, reply = reply(body)
                time.sleep(delay)
                data = json.dumps(reply).encode() if not isinstance(reply, bytes) else reply
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            do_GET = do_POST

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def on(self, path: str, *responses) -> None:
        self.script[path] = deque(responses)

    def count(self, path: str) -> int:
        return sum(p == path for p, _ in self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky():
    server = FlakyServer()
    yield server
    server.close()


def completion_reply(text: str, finish: str = "stop", **extra) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish, **extra}]}


def make(url: str, tokenizer, **kwargs) -> OpenAIBackend:
    options = {
        "model": "m",
        "context_length": 512,
        "backoff": 0.01,
        "max_retries": 3,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return OpenAIBackend(url, tokenizer, prompt_format="ids", **options)


PARAMS = SamplingParams(max_new_tokens=16, temperature=0)
PATH = "/v1/completions"


def test_retries_5xx_and_429_then_succeeds(flaky, tokenizer):
    ids = tokenizer.encode("<answer>4</answer>")
    ok = completion_reply("<answer>4</answer>", token_ids=ids)
    flaky.on(
        PATH,
        (503, {"error": {"message": "busy"}}, 0),
        (429, {}, 0),
        (502, b"bad gateway", 0),
        (200, ok, 0),
    )
    (completion,) = make(flaky.url, tokenizer).generate([[1, 2, 3]], PARAMS)
    assert flaky.count(PATH) == 4
    assert completion.token_ids == ids and completion.exact_token_ids
    assert completion.finish_reason == "action"
    sent = flaky.requests[-1][1]
    assert sent["prompt"] == [1, 2, 3] and sent["stop"] and sent["include_stop_str_in_output"]
    assert sent["return_token_ids"] is True and sent["max_tokens"] == 16


def test_retries_a_timeout(flaky, tokenizer):
    ok = completion_reply("hi", finish="length", token_ids=[1, 2])
    flaky.on(PATH, (200, ok, 1.5), (200, ok, 0))
    (completion,) = make(flaky.url, tokenizer, timeout=0.5).generate([[5]], PARAMS)
    assert flaky.count(PATH) == 2 and completion.finish_reason == "length"


def test_4xx_is_a_clear_error_without_retry(flaky, tokenizer):
    flaky.on(PATH, (400, {"error": {"message": "This model's maximum context length is 512"}}, 0))
    with pytest.raises(
        BackendHTTPError, match=r"HTTP 400: This model's maximum context length is 512"
    ) as info:
        make(flaky.url, tokenizer).generate([[1]], PARAMS)
    assert info.value.status == 400 and flaky.count(PATH) == 1
    flaky.on(PATH, (422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}, 0))
    with pytest.raises(BackendHTTPError, match=r"HTTP 422: .*field required"):
        make(flaky.url, tokenizer).generate([[1]], PARAMS)


def test_gives_up_after_the_retries(flaky, tokenizer):
    flaky.on(PATH, (500, {"error": {"message": "out of memory"}}, 0))
    with pytest.raises(BackendUnavailableError, match=r"4 attempts.*HTTP 500: out of memory"):
        make(flaky.url, tokenizer, max_retries=3).generate([[1]], PARAMS)
    assert flaky.count(PATH) == 4
    with pytest.raises(BackendUnavailableError, match="ConnectError"):
        make(f"http://127.0.0.1:{free_port()}", tokenizer, max_retries=1).generate([[1]], PARAMS)


def test_ids_from_logprob_tokens(flaky, tokenizer):
    ids = tokenizer.encode("<answer>4</answer>")
    tokens = [f"token_id:{i}" for i in ids]
    flaky.on(PATH, (200, completion_reply("<answer>4</answer>", logprobs={"tokens": tokens}), 0))
    (completion,) = make(flaky.url, tokenizer, logprob_ids=True).generate([[1]], PARAMS)
    assert completion.exact_token_ids and completion.token_ids == ids
    sent = flaky.requests[-1][1]
    assert sent["logprobs"] == 1 and sent["return_tokens_as_token_ids"] is True
    # the sampled distribution is exactly softmax(logits / T) within top_p: no other truncation
    assert (sent["top_k"], sent["min_p"]) == (-1, 0.0)
    # Token strings (llama-cpp-python) are not ids: the text is re-tokenised instead.
    flaky.on(
        PATH, (200, completion_reply("<answer>4</answer>", logprobs={"tokens": ["<", "answer"]}), 0)
    )
    (completion,) = make(flaky.url, tokenizer).generate([[1]], PARAMS)
    assert not completion.exact_token_ids and completion.token_ids == ids


def test_sampler_logprobs_from_vllm_and_llama_cpp_replies(flaky, tokenizer):
    ids = tokenizer.encode("<answer>4</answer>")
    values = [-0.5 - i for i in range(len(ids))]
    content = [{"id": i, "token": "t", "logprob": v} for i, v in zip(ids, values, strict=True)]
    flaky.on(
        PATH,
        # vLLM: token_ids and logprobs.token_logprobs
        (
            200,
            completion_reply(
                "<answer>4</answer>", token_ids=ids, logprobs={"token_logprobs": values}
            ),
            0,
        ),
        # llama.cpp: logprobs.content with each token's id and log-prob
        (200, completion_reply("<answer>4</answer>", logprobs={"content": content}), 0),
        # ids without log-probs, and log-probs of another length: none reported
        (200, completion_reply("<answer>4</answer>", token_ids=ids), 0),
        (
            200,
            completion_reply(
                "<answer>4</answer>", token_ids=ids, logprobs={"token_logprobs": [-1.0]}
            ),
            0,
        ),
    )
    backend = make(flaky.url, tokenizer, max_concurrency=1)
    vllm, llama, bare, short = backend.generate([[1]] * 4, PARAMS)
    for completion in (vllm, llama):
        assert completion.exact_token_ids and completion.token_ids == ids
        assert completion.logprobs == values
    assert bare.logprobs is None and short.logprobs is None and short.exact_token_ids


def test_replies_without_token_ids(flaky, tokenizer):
    eos = tokenizer.eos_token_id
    flaky.on(
        PATH,
        # llama.cpp style: the stop string is cut off, no ids come back
        (200, completion_reply("Four. <answer>4"), 0),
        # vLLM style with stop_reason naming the stop string it cut
        (200, completion_reply("<math_exp>2+2", stop_reason="</math_exp>"), 0),
        # ended on EOS without an action
        (200, completion_reply("I do not know."), 0),
        (200, completion_reply("and so on", finish="length"), 0),
    )
    backend = make(flaky.url, tokenizer, max_concurrency=1)
    answer, math, eos_turn, long = backend.generate([[1]] * 4, PARAMS)
    assert answer.text == "Four. <answer>4</answer>" and answer.finish_reason == "action"
    assert not answer.exact_token_ids and answer.token_ids == tokenizer.encode(answer.text)
    assert math.text == "<math_exp>2+2</math_exp>" and math.finish_reason == "action"
    assert eos_turn.finish_reason == "eos" and eos_turn.token_ids[-1] == eos
    assert eos_turn.text == "I do not know.<|im_end|>"
    assert long.finish_reason == "length" and long.text == "and so on"


def test_prompt_format_probe_and_model_listing(flaky, tokenizer):
    def only_strings(body):
        if isinstance(body["prompt"], list):
            return 500, {"error": {"message": "Input should be a valid string"}}
        return 200, completion_reply("<answer>x</answer>")

    flaky.on(PATH, (200, only_strings, 0))
    flaky.on("/v1/models", (200, {"data": [{"id": "served-model", "max_model_len": 2048}]}, 0))
    backend = OpenAIBackend(flaky.url + "/v1/", tokenizer, backoff=0.01)
    assert isinstance(backend, GenerationBackend)
    assert backend.name == "served-model" and backend.context_length == 2048
    prompt = tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n")
    (completion,) = backend.generate([prompt], PARAMS)
    assert backend.prompt_format == "text" and completion.text == "<answer>x</answer>"
    assert flaky.requests[-1][1]["prompt"] == "<|im_start|>user\nhi<|im_end|>\n"
    with pytest.raises(ValueError, match="must start with http"):
        OpenAIBackend("localhost:8000", tokenizer, model="m")


def test_chat_endpoint_and_seeds(flaky, tokenizer):
    flaky.on("/v1/chat/completions", (200, {"choices": [{"message": {"content": " GOOD \n"}}]}, 0))
    backend = make(flaky.url, tokenizer)
    replies = backend.chat([[{"role": "user", "content": "rate"}]] * 2, SamplingParams(seed=3))
    assert replies == ["GOOD", "GOOD"]
    seeds = [body["seed"] for _, body in flaky.requests]
    assert len(set(seeds)) == 2  # a shared seed becomes one seed per conversation


# --- a real OpenAI-compatible server: llama-cpp-python on loopback, the embedded GGUF ------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama.cpp's server (the xllamacpp wheel, installed by `make test`) on a free port."""
    pytest.importorskip("xllamacpp", reason="xllamacpp is installed by `make test`")
    from swirl.backends import llama_cpp_server
    from swirl.backends.server_process import serve

    command, url = llama_cpp_server.command(sys.executable)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with serve(command, url, log, startup_timeout=120):
        yield url


@pytest.mark.slow
def test_real_server_generate_stop_and_chat(llama_server, tokenizer):
    from swirl.prompts import chat_prompt_ids

    backend = OpenAIBackend(llama_server, tokenizer, context_length=4096)
    assert backend.name.endswith(".gguf")
    prompt = chat_prompt_ids(
        tokenizer, [{"role": "user", "content": "What is 2+2? Reply as <answer>N</answer>."}]
    )
    prompt += tokenizer.encode("<answer>4")
    params = SamplingParams(max_new_tokens=20, temperature=0)
    first, again = backend.generate([prompt, prompt], params)
    assert backend.prompt_format == "ids"  # llama.cpp runs the token ids it is given
    assert first.finish_reason == "action" and first.text.endswith("</answer>")
    assert first.token_ids == again.token_ids  # greedy is deterministic
    assert not first.exact_token_ids
    (free,) = backend.generate(
        [prompt], SamplingParams(max_new_tokens=6, temperature=0, stop_at_action=False)
    )
    assert free.finish_reason in ("length", "eos") and len(free.token_ids) <= 7
    (reply,) = backend.chat(
        [[{"role": "user", "content": "Say hello."}]],
        SamplingParams(max_new_tokens=8, temperature=0),
    )
    assert reply


@pytest.mark.slow
def test_real_server_runs_the_environment(llama_server, tokenizer):
    from test_env import RecordingBackend

    from swirl.data import load_examples
    from swirl.decompose import decompose
    from swirl.env import EnvConfig, run_episodes
    from swirl.tools.calculator import Calculator

    backend = RecordingBackend(OpenAIBackend(llama_server, tokenizer, context_length=4096))
    examples = load_examples("demo-math", limit=2)
    runs = list(
        run_episodes(
            examples,
            backend,
            tools=[Calculator()],
            params=SamplingParams(max_new_tokens=32, temperature=0.7, seed=0),
            config=EnvConfig(max_steps=3),
            samples_per_question=2,
        )
    )
    assert sorted(t.id for t in runs) == sorted(f"{e.id}#{s}" for e in examples for s in (0, 1))
    seen = {tuple(p) for p in backend.prompts}
    for trajectory in runs:
        # llama.cpp returns each token's id, except when a stop string (a closing tag) cut the
        # text: such a turn is re-tokenised, and its trajectory is marked inexact
        stopped = any(step.action.kind in ("search", "math", "answer") for step in trajectory.steps)
        assert (trajectory.metadata.get("exact_token_ids") is False) == stopped
        for state in decompose(trajectory):
            assert tuple(state.state_token_ids) in seen
