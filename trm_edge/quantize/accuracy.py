"""Accuracy control (``--max-drop``): keep the most sensitive weight groups in float until the INT8 graph loses at
most ``max_drop`` points of exact accuracy on the validation puzzles.

Units are weight groups (:class:`~trm_edge.quantize.graph.NodeGroup`: one weight and its call sites at every
recursion depth), since a weight is quantized once for all of its call sites. Ranking is by per-group ablation:
each group is kept float alone and the candidate is scored on recorded float32 states of the validation
trajectories, every step, one step per state (teacher-forced cell disagreement with float: cheap, and it sees
every depth). Groups are then restored to float in that order, re-measuring whole-trajectory exact accuracy
through the solver after each, until the drop fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trm_edge.errors import QuantizationError


@dataclass
class AccuracyControl:
    """What accuracy control did: the float baseline, each measured step, and the groups left float (why)."""

    max_drop: float  # points
    float_accuracy: float
    ranking: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    float_groups: list[str] = field(default_factory=list)

    @property
    def final_drop(self) -> float:
        return self.steps[-1]["drop_points"] if self.steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"max_drop_points": self.max_drop, "float_exact_accuracy": self.float_accuracy,
                "ranking": self.ranking, "steps": self.steps, "float_groups": self.float_groups,
                "final_drop_points": self.final_drop, "met": self.final_drop <= self.max_drop}


def control(*, groups: list, build: Callable[[list[str]], Any], exact: Callable[[Any], float],
            score: Callable[[Any], dict[str, float]], float_accuracy: float, max_drop: float,
            base_excluded: list[str], log: Callable[[str], None] = lambda s: None) -> tuple[Any, AccuracyControl]:
    """``build(excluded_nodes) -> candidate``, ``exact(candidate) -> exact accuracy`` (0..1) on validation,
    ``score(candidate) -> {"cell_disagreement": ...}`` on the probe states. Returns the chosen candidate."""
    result = AccuracyControl(max_drop, float_accuracy)
    excluded = list(base_excluded)
    candidate = build(excluded)
    accuracy = exact(candidate)
    drop = 100.0 * (float_accuracy - accuracy)
    result.steps.append({"float_groups": [], "exact_accuracy": accuracy, "drop_points": drop})
    log(f"accuracy control: float {100 * float_accuracy:.2f}%, int8 {100 * accuracy:.2f}% (drop {drop:.2f} points, "
        f"allowed {max_drop})")
    if drop <= max_drop:
        return candidate, result
    free = [g for g in groups if not set(g.nodes) <= set(excluded)]
    base = score(candidate)
    for group in free:  # ablation: this group alone kept float
        s = score(build(excluded + list(group.nodes)))
        result.ranking.append({"group": group.name, "nodes": len(group.nodes), **s,
                               "gain": base["cell_disagreement"] - s["cell_disagreement"]})
    result.ranking.sort(key=lambda r: (-r["gain"], r["cell_disagreement"]))
    by_name = {g.name: g for g in free}
    for entry in result.ranking:
        group = by_name[entry["group"]]
        excluded += [n for n in group.nodes if n not in excluded]
        result.float_groups.append(group.name)
        candidate = build(excluded)
        accuracy = exact(candidate)
        drop = 100.0 * (float_accuracy - accuracy)
        result.steps.append({"float_groups": list(result.float_groups), "exact_accuracy": accuracy,
                             "drop_points": drop, "reason": f"ranked {len(result.float_groups)}: keeping it float "
                             f"cut teacher-forced cell disagreement by {entry['gain']:.4f}"})
        log(f"  + float {group.name}: {100 * accuracy:.2f}% (drop {drop:.2f})")
        if drop <= max_drop:
            return candidate, result
    raise QuantizationError(f"no INT8 graph loses at most {max_drop} points: with every weight group float the drop "
                            f"is still {drop:.2f} points (validation noise? add validation puzzles with --val-n)")
