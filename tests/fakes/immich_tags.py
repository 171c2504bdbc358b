"""The fake Immich's tags and the asset fields people edit (description, rating), as the
server behaves (server/src/services/tag.service.ts, asset.service.ts):

- ``PUT /tags`` (upsertTags) takes full paths ("Places/Paris") and creates every missing
  level, each a child of the one before; it answers the leaf tag of each path.
- ``PUT /tags/assets`` (bulkTagAssets) attaches every tag to every asset, after checking the
  caller may see both; answers how many new links it made.
- ``DELETE /tags/{id}/assets`` (untagAssets) removes the links, one result per asset id.
- Tags are per user: another user's tag ids are "no access".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.fakes.immich_model import error, iso, now

if TYPE_CHECKING:
    from tests.fakes.http import Response
    from tests.fakes.immich import _Call
    from tests.fakes.immich_model import FakeAsset
    from tests.fakes.openapi import Operation


@dataclass
class FakeTag:
    id: str
    owner_id: str
    value: str  # the full path: "Places/Paris"
    parent_id: str | None
    created: datetime
    asset_ids: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.value.rsplit("/", 1)[-1]


def tag_dto(tag: FakeTag) -> dict[str, Any]:
    dto: dict[str, Any] = {
        "id": tag.id,
        "name": tag.name,
        "value": tag.value,
        "createdAt": iso(tag.created),
        "updatedAt": iso(tag.created),
    }
    if tag.parent_id is not None:
        dto["parentId"] = tag.parent_id
    return dto


class TagOps:
    """Tag operations; needs ``lock``, ``tags``, ``_json`` and ``_owned`` from FakeImmich."""

    lock: Any
    tags: dict[str, FakeTag]

    def _json(self, op: Operation, status: int, body: Any, reset: bool = False) -> Response:
        raise NotImplementedError

    def _owned(self, call: _Call, asset_id: str) -> FakeAsset | None:
        raise NotImplementedError

    def asset_tags(self, asset_id: str) -> set[str]:
        """Back door: the tag values on an asset."""
        with self.lock:
            return {t.value for t in self.tags.values() if asset_id in t.asset_ids}

    def _op_upsert_tags(self, call: _Call, body: dict[str, Any]) -> Response:
        leaves = []
        with self.lock:
            for value in body["tags"]:
                parts = [p for p in str(value).split("/") if p]
                if not parts:
                    return error(400, "tag value must not be empty")
                parent: FakeTag | None = None
                for depth in range(1, len(parts) + 1):
                    path = "/".join(parts[:depth])
                    parent = self._tag_by_value(call.user.id, path) or self._new_tag(
                        call.user.id, path, parent
                    )
                assert parent is not None
                leaves.append(tag_dto(parent))
        return self._json(call.op, 200, leaves)

    def _op_bulk_tag_assets(self, call: _Call, body: dict[str, Any]) -> Response:
        with self.lock:
            tags = [self.tags.get(i) for i in body["tagIds"]]
            if any(t is None or t.owner_id != call.user.id for t in tags):
                return error(400, "Not found or no tag.asset access")
            if any(self._owned(call, a) is None for a in body["assetIds"]):
                return error(400, "Not found or no asset.read access")
            count = 0
            for tag in tags:
                assert tag is not None
                for asset_id in body["assetIds"]:
                    if asset_id not in tag.asset_ids:
                        tag.asset_ids.add(asset_id)
                        count += 1
        return self._json(call.op, 200, {"count": count})

    def _op_untag_assets(self, call: _Call, body: dict[str, Any]) -> Response:
        with self.lock:
            tag = self.tags.get(call.op.path_params["id"])
            if tag is None or tag.owner_id != call.user.id:
                return error(400, "Not found or no tag.asset access")
            results = []
            for asset_id in body["ids"]:
                if asset_id in tag.asset_ids:
                    tag.asset_ids.discard(asset_id)
                    results.append({"id": asset_id, "success": True})
                else:
                    results.append({"id": asset_id, "success": False, "error": "not_found"})
        return self._json(call.op, 200, results)

    def _tag_by_value(self, owner_id: str, value: str) -> FakeTag | None:
        return next(
            (t for t in self.tags.values() if t.owner_id == owner_id and t.value == value), None
        )

    def _new_tag(self, owner_id: str, value: str, parent: FakeTag | None) -> FakeTag:
        tag = FakeTag(str(uuid.uuid4()), owner_id, value, parent.id if parent else None, now())
        self.tags[tag.id] = tag
        return tag
