"""A request body checked against its pydantic model, with pydantic's errors turned into
one ValidationError (400) that names the first problem and lists them all in Details."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from .errors import ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: Any, what: str) -> M:
    if not isinstance(body, dict):
        raise ValidationError(f"The body must be a JSON object describing {what}.")
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        details = [
            {
                "Field": ".".join(str(p) for p in err["loc"]) or "body",
                "Message": err["msg"].removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        first = details[0]
        more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
        raise ValidationError(f"{first['Field']}: {first['Message']}{more}", details) from None
