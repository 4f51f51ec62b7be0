"""Official checkpoints from the Hugging Face Hub: ``hf://OWNER/REPO/PATH/step_N`` (the ARC Prize verification of
TRM publishes ``arc_v1_public/step_518071`` and ``arc_v2_public/step_723914`` that way, with their
``all_config.yaml`` beside them).

huggingface_hub does the fetching: its cache (``HF_HUB_CACHE``, shared with every other Hub user on the machine),
revision pinning (a branch, tag or commit), and its offline mode (``HF_HUB_OFFLINE=1``: the cache only). Its errors
become one line each.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from trm_edge.errors import CheckpointError

SCHEME = "hf://"
CONFIG_FILE = "all_config.yaml"  # written by the official trainer beside each step_N


def is_hub_reference(text: str) -> bool:
    return str(text).startswith(SCHEME)


def parse_reference(reference: str) -> tuple[str, str]:
    """``hf://OWNER/REPO/PATH/step_N`` -> (``OWNER/REPO``, ``PATH/step_N``)."""
    parts = PurePosixPath(reference[len(SCHEME):]).parts
    if len(parts) < 3 or any(part in ("..", ".") for part in parts):
        raise CheckpointError(f"{reference!r} is not a Hub checkpoint reference: write hf://OWNER/REPO/PATH/step_N "
                              "(for example hf://arcprize/trm_arc_prize_verification/arc_v1_public/step_518071)")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:])


def fetch_checkpoint(reference: str, *, revision: str | None = None) -> Path:
    """The local path of an official checkpoint on the Hub, its ``all_config.yaml`` fetched beside it (in the
    cache's snapshot of the repository)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, filename = parse_reference(reference)
    at = f" at revision {revision!r}" if revision else ""
    config = str(PurePosixPath(filename).parent / CONFIG_FILE)
    paths = []
    for wanted in (filename, config):
        try:
            paths.append(Path(hf_hub_download(repo, wanted, revision=revision)))
        except LocalEntryNotFoundError:  # (a kind of EntryNotFoundError: first)
            raise CheckpointError(f"{reference!r}: {wanted!r}{at} is not in the local Hugging Face cache, and the "
                                  "Hub cannot be reached (offline, or HF_HUB_OFFLINE=1)") from None
        except RevisionNotFoundError:
            raise CheckpointError(f"{reference!r}: the Hub repository {repo!r} has no revision {revision!r}") \
                from None
        except RepositoryNotFoundError:
            raise CheckpointError(f"{reference!r}: no Hub repository {repo!r} (or it is private: log in with "
                                  "`hf auth login`)") from None
        except EntryNotFoundError:
            raise CheckpointError(f"{reference!r}: {repo!r}{at} has no file {wanted!r}") from None
        except HFValidationError as error:
            raise CheckpointError(f"{reference!r}: {' '.join(str(error).split())}") from None
    return paths[0]
