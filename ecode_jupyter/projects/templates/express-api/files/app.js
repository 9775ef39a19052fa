// A todo REST API. The app is built by createApp() so tests can start
// their own copy on a free port; server.js starts the real one.
const express = require("express");

function validate(body, { partial }) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return { error: "the body must be a JSON object" };
  }
  const todo = {};
  if ("title" in body || !partial) {
    if (typeof body.title !== "string" || !body.title.trim()) {
      return { error: "title must be a non-empty string" };
    }
    todo.title = body.title.trim();
  }
  if ("done" in body) {
    if (typeof body.done !== "boolean") return { error: "done must be true or false" };
    todo.done = body.done;
  }
  return { todo };
}

function createApp() {
  const app = express();
  const todos = new Map();
  let nextId = 1;

  app.use(express.json());

  app.get("/", (req, res) => {
    res.json({
      name: "{{project_name}}",
      endpoints: ["GET /health", "GET /todos", "POST /todos", "GET /todos/:id",
        "PATCH /todos/:id", "DELETE /todos/:id"],
    });
  });

  app.get("/health", (req, res) => res.json({ status: "ok" }));

  app.get("/todos", (req, res) => res.json([...todos.values()]));

  app.post("/todos", (req, res) => {
    const { todo, error } = validate(req.body, { partial: false });
    if (error) return res.status(400).json({ error });
    const created = { id: nextId++, done: false, ...todo };
    todos.set(created.id, created);
    res.status(201).json(created);
  });

  const find = (req, res) => {
    const todo = todos.get(Number(req.params.id));
    if (!todo) res.status(404).json({ error: "no such todo" });
    return todo;
  };

  app.get("/todos/:id", (req, res) => {
    const todo = find(req, res);
    if (todo) res.json(todo);
  });

  app.patch("/todos/:id", (req, res) => {
    const todo = find(req, res);
    if (!todo) return;
    const { todo: changes, error } = validate(req.body, { partial: true });
    if (error) return res.status(400).json({ error });
    Object.assign(todo, changes);
    res.json(todo);
  });

  app.delete("/todos/:id", (req, res) => {
    const todo = find(req, res);
    if (!todo) return;
    todos.delete(todo.id);
    res.status(204).end();
  });

  // Every error is JSON, bad JSON bodies included.
  app.use((req, res) => res.status(404).json({ error: "not found" }));
  app.use((err, req, res, next) => {
    const status = err.status || 500;
    res.status(status).json({ error: status === 400 ? "the body is not valid JSON" : "internal error" });
  });
  return app;
}

module.exports = { createApp };
