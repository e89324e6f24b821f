"""crud-master's internal library: what the gateway, the inventory and the billing consumer share, once.

| module | what it holds |
|---|---|
| `errors` | the one error shape, its codes, bounded validation details, `ApiError`, `BrokenStream` |
| `bodies` | reading a request body (exact length, size limit, malformed chunks) and a JSON object out of it |
| `webapp` | what the Flask services bind in their factory: request ids, the access line, the error handlers |
| `request_ids` | the request id: the client's when it is a plain token, else a new one |
| `logs` | one escaped line per record, written to stdout in batches |
| `serving` | gunicorn inside `server.py`: the worker, its JSON parse errors, the shared request limits |
| `metrics` | Prometheus metrics of the HTTP services, summed over gunicorn's workers, on an address of their own |
| `settings` | pydantic-settings: database and RabbitMQ settings, loading that names every bad variable |
| `billing` | the billing contract: an order's fields and bounds, its canonical message, the queue topology |
| `migrations` | the Alembic environment both databases run |
| `testing` | test support the suites and the bench share |
"""
