"""The HTTP edge: the aiohttp app, middleware, error mapping, idempotency, rate
limit, pagination, the route table with its OpenAPI document, the event feed's
SSE, the handlers (`handlers/`, one module per resource), and the web console
(`console/`: server-rendered pages over the same read models).

Only this package knows HTTP: it decodes requests into the types of
`service.models`, calls the registry, run and operations functions, and maps
their domain errors to responses. It may import every other package of
`service`, `projections` and `events`; nothing imports it except `__main__`.
"""
