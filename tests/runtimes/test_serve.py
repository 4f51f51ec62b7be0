"""`trm-edge serve`: a real server process on a loopback port, real HTTP clients. Answers against `solve --json` on
every shipped model and an ARC bundle; queue, body and deadline limits; a client that disconnects; SIGTERM under
load; a runtime failure that fails only its requests."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from tests.runtimes.serving import ROOT, Server

MODELS = ROOT / "trm_edge" / "models"
SHIPPED = ("default", "maze")


@pytest.fixture
def serving():
    started: list[Server] = []

    def start(model: str | Path, *args: str) -> Server:
        started.append(Server(model, *args))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def fresh_puzzles(like: str, n: int, tmp_path: Path) -> list[str]:
    """``n`` puzzles of the shipped model ``like`` built for this test, as the text solve reads."""
    from trm_edge.puzzles.codec import get_codec
    from trm_edge.puzzles.examples import read_examples

    data = tmp_path / f"{like}-data"
    built = subprocess.run([sys.executable, "-m", "trm_edge", "data", "build", "--like", like, "-o", str(data),
                            "--train", "0", "--test", str(n), "--seed", "2027", "--force"],
                           capture_output=True, text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    codec = get_codec("sudoku" if like == "default" else like)
    return [codec.decode(tokens) for tokens in read_examples(str(data), "test").inputs]


def solve_json(model: str | Path | None, puzzles: list[str], tmp_path: Path) -> list[dict]:
    """`solve --json` on these puzzles, with ``--model model`` (None: without, the shipped default)."""
    file = tmp_path / "puzzles.txt"
    file.write_text("\n\n".join(puzzles) + "\n")
    chosen = [] if model is None else ["--model", str(model)]
    result = subprocess.run([sys.executable, "-m", "trm_edge", "solve", *chosen, "--file", str(file), "--json"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_shipped_model_is_served_here():
    """A guard: every shipped model (a checkpoint under trm_edge/models) has its bundle, and is in SHIPPED, which
    the tests of names and answers run."""
    checkpoints = sorted(p.name for p in MODELS.iterdir() if (p / "config.json").is_file())
    assert checkpoints == sorted(SHIPPED)
    assert all((MODELS / name / "bundle" / "manifest.json").is_file() for name in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_name_means_its_bundle_and_its_path_the_checkpoint(name, tmp_path, monkeypatch):
    """For the commands that run a model, a shipped model's name is its bundle (what plain `solve` runs for
    `default`); the checkpoint is reached by its path, and by name where a checkpoint is what is asked for
    (`export NAME`, `data build --like NAME`); a file or directory of that name here is what the name means."""
    from trm_edge.runtimes.sources import default_model, open_source, shipped_bundle
    from trm_edge.trm.checkpoint import read_checkpoint_info, resolve_model_path

    source = open_source(name)
    assert source.kind == "bundle" and source.path.resolve() == (MODELS / name / "bundle").resolve()
    checkpoint = open_source(str(MODELS / name))
    assert checkpoint.kind == "checkpoint" and checkpoint.task == source.task
    assert checkpoint.config.to_dict() == source.config.to_dict()
    assert resolve_model_path(name) == MODELS / name and read_checkpoint_info(name)["task"] == source.task
    if name == "default":
        assert open_source(default_model()).path.resolve() == source.path.resolve()
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir()
    assert shipped_bundle(name) is None and shipped_bundle(f"./{name}") is None


@pytest.mark.slow
def test_serve_default_answers_as_plain_solve_and_verifies_first(serving, tmp_path):
    """`serve default` runs what `solve` runs without --model (the shipped bundle on the same runtime), verified
    before it is ready: 300 fresh puzzles get `solve --json`'s answers field for field, confidences included; and
    `solve --model default` is plain `solve`."""
    from trm_edge.runtimes.sources import default_model, default_runtime, open_source

    puzzles = fresh_puzzles("default", 300, tmp_path)
    expected = solve_json(None, puzzles, tmp_path)
    assert solve_json("default", puzzles, tmp_path) == expected
    server = serving("default", "--max-batch", "16")
    ready = json.loads(server.get("/ready")[2])
    assert ready["runtime"] == default_runtime(open_source(default_model()))
    assert ready["verification"]["ok"] and ready["verification"]["cases"] > 0

    def send(start: int) -> list[dict]:
        status, body = server.solve({"puzzles": puzzles[start:start + 10]})
        assert status == 200, body
        return body["answers"]

    with ThreadPoolExecutor(8) as pool:
        answered = [a for answers in pool.map(send, range(0, len(puzzles), 10)) for a in answers]
    assert [{**a, "puzzle": None} for a in answered] == [{**e, "puzzle": None} for e in expected]


@pytest.mark.slow
@pytest.mark.parametrize("batching", ["continuous", "whole"])
@pytest.mark.parametrize("name", SHIPPED)
def test_answers_over_http_equal_solve_json_under_64_concurrent_clients(serving, name, batching, tmp_path):
    """Puzzles sent by 64 clients at once, one to three per request, join and leave one shared batch at every step
    (or, whole, run in fixed batches through every step): each answer is what `solve --json` gives for that puzzle
    alone, field for field."""
    bundle = MODELS / name / "bundle"
    puzzles = fresh_puzzles(name, 192, tmp_path)
    expected = solve_json(bundle, puzzles, tmp_path)
    server = serving(bundle, "--max-batch", "16", "--batching", batching)
    bounds = np.cumsum([0] + [1, 2, 3] * 32)  # 192 puzzles in 96 requests
    chunks = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]  # noqa: B905

    def send(chunk: list[int]) -> list[dict]:
        status, body = server.solve({"puzzles": [puzzles[i] for i in chunk]})
        assert status == 200, body
        return body["answers"]

    with ThreadPoolExecutor(64) as pool:
        answered = list(pool.map(send, chunks))
    for chunk, answers in zip(chunks, answered):  # noqa: B905
        for k, (i, got) in enumerate(zip(chunk, answers)):  # noqa: B905
            assert got == {**expected[i], "puzzle": f"puzzle {k + 1}"}, i
    assert sum(map(len, chunks)) == len(puzzles)
    assert server.metric("trm_edge_requests_total{outcome=\"ok\"}") == len(chunks)
    steps = sum(answer["steps"] for answer in expected)
    deadline = time.monotonic() + 60  # whole batching answers a puzzle at its halting step, before its batch ends
    while server.metric("trm_edge_rows_in_flight") and time.monotonic() < deadline:
        time.sleep(0.05)
    batch_steps = server.metric("trm_edge_batch_occupancy_count")
    if batching == "continuous":  # rows refilled at every step: about the steps of full batches
        assert batch_steps < steps / 8
    else:  # every batch runs all 16 steps, however early its puzzles halt
        assert batch_steps % 16 == 0 and batch_steps >= 16 * len(puzzles) / 16
    assert server.stop() == 0


def test_arc_tasks_over_http_get_the_attempts_of_solve(serving, arc_bundle):
    bundle, _, _, combined = arc_bundle
    expected = json.loads(subprocess.run([sys.executable, "-m", "trm_edge", "solve", str(combined), "--model",
                                          str(bundle), "--json"], capture_output=True, text=True, cwd=ROOT).stdout)
    server = serving(bundle)
    status, body = server.solve({"tasks": json.loads(combined.read_text())})
    assert status == 200 and body == {"attempts": expected}
    status, body = server.solve({"tasks": {"nope": {"train": [{"input": [[1]], "output": [[1]]}],
                                                    "test": [{"input": [[1]]}]}}})
    assert status == 400 and "task 'nope': this model has no puzzle embedding" in body["error"]
    status, body = server.solve(b'{"tasks": {"\\ud800": 1}}')  # a message quoting a lone surrogate, escaped
    assert status == 400 and body["error"].startswith("\\ud800: not an ARC task"), body


def test_bad_requests_get_the_cli_message_and_nothing_is_queued(serving, tmp_path):
    server = serving(MODELS / "default" / "bundle", "--max-body", "2000", "--max-queue", "8")
    bad = "1" * 80
    cli = subprocess.run([sys.executable, "-m", "trm_edge", "solve", bad], capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 2
    status, body = server.solve({"puzzles": [bad]})
    assert status == 400 and f"error: {body['error']}" == cli.stderr.strip()
    status, body = server.solve(b'{"puzzles": ["12')
    assert status == 400 and body["error"].startswith("request body: invalid JSON")
    status, body = server.solve({"grids": []})
    assert status == 400 and '{"puzzles": [PUZZLE, ...]}' in body["error"]
    status, body = server.solve({"puzzles": ["." * 81] * 40})  # 3,300 bytes
    assert status == 413 and "--max-body" in body["error"]
    status, body = server.solve({"puzzles": ["." * 81] * 9})
    assert status == 413 and "holds 9 puzzle rows" in body["error"] and "--max-queue" in body["error"]
    assert server.metric("trm_edge_requests_total{outcome=\"bad_request\"}") == 3
    assert server.metric("trm_edge_requests_total{outcome=\"too_large\"}") == 2
    assert server.metric("trm_edge_queue_depth") == 0


def refused_bodies() -> dict[str, tuple[bytes, str]]:
    """Bodies the JSON parser refuses, each with the start of the message it gets."""
    invalid = "request body: invalid JSON: "
    deep = 100_000
    utf16 = '{"puzzles": ["'.encode("utf-16-le") + b"\x00\xd8" + '"]}'.encode("utf-16-le")  # a lone high surrogate
    return {
        "integer of 5,000 digits": (b'{"puzzles": [' + b"1" * 5000 + b"]}",
                                    invalid + "an integer literal of 5000 digits (at most 4300)"),
        "negative integer beside the puzzles": (b'{"puzzles": ["' + b"." * 81 + b'"], "n": -' + b"9" * 4301 + b"}",
                                                invalid + "an integer literal of 4301 digits"),
        "integer of a million digits": (b"7" * 1_000_000, invalid + "an integer literal of 1000000 digits"),
        "arrays nested 100,000 deep": (b"[" * deep + b"]" * deep, invalid + "nested too deeply"),
        "objects nested 100,000 deep": (b'{"a":' * deep + b"1" + b"}" * deep, invalid + "nested too deeply"),
        "bytes that are not UTF-8": (b'{"puzzles": ["\xff\xfe"]}', invalid + "'utf-8' codec can't decode byte 0xff"),
        "a surrogate encoded in UTF-8": (b'{"puzzles": ["\xed\xa0\x80"]}', invalid + "'utf-8' codec can't decode"),
        "a lone surrogate in UTF-16": (utf16, invalid + "'utf-16-le' codec can't decode"),
        "an empty body": (b"", invalid + "Expecting value: line 1 column 1"),
        "NUL bytes": (b"\x00" * 8, invalid),
        "truncated": (b'{"puzzles": ["12', invalid + "Unterminated string"),
        "trailing data": (b'{"puzzles": []} {}', invalid + "Extra data"),
    }


def test_every_body_the_parser_refuses_is_a_counted_400_and_the_server_stays_healthy(serving):
    """Whatever json.loads raises on a body (a syntax error, a bad encoding, nesting past its recursion, an integer
    literal too long to convert) is a 400 with a one-line message, counted in /metrics; never a 500 or a traceback.
    A lone surrogate written as an escape is valid JSON: the puzzle reader refuses it, with the CLI's message."""
    server = serving(MODELS / "default" / "bundle")
    bodies = refused_bodies()
    for case, (body, message) in bodies.items():
        status, _, content = server.request("POST", "/v1/solve", body)
        assert status == 400 and json.loads(content)["error"].startswith(message), (case, content[:300])
    escaped = json.dumps({"puzzles": ["\ud800" * 81]}).encode()  # ensure_ascii: the escape \ud800, 81 times
    status, body = server.solve(escaped)
    assert status == 400 and body["error"] == "puzzle 1: sudoku: invalid character '\\ud800' at position 1 (row 1, " \
                                              "column 1); use 1-9, and '.', '0' or '-' for a blank"
    assert server.metric('trm_edge_requests_total{outcome="bad_request"}') == len(bodies) + 1
    assert server.metric('trm_edge_requests_total{outcome="error"}') == 0
    assert server.get("/health")[0] == 200 and server.get("/ready")[0] == 200
    status, body = server.solve({"puzzles": ["." * 81]})
    assert status == 200 and len(body["answers"]) == 1
    assert server.stop() == 0
    assert "Traceback" not in server.log and "Exceeds the limit" not in server.log


def test_the_integer_limit_is_the_readers_own():
    """The same refusal on every Python (3.8 before 3.8.14 has no limit, and int() of a long literal is quadratic),
    and an integer at the limit is still an integer."""
    from trm_edge.errors import PuzzleError
    from trm_edge.safe_json import MAX_DIGITS
    from trm_edge.serve.work import parse_json

    assert parse_json(b"[-" + b"9" * MAX_DIGITS + b"]") == [-int("9" * MAX_DIGITS)]
    with pytest.raises(PuzzleError, match=f"an integer literal of {MAX_DIGITS + 1} digits"):
        parse_json(b"1" * (MAX_DIGITS + 1))


def slow_request(server: Server, puzzles: int) -> bytes:
    """A request that keeps the batch busy: the server runs --no-halt with a small batch."""
    return json.dumps({"puzzles": ["." * 81] * puzzles}).encode()


def test_a_full_queue_answers_503_at_once(serving):
    server = serving(MODELS / "default" / "bundle", "--max-batch", "1", "--no-halt", "--max-queue", "8")
    busy = threading.Thread(target=server.request, args=("POST", "/v1/solve", slow_request(server, 8)))
    busy.start()
    while server.metric("trm_edge_rows_in_flight") == 0:
        time.sleep(0.01)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.connect()
    started = time.perf_counter()
    connection.request("POST", "/v1/solve", body=slow_request(server, 2))
    response = connection.getresponse()
    seconds = time.perf_counter() - started
    body = json.loads(response.read())
    assert response.status == 503 and response.getheader("Retry-After") == "1", body
    assert "the queue holds 7 puzzle(s) and takes at most 8" in body["error"]
    assert seconds < 0.05, seconds
    busy.join()
    assert server.metric("trm_edge_requests_total{outcome=\"queue_full\"}") == 1


def test_a_client_that_disconnects_leaves_no_rows_in_the_batch(serving):
    server = serving(MODELS / "default" / "bundle", "--max-batch", "4", "--no-halt")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("POST", "/v1/solve", body=slow_request(server, 64))
    while server.metric("trm_edge_rows_in_flight") == 0:
        time.sleep(0.01)
    assert server.metric("trm_edge_queue_depth") > 0
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    deadline = time.monotonic() + 10
    while server.metric("trm_edge_rows_in_flight") + server.metric("trm_edge_queue_depth") and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.metric("trm_edge_rows_in_flight") == server.metric("trm_edge_queue_depth") == 0
    assert server.metric("trm_edge_requests_total{outcome=\"disconnected\"}") == 1
    status, body = server.solve({"puzzles": ["." * 81]})  # and it serves on
    assert status == 200 and len(body["answers"]) == 1


def test_a_request_past_its_deadline_gets_504_and_leaves_the_batch(serving):
    server = serving(MODELS / "default" / "bundle", "--max-batch", "2", "--no-halt", "--timeout", "0.3")
    status, body = server.request("POST", "/v1/solve", slow_request(server, 64))[0::2]
    assert status == 504 and "not solved within 0.3 s (--timeout)" in json.loads(body)["error"]
    time.sleep(0.3)
    assert server.metric("trm_edge_rows_in_flight") == server.metric("trm_edge_queue_depth") == 0


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(serving):
    server = serving(MODELS / "default" / "bundle", "--max-batch", "8")
    puzzle = "24.6.9..51..34.6.8...175.43.6....82...159.4.79..8.6......9..7..59826731...64.19.."
    with ThreadPoolExecutor(16) as pool:
        sent = [pool.submit(server.solve, {"puzzles": [puzzle] * 4}) for _ in range(16)]
        while server.metric("trm_edge_queue_depth") == 0:
            time.sleep(0.005)
        server.process.send_signal(signal.SIGTERM)
        results = [future.result() for future in sent]
    assert all(status == 200 and len(body["answers"]) == 4 for status, body in results)
    assert server.process.wait(60) == 0
    assert "Traceback" not in server.process.stderr.read()
    with pytest.raises(OSError):
        server.get("/health")


def test_sigterm_with_a_deep_queue_exits_0_within_the_drain_deadline(serving):
    """256 puzzles queued behind a batch of 4 that takes 4 steps a puzzle, then SIGTERM with --drain-timeout 2:
    the batch in flight is answered, the queue is served while the batch could still finish in time, what is still
    queued then gets 503 with Retry-After, and the process exits 0 within the 2 s."""
    server = serving(MODELS / "default" / "bundle", "--max-batch", "4", "--no-halt", "--max-steps", "4",
                     "--drain-timeout", "2")
    body = json.dumps({"puzzles": ["." * 81] * 4}).encode()
    with ThreadPoolExecutor(64) as pool:
        sent = [pool.submit(server.request, "POST", "/v1/solve", body) for _ in range(64)]
        while server.metric("trm_edge_queue_depth") < 200:
            time.sleep(0.01)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(30)
        seconds = time.monotonic() - started
        results = [(status, headers, json.loads(content)) for status, headers, content in
                   (future.result() for future in sent)]
    assert code == 0 and seconds < 2.0, (code, seconds)
    answered = [body for status, _, body in results if status == 200]
    refused = [(headers, body) for status, headers, body in results if status == 503]
    assert len(answered) + len(refused) == len(results), [status for status, _, _ in results]
    assert all(len(body["answers"]) == 4 for body in answered) and answered, len(answered)
    assert refused and all({k.lower(): v for k, v in headers.items()}.get("retry-after") == "1" and
                           "shutting down" in body["error"] for headers, body in refused)
    assert "Traceback" not in server.process.stderr.read()


def test_health_ready_metrics_and_openapi(serving):
    server = serving(MODELS / "maze" / "bundle")
    assert json.loads(server.get("/health")[2]) == {"status": "alive"}
    ready = json.loads(server.get("/ready")[2])
    assert ready["status"] == "ready" and ready["verification"]["ok"] and ready["task"] == "maze"
    status, headers, text = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("trm_edge_requests_total", "trm_edge_queue_depth", "trm_edge_batch_occupancy_bucket",
                 "trm_edge_puzzle_steps_bucket", "trm_edge_request_seconds_bucket"):
        assert name in text.decode()
    spec = json.loads(server.get("/openapi.json")[2])
    assert {"/v1/solve", "/health", "/ready", "/metrics"} <= set(spec["paths"])
    assert "puzzles" in spec["paths"]["/v1/solve"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.mark.parametrize(("args", "words"), [
    (["--batching", "fixed"], ["--batching 'fixed'", "'continuous'"]),
    (["--port", "70000"], ["--port 70000", "0..65535"]),
    (["--max-queue", "0"], ["--max-queue 0"]),
    (["--timeout", "-1"], ["--timeout -1"]),
    (["--drain-timeout", "0"], ["--drain-timeout 0", "above 0"]),
    (["--drain-timeout", "inf"], ["--drain-timeout inf", "finite"]),
])
def test_serve_refuses_bad_options_in_one_line(args, words):
    from tests.reliability.conftest import assert_refused

    assert_refused(run_cli("serve", *args), *words)


def test_serve_refuses_a_taken_port_before_loading(serving):
    server = serving(MODELS / "default" / "bundle")
    from tests.reliability.conftest import assert_refused

    assert_refused(run_cli("serve", "--port", str(server.port)), f"cannot listen on 127.0.0.1:{server.port}")


# -- the scheduler in-process: a real runtime whose step fails once -----------------------------------------------


def test_a_failed_step_fails_only_the_requests_it_touched(bundles):
    from trm_edge.runtimes import open_runtime
    from trm_edge.runtimes.recursion import Recursion
    from trm_edge.serve.scheduler import Job, RequestFeed, Scheduler

    _, bundle = bundles("mlp")
    rt = open_runtime(bundle, "onnxruntime").load()
    start, calls = rt.start, []

    def failing_start(**kwargs):
        recurrence = start(**kwargs)
        step = recurrence.step

        def flaky():
            calls.append(len(calls))
            if len(calls) == 2:
                raise RuntimeError("injected: the device went away")
            return step()

        recurrence.step = flaky
        return recurrence

    rt.start = failing_start
    feed = RequestFeed(64)
    scheduler = Scheduler(Recursion(rt, batch_size=4, halt=False, max_steps=3), feed)
    scheduler.start()
    scheduler.ready.wait()
    finished = threading.Event()
    jobs: list[Job] = []

    def done(job: Job) -> None:
        if all(j.left == 0 or j.error is not None for j in jobs):
            finished.set()

    tokens = np.random.default_rng(0).integers(1, 11, size=(6, 81)).astype(np.int32)
    jobs += [Job(tokens[:4], np.zeros(4, np.int64), done), Job(tokens[4:], np.zeros(2, np.int64), done)]
    for job in jobs:
        feed.submit(job)
    assert finished.wait(60)
    scheduler.stop(60)
    assert jobs[0].error == "the runtime failed: injected: the device went away"
    assert jobs[1].error is None and (jobs[1].output.steps == 3).all()
    assert feed.in_flight == feed.queued == 0


def test_a_model_that_fails_to_load_stops_the_server_with_its_error(bundles):
    """The model loads in the scheduler's thread while the server already answers /health: a backend that cannot
    build its session ends the server with that error (the CLI prints it in one line and exits 2)."""
    from trm_edge.errors import TrmEdgeError
    from trm_edge.runtimes import open_runtime
    from trm_edge.serve.server import bind, serve

    _, bundle = bundles("mlp")
    runtime = open_runtime(bundle, "onnxruntime")

    def broken_backend() -> None:
        raise RuntimeError("injected: the session could not be built")

    runtime._load = broken_backend
    with pytest.raises(TrmEdgeError, match="the model failed to load: injected: the session could not be built"):
        serve(runtime, bind("127.0.0.1", 0), batching="continuous", max_batch=4, max_queue=8, timeout=5.0,
              max_body=1 << 20, max_steps=None, halt=True, threshold=None, drain_timeout=5.0)
