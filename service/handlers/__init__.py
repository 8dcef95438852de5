"""HTTP handlers, one module per resource. The route table is service/routes.py."""
