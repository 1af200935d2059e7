"""Every error constrain raises, with the HTTP status it maps to.

The tree::

    ConstrainError                      500  base class; never raised directly
    ├── InvalidRequestError             400  a request field is malformed or out of range
    │   ├── InvalidSchemaError          400  a JSON Schema is not valid against its meta-schema
    │   │   ├── UnsatisfiableSchemaError 400 a valid schema that no value matches
    │   │   └── SchemaLimitError        400  a schema deeper, larger or with bigger numbers than allowed
    │   ├── CompileTimeoutError         400  a constraint took longer to compile than its deadline
    │   ├── UnsupportedSchemaError      400  a valid schema uses a keyword we cannot enforce exactly
    │   ├── InvalidRegexError           400  a regex does not compile
    │   ├── InvalidGrammarError         400  a Lark grammar does not compile
    │   ├── ToolChoiceError             400  tools / tool_choice do not fit together
    │   ├── RequestTooLargeError        413  the body is over the server's limit
    │   └── RequestTimeoutError         408  the body did not arrive in time
    ├── AuthenticationError             401  missing or wrong API key (server only)
    ├── OverloadedError                 429  queue full (server only)
    ├── ModelLoadError                  500  weights or tokenizer could not be loaded
    ├── GenerationError                 500  a bug: the engine rejected a token, or output failed validation
    └── ModelNotReadyError              503  the server is still loading the model

Each error carries ``param``: the dotted path of the request field at fault
(``response_format.value.properties.age.minimum``), so that a user knows where to look.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ConstrainError(Exception):
    """Base of every constrain error."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI-style error body: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ConstrainError):
    """A request field is malformed, of the wrong type, or out of range."""

    status_code = 400
    error_type = "invalid_request_error"


class InvalidSchemaError(InvalidRequestError):
    """A JSON Schema is not valid JSON, or not valid against its meta-schema."""


class UnsatisfiableSchemaError(InvalidSchemaError):
    """A valid JSON Schema that no value matches (``false``, ``{"enum": []}``): nothing could be generated."""


class SchemaLimitError(InvalidSchemaError):
    """A schema passes one of constrain's limits (nesting depth, size, enum size, 64-bit integers):
    ``limit`` names it, ``value`` is the bound."""

    def __init__(self, message: str, *, limit: str, value: int | None = None, param: str | None = None) -> None:
        super().__init__(message, param=param, code=f"limit_{limit}")
        self.limit = limit
        self.value = value


class CompileTimeoutError(InvalidRequestError):
    """Compiling a constraint passed its deadline (``compile_timeout_s``): the schema, regex or
    grammar is too complex to compile in time; ``seconds`` is the deadline."""

    def __init__(self, message: str, *, seconds: float, param: str | None = None) -> None:
        super().__init__(message, param=param, code="compile_timeout")
        self.seconds = seconds


class UnsupportedSchemaError(InvalidRequestError):
    """A valid JSON Schema uses a keyword (or a form of it) that cannot be enforced exactly."""

    def __init__(
        self, message: str, *, keyword: str | None = None, pointer: str = "", param: str | None = None
    ) -> None:
        super().__init__(message, param=param, code="unsupported_schema")
        self.keyword = keyword
        self.pointer = pointer


class InvalidRegexError(InvalidRequestError):
    """A regular expression does not compile."""


class InvalidGrammarError(InvalidRequestError):
    """A Lark grammar does not compile."""


class ToolChoiceError(InvalidRequestError):
    """``tools`` and ``tool_choice`` do not fit together (unknown name, duplicates, ...)."""


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than the server's ``max_request_bytes``."""

    status_code = 413
    error_type = "request_too_large"


class RequestTimeoutError(InvalidRequestError):
    """The request body did not arrive in full within the server's ``body_timeout_s``."""

    status_code = 408
    error_type = "request_timeout"


class AuthenticationError(ConstrainError):
    """Missing or wrong API key."""

    status_code = 401
    error_type = "authentication_error"


class OverloadedError(ConstrainError):
    """The server's queue is full; try again later."""

    status_code = 429
    error_type = "overloaded"


class ModelLoadError(ConstrainError):
    """Weights or tokenizer could not be loaded."""

    status_code = 500
    error_type = "model_load_error"


class GenerationError(ConstrainError):
    """A bug: the engine rejected a token, or a finished output failed validation."""

    status_code = 500
    error_type = "generation_error"


class ModelNotFoundError(ConstrainError):
    """A request named a model this server does not serve (OpenAI's 404 ``model_not_found``)."""

    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model", code="model_not_found")


class ModelNotReadyError(ConstrainError):
    """The model is still loading."""

    status_code = 503
    error_type = "model_not_ready"

    def __init__(self, message: str, *, estimated_time: float | None = None) -> None:
        super().__init__(message)
        self.estimated_time = estimated_time

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["estimated_time"] = self.estimated_time
        return body


class ShuttingDownError(ConstrainError):
    """The server is draining before it stops: no new work; a request still running at the end
    of the grace period is ended with this."""

    status_code = 503
    error_type = "shutting_down"

    def __init__(self, message: str = "the server is shutting down; send this request to another replica "
                                      "or retry when it is back") -> None:
        super().__init__(message)


class ReplicaUnavailableError(ConstrainError):
    """Behind Ray Serve: the replica generating a stream stopped before it finished."""

    status_code = 503
    error_type = "replica_unavailable"

    def __init__(self, message: str = "the replica generating this stream stopped before it finished (it died or "
                                      "was removed); the answer is incomplete: send the request again") -> None:
        super().__init__(message, code="replica_lost")


class SchemaWarning(UserWarning):
    """A schema keyword was accepted but not enforced because JSON Schema calls it an annotation
    (for example an unknown ``format``)."""
