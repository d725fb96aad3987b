"""``swirl index``: build (or reuse) the search index of a corpus, and optionally query it."""

from __future__ import annotations

import argparse

HELP = "build the search index of a corpus (bm25, optionally dense) and try queries on it"


def configure(parser: argparse.ArgumentParser) -> None:
    from swirl.data import add_data_arguments

    parser.add_argument("--corpus", metavar="FILE", help='corpus JSONL of {"id", "title", "text"}')
    add_data_arguments(parser, required=False)  # or --data: the corpus of a dataset
    parser.add_argument("--out", required=True, metavar="DIR", help="index directory")
    parser.add_argument("--dense", action="store_true", help="also embed every document (MiniLM)")
    parser.add_argument("--dense-model", metavar="PATH", help="another sentence-embedding model")
    parser.add_argument("--force", action="store_true", help="rebuild even if the index is current")
    parser.add_argument("--query", action="append", default=[], help="search this (repeatable)")
    parser.add_argument("--top-k", type=int, default=1, help="documents per query (default 1)")
    parser.add_argument(
        "--backend", choices=["bm25", "dense"], default=None, help="for --query and --serve"
    )
    parser.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        help="then serve the index over HTTP (Search-R1 POST /retrieve) until Ctrl-C",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (--serve)")


def run(args: argparse.Namespace) -> int:
    import time

    from swirl.corpus import read_corpus
    from swirl.data import corpus_from_args
    from swirl.tools.search import build_index, open_index

    if (args.corpus is None) == (args.data is None):
        raise ValueError("give exactly one of --corpus FILE or --data NAME_OR_PATH")
    started = time.perf_counter()
    documents = read_corpus(args.corpus) if args.corpus else corpus_from_args(args)
    reused = build_index(
        documents,
        args.out,
        dense=args.dense or args.dense_model is not None,
        dense_model=args.dense_model,
        force=args.force,
        progress=True,
    )
    seconds = time.perf_counter() - started
    parts = "bm25 + dense" if args.dense or args.dense_model else "bm25"
    if reused:
        print(f"{args.out}: up to date ({len(documents)} documents, {parts}); {seconds:.1f} s")
    else:
        print(f"{args.out}: indexed {len(documents)} documents ({parts}) in {seconds:.1f} s")
    if not args.query and args.serve is None:
        return 0
    backend = args.backend or ("dense" if args.dense or args.dense_model else "bm25")
    tool = open_index(args.out, backend=backend, top_k=args.top_k)
    for query in args.query:
        print(f"{query} -> {tool(query)}")
    if args.serve is not None:
        from swirl.tools.search_server import make_server

        server = make_server(tool, args.host, args.serve)
        host, port = server.server_address[:2]
        print(
            f"serving {backend} search on http://{host}:{port}/retrieve (Ctrl-C stops)", flush=True
        )
        try:
            server.serve_forever()
        finally:
            server.server_close()
    return 0
