"""HTTP handlers, one module per resource. The route table is service/http/routes.py."""
