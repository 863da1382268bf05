"""Which garment of a shopper's photo a search embeds, and the rows of "shop the look".

Why: the encoder was trained on packshots (one garment on a plain backdrop) and a whole street
photo embeds the person, the backdrop and every garment at once. When the parser finds a person
in a photo, a query may embed one garment instead (``view_of``: the garment's box, for shoes,
bags and outerwear with everything outside its mask white, like a packshot). A photo without a
person (a packshot, a product on a table) stays whole (with its centre crop: ``frame_search``).

The back end's search is passed in as a function, so this module needs no catalogue class and
every back end (local, Milvus) shares it through ``BaseCatalog``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fai_infer.image.preprocess import ImageInput, centre_crop
from fai_infer.index.hits import Hit
from fai_infer.model.encoder import Encoder
from fai_infer.model.colour_words import colour_words
from fai_infer.model.parser import GarmentParser, Parse, Region, garment_view

WHOLE = "whole photo"  # the region name a whole-frame query reports
# A photo is "of a person" when this share of it is skin or hair; below it (packshots, a
# garment laid flat) the whole frame is embedded as before.
PERSON_SHARE = 0.02
AUTO, WHOLE_CHOICE = "auto", "whole"
NO_GARMENT = "no garment found in this photo"
# ``region="whole"`` means the whole photo (as before the parser), so the parser's whole-body
# group (dresses, jumpsuits), also named "whole", is asked for by this name.
WHOLE_BODY = "whole-body"

# Worn garments are searched as photographed (their box, unpainted) and shoes, bags, outerwear
# and accessories as a packshot (the box, everything outside the mask white): measured on CCP
# street photos against Myntra (train/look_eval.py), whose apparel photos show a model wearing
# it and whose shoes and bags are packshots; painting a worn top white loses the model that the
# catalogue's own photo shows.
PHOTOGRAPHED_GROUPS = ("upper", "lower", "whole")

# A query photo's whole frame is embedded beside its centre crop (this share of the square)
# and the two averaged: a shopper frames the garment in the middle, with a room around it.
# Chosen on Myntra's holdout shopper photos (train.evaluate --split holdout --shopper
# --centre-crop), reported on val in docs/query-crop.json; 0 embeds the frame alone.
QUERY_CENTRE_CROP = 0.7
# A whole frame this close to a catalogue item is that item's own photo (a re-upload, a
# screenshot of the page): it is answered as it is, its own item first at about 1.0.
SAME_PHOTO = 0.995

Searcher = Callable[[np.ndarray, int], list[Hit]]  # unit query vector, k -> hits, best first

# Words in a shop's own kind names (its kind column: articleType, product_type_name, ...) that
# say which parser group sells that kind (``group_of_kind``: the head noun, the longest word).
# A look row searches only its group's kinds when the shop has any, so a shoes row answers
# with shoes (an outside review found belts and bralettes there): the
# catalogue's own labels decide, the embedding ranks within them.
GROUP_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shoes", ("shoe", "sneaker", "trainer", "boot", "sandal", "heel", "flat", "loafer", "pump",
               "wedge", "clog", "mule", "slipper", "flip flop", "espadrille", "ballerina")),
    ("bag", ("bag", "backpack", "wallet", "purse", "clutch", "tote", "pouch")),
    ("accessory", ("hat", "cap", "beanie", "belt", "scarf", "scarves", "glove", "sunglass",
                   "glasses", "eyewear", "watch", "jewel", "necklace", "earring", "bracelet",
                   "ring", "tie", "hair", "sock")),
    ("outer", ("jacket", "coat", "blazer", "cape", "cardigan", "parka", "gilet", "waistcoat")),
    ("whole", ("dress", "jumpsuit", "romper", "playsuit", "dungaree", "swimsuit", "swimwear",
               "saree", "suit")),
    ("lower", ("trouser", "jean", "short", "skirt", "legging", "tight", "pant", "jogger",
               "chino", "capri", "culotte", "palazzo", "salwar", "churidar")),
    ("upper", ("top", "shirt", "blouse", "tee", "sweater", "jumper", "hoodie", "vest", "tank",
               "polo", "kurta", "tunic", "camisole", "bra", "bodysuit")),
)


def group_of_kind(kind: str) -> str | None:
    """The parser group a shop's kind name belongs to, by its words; None when none says.
    The head noun decides: the last word first ("Sneaker Socks" are socks, "Capri Pants"
    trousers), then the whole name; where several groups' words are found, the longest wins
    ("Bodysuit" is a top, not a suit; "Capris" are not a cap)."""
    words = kind.casefold().replace("-", " ").split()
    for text in ([words[-1]] if len(words) > 1 else []) + [" ".join(words)]:
        found = [(len(word), -order, group) for order, (group, group_words)
                 in enumerate(GROUP_WORDS) for word in group_words if word in text]
        if found:
            return max(found)[2]
    return None


def kinds_by_group(kinds: list[str]) -> dict[str, list[str]]:
    """A shop's kind values grouped by the parser group each belongs to."""
    out: dict[str, list[str]] = {}
    for kind in kinds:
        group = group_of_kind(kind)
        if group is not None:
            out.setdefault(group, []).append(kind)
    return out


def region_names(parser: GarmentParser | None) -> tuple[str, ...]:
    """What ``region`` may be: auto, whole (the photo) and the parser's garment groups, the
    whole-body group spelled WHOLE_BODY."""
    groups = parser.garment_groups if parser is not None else ()
    return (AUTO, WHOLE_CHOICE) + tuple(region_name(g) for g in groups)


def region_name(group: str) -> str:
    """A group as answers name it: the name ``region=`` takes back (the whole-body group is
    WHOLE_BODY, since "whole" asks for the whole photo)."""
    return WHOLE_BODY if group == WHOLE_CHOICE else group


def check_region(region: str, parser: GarmentParser | None) -> str:
    """``auto``; ``whole`` -> WHOLE (the photo); a garment group the parser knows -> its group
    name. Anything else is refused by name (a typo must not silently search the whole photo)."""
    if region == AUTO:
        return AUTO
    if region == WHOLE_CHOICE:
        return WHOLE
    if region not in region_names(parser):
        known = ", ".join(region_names(parser))
        raise ValueError(f"region {region!r} is not one of {known}"
                         + ("" if parser else " (no garment parser model is installed)"))
    return WHOLE_CHOICE if region == WHOLE_BODY else region


def view_of(parse: Parse, region: Region) -> np.ndarray:
    """What the encoder sees of one garment (see PHOTOGRAPHED_GROUPS)."""
    return garment_view(parse.photo, region, paint=region.group not in PHOTOGRAPHED_GROUPS)


def views(parse: Parse, regions: list[Region]) -> list[np.ndarray]:
    return [view_of(parse, r) for r in regions]


@dataclass
class Chosen:
    """What a photo search embedded (``region_name`` of a garment group, or WHOLE), its hits
    and the query vector (model space) they answer, which a page keeps to ask again."""

    region: str
    hits: list[Hit] = field(default_factory=list)
    vector: np.ndarray | None = field(default=None, repr=False)  # the model vector searched


def search_photo(image: ImageInput, region: str, k: int, encoder: Encoder,
                 parser: GarmentParser | None, search: Searcher,
                 person_share: float = PERSON_SHARE,
                 crop_share: float = QUERY_CENTRE_CROP) -> Chosen:
    """One photo query; ``region`` as :func:`check_region` returns it.

    WHOLE, or no parser: the whole frame (with its centre crop, :func:`frame_search`). A garment
    group: that garment (``view_of``) when the parse finds it, else the whole frame. AUTO: a
    photo without a person stays whole; for a photo of a person the largest garment and the
    whole frame are both searched and the one whose best catalogue match scores higher is
    kept, so the catalogue decides between them (a packshot that the parser mistakes for a
    person keeps its whole frame, which matches a packshot catalogue best).

    Why the largest garment and not the best-scoring of all (train/look_eval.py, CCP street
    photos against Myntra): both lift P@10 of one query per photo, but searching every garment
    lost Hit@10 per garment on the held-apart photos and costs one embedding per garment,
    while this costs one and lost nothing measurable on any table.

    A photo searched whole is embedded beside its centre crop (``crop_share``: the share
    kept; QUERY_CENTRE_CROP); in AUTO a person's largest garment plays that part, and the
    frame beside it is embedded alone."""
    def whole() -> Chosen:
        return frame_search(frame_vectors(encoder, image, crop_share), k, search)

    if region == WHOLE or parser is None:
        return whole()
    parse = parser.parse(image)
    if region != AUTO:
        found = parse.region(region)
        if found is None:
            return whole()
        vector = encoder.embed([view_of(parse, found)])[0]
        return Chosen(region_name(region), search(vector, k), vector)
    if parse.person_share < person_share or not parse.regions:
        return whole()
    largest = parse.regions[0]  # regions come largest first
    # A person's garment view is the crop that counts here: the frame is embedded alone, as
    # train/look_eval.py measured this rule, and the query stays at batch 2.
    vectors = frame_vectors(encoder, image, 0.0, also=view_of(parse, largest))  # one run
    frame = frame_search(vectors[:-1], k, search)
    garment = Chosen(region_name(largest.group), search(vectors[-1], k), vectors[-1])
    if garment.hits and (not frame.hits or garment.hits[0].score > frame.hits[0].score):
        return garment
    return frame


def frame_vectors(encoder: Encoder, image: ImageInput, crop_share: float,
                  also: ImageInput | None = None) -> np.ndarray:
    """Unit rows from one model run: the whole frame, its centre crop (when ``crop_share`` is
    below 1), then ``also`` (one more view) if given."""
    if not 0.0 <= crop_share <= 1.0:
        raise ValueError(f"crop_share {crop_share!r}: expected a number in [0, 1]")
    square = encoder.prepare(image)
    squares = [square]
    if 0.0 < crop_share < 1.0:
        squares.append(centre_crop(square, crop_share))
    if also is not None:
        squares.append(encoder.prepare(also))
    return encoder.embed_squares(np.stack(squares))


def frame_search(vectors: np.ndarray, k: int, search: Searcher) -> Chosen:
    """The whole frame's search: ``vectors`` are the frame's and its centre crop's (or the
    frame's alone). A frame that matches a catalogue item at SAME_PHOTO or above is that
    item's own photo, answered as it is; any other is searched as the mean of both views."""
    hits = search(vectors[0], k)
    if len(vectors) == 1 or (hits and hits[0].score >= SAME_PHOTO):
        return Chosen(WHOLE, hits, vectors[0])
    mean = vectors.sum(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    return Chosen(WHOLE, search(mean, k), mean)


@dataclass
class LookRow:
    """One garment of a look and its matches."""

    region: Region
    hits: list[Hit]
    colour: list[str] = field(default_factory=list)  # the garment's colour, in words

    def to_dict(self) -> dict:
        return {**self.region.to_dict(), "group": region_name(self.region.group),
                "colour": self.colour, "hits": [h.to_dict() for h in self.hits]}


@dataclass
class Look:
    """Shop the look: one row per garment found (largest first); ``message`` says why there
    are none. ``size`` is (height, width) of ``photo``, the decoded photo the boxes refer to
    (long side at most the parser's working size; not part of ``to_dict``)."""

    rows: list[LookRow]
    size: tuple[int, int]
    message: str = ""
    photo: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"size": {"height": self.size[0], "width": self.size[1]},
                "garments": [r.to_dict() for r in self.rows], "message": self.message}


def shop_the_look(image: ImageInput, k: int, encoder: Encoder, parser: GarmentParser,
                  search: Searcher, search_for: Callable[[str], Searcher] | None = None
                  ) -> Look:
    """Every garment the parser finds in the photo, each with its own k matches (searched
    with ``search_for(group)`` when given: the catalogue's kinds of that group). A photo with
    no garment is an answer in words, not an error; undecodable input raises ImageError."""
    parse = parser.parse(image)
    if not parse.regions:
        return Look([], parse.size, NO_GARMENT, parse.photo)
    vectors = encoder.embed(views(parse, parse.regions))
    rows = []
    for r, vector in zip(parse.regions, vectors):
        hits = (search_for(r.group) if search_for is not None else search)(vector, k)
        for h in hits:
            h.region = region_name(r.group)
        rows.append(LookRow(r, hits, colour_words(vector, encoder.info.parts,
                                                  encoder.info.colour_names)))
    return Look(rows, parse.size, photo=parse.photo)
