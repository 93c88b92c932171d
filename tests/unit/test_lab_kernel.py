"""The lab raises the shared kernel's neighbour-table thresholds, and never lowers them."""

from __future__ import annotations

import gzip
from pathlib import Path

from beamfleet_lab.inventory_file import render_inventory
from beamfleet_lab.kernel import NEIGHBOUR_THRESHOLDS, esp_supported, raise_neighbour_table


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


def kernel_config(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "config.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_encrypted_overlays_need_esp_in_the_kernel(tmp_path: Path) -> None:
    with_esp = kernel_config(tmp_path, ["CONFIG_INET_ESP=m", "CONFIG_XFRM_USER=y"])
    assert esp_supported(with_esp)
    without = kernel_config(tmp_path, ["# CONFIG_INET_ESP is not set", "CONFIG_XFRM_USER=y"])
    assert not esp_supported(without)
    assert not esp_supported(tmp_path / "missing.gz")


def test_lab_inventory_says_what_the_shared_kernel_can_do() -> None:
    text = render_inventory(
        "t",
        [("host1", "10.232.9.11", "managers")],
        Path("/k"),
        Path("/kh"),
        encrypted_overlays=False,
    )
    namespace: dict[str, object] = {}
    exec(compile(text, "inventory.py", "exec"), namespace)  # the inventory is Python
    ((name, data),) = namespace["managers"]  # type: ignore[misc]
    assert name == "host1"
    assert data["app_network_encrypted"] is False and data["neighbour_table"] is False
