import pytest

PEN = {"name": "Pen", "price": 1.5, "quantity": 10}


def test_index_and_health(client):
    assert client.get("/").json()["docs"] == "/docs"
    assert client.get("/health").json() == {"status": "ok"}


def test_openapi_document_lists_the_item_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/items", "/items/{item_id}"} <= set(paths)


def test_create_then_read(client):
    response = client.post("/items", json=PEN)
    assert response.status_code == 201
    item = response.json()
    assert item == {"id": 1, "name": "Pen", "description": None, "price": 1.5, "quantity": 10}
    assert response.headers["location"] == "/items/1"

    assert client.get("/items/1").json() == item
    assert client.get("/items").json() == [item]


def test_search_and_paging(client):
    for name in ["Red pen", "Blue pen", "Pencil case", "Stapler"]:
        client.post("/items", json={"name": name, "price": 1})

    names = [item["name"] for item in client.get("/items", params={"q": "PEN"}).json()]
    assert names == ["Red pen", "Blue pen", "Pencil case"]

    page = client.get("/items", params={"limit": 2, "offset": 1}).json()
    assert [item["name"] for item in page] == ["Blue pen", "Pencil case"]


def test_put_replaces_and_patch_updates(client):
    client.post("/items", json=PEN)

    replaced = client.put("/items/1", json={"name": "Pencil", "price": 0.5})
    assert replaced.json() == {
        "id": 1,
        "name": "Pencil",
        "description": None,
        "price": 0.5,
        "quantity": 0,
    }

    patched = client.patch("/items/1", json={"quantity": 3})
    assert patched.status_code == 200
    assert patched.json()["quantity"] == 3
    assert patched.json()["name"] == "Pencil"

    cleared = client.patch("/items/1", json={"description": None})
    assert cleared.status_code == 200


def test_delete(client):
    client.post("/items", json=PEN)

    assert client.delete("/items/1").status_code == 204
    assert client.get("/items/1").status_code == 404
    assert client.delete("/items/1").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"price": 1},
        {"name": "", "price": 1},
        {"name": "   ", "price": 1},
        {"name": "Pen", "price": -1},
        {"name": "Pen", "price": "cheap"},
        {"name": "Pen", "price": 1, "quantity": -5},
        {"name": "Pen", "price": 1, "colour": "red"},
        {"name": "x" * 101, "price": 1},
    ],
)
def test_invalid_items_are_rejected(client, body):
    response = client.post("/items", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert client.get("/items").json() == []


def test_invalid_patch_leaves_the_item_alone(client):
    client.post("/items", json=PEN)

    assert client.patch("/items/1", json={"price": -2}).status_code == 422
    assert client.patch("/items/1", json={}).status_code == 422
    assert client.patch("/items/1", json={"name": None}).status_code == 422
    assert client.get("/items/1").json()["price"] == 1.5


def test_missing_items_are_404(client):
    assert client.get("/items/7").json() == {"detail": "item 7 not found"}
    assert client.put("/items/7", json=PEN).status_code == 404
    assert client.patch("/items/7", json={"quantity": 1}).status_code == 404
