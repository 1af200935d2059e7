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

Each error knows where it is: ``field``, the request field at fault as the API names it
(``response_format.value``, ``tools.2.function.parameters``), and ``at``, the JSON pointer of
the place inside the schema that field holds (``/properties/age/minimum``; empty for the field
itself). ``param`` renders both, dotted (``response_format.value.properties.age.minimum``), in
the one function :func:`render_param`: the API's ``param``, the CLI's ``[...]`` and the server's
bodies all read it. An error is raised where it is found; a layer that knows the field it was
checking names it with :meth:`ConstrainError.locate`, which only fills a field still unknown.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, overload


@overload
def render_param(field: str, at: str = "") -> str: ...
@overload
def render_param(field: None, at: str = "") -> None: ...
def render_param(field: str | None, at: str = "") -> str | None:
    """The dotted ``param`` for a place: ``field`` and the JSON pointer ``at`` inside it, with
    ``/`` turned into ``.`` (escapes kept, so a client can turn it back into a pointer)."""
    if field is None:
        return None
    return field + at.replace("/", ".")


class ConstrainError(Exception):
    """Base of every constrain error."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, at: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = param
        self.at = at
        self.code = code

    @property
    def param(self) -> str | None:
        """The request field at fault, dotted (``response_format.value.properties.age``)."""
        return render_param(self.field, self.at)

    def locate(self, field: str, at: str = "") -> Self:
        """Name the request field (and the place ``at`` inside its schema) unless already named:
        the layer that raised knows best, so an outer layer only fills what is missing."""
        if self.field is None:
            self.field, self.at = field, at
        return self

    def reroot(self, field: str, *, was: str) -> Self:
        """The same schema checked under the field ``was`` belongs to ``field`` (a tool's
        parameters compiled as a ``response_format``): the error moves there, its place
        inside the schema stays, and the message names the field the user wrote."""
        self.field = field
        self.message = self.message.replace(was, field)
        self.args = (self.message,)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by state, not by constructor arguments (some subclasses require keywords), so
        an error crosses a process boundary (Ray's actors) whole."""
        return (_restore, (type(self), dict(self.__dict__)))

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

    def __init__(self, message: str, *, limit: str, value: int | None = None, param: str | None = None,
                 at: str = "") -> None:
        super().__init__(message, param=param, code=f"limit_{limit}", at=at)
        self.limit = limit
        self.value = value


class CompileTimeoutError(InvalidRequestError):
    """Compiling a constraint passed its deadline (``compile_timeout_s``): the schema, regex or
    grammar is too complex to compile in time; ``seconds`` is the deadline."""

    def __init__(self, message: str, *, seconds: float, param: str | None = None) -> None:
        super().__init__(message, param=param, code="compile_timeout")
        self.seconds = seconds


class UnsupportedSchemaError(InvalidRequestError):
    """A valid JSON Schema uses a keyword (or a form of it) that cannot be enforced exactly.

    ``keyword`` and ``pointer`` say which and where in the schema that was checked; an engine's
    refusal points into the normalised schema it saw, so ``pointer`` becomes the error's place
    ``at`` only where a layer locates it in the user's schema."""

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


def _restore(cls: type[ConstrainError], state: dict[str, Any]) -> ConstrainError:
    """An error rebuilt from its pickled state (see ``ConstrainError.__reduce__``)."""
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error
