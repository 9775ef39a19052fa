const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { createApp } = require("../app");

let server;
let base;

before(async () => {
  server = createApp().listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => server.close());

const call = (method, path, body) =>
  fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

test("health answers ok", async () => {
  const res = await call("GET", "/health");
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: "ok" });
});

test("a todo is created, listed, updated and deleted", async () => {
  const created = await call("POST", "/todos", { title: "buy milk" });
  assert.equal(created.status, 201);
  const todo = await created.json();
  assert.equal(todo.title, "buy milk");
  assert.equal(todo.done, false);

  const list = await (await call("GET", "/todos")).json();
  assert.ok(list.some((t) => t.id === todo.id));

  const patched = await call("PATCH", `/todos/${todo.id}`, { done: true });
  assert.equal((await patched.json()).done, true);

  assert.equal((await call("DELETE", `/todos/${todo.id}`)).status, 204);
  assert.equal((await call("GET", `/todos/${todo.id}`)).status, 404);
});

test("bad input is a 400 with a JSON error", async () => {
  const res = await call("POST", "/todos", { title: "" });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error, /title/);
});
