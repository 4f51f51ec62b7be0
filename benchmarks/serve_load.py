"""Load on `trm-edge serve`, continuous against whole batching: for each mode a server on 127.0.0.1 (a free port),
fresh puzzles like a shipped model's, and closed-loop clients (threads, one keep-alive connection each, one puzzle
per request, the next request once the answer is in) at each concurrency level; throughput, latency percentiles
and errors per level. The top level runs once more for each mode on a fresh server, so that the headline
(continuous puzzles/s over whole puzzles/s at the top level, and the p99 of each) has two samples per mode.

    .venv/bin/python benchmarks/serve_load.py [--model maze|default] [--data DIR] [--puzzles 1000]
        [--clients 1,4,16,64] [--requests 2000] [--seconds 120] [--max-batch 64] [--check-answers] [--rss]
        [--json out.json] [--plot out.png]

--check-answers sends every puzzle once (top-level clients pulling from one queue) and compares each answer with
`trm-edge solve --json` on the same puzzles; --rss reads the server's VmRSS after a 1000-request warm-up and at the
end. Clients and server share the CPU: name the CPU (printed, and in the JSON) beside the figures.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trm_edge.puzzles.codec import get_codec  # noqa: E402

MODELS = {"maze": ("maze", "trm_edge/models/maze/bundle"), "default": ("sudoku", "trm_edge/models/default/bundle")}
MODES = ("continuous", "whole")
FIELDS = ("solution", "valid", "problem", "steps", "confidence", "halted")


def trm(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trm_edge", *args], cwd=ROOT, **kwargs)


def puzzles(args, tmp: str) -> np.ndarray:
    data = args.data
    if data is None:
        data = os.path.join(tmp, "data")
        build = trm("data", "build", "--like", args.model, "-o", data, "--train", "0", "--test", str(args.puzzles),
                    "--seed", str(args.seed), "--force", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        message = build.communicate()[1]
        if build.returncode:
            sys.exit(f"trm-edge data build exited {build.returncode}: {message}")
    return np.load(os.path.join(data, "test", "all__inputs.npy"))


class Server:
    """`trm-edge serve` in a subprocess on a free loopback port; ready once GET /ready answers 200."""

    def __init__(self, mode: str, args, log: str) -> None:
        with socket.socket() as probe:  # a free port (another process could take it before the server binds)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.mode = mode
        with open(log, "w") as out:  # the server's own stream; the file is read back when it fails to start
            self.proc = trm("serve", str(ROOT / MODELS[args.model][1]), "--host", "127.0.0.1",
                            "--port", str(self.port), "--batching", mode, "--max-batch", str(args.max_batch),
                            "--max-queue", str(args.max_queue), "--timeout", str(args.timeout), stdout=out, stderr=out)
        deadline = time.monotonic() + 300
        while self.get("/ready") != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                sys.exit(f"trm-edge serve ({mode}) did not get ready; its output:\n{Path(log).read_text()}")
            time.sleep(0.2)

    def get(self, path: str) -> int | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return None

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if code:
            print(f"# trm-edge serve ({self.mode}) exited {code} after SIGTERM (0 expected)", file=sys.stderr)
        return code


def load(port: int, texts: list[str], clients: int, total: int, seconds: float, keep: bool = False) -> dict:
    """``clients`` closed-loop clients sending ``total`` requests (puzzle i % len(texts)) or for ``seconds``."""
    counter, start = itertools.count(), threading.Barrier(clients + 1)
    results: list[tuple[int, str, float]] = []  # (request, outcome, seconds)
    answers: dict[int, dict] = {}
    deadline = [float("inf")]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        start.wait()
        for i in counter:
            if i >= total or time.perf_counter() > deadline[0]:
                break
            body = json.dumps({"puzzles": [texts[i % len(texts)]]})
            began = time.perf_counter()
            try:
                conn.request("POST", "/v1/solve", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                outcome = "ok" if response.status == 200 else str(response.status)
            except (OSError, http.client.HTTPException) as error:
                conn.close()  # the next request reconnects
                outcome, payload = type(error).__name__, b""
            results.append((i, outcome, time.perf_counter() - began))
            if keep and outcome == "ok":
                answers[i] = json.loads(payload)["answers"][0]
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ok = np.array([s for _, outcome, s in results if outcome == "ok"]) * 1000
    errors: dict[str, int] = {}
    for _, outcome, _ in results:
        if outcome != "ok":
            errors[outcome] = errors.get(outcome, 0) + 1
    p50, p95, p99 = np.percentile(ok, [50, 95, 99]) if ok.size else (float("nan"),) * 3
    row = {"clients": clients, "requests": len(results), "seconds": round(wall, 3),
           "puzzles_per_s": round(ok.size / wall, 2), "p50_ms": round(float(p50), 2),
           "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2),
           "errors": sum(errors.values()), "error_kinds": errors}
    return {**row, "answers": answers} if keep else row


def reference(args, codec, inputs: np.ndarray, tmp: str) -> list[dict]:
    """`trm-edge solve --json` on a file of the puzzles, as the server gets them: one answer per puzzle, in order."""
    path = os.path.join(tmp, "puzzles.txt")
    Path(path).write_text("\n\n".join(codec.decode(t) for t in inputs) + "\n")
    solve = trm("solve", "--model", str(ROOT / MODELS[args.model][1]), "--file", path, "--json",
                "--batch", str(args.max_batch), stdout=subprocess.PIPE, text=True)
    lines = solve.communicate()[0].splitlines()
    if solve.returncode or len(lines) != len(inputs):
        sys.exit(f"trm-edge solve exited {solve.returncode} with {len(lines)} answers for {len(inputs)} puzzles")
    return [json.loads(line) for line in lines]


def measure(mode: str, levels: list[int], args, texts: list[str], tmp: str, run: int, expected) -> dict:
    server = Server(mode, args, os.path.join(tmp, f"serve-{mode}-{run}.log"))
    record: dict = {"mode": mode, "run": run, "port": server.port, "rows": []}
    warmup = args.warmup if args.warmup is not None else 1000 if args.rss else 100
    if warmup:
        load(server.port, texts, max(levels), warmup, args.seconds)
    if args.rss:
        record["rss_kib_after_warmup"] = server.rss_kib()
    for clients in levels:
        row = {"mode": mode, "run": run, **load(server.port, texts, clients, args.requests, args.seconds)}
        record["rows"].append(row)
        print(f"{mode:>10} {run:>3} {clients:>7} {row['requests']:>8} {row['puzzles_per_s']:>10.1f} "
              f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['errors']:>6}", flush=True)
    if expected is not None:  # every puzzle once, compared with trm-edge solve
        check = load(server.port, texts, max(levels), len(texts), float("inf"), keep=True)
        got = check.pop("answers")
        wrong = [i for i, want in enumerate(expected) if i not in got or
                 any(got[i][k] != want[k] for k in FIELDS)]
        record["check"] = {"puzzles": len(texts), "answered": len(got), "mismatches": len(wrong),
                           "first_mismatches": [{"index": i, "served": got.get(i), "solve": expected[i]}
                                                for i in wrong[:3]]}
        print(f"# {mode}: {len(wrong)} of {len(texts)} answers missing ({len(texts) - len(got)}) or differing from "
              "trm-edge solve --json", flush=True)
    if args.rss:
        record["rss_kib_end"] = server.rss_kib()
        record["rss_ratio"] = round(record["rss_kib_end"] / record["rss_kib_after_warmup"], 3)
        print(f"# {mode}: VmRSS {record['rss_kib_after_warmup']} KiB after warm-up, {record['rss_kib_end']} KiB "
              f"at the end (x{record['rss_ratio']})", flush=True)
    record["exit_code"] = server.stop()
    return record


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, color in zip(MODES, ("tab:blue", "tab:orange")):  # noqa: B905
        first = [r for r in rows if r["mode"] == mode and r["run"] == 1]
        x = [r["puzzles_per_s"] for r in first]
        for key, style in (("p50_ms", "-o"), ("p99_ms", "--s")):
            ax.plot(x, [r[key] for r in first], style, color=color, label=f"{mode} {key[:3]}")
        for r, key in itertools.product(first, ("p50_ms", "p99_ms")):
            ax.annotate(str(r["clients"]), (r["puzzles_per_s"], r[key]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set(xlabel="throughput (puzzles/s)", ylabel="latency (ms)", yscale="log",
           title="trm-edge serve: latency against throughput (points: concurrent clients)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="maze")
    parser.add_argument("--data", help="a dataset in the official layout (its test split); default: build one")
    parser.add_argument("--puzzles", type=int, default=1000, help="fresh test puzzles to build")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=2000, help="requests per level")
    parser.add_argument("--seconds", type=float, default=120, help="at most this long per level")
    parser.add_argument("--warmup", type=int, help="requests before measuring (default 100; --rss: 1000)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--check-answers", action="store_true")
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    codec = get_codec(MODELS[args.model][0])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"# {cpu}, {os.cpu_count()} cores; model {args.model}", flush=True)
    with tempfile.TemporaryDirectory(prefix="serve_load") as tmp:
        inputs = puzzles(args, tmp)
        texts = [codec.decode(t) for t in inputs]  # sent as the codec writes them (a maze's open cells are spaces)
        for text, tokens in zip(texts, inputs):  # noqa: B905
            assert (codec.parse(text) == tokens).all(), f"the codec does not read back {text!r}"
        expected = reference(args, codec, inputs, tmp) if args.check_answers else None
        print(f"{'mode':>10} {'run':>3} {'clients':>7} {'requests':>8} {'puzzles/s':>10} {'p50 ms':>8} "
              f"{'p95 ms':>8} {'p99 ms':>8} {'errors':>6}", flush=True)
        runs = [measure(mode, levels, args, texts, tmp, 1, expected) for mode in MODES]
        runs += [measure(mode, [max(levels)], args, texts, tmp, 2, None) for mode in MODES]
    rows = [row for run in runs for row in run["rows"]]
    top = {mode: [r for r in rows if r["mode"] == mode and r["clients"] == max(levels)] for mode in MODES}
    headline = {"clients": max(levels),
                "speedup_per_run": [round(c["puzzles_per_s"] / w["puzzles_per_s"], 3) if w["puzzles_per_s"] else None
                                    for c, w in zip(top["continuous"], top["whole"])],  # noqa: B905
                **{f"{mode}_puzzles_per_s": [r["puzzles_per_s"] for r in top[mode]] for mode in MODES},
                **{f"{mode}_p99_ms": [r["p99_ms"] for r in top[mode]] for mode in MODES}}
    print(f"# headline at {max(levels)} clients: continuous/whole puzzles/s {headline['speedup_per_run']} "
          f"(two runs); p99 ms continuous {headline['continuous_p99_ms']}, whole {headline['whole_p99_ms']}")
    if any(run["exit_code"] for run in runs):
        print("# a server did not exit 0 after SIGTERM: " + ", ".join(
            f"{run['mode']} run {run['run']}: {run['exit_code']}" for run in runs))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"cpu": cpu, "cores": os.cpu_count(), "model": args.model, "args": vars(args),
                       "headline": headline, "runs": runs}, handle, indent=2)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
