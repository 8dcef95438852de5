"""The service, in packages by reason to change: `http` (the edge), `registry`,
`runs` (the event-sourced side of a run), `execution` (the runner) and `ops`
(what scripts/ call), over `config`, `db`, `logging`, `metrics`, `models` (the
API's types), `domain` (domain errors) and `paging`. Each package's docstring
says what it owns and what it may import; pyproject.toml's import contract
checks it. `python -m service` is `__main__`.
"""
