"""Request and response types of the registry and of run creation.

Bodies are decoded straight into these structs at the edge (a 422 with the JSON
path on failure); nothing below the handlers re-checks shapes. Unknown fields
are ignored, like the reference API's models do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from projections.resources import Freshness
from projections.summaries import RunSummary

# PostgreSQL text cannot hold a NUL character: refused at decode time, with its JSON path.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Name = Annotated[str, Meta(max_length=500, pattern=NO_NUL)]
Text = Annotated[str, Meta(max_length=20_000, pattern=NO_NUL)]
BlockType = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
HandleId = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class _Body(msgspec.Struct, frozen=True, kw_only=True):
    pass


# Workflows ------------------------------------------------------------------


class CreateWorkflowRequest(_Body, frozen=True, kw_only=True):
    """`POST /v1/workflows`."""

    name: Name = "Untitled Workflow"
    description: Text = ""
    project_id: Id | None = None


class UpdateWorkflowRequest(_Body, frozen=True, kw_only=True):
    """`PATCH /v1/workflows/{workflow_id}`: only the fields sent change."""

    # A name cannot be blanked (a new workflow without one is "Untitled Workflow").
    name: Annotated[str, Meta(min_length=1, max_length=500, pattern=NO_NUL)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    description: Text | msgspec.UnsetType = msgspec.UNSET


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow: what tests run against. Its draft version changes with its blocks."""

    id: str
    name: str
    description: str
    project_id: str | None
    draft_version_id: str
    published: None = None
    # Declared by SDK 0.0.155 (access control of the hosted service): the documented default.
    capabilities: None = None
    authz_status: None = None
    created_at: datetime
    updated_at: datetime


# Blocks ---------------------------------------------------------------------


class CreateBlockRequest(_Body, frozen=True, kw_only=True):
    """`POST /v1/workflows/blocks`."""

    workflow_id: Id
    type: BlockType
    id: Id | None = None
    label: Name = ""
    # The block that contains this one (a group or loop); kept as given.
    parent_id: Id | None = None
    position_x: float = 0
    position_y: float = 0
    width: float | None = None
    height: float | None = None
    config: dict[str, Any] | None = None


class UpdateBlockRequest(_Body, frozen=True, kw_only=True):
    """`PATCH /v1/workflows/blocks/{block_id}`: only the fields sent change.

    `config_mode` `merge` (the default) updates the config's top-level keys;
    `replace` swaps the whole config.
    """

    label: Name | msgspec.UnsetType = msgspec.UNSET
    position_x: float | msgspec.UnsetType = msgspec.UNSET
    position_y: float | msgspec.UnsetType = msgspec.UNSET
    width: float | msgspec.UnsetType | None = msgspec.UNSET
    height: float | msgspec.UnsetType | None = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    config_mode: Literal["merge", "replace"] = "merge"


class Block(msgspec.Struct, frozen=True, kw_only=True):
    """A block of a workflow's draft."""

    id: str
    workflow_id: str
    type: str
    label: str
    parent_id: str | None = None
    position_x: float
    position_y: float
    width: float | None
    height: float | None
    config: dict[str, Any]
    # Declared by the SDK; this service has no declarative workflow files and does
    # not resolve schemas, so they keep the SDK's documented default.
    declarative_path: None = None
    declarative_source_block_id: None = None
    resolved_schemas: None = None
    created_at: datetime
    updated_at: datetime


# Saved tests ----------------------------------------------------------------


class FileRef(msgspec.Struct, frozen=True, kw_only=True):
    """A reference to a stored document."""

    id: Id
    filename: Name
    mime_type: Name


class JsonHandleInput(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="json"):
    """A handle's JSON value."""

    data: Any = None


class FileHandleInput(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="file"):
    """A handle's file reference."""

    document: FileRef


HandleInput = JsonHandleInput | FileHandleInput


class ManualSource(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="manual"):
    """Handle inputs written by hand."""

    handle_inputs: dict[HandleId, HandleInput] = msgspec.field(default_factory=dict)


class RunStepSource(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="run_step"):
    """Handle inputs captured from a step of a workflow run (not supported yet)."""

    run_id: Id
    step_id: Id | None = None


Source = ManualSource | RunStepSource


class WorkflowTestBlockTarget(msgspec.Struct, frozen=True, kw_only=True):
    """The block a test targets."""

    type: Literal["block"] = "block"
    block_id: Id


class OutputTarget(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The output handle an assertion reads, and a dotted path into its payload."""

    output_handle_id: HandleId
    path: Annotated[str, Meta(max_length=1000, pattern=NO_NUL)] | None = None


class _Condition(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True):
    pass


class ExistsCondition(_Condition, tag="exists", kw_only=True, frozen=True):
    """The path resolves."""


class NotExistsCondition(_Condition, tag="not_exists", kw_only=True, frozen=True):
    """The path does not resolve."""


class EqualsCondition(_Condition, tag="equals", kw_only=True, frozen=True):
    """Strict deep equality."""

    expected: Any


class NotEqualsCondition(_Condition, tag="not_equals", kw_only=True, frozen=True):
    """Strict deep inequality."""

    expected: Any


class ContainsCondition(_Condition, tag="contains", kw_only=True, frozen=True):
    """A substring of a string, or an element of a list."""

    expected: Any


class NotContainsCondition(_Condition, tag="not_contains", kw_only=True, frozen=True):
    """Neither a substring nor an element."""

    expected: Any


class StartsWithCondition(_Condition, tag="starts_with", kw_only=True, frozen=True):
    """A string prefix."""

    expected: str


class EndsWithCondition(_Condition, tag="ends_with", kw_only=True, frozen=True):
    """A string suffix."""

    expected: str


class MatchesRegexCondition(_Condition, tag="matches_regex", kw_only=True, frozen=True):
    """A full regular-expression match."""

    pattern: Annotated[str, Meta(max_length=10_000)]


Op = Literal["gt", "gte", "lt", "lte", "eq", "neq"]


class NumberCompareCondition(_Condition, tag="number_compare", kw_only=True, frozen=True):
    """Compare a number."""

    op: Op
    expected: int | float


class LengthCompareCondition(_Condition, tag="length_compare", kw_only=True, frozen=True):
    """Compare the length of a string, list or object."""

    op: Op
    expected: int


class BetweenCondition(_Condition, tag="between", kw_only=True, frozen=True):
    """A number within bounds."""

    lower: int | float
    upper: int | float
    inclusive: bool = True


class ObjectContainsCondition(_Condition, tag="object_contains", kw_only=True, frozen=True):
    """Every expected key and value is present (deep)."""

    expected: dict[str, Any]


class ArrayContainsCondition(_Condition, tag="array_contains", kw_only=True, frozen=True):
    """Some element contains the expected object."""

    expected: dict[str, Any]


class JsonSchemaValidCondition(_Condition, tag="json_schema_valid", kw_only=True, frozen=True):
    """Valid against a JSON Schema."""

    schema: dict[str, Any] | None = None


class AllItemsMatchCondition(_Condition, tag="all_items_match", kw_only=True, frozen=True):
    """Every item matches the nested condition (true on an empty list)."""

    condition: Condition


class AnyItemMatchesCondition(_Condition, tag="any_item_matches", kw_only=True, frozen=True):
    """Some item matches the nested condition (false on an empty list)."""

    condition: Condition


class SimilarityGteCondition(_Condition, tag="similarity_gte", kw_only=True, frozen=True):
    """Similar enough to a reference."""

    reference: Any
    threshold: Annotated[float, Meta(ge=0, le=1)]
    method: Literal["levenshtein", "embeddings"] = "levenshtein"


class SplitIouGteCondition(_Condition, tag="split_iou_gte", kw_only=True, frozen=True):
    """Intersection over union of page sets, per split."""

    expected: dict[str, Any]
    threshold: Annotated[float, Meta(ge=0, le=1)] = 1


class LlmJudgedAsCondition(_Condition, tag="llm_judged_as", kw_only=True, frozen=True):
    """A judge model answers the rubric with the expected label."""

    rubric: Annotated[str, Meta(min_length=1, max_length=20_000)]
    expected_label: str | None = None


class LlmNotJudgedAsCondition(_Condition, tag="llm_not_judged_as", kw_only=True, frozen=True):
    """A judge model does not answer the rubric with the expected label."""

    rubric: Annotated[str, Meta(min_length=1, max_length=20_000)]
    expected_label: str | None = None


Condition = (
    ExistsCondition
    | NotExistsCondition
    | EqualsCondition
    | NotEqualsCondition
    | ContainsCondition
    | NotContainsCondition
    | StartsWithCondition
    | EndsWithCondition
    | MatchesRegexCondition
    | NumberCompareCondition
    | LengthCompareCondition
    | BetweenCondition
    | ObjectContainsCondition
    | ArrayContainsCondition
    | JsonSchemaValidCondition
    | AllItemsMatchCondition
    | AnyItemMatchesCondition
    | SimilarityGteCondition
    | SplitIouGteCondition
    | LlmJudgedAsCondition
    | LlmNotJudgedAsCondition
)


class AssertionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a test checks: a condition on an output handle (at a path)."""

    id: Id | None = None
    target: OutputTarget
    condition: Condition
    label: Name | None = None


class CreateTestRequest(_Body, frozen=True, kw_only=True):
    """`POST /v1/workflows/tests`."""

    workflow_id: Id
    target: WorkflowTestBlockTarget
    source: Source
    assertion: AssertionSpec
    name: Name | None = None


class UpdateTestRequest(_Body, frozen=True, kw_only=True):
    """`PATCH /v1/workflows/tests/{test_id}`: name, assertion, source; the target is fixed.

    `assertion: null` is refused (a test always checks something).
    """

    name: Name | msgspec.UnsetType | None = msgspec.UNSET
    assertion: AssertionSpec | msgspec.UnsetType = msgspec.UNSET
    source: Source | msgspec.UnsetType = msgspec.UNSET
    # Decoded only to be refused with a 422 (`immutable`): `not: {}` says no value is valid.
    target: Annotated[
        Any, Meta(description="Refused: a test's target is fixed.", extra_json_schema={"not": {}})
    ] = msgspec.UNSET


class ValidationIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One problem of a saved test, found when it is read against its block as it is now."""

    path: str
    code: str
    message: str


class WorkflowTest(msgspec.Struct, frozen=True, kw_only=True):
    """A saved test of one block.

    `validation_status` is `valid` or `invalid` (see service/registry/validation.py);
    the drift fields are sent with the SDK's documented defaults: this service
    does not track output schemas, so their drift is never known.
    """

    id: str
    workflow_id: str
    target: WorkflowTestBlockTarget
    source: Source
    name: str | None
    assertion: AssertionSpec
    assertion_schema_dep: None = None
    assertion_drift_status: None = None
    schema_drift: Literal["unknown"] = "unknown"
    schema_drift_detail: None = None
    drift: None = None
    validation_status: Literal["valid", "invalid"] = "valid"
    validation_issues: list[ValidationIssue] = msgspec.field(default_factory=list)
    freshness: Freshness | None = None
    latest_run_summary: RunSummary | None = None
    latest_passing_run_summary: RunSummary | None = None
    latest_failing_run_summary: RunSummary | None = None
    created_at: datetime
    updated_at: datetime


# Runs -----------------------------------------------------------------------


class WorkflowScope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="workflow"):
    """Every saved test of the workflow."""


class SingleScope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="single"):
    """One saved test, named `test_id` (SDK 0.0.155) or `eval_id` (0.0.160): one is required,
    both must agree."""

    test_id: Id | None = None
    eval_id: Id | None = None

    def __post_init__(self) -> None:
        # Raised while decoding, msgspec turns this into a 422 at `$.scope`.
        if self.test_id is None and self.eval_id is None:
            raise ValueError("scope `single` needs `test_id` (or `eval_id`)")
        if None not in (self.test_id, self.eval_id) and self.test_id != self.eval_id:
            raise ValueError("`test_id` and `eval_id` name different tests")

    @property
    def selected(self) -> str:
        """The saved test's id, whichever name carried it."""
        chosen = self.test_id or self.eval_id
        assert chosen is not None  # noqa: S101  (checked by __post_init__)
        return chosen


class BlockScope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="block"):
    """Every saved test of one block."""

    block_id: Id


RunScope = WorkflowScope | SingleScope | BlockScope


class CreateRunRequest(_Body, frozen=True, kw_only=True):
    """`POST /v1/workflows/tests/runs`: omitted or null scope = the whole workflow."""

    workflow_id: Id
    scope: RunScope | None = None


# Lists ----------------------------------------------------------------------


class ListMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """Cursors of the neighbouring pages; `after` is null exactly on the last page."""

    before: str | None
    after: str | None
