"""The lab raises the shared kernel's neighbour-table thresholds, and never lowers them."""

from __future__ import annotations

from pathlib import Path

from beamfleet_lab.kernel import NEIGHBOUR_THRESHOLDS, raise_neighbour_table


def write(directory: Path, values: dict[str, int]) -> None:
    for name, value in values.items():
        (directory / name).write_text(f"{value}\n")


def test_defaults_are_raised_to_what_the_lab_needs(tmp_path: Path) -> None:
    write(tmp_path, {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024})
    assert raise_neighbour_table(tmp_path) == NEIGHBOUR_THRESHOLDS
    assert (tmp_path / "gc_thresh3").read_text().strip() == str(NEIGHBOUR_THRESHOLDS["gc_thresh3"])


def test_a_higher_value_set_by_someone_else_is_kept(tmp_path: Path) -> None:
    write(tmp_path, {"gc_thresh1": 128, "gc_thresh2": 100_000, "gc_thresh3": 200_000})
    in_force = raise_neighbour_table(tmp_path)
    assert in_force == {"gc_thresh1": 4096, "gc_thresh2": 100_000, "gc_thresh3": 200_000}
