"""The HTTP service: configuration, routes, handlers, commands, registry."""
