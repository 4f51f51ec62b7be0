"""CLI command: verify (on-device parity of a bundle: checksums, then its golden I/O through a runtime)."""

from __future__ import annotations

from pathlib import Path

import typer

from trm_edge.commands import common
from trm_edge.commands.output import console, print_json


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command()(verify)


def verify(
    bundle: Path = typer.Argument(..., help="Bundle directory."),
    runtime: str = common.runtime_option(),
    as_json: bool = common.json_option(),
) -> None:
    """On-device parity: checksums, then the bundle's golden I/O through the runtime; pass/fail."""
    from trm_edge.errors import BundleError
    from trm_edge.runtimes.sources import open_runtime, open_source
    from trm_edge.runtimes.verify import verify_golden

    source = open_source(bundle)  # verifies every checksum
    if source.kind != "bundle":
        raise BundleError(f"{str(bundle)!r} is not a bundle (no manifest.json)")
    golden = source.bundle.golden()
    if not golden:
        raise BundleError(f"{str(bundle)!r} carries no golden I/O to verify against")
    with open_runtime(source, runtime) as rt:
        result = verify_golden(rt, golden, precision=source.precision)
    seal = "sealed" if source.bundle.manifest.sealed else "unsealed"
    if as_json:
        print_json({**result.to_dict(), "bundle": str(bundle), "checksums": "ok", "manifest": seal})
    else:
        console.print(f"checksums ✓ ({bundle})")
        console.print("manifest seal ✓" if seal == "sealed" else "manifest unsealed: written before trm-edge sealed "
                      "its manifests, so a hand edit of it would go unnoticed (export it again to seal it)")
        for line in result.lines:
            console.print(line, markup=False, highlight=False)
        worst = result.worst
        verdict = "[green]PASS[/]" if result.ok else "[red]FAIL[/]"
        console.print(f"{verdict} on {rt.name}: {result.cases} golden cases, worst {worst.output} "
                      f"err/tol {worst.ratio:.3f} at {worst.worst_case}")
    result.raise_if_failed(what=f"{bundle} on {rt.name}")
