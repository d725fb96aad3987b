"""The LLM judge against a flaky OpenAI-compatible judge server on loopback: timeouts, 500s,
garbage bodies, malformed replies and unparseable verdicts. Every step ends judged or marked
unknown, nothing is lost, and reruns cost nothing but the requests that failed."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from trajectory_builders import QA_EXAMPLE, step, trajectory

from swirl.backends.openai import OpenAIBackend
from swirl.cli import main
from swirl.jsonl import read_jsonl, write_jsonl
from swirl.judge.cache import JudgeCache
from swirl.judge.labelling import label_file
from swirl.judge.llm import LLMJudge
from swirl.model import load_tokenizer
from swirl.schema import Example, Trajectory

# Behaviour of the server per prompt, chosen by a hash of the prompt:
BEHAVIOURS = (
    "good",  # answers at once
    "500-once",  # HTTP 500, then answers
    "timeout-once",  # sleeps past the client timeout, then answers
    "garbage-once",  # 200 with a non-JSON body, then answers
    "malformed-once",  # 200 with JSON lacking "choices", then answers
    "unparseable-greedy",  # no verdict word when greedy; a verdict when sampled (a retry)
    "always-500",  # never answers: the label must end unknown
    "always-unparseable",  # never gives a verdict: unknown
)
CLIENT_TIMEOUT = 0.4


def behaviour(content: str) -> str:
    digest = hashlib.sha256(content.encode()).digest()
    return BEHAVIOURS[digest[0] % len(BEHAVIOURS)]


class JudgeServer:
    """A threaded HTTP server speaking enough of the OpenAI API for the judge."""

    def __init__(self, behaviour=behaviour) -> None:
        self.seen: Counter[str] = Counter()  # requests per prompt
        self.kinds: dict[str, str] = {}  # prompt -> behaviour
        self.model_listings = 0  # GET /v1/models: a client was built
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.model_listings += 1
                server.send(self, 200, {"data": [{"id": "judge-model", "max_model_len": 8192}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][-1]["content"]
                kind = behaviour(content)
                with server.lock:
                    server.seen[content] += 1
                    server.kinds[content] = kind
                    first = server.seen[content] == 1
                if (kind == "500-once" and first) or kind == "always-500":
                    return server.send(self, 500, {"error": {"message": "overloaded"}})
                if kind == "timeout-once" and first:
                    time.sleep(CLIENT_TIMEOUT * 3)
                if kind == "garbage-once" and first:
                    return server.send(self, 200, b"<html>502 Bad Gateway</html>")
                if kind == "malformed-once" and first:
                    return server.send(self, 200, {"object": "error", "detail": "busy"})
                word = "YES" if "answer key" in content else "GOOD"
                text = f"The step makes sense.\nVerdict: **{word}**"
                if kind == "always-unparseable" or (
                    kind == "unparseable-greedy" and body["temperature"] == 0
                ):
                    text = "I would rather not say."
                reply = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                server.send(self, 200, reply)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): that is the point

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = JudgeServer()
    yield running
    running.close()


def many_trajectories() -> list[Trajectory]:
    """Twelve QA trajectories of two to three steps: about forty distinct judge prompts."""
    made = []
    for number in range(12):
        steps = [
            step(
                f"Look {number}. <search_query>Ringo Starr {number}</search_query>",
                f"doc {number}",
                ["R"],
            ),
            step(f"Then. <search_query>Hurricanes band {number}</search_query>", "a band", ["H"]),
        ]
        if number % 2:
            steps.append(step(f"<answer>the Hurricanes {number}</answer>"))
        made.append(trajectory(QA_EXAMPLE, steps, id=f"t{number}"))
    return made


@pytest.fixture(scope="module")
def tokenizer():
    """The client needs a tokenizer (for completions; the judge only chats): load it once."""
    return load_tokenizer(None)


def make_judge(url: str, cache: JudgeCache, tokenizer) -> LLMJudge:
    backend = OpenAIBackend(
        url,
        tokenizer,
        model="judge-model",
        context_length=8192,
        timeout=CLIENT_TIMEOUT,
        max_retries=2,
        backoff=0.01,
        max_backoff=0.02,
    )
    return LLMJudge(backend, name="openai:test", cache=cache, retries=2, chunk_size=16)


def test_flaky_server_ends_with_every_label_judged_or_unknown(server, tmp_path, tokenizer) -> None:
    source, target = tmp_path / "traj.jsonl", tmp_path / "labelled.jsonl"
    trajectories = many_trajectories()
    write_jsonl(source, trajectories)
    examples = {QA_EXAMPLE.id: QA_EXAMPLE}

    with JudgeCache(tmp_path / "cache.sqlite") as cache:
        judge = make_judge(server.url, cache, tokenizer)
        counts = label_file(judge, examples, source, target, "both", batch_size=5, progress=False)
    assert set(server.kinds.values()) == set(BEHAVIOURS)  # the server misbehaved in every way

    labelled = read_jsonl(target, Trajectory)
    assert [t.id for t in labelled] == [t.id for t in trajectories]  # nothing lost, in order
    for original, result in zip(trajectories, labelled, strict=True):
        assert [s.text for s in result.steps] == [s.text for s in original.steps]
    labels = [s.process for t in labelled for s in t.steps] + [t.outcome for t in labelled]
    assert all(label is not None and label.judge == "openai:test" for label in labels)
    # Unanswered trajectories (even ids) get outcome NO without a request; otherwise the server
    # says GOOD/YES whenever it answers, so a label is True or unknown, never BAD.
    asked = [label for label in labels if "not asked" not in label.explanation]
    assert len(labels) - len(asked) == 6
    assert {label.verdict for label in asked} == {True, None}
    unknown = [label for label in labels if label.verdict is None]
    failed = [label for label in unknown if label.explanation.startswith("judge request failed")]
    unreadable = [label for label in unknown if label.explanation.startswith("no verdict")]
    assert len(failed) + len(unreadable) == len(unknown)
    expected_unknown = sum(k in ("always-500", "always-unparseable") for k in server.kinds.values())
    assert len(unknown) == expected_unknown and len(asked) == len(server.kinds)
    assert counts.steps_unknown + counts.outcome_unknown == len(unknown)
    # The sampled retry rescued every "unparseable when greedy" prompt.
    assert judge.stats.unparseable >= sum(k == "unparseable-greedy" for k in server.kinds.values())

    # Resuming: everything is labelled, nothing is asked.
    before = sum(server.seen.values())
    with JudgeCache(tmp_path / "cache.sqlite") as cache:
        again = label_file(
            make_judge(server.url, cache, tokenizer),
            examples,
            source,
            target,
            "both",
            progress=False,
        )
    assert again.trajectories == 0 and again.skipped == len(trajectories)
    assert sum(server.seen.values()) == before

    # A fresh output with the same cache asks only what failed (failures are never cached).
    snapshot = server.seen.copy()
    with JudgeCache(tmp_path / "cache.sqlite") as cache:
        rerun = make_judge(server.url, cache, tokenizer)
        label_file(rerun, examples, source, tmp_path / "second.jsonl", "both", progress=False)
    asked_again = {prompt for prompt, count in server.seen.items() if count > snapshot[prompt]}
    assert asked_again == {p for p, kind in server.kinds.items() if kind == "always-500"}
    assert read_jsonl(tmp_path / "second.jsonl", Trajectory) == labelled


def test_cli_judge_with_an_openai_server_and_cache(tmp_path) -> None:
    """``swirl judge --judge openai:URL#model``: a well-behaved server, through the command line."""
    data = tmp_path / "examples.jsonl"
    write_jsonl(data, [QA_EXAMPLE])
    calm = JudgeServer(behaviour=lambda content: "good")
    try:
        source, target = tmp_path / "traj.jsonl", tmp_path / "labelled.jsonl"
        write_jsonl(source, many_trajectories()[:3])
        argv = ["judge", "--in", str(source), "--out", str(target), "--data", str(data)]
        argv += ["--judge", f"openai:{calm.url}#judge-model"]
        argv += ["--judge-cache", str(tmp_path / "judge.sqlite")]
        assert main(argv) == 0
        asked = sum(calm.seen.values())
        assert asked == 3 * 2 + 1 + 1  # 7 steps and the one answered outcome
        labelled = read_jsonl(target, Trajectory)
        assert all(
            s.process.judge == f"openai:{calm.url}#judge-model" for t in labelled for s in t.steps
        )
        assert all(s.process.verdict is True for t in labelled for s in t.steps)
        assert calm.model_listings == 1
        # Same command to a new file: all from the on-disk cache, without even building a client.
        argv[4] = str(tmp_path / "again.jsonl")
        assert main(argv) == 0
        assert sum(calm.seen.values()) == asked and calm.model_listings == 1
        assert read_jsonl(tmp_path / "again.jsonl", Trajectory) == labelled
    finally:
        calm.close()


def test_wrong_data_is_named(tmp_path) -> None:
    other = Example(id="other", question="?", answers=["x"], dataset="hand")
    data = tmp_path / "examples.jsonl"
    write_jsonl(data, [other])
    source = tmp_path / "traj.jsonl"
    write_jsonl(source, many_trajectories()[:1])
    argv = ["judge", "--in", str(source), "--out", str(tmp_path / "o.jsonl"), "--data", str(data)]
    assert main([*argv, "--judge", "reference"]) == 2
