"""Checks shared by the Ray tests (test_scale, test_ray_cluster): the listening sockets of this
machine, and "the same catalogue as the local indexer's"."""

from __future__ import annotations

from pathlib import Path

from fai_infer import Catalog


LOOPBACK = {"0100007F", "00000000000000000000000001000000",  # 127.0.0.1, ::1
            "0000000000000000FFFF00000100007F"}  # ::ffff:127.0.0.1


def same_catalogue(ray_cat: Catalog, local: Catalog) -> None:
    assert ray_cat.ids == local.ids and len(set(ray_cat.ids)) == len(ray_cat.ids)
    assert (ray_cat.id_column, ray_cat.id_normalise) == (local.id_column, local.id_normalise)
    assert ray_cat.rows == local.rows
    assert [str(Path(p).resolve()) for p in ray_cat.paths] == [
        str(Path(p).resolve()) for p in local.paths]
    cosine = (ray_cat.embeddings * local.embeddings).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine.min()
    assert [s.to_dict() for s in ray_cat.skipped] == [s.to_dict() for s in local.skipped]
