"""Perform & Engage 365 schema fragments, shared by the list, detail and derived streams."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th


def string(name: str, description: str, *, required: bool = False) -> th.Property[t.Any]:
    return th.Property(name, th.StringType, required=required, description=description)


def timestamp(name: str, description: str) -> th.Property[t.Any]:
    return th.Property(name, th.DateTimeType, description=description)


CONVERSATION_PROPERTIES = (
    string("api_id", "Conversation ID, e.g. `580:972ba6da-...`", required=True),
    string("template_api_id", "Conversation template ID"),
    string("template_name", "Conversation template name"),
    string("plan_api_id", "Conversation plan ID"),
    string("plan_name", "Conversation plan name"),
    string("stage_name", "Current stage; `Final` once completed"),
    string("stage_api_id", "Stage ID"),
    string("status", "draft, final, deleted or archived"),
    timestamp("updated_date", "Last update of the conversation (UTC)"),
    timestamp("completed_date", "Completion time (UTC)"),
    timestamp("generated_date", "Generation time (UTC)"),
    string("person_api_id", "Employee ID"),
    string("person_name", "Employee full name"),
    string("person_email", "Employee email"),
    string("manager_api_id", "Manager ID"),
    string("manager_name", "Manager full name"),
    string("manager_email", "Manager email"),
    string("reviewer_api_id", "Reviewer ID"),
    string("reviewer_name", "Reviewer full name"),
    string("reviewer_email", "Reviewer email"),
    string("second_reviewer_api_id", "Second reviewer ID"),
    string("second_reviewer_name", "Second reviewer full name"),
    string("second_reviewer_email", "Second reviewer email"),
)

ELEMENT_PROPERTIES = (
    string("api_id", "Element answer ID (often null)"),
    string("element_title", "Question or element title"),
    string("element_api_id", "Element ID; opaque, may start with `None:`"),
    string("element_type", "Element type, e.g. nine_box, text, rating"),
    string("value", "Answer value, as the API returns it (a string)"),
    string("key", "Answer key"),
    string("comment", "Comment on the answer"),
)

PLAN_PROPERTIES = (
    string("api_id", "Conversation plan ID", required=True),
    string("name", "Conversation plan name"),
    string("template_name", "Conversation template name"),
    string("template_api_id", "Conversation template ID"),
    string("status", "draft or active"),
    string("frequency", "How often a recurring plan takes place, e.g. `Every 4 weeks`"),
)

ASSIGNED_USER_PROPERTIES = (
    string("api_id", "User ID"),
    string("name", "User full name"),
    string("email", "User email"),
)
ASSIGNED_DEPARTMENT_PROPERTIES = (string("api_id", "Department ID"), string("name", "Department"))
