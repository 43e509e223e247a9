"""``sa1b``: ingest masks that ship with a data set in the SA-1B JSON layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.generators import Item, MaskSet
from pipeline.images import BadInput, LoadedImage
from shards import rle as rle_codec
from shards.schema import Generator

SCORES = ("predicted_iou", "stability_score")  # stored per mask; 1.0 where a data set has none


class Sa1bIngest:
    """Reads ``<stem>.json`` next to each image; resizes masks when the image was resized."""

    info = Generator("sa1b", {}, "1")

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet:
        if item.annotation is None:
            raise BadInput("no SA-1B annotation JSON next to the image")
        rles, scores = read_annotation(item.annotation)
        size = image.rgb.shape[:2]
        try:
            rles, source = _oriented(rles, image)
            if size != source:
                rles = rle_codec.resize(rles, source, size)
            else:  # keep the shipped counts (normalised to str) once they check out
                rle_codec.check(rles, *size)
                rles = [{"size": r["size"], "counts": _text(r["counts"])} for r in rles]
        except (ValueError, TypeError) as exc:
            raise BadInput(f"annotation does not match the image: {exc}") from None
        keep = [i for i, a in enumerate(rle_codec.area(rles)) if a > 0]
        return MaskSet([rles[i] for i in keep], *([s[i] for i in keep] for s in scores))


def _oriented(rles: list[dict], image: LoadedImage) -> tuple[list[dict], tuple[int, int]]:
    """Masks that follow the image as shown. SA-1B masks are of the pixels the JSON's size
    describes: of the shown image, or of the stored one, turned here as the image was; when
    both have that size the file cannot say which, and the image is rejected."""
    shown = image.source_size
    if image.orientation == 1 or not rles:
        return rles, shown
    stored = shown[::-1] if image.orientation >= 5 else shown
    size = tuple(rles[0]["size"])
    if size == shown and size != stored:
        return rles, shown
    if size == stored and size != shown:
        return rle_codec.orient(rles, stored, image.orientation), shown
    raise ValueError(f"the image has EXIF orientation {image.orientation} and masks of "
                     f"{size[1]}x{size[0]}, which fit it both as stored and as shown")


def read_annotation(path: str | Path) -> tuple[list[dict], list[list[float]]]:
    """An SA-1B annotation JSON → the RLEs (``size``, ``counts``) of its annotations and their
    scores (``SCORES``, each a finite number); a reason naming the field when it is not."""
    try:
        anns = json.loads(Path(path).read_text())["annotations"]
        rles = [{"size": list(a["segmentation"]["size"]), "counts": a["segmentation"]["counts"]}
                for a in anns]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"unreadable annotation JSON ({exc.__class__.__name__})") from None
    except (KeyError, TypeError):
        raise BadInput("annotation JSON is not in the SA-1B layout") from None
    scores = [[_score(a, name, i) for i, a in enumerate(anns)] for name in SCORES]
    return rles, scores


def _score(ann: dict, name: str, index: int) -> float:
    value = ann.get(name, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"annotation {index}: {name} is {value!r}, not a finite number")
    return float(value)


def _text(counts) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts
