"""``sa1b``: ingest masks that ship with a data set in the SA-1B JSON layout."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.generators import Item, MaskSet
from pipeline.images import BadInput, LoadedImage
from shards import rle as rle_codec
from shards.schema import Generator


class Sa1bIngest:
    """Reads ``<stem>.json`` next to each image; resizes masks when the image was resized."""

    info = Generator("sa1b", {}, "1")

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet:
        if item.annotation is None:
            raise BadInput("no SA-1B annotation JSON next to the image")
        anns, rles = read_annotation(item.annotation)
        size = image.rgb.shape[:2]
        try:
            if size != image.source_size:
                rles = rle_codec.resize(rles, image.source_size, size)
            else:  # keep the shipped counts (normalised to str) once they check out
                rle_codec.check(rles, *size)
                rles = [{"size": r["size"], "counts": _text(r["counts"])} for r in rles]
        except (ValueError, TypeError) as exc:
            raise BadInput(f"annotation does not match the image: {exc}") from None
        keep = [i for i, a in enumerate(rle_codec.area(rles)) if a > 0]
        return MaskSet(
            [rles[i] for i in keep],
            [float(anns[i].get("predicted_iou", 1.0)) for i in keep],
            [float(anns[i].get("stability_score", 1.0)) for i in keep],
        )


def read_annotation(path: str | Path) -> tuple[list[dict], list[dict]]:
    """An SA-1B annotation JSON → its annotations and their RLEs (``size``, ``counts``)."""
    try:
        anns = json.loads(Path(path).read_text())["annotations"]
        rles = [{"size": list(a["segmentation"]["size"]), "counts": a["segmentation"]["counts"]}
                for a in anns]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"unreadable annotation JSON ({exc.__class__.__name__})") from None
    except (KeyError, TypeError):
        raise BadInput("annotation JSON is not in the SA-1B layout") from None
    return anns, rles


def _text(counts) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts
