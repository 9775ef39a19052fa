"""{{project_name}}: an items service.

Start it with `python -m uvicorn main:app --reload`, then open /docs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status

from models import Item, ItemCreate, ItemUpdate
from repository import ItemRepository


def get_repository(request: Request) -> ItemRepository:
    return request.app.state.repository


Repository = Annotated[ItemRepository, Depends(get_repository)]


def _not_found(item_id: int) -> HTTPException:
    return HTTPException(status_code=404, detail=f"item {item_id} not found")


def create_app() -> FastAPI:
    """Build the app; each call gets its own empty repository (tests rely on that)."""
    app = FastAPI(
        title="{{project_name}}",
        description="A small items service. Try the endpoints below.",
        version="0.1.0",
    )
    app.state.repository = ItemRepository()

    @app.get("/")
    def index() -> dict[str, str]:
        return {"name": "{{project_name}}", "docs": "/docs", "items": "/items"}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items")
    def list_items(
        repository: Repository,
        q: Annotated[str | None, Query(max_length=100, description="search in names")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[Item]:
        return repository.list(q=q, limit=limit, offset=offset)

    @app.post("/items", status_code=status.HTTP_201_CREATED)
    def create_item(data: ItemCreate, repository: Repository, response: Response) -> Item:
        item = repository.create(data)
        response.headers["Location"] = f"/items/{item.id}"
        return item

    @app.get("/items/{item_id}")
    def get_item(item_id: int, repository: Repository) -> Item:
        item = repository.get(item_id)
        if item is None:
            raise _not_found(item_id)
        return item

    @app.put("/items/{item_id}")
    def replace_item(item_id: int, data: ItemCreate, repository: Repository) -> Item:
        item = repository.replace(item_id, data)
        if item is None:
            raise _not_found(item_id)
        return item

    @app.patch("/items/{item_id}")
    def update_item(item_id: int, data: ItemUpdate, repository: Repository) -> Item:
        changes = data.model_dump(exclude_unset=True)
        if not changes:
            raise HTTPException(status_code=422, detail="send at least one field to change")
        item = repository.update(item_id, changes)
        if item is None:
            raise _not_found(item_id)
        return item

    @app.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_item(item_id: int, repository: Repository) -> None:
        if not repository.delete(item_id):
            raise _not_found(item_id)

    return app


app = create_app()
