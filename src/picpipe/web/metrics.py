"""``GET /metrics``: Prometheus text format, behind the read token when one is set.

Per application one registry: this process's event metrics (`process_metrics`), the catalog
read at scrape time and the media server's cache counters (integrations/metrics.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from picpipe.integrations.metrics import CacheCollector, CatalogCollector, Forward, process_metrics
from picpipe.web.auth import require_read
from picpipe.web.context import WebContext, get_context

Context = Annotated[WebContext, Depends(get_context)]
router = APIRouter(tags=["metrics"], dependencies=[Depends(require_read)])


def metrics_registry(ctx: WebContext) -> CollectorRegistry:
    """The application's registry, made on first scrape and kept in ``ctx.extras``."""
    registry = ctx.extras.get("metrics")
    if isinstance(registry, CollectorRegistry):
        return registry
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Forward(process_metrics().registry))
    registry.register(CatalogCollector(ctx.catalog))
    registry.register(CacheCollector(ctx.media.cache_stats))
    ctx.extras["metrics"] = registry
    return registry


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(ctx: Context) -> Response:
    """Counters of this process's runs, the catalog's queues and lag, the cache hit rate."""
    registry = metrics_registry(ctx)
    body = await run_in_threadpool(generate_latest, registry)  # the catalog reads block
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
