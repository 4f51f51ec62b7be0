"""Runtime-test fixtures: one exported bundle per tiny config, shared by the whole session."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TINY_CONFIGS


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and OpenMP spinning crawls on a shared 2-core box."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def halting_model(factory, name: str, seed: int = 0):
    """A tiny random model whose halting head fires at varied steps (the init never halts: q = -5):
    random q_head weights, and a bias that puts the median step-1 q_halt logit of random puzzles at 0."""
    import torch

    model = factory(name, seed=seed)
    cfg = model.config
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        model.q_head.weight.normal_(0, 2.0 / cfg.hidden_size**0.5, generator=generator)
        model.q_head.bias.fill_(0.0)
        tokens = torch.from_numpy(random_tokens(cfg, 32, seed=99))
        z_H, z_L = model.initial_state(32)
        embedding = model.puzzle_embedding(torch.from_numpy(random_ids(cfg, 32, seed=98)), 32)
        q = model.step_embedded(tokens, z_H, z_L, embedding)[3]
        model.q_head.bias[0] = -q.median()
    return model


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """``bundles(name) -> (model, bundle_path)``: each tiny config exported once, on first use."""
    from trm_edge.export import export_bundle
    from trm_edge.trm.model import build_model

    cache: dict[str, tuple[object, object]] = {}
    root = tmp_path_factory.mktemp("bundles")

    class Factory:  # the tiny_model_factory fixture is function-scoped; rebuild its recipe here
        def __call__(self, name: str, seed: int = 0):
            import torch

            model = build_model(TINY_CONFIGS[name], seed=seed).eval()
            if hasattr(model, "puzzle_emb"):
                with torch.no_grad():
                    model.puzzle_emb.weights.normal_(0, 1, generator=torch.Generator().manual_seed(seed))
            return model

    def get(name: str, *, batch: int | None = None):
        key = f"{name}-b{batch}" if batch else name
        if key not in cache:
            if batch:  # a static batch: the same graph with its batch axis fixed (cheaper than re-exporting)
                model, dynamic = get(name)
                cache[key] = (model, static_batch_copy(dynamic, root / key, batch))
                return cache[key]
            model = halting_model(Factory(), name)
            cfg = TINY_CONFIGS[name]
            task = "sudoku" if cfg.seq_len == 81 and cfg.vocab_size == 11 else None
            path = export_bundle(model, root / key, target="cpu", task=task, validation_steps=1,
                                 validation_inputs=random_tokens(cfg, 1, seed=5))
            cache[key] = (model, path)
        return cache[key]

    return get


def static_batch_copy(bundle, output, batch: int):
    """Copy a bundle, fixing the batch axis of its step graph's inputs and outputs to ``batch``."""
    import shutil

    import onnx

    from trm_edge.bundle.store import load_bundle

    shutil.copytree(bundle, output)
    graph = onnx.load(str(output / "step.onnx"))
    for value in [*graph.graph.input, *graph.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(graph, str(output / "step.onnx"))
    bundle = load_bundle(output, verify=False)
    graphs = bundle.manifest.graphs
    bundle.write_manifest(bundle.manifest.replace(graphs={**graphs, "step": {**graphs["step"], "batch": batch}}))
    return output


def random_tokens(config, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, config.vocab_size, (n, config.seq_len)).astype(np.int32)


def random_ids(config, n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, config.num_puzzle_identifiers, n)


@pytest.fixture(scope="session")
def arc_bundle(tmp_path_factory):
    """A tiny random ARC model trained (in name) on a dataset built from ARC task files, its checkpoint keeping
    the dataset's identifier names, exported without --identifiers: the bundle must carry them by itself. Its
    halting head stops some puzzles at step 1 and runs others to the end, so halting changes the answers."""
    from typer.testing import CliRunner

    from tests.conftest import random_trm
    from tests.puzzles.test_arc import write_sources
    from trm_edge.cli import app
    from trm_edge.config import TRMConfig
    from trm_edge.puzzles.build import build_dataset
    from trm_edge.puzzles.dataset import read_identifiers
    from trm_edge.trm.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("arc")
    training, combined = write_sources(tmp)
    data = tmp / "arc"
    build_dataset("arc", data, source=[str(training), str(combined)], aug=3, seed=2)
    names = read_identifiers(data)
    cfg = TRMConfig(seq_len=900, vocab_size=12, num_puzzle_identifiers=len(names), hidden_size=16, num_heads=2,
                    expansion=2.0, pos_encodings="rope", puzzle_emb_ndim=16, puzzle_emb_len=1, H_cycles=1,
                    L_cycles=1, L_layers=1, halt_max_steps=2)
    model = halting_model(lambda _, seed: random_trm(cfg, seed=seed), "arc", seed=3)
    checkpoint = save_checkpoint(model, tmp / "ckpt", task="arc", identifiers=names)
    exported = CliRunner().invoke(app, ["export", str(checkpoint), "--target", "cpu", "-o", str(tmp / "bundle")],
                                  catch_exceptions=False)
    assert exported.exit_code == 0, exported.output
    return tmp / "bundle", data, training, combined
