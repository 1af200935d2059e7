"""Serialise a test instance with its object keys in the order its schema declares them.

Engines that generate JSON (llguidance, xgrammar, outlines, constrain) write an object's
declared properties in the order the schema lists them, so a mask only admits that order.
JSON objects are unordered, and in MaskBench the key order of a schema and of its test
instances often disagree for a reason unrelated to any engine: 57% of the ``properties``
objects with 3+ keys in ``maskbench.jsonl.gz`` are sorted alphabetically (about 1 in 6 would
be by chance), while the instances keep the authors' order. JSONSchemaBench itself reorders
its instances to the schema's order for the same reason (guidance-ai/jsonschemabench#13).

``declared_order(schema, instance)`` is engine-neutral: it follows the schema document, not
any engine's rewrite. At each object it collects the property names that the subschemas
applying there declare (``properties``, then through ``$ref``, ``allOf``, the ``anyOf`` /
``oneOf`` branches the instance matches, ``if``/``then``/``else`` as evaluated, and
``dependentSchemas``), in document order, first mention wins; then the names that only
``required`` or a dependency list (the trigger, then its dependents); an object equal to a
``const`` or ``enum`` value takes that value's order. Undeclared keys follow in their original
order. Values are reordered recursively with the subschemas that apply to them.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import validators


def declared_order(schema: Any, instance: Any) -> Any:
    """``instance`` with every object's keys in the order ``schema`` declares them."""
    try:
        validator = validators.validator_for(schema)(schema)
    except Exception:  # noqa: BLE001 - a schema the validator cannot load keeps its instance as is
        return instance
    return _Walker(validator).walk([(schema, validator._resolver)], instance)


class _Walker:
    def __init__(self, validator: Any) -> None:
        self.validator = validator

    def matches(self, schema: Any, resolver: Any, instance: Any) -> bool:
        try:
            return self.validator.evolve(schema=schema, _resolver=resolver).is_valid(instance)
        except Exception:  # noqa: BLE001 - an unresolvable part: treat the branch as not taken
            return False

    def expand(self, scopes: list[tuple[Any, Any]], instance: Any, depth: int = 0) -> list[tuple[Any, Any]]:
        """Every subschema applying at this location, in document order (with its ref resolver)."""
        out: list[tuple[Any, Any]] = []
        for schema, resolver in scopes:
            if not isinstance(schema, dict) or depth > 40:
                continue
            if "$id" in schema and isinstance(schema["$id"], str):
                try:
                    resolver = resolver.in_subresource(
                        self.validator._resolver.specification.create_resource(schema)  # type: ignore[attr-defined]
                    )
                except Exception:  # noqa: BLE001
                    pass
            # The schema's own properties count where its `properties` keyword stands among its
            # siblings: {"allOf": [...], "properties": ...} declares the allOf's names first.
            if "properties" not in schema:
                out.append((schema, resolver))
            for keyword, value in schema.items():
                subs: list[Any] = []
                if keyword == "properties":
                    out.append((schema, resolver))
                    continue
                if keyword in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
                    try:
                        resolved = resolver.lookup(value)
                    except Exception:  # noqa: BLE001
                        continue
                    out.extend(self.expand([(resolved.contents, resolved.resolver)], instance, depth + 1))
                    continue
                if keyword == "allOf" and isinstance(value, list):
                    subs = value
                elif keyword in ("anyOf", "oneOf") and isinstance(value, list):
                    subs = [s for s in value if self.matches(s, resolver, instance)]
                elif keyword == "if":
                    subs = [schema.get("then") if self.matches(value, resolver, instance) else schema.get("else")]
                elif keyword in ("dependentSchemas", "dependencies") and isinstance(value, dict):
                    subs = [s for k, s in value.items() if isinstance(instance, dict) and k in instance
                            and isinstance(s, dict)]
                out.extend(self.expand([(s, resolver) for s in subs if s is not None], instance, depth + 1))
        return out

    def walk(self, scopes: list[tuple[Any, Any]], instance: Any) -> Any:
        if not isinstance(instance, (dict, list)):
            return instance
        applying = self.expand(scopes, instance)
        if isinstance(instance, list):
            return [self.walk(self.item_scopes(applying, index), item) for index, item in enumerate(instance)]
        order: dict[str, int] = {}
        for schema, _ in applying:  # a listed value is written as the schema writes it
            listed = [schema["const"]] if "const" in schema else schema.get("enum", [])
            for value in listed if isinstance(listed, list) else []:
                if isinstance(value, dict) and value == instance:
                    for name in value:
                        order.setdefault(name, len(order))
                    break
        for schema, _ in applying:
            properties = schema.get("properties")
            if isinstance(properties, dict):
                for name in properties:
                    order.setdefault(name, len(order))
        for schema, _ in applying:  # then names only `required` or a dependency mentions
            for name in _required_names(schema):
                order.setdefault(name, len(order))
        keys = sorted(instance, key=lambda k: order.get(k, len(order)))  # stable: undeclared keep their order
        return {k: self.walk(self.value_scopes(applying, k), instance[k]) for k in keys}

    @staticmethod
    def value_scopes(applying: list[tuple[Any, Any]], key: str) -> list[tuple[Any, Any]]:
        out = []
        for schema, resolver in applying:
            properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
            matched = key in properties
            if matched:
                out.append((properties[key], resolver))
            patterns = schema.get("patternProperties")
            if isinstance(patterns, dict):
                for pattern, sub in patterns.items():
                    try:
                        if re.search(pattern, key):
                            out.append((sub, resolver))
                            matched = True
                    except re.error:
                        pass
            if not matched and "additionalProperties" in schema:
                out.append((schema["additionalProperties"], resolver))
        return out

    @staticmethod
    def item_scopes(applying: list[tuple[Any, Any]], index: int) -> list[tuple[Any, Any]]:
        out = []
        for schema, resolver in applying:
            prefix = schema.get("prefixItems")
            items = schema.get("items")
            if isinstance(items, list):  # draft 4-2019 tuple form
                prefix, items = items, schema.get("additionalItems")
            if isinstance(prefix, list) and index < len(prefix):
                out.append((prefix[index], resolver))
            elif items is not None:
                out.append((items, resolver))
            if "contains" in schema:
                out.append((schema["contains"], resolver))
        return out


def _required_names(schema: dict[str, Any]) -> list[str]:
    """The names ``required`` and the dependency keywords mention, in document order."""
    out: list[str] = []
    for keyword, value in schema.items():
        if keyword == "required" and isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
        elif keyword in ("dependentRequired", "dependentSchemas", "dependencies") and isinstance(value, dict):
            for name, deps in value.items():  # the trigger is mentioned first, then a list's names
                out.extend([name, *(d for d in deps if isinstance(d, str))] if isinstance(deps, list) else [name])
    return out
