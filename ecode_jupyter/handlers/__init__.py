"""REST and WebSocket handlers: parse, one manager call, finish(json). One module per resource."""
