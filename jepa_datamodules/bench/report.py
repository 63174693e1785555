"""``jepa-bench``'s report: ``bench.json`` in the run folder, and its printed summary.

Also what every report records about the run: the machine (cores, CUDA device, library
versions) and the mask generator's name.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from ..storage.files import atomic_write_text


def write_report(report: dict[str, Any], output_dir: str | Path | None,
                 format: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """``report`` written atomically as ``bench.json`` into the run directory, then printed by ``format``."""
    path = _output_dir(output_dir) / "bench.json"
    atomic_write_text(path, json.dumps(report, indent=1))
    report["json"] = str(path)
    print(format(report))
    return report


def _output_dir(output_dir: str | Path | None) -> Path:
    if output_dir is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            output_dir = HydraConfig.get().runtime.output_dir
        except ValueError:  # not running under Hydra
            output_dir = Path.cwd()
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mask_name(mask_generator: Any) -> str:
    return "none" if mask_generator is None else type(mask_generator).__name__


def machine() -> dict[str, Any]:
    try:
        import simplejpeg

        simplejpeg_version = simplejpeg.__version__
    except ImportError:
        simplejpeg_version = None
    import torchvision

    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "pillow": Image.__version__, "simplejpeg": simplejpeg_version,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


def standin_line(data: dict[str, Any], width: int = 18) -> str:
    """Where the data is and, for a stand-in, the catalog override its DataModules were built
    with; the label padded to ``width`` characters."""
    line = f"{'data:':{width}}{data['folder']}"
    if data["kind"] == "real":
        return line
    override = data["catalog_override"]
    splits = ", ".join(f"{split} {count:,}" for split, count in override["splits"].items())
    return f"{line} (stand-in); catalog override {data['catalog']}: {splits}, {override['num_classes']} classes"


def format_report(report: dict[str, Any]) -> str:
    """The printed summary: both pipelines, the ratio and the extras, one line each."""
    s, m = report["settings"], report["machine"]
    data = report["data"]
    where = "real data" if data["kind"] == "real" else "generated stand-in"
    lines = [f"== jepa-bench: {report['dataset']} ({where}, {data['train_images']:,} training images) ==",
             f"machine:          {m['cpu_count']} CPU cores, {m['cuda_device'] or 'no CUDA device'}; torch {m['torch']}, "
             f"load average {report['machine']['load_average']['before'][0]:.1f} -> "
             f"{report['machine']['load_average']['after'][0]:.1f}",
             f"setting:          batch {s['batch_size']}, {s['num_workers']} workers, image {s['image_size']}, "
             f"masks {s['masks']} on {s['grid'][0]}x{s['grid'][1]}, {s['batches']} timed batches after {s['warmup']}",
             standin_line(data),
             f"{'':18}{'images/s':>10}{'CPU ms/image':>14}{'first batch':>13}{'peak PSS (main+workers)':>26}"]
    for key, label in (("baseline", "baseline"), ("ours", "ours, workers"), ("ours_device", "ours, device")):
        run = report[key]
        pss = run["peak_pss"]
        memory = f"{pss['total_mb']:,.0f} MB ({pss['processes']} procs)" if pss else "n/a"
        lines.append(f"{label:18}{run['images_per_s']:>10,.0f}{run['cpu_ms_per_image']:>14.3f}"
                     f"{run['first_batch_s']:>11.2f} s{memory:>26}")
    for key, ratio_key, label in (("ours", "ratio", "ratio:"), ("ours_device", "ratio_device", "ratio, device:")):
        ratio = report[ratio_key]
        cpu_ratio = report["baseline"]["cpu_ms_per_image"] / max(report[key]["cpu_ms_per_image"], 1e-9)
        lines.append(f"{label:18}{ratio:.1f}x images/s (ours / baseline); {cpu_ratio:.1f}x less CPU per image"
                     if ratio else f"{label:18}n/a")
    stage = report.get("device_stage_ms_per_batch")
    if stage:
        fallbacks = f", {stage['fallbacks']} Pillow fallbacks" if stage["fallbacks"] else ""
        lines.append(f"device stage:     {stage['ms']:.1f} ms/batch of {stage['batch_size']} on {stage['device']} "
                     f"({stage['images_per_s']:,.0f} images/s; {stage['input']} -> normalized views{fallbacks})")
    masks = report["masks_ms_per_batch"]
    if masks:
        lines.append(f"mask collator:    {masks['ours']:.2f} ms/batch (per-sample baseline {masks['per_sample_baseline']:.2f} "
                     f"ms/batch, {masks['per_sample_baseline'] / masks['ours']:.1f}x; 1 thread)")
    norm = report["normalize_ms_per_batch"]
    if norm:
        lines.append(f"normalize:        {norm['ms']:.1f} ms/batch on {norm['device']} (uint8 -> float, after transfer)")
    lines.append(f"prepare_data:     {report['prepare_data_s']['again']:.3f} s again on the verified dataset "
                 f"(first: {report['prepare_data_s']['first']:.1f} s)")
    costs = report["isolated_cpu_ms_per_image"]
    line = (f"per image (CPU):  baseline {costs['baseline']:.2f} ms, ours {costs['ours']:.2f} ms, ours with views on "
            f"device {costs['ours_device']:.3f} ms (1 thread, isolated)")
    if "decode" in costs:
        decoders = ", ".join(f"{name} {ms:.2f}" for name, ms in costs["decode"].items())
        line += f"; JPEG decode alone ({costs['mean_file_kb']:.0f} KB files): {decoders} ms"
    lines.append(line)
    lines.append(f"json:             {report['json']}")
    return "\n".join(lines)
