"""Rewrite a checked JSON Schema into an equivalent one the engine enforces exactly.

The pipeline, one module per job:

* :mod:`dialects`: every node in 2020-12 spelling (draft-04 ... 2019-09 differences);
* :mod:`refs`: ``$ref`` resolved inside the document (pointers, ``$anchor``, ``$id``);
* :mod:`flat`: the working form, a disjunction of flat keyword conjunctions;
* :mod:`combinators`: ``allOf``/``anyOf``/``oneOf``/``not``/``if``/``dependent*``;
* :mod:`objects`, :mod:`arrays`, :mod:`scalars`: per-kind merge, complement, emptiness;
* :mod:`strings`: ``format``/``pattern`` to engine regexes, on the final nodes.

A value-listing node (``enum``/``const``, also inside ``allOf``) is reduced to the listed
values that validate against the whole node (checked with ``jsonschema``), which is exact
whatever else the node says. Recursive references become ``#/$defs/...`` references.
Whatever has no exact form raises UnsupportedSchemaError naming the keyword and pointer.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, NamedTuple

import jsonschema

from constrain.deadline import check_deadline
from constrain.errors import (
    InvalidSchemaError,
    SchemaLimitError,
    UnsatisfiableSchemaError,
    UnsupportedSchemaError,
)
from constrain.schema import arrays, objects, order, scalars
from constrain.schema.array_rules import ArrayRule, Path, ValueRule, first_check, split_runtime
from constrain.schema.check import check_schema, enforced_formats, is_valid_instance
from constrain.schema.combinators import Algebra, without_checks
from constrain.schema.dialects import DRAFT2019, at_least, dialect_of, upgrade
from constrain.schema.flat import (
    ARRAY_RULES,
    CONTAINS_AT_RUNTIME,
    CONTAINS_SOURCE,
    NATIVE,
    UNIQUE_AT_RUNTIME,
    VALUE_CHECKS,
    WHOLE_CHECK,
    Dnf,
    Flat,
    from_node,
    to_node,
    unsupported,
)
from constrain.schema.limits import MAX_REF_DEPTH
from constrain.schema.order import ObjectRule, PropertyOrder
from constrain.schema.patterns import ecma_to_engine, matches_everything
from constrain.schema.refs import ROOT_URI, RefIndex, Target, escape, find_keyword, join_uri
from constrain.schema.strings import rewrite_string_keywords

_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains",
           "maxContains")
# Keywords that make a node a resource of its own: left out of a node checked as a whole.
_RESOURCE_KEYWORDS = ("$defs", "definitions", "$schema", "$id", "id", "$anchor", "$comment")
_APPLICATORS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "dependentSchemas", "dependencies",
                "$dynamicRef", "$recursiveRef")


# The instance paths the matcher watches, each with the rule it keeps there.
Rules = tuple[tuple[Path, ArrayRule | ObjectRule | ValueRule], ...]


class Normalized(NamedTuple):
    """What the normaliser hands the engine: the schema its grammar holds, and the rules the
    matcher keeps beside it (empty when the grammar alone is exact)."""

    schema: Any
    rules: Rules


def normalize_with_rules(schema: Any, *, close_objects: bool = False, param: str = "schema",
                         property_order: PropertyOrder = "schema",
                         check_pattern_properties: bool = False) -> Normalized:
    """Like :func:`normalize`, but ``uniqueItems`` and ``contains`` with no exact grammar form are
    left to the matcher, and so are the values of keywords with none (a ``oneOf`` whose branches
    may overlap, ``not``, ``if``, ``unevaluated*`` next to applicators, a large ``multipleOf``:
    checked when the value ends); with ``property_order="any"`` so are repeated and missing keys of
    the objects whose keys may come in any order (:mod:`order`); with ``check_pattern_properties``
    (for an engine that refused patterns a name may match together), objects with several
    ``patternProperties``. The rules are the instance paths the matcher watches, each with its
    ArrayRule, ValueRule or ObjectRule."""
    return Normalized(*_normalize(schema, close_objects, param, True, property_order, check_pattern_properties))


def normalize(schema: Any, *, close_objects: bool = False, param: str = "schema",
              property_order: PropertyOrder = "schema") -> Any:
    """An equivalent schema for the engine; with ``close_objects``, objects allow declared properties only.

    Raises UnsupportedSchemaError (``param`` names the field: ``schema.properties.x.oneOf``)
    for a keyword that has no exact engine form, UnsatisfiableSchemaError when nothing can match.
    """
    out, _ = _normalize(schema, close_objects, param, False, property_order)
    return out


def _normalize(schema: Any, close_objects: bool, param: str, at_runtime: bool,
               property_order: PropertyOrder, check_pattern_properties: bool = False) -> tuple[Any, Rules]:
    if schema is False:
        raise UnsatisfiableSchemaError(f"`{param}` is the schema `false`, which no output can match", param=param)
    try:
        normalizer = Normalizer(schema, close_objects, at_runtime, param)
        normalizer.check_pattern_properties = check_pattern_properties
        out = normalizer.run()
        if not at_runtime:
            return out, ()
        rules: Rules
        out, rules = split_runtime(out) if normalizer.marked else (out, ())
        if property_order == "any":
            at = order.places(schema, refs_ignore_siblings=not at_least(normalizer.dialect, DRAFT2019))
            out, object_rules = order.any_order(out, at, lambda node: normalizer.standalone(node, normalizer.root_base))
            rules = (*rules, *object_rules)
        return out, rules
    except UnsupportedSchemaError as exc:
        _name_the_users_keyword(schema, exc)
        exc.locate(param, exc.pointer)
        raise
    except InvalidSchemaError as exc:
        exc.locate(param)
        raise


# Keywords the rewrite produces from others: an error about the product names the source.
_DERIVED_FROM = {
    "additionalProperties": ("propertyNames", "unevaluatedProperties", "dependencies"),
    "patternProperties": ("propertyNames",),
    "items": ("additionalItems", "unevaluatedItems", "contains"),
    "prefixItems": ("items", "additionalItems"),
    "anyOf": ("oneOf", "if", "dependencies", "dependentSchemas", "dependentRequired"),
}


def _name_the_users_keyword(schema: Any, exc: UnsupportedSchemaError) -> None:
    """If the failing keyword is one the rewrite introduced, point at the one the user wrote."""
    if not exc.keyword or not isinstance(schema, dict):
        return
    node: Any = schema
    for part in [p for p in exc.pointer.split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    if find_keyword(node, exc.keyword) is not None:
        return
    for source in _DERIVED_FROM.get(exc.keyword, ()):
        where = find_keyword(node, source)
        if where is not None:
            exc.keyword = source
            exc.pointer = exc.pointer.rstrip("/") + ("" if where == "/" else where)
            exc.message += f" (from `{source}` at {exc.pointer or '/'})"
            exc.args = (exc.message,)
            return


class Normalizer:
    """One normalisation: the reference index, the normalised definitions, the validator for values."""

    def __init__(self, schema: Any, close_objects: bool, at_runtime: bool = False, param: str = "schema") -> None:
        self.root = schema
        self.param = param
        self.close_objects = close_objects
        self.at_runtime = at_runtime
        self.check_pattern_properties = False  # objects with several patternProperties: checked when they end
        self.checks_made = 0  # value checks so far (none: nothing to lift)
        self.marked = False  # some array's uniqueItems or contains is left to the matcher
        self.dialect = dialect_of(schema)
        self.schema_uri = schema.get("$schema") if isinstance(schema, dict) else None
        self.index = RefIndex(schema, self.dialect)
        self.root_base = join_uri(ROOT_URI, self.index.id_of(schema) or "") if isinstance(schema, dict) else ROOT_URI
        self.algebra = Algebra(self._deref, self._valid_flat, self._finish_arrays)
        self.names: dict[tuple[str, int], str] = {}
        self.defs: dict[str, Dnf] = {}
        self.pending: set[str] = set()
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator) \
            if isinstance(schema, dict) else jsonschema.Draft202012Validator
        self.validator = cls(schema, format_checker=enforced_formats(cls))

    def run(self) -> Any:
        dnf = self.norm(self.root, ROOT_URI, "")
        if not dnf:
            raise UnsatisfiableSchemaError("the schema admits no value (it is unsatisfiable)")
        self._refuse_ref_cycles()
        node = to_node(dnf)
        used = self._reachable(node)
        if used:
            if not isinstance(node, dict) or "$defs" in node:
                node = {"anyOf": [node]} if isinstance(node, dict) else node
            node = dict(node)
            node["$defs"] = {name: to_node(self.defs[name]) for name in used}
        return self._finish(node, "")

    # ------------------------------------------------------------------ schema nodes

    def norm(self, node: Any, base: str, pointer: str) -> Dnf:
        """The Dnf of the subschema ``node``, read against base URI ``base``."""
        check_deadline()
        if node is True:
            return [{}]
        if node is False:
            return []
        if not isinstance(node, dict):
            raise unsupported("a subschema must be an object or a boolean", "type", pointer)
        raw = node
        node = upgrade(node, self.dialect)
        if "$ref" in node and not at_least(self.dialect, DRAFT2019):
            node = {"$ref": node["$ref"]}  # before 2019-09, $ref's siblings are ignored
        own_id = self.index.id_of(node)
        if own_id:
            base = join_uri(base, own_id)
        for keyword in ("$dynamicRef", "$recursiveRef"):
            if keyword in node:
                raise unsupported("dynamic references are not supported", keyword, pointer)
        if self._lists_values(node):
            return self._values(node, raw, pointer)
        # Conjuncts in the order the document writes their keywords: merged objects list their
        # properties in that order (``{"allOf": [...], "properties": ...}`` declares the allOf's first).
        at = {key: index for index, key in enumerate(node)}
        later: list[tuple[str, dict[str, Any], UnsupportedSchemaError]] = []  # checked while generating
        own = self._base(node, base, pointer, later)
        parts: list[tuple[float, Dnf]] = [(at.get("properties", -1), own)]
        if "$ref" in node:
            parts.append((at["$ref"], self._ref(node["$ref"], base, pointer)))
        for index, sub in enumerate(node.get("allOf", [])):
            parts.append((at["allOf"] + index / (len(node["allOf"]) + 1),
                          self.norm(sub, base, f"{pointer}/allOf/{index}")))
        if "anyOf" in node:
            union: Dnf = []
            for index, sub in enumerate(node["anyOf"]):
                union.extend(self.norm(sub, base, f"{pointer}/anyOf/{index}"))
            parts.append((at["anyOf"], union))
        # `dependencies` (any dialect: 2019-09 split it, but it is still met) mixes both kinds, in order.
        for keyword in ("dependencies", "dependentRequired", "dependentSchemas"):
            entries = node.get(keyword)
            for index, (name, sub) in enumerate(entries.items() if isinstance(entries, dict) else ()):
                if isinstance(sub, list):  # "name requires these names"
                    dnf = [{"required": [name, *sub]}]
                else:
                    then = self.norm(sub, base, f"{pointer}/{keyword}/{escape(name)}")
                    dnf = self.algebra.product([{"required": [name]}], then, pointer)
                parts.append((at[keyword] + index / (len(entries) + 1), [{"properties": {name: False}}, *dnf]))
        if "not" in node:
            where = f"{pointer}/not"
            inner = node["not"]
            if isinstance(inner, dict) and set(inner) == {"not"}:  # not not X is X
                parts.append((at["not"], self.norm(inner["not"], base, f"{where}/not")))
            else:
                within = self.algebra.kinds(own) if own else None
                try:
                    parts.append((at["not"], self.algebra.negate(self.norm(inner, base, where), where, within)))
                except UnsupportedSchemaError as exc:
                    later.append(("not", {"not": inner}, exc))
        parts.sort(key=lambda part: part[0])
        dnf = self.algebra.all_of([dnf for _, dnf in parts], pointer)
        if "oneOf" in node:
            branches = [self.norm(sub, base, f"{pointer}/oneOf/{i}") for i, sub in enumerate(node["oneOf"])]
            first = at["oneOf"] < at.get("properties", -1)
            try:
                dnf = self.algebra.one_of(dnf, branches, f"{pointer}/oneOf", branches_first=first)
            except UnsupportedSchemaError as exc:  # the grammar takes any branch; the check, exactly one
                union = [flat for branch in branches for flat in branch]
                dnf = self.algebra.product(union, dnf, pointer) if first else self.algebra.product(dnf, union, pointer)
                later.append(("oneOf", {"oneOf": node["oneOf"]}, exc))
        if "if" in node and ("then" in node or "else" in node):
            then = self.norm(node.get("then", True), base, f"{pointer}/then")
            otherwise = self.norm(node.get("else", True), base, f"{pointer}/else")
            try:
                dnf = self.algebra.if_then_else(dnf, self.norm(node["if"], base, f"{pointer}/if"), then, otherwise,
                                                pointer)
            except UnsupportedSchemaError as exc:  # the grammar takes either outcome; the check, the right one
                dnf = self.algebra.product(dnf, [*then, *otherwise], pointer)
                later.append(("if", {k: node[k] for k in ("if", "then", "else") if k in node}, exc))
        if later:
            dnf = self._check_later(dnf, later, base, pointer)
        if "propertyNames" in node:
            names = self.norm(node["propertyNames"], base, f"{pointer}/propertyNames")
            dnf = [objects.property_names(f, names, self._name_regex, self.algebra.conj, pointer)
                   if "$ref" not in f else f for f in self._expand_refs(dnf, pointer)]
        out: Dnf = []
        for flat in dnf:
            if len(flat.get("patternProperties", ())) > 1 or ("patternProperties" in flat and "properties" in flat):
                flat = objects.fold_match_all(flat, matches_everything, self.algebra.conj, pointer)
            if any(k in flat for k in ARRAY_RULES):
                out.extend(self._finish_arrays(flat, pointer))
            elif "minProperties" in flat or "maxProperties" in flat:
                out.extend(objects.split_counts(flat))
            else:
                out.append(flat)
        if self.checks_made and len(out) > 1:
            out = self._lift_checks(out, raw, base, pointer)
        return out

    def _lift_checks(self, dnf: Dnf, raw: dict[str, Any], base: str, pointer: str) -> Dnf:
        """Alternatives that differ in their value checks (one checked, one not; or checks below one
        of them) would leave the matcher unable to tell by the path which check applies. Then the
        whole node is the one check, at this place, and the alternatives keep none: the same
        language, told at the end of this value instead of a smaller one inside it."""
        inner = [json.dumps(without_checks(f)) for f in dnf]
        inner += [json.dumps(to_node(self.defs[name])) for name in self._reachable({"anyOf": dnf})
                  if name in self.defs]  # checks inside referenced definitions count too
        if all(f.get(VALUE_CHECKS) == dnf[0].get(VALUE_CHECKS) for f in dnf) and \
                not any(VALUE_CHECKS in text for text in inner):
            return dnf
        first = next((f[VALUE_CHECKS][0] for f in dnf if VALUE_CHECKS in f), None)
        if first is None:
            first = first_check([json.loads(text) for text in inner])
        text = self.standalone({k: v for k, v in raw.items() if k not in _RESOURCE_KEYWORDS}, base)
        if text is None:
            return dnf  # the matcher will say the place is ambiguous
        check = [[first[0], text, first[2] or pointer or "/"]]  # named where the keyword is written
        lifted = (self.algebra.check_later(_strip_checks(flat), check) for flat in dnf)
        return [{**f, WHOLE_CHECK: True} if VALUE_CHECKS in f else f for f in lifted if f is not None]

    def _check_later(self, dnf: Dnf, later: list[tuple[str, dict[str, Any], UnsupportedSchemaError]],
                     base: str, pointer: str) -> Dnf:
        """``dnf`` (a superset here) whose values the matcher validates, when each ends, against the
        keywords in ``later`` (no exact grammar form). Without the matcher, or where a keyword cannot
        stand alone as a schema, the reason it has no grammar form is the error."""
        checks: list[list[str]] = []
        for keyword, node, exc in later:
            text = self.standalone(node, base) if self.at_runtime else None
            if text is None:
                raise exc
            checks.append([keyword, text, f"{pointer}/{keyword}"])
        self.marked = True
        self.checks_made += len(checks)
        return [f for f in (self.algebra.check_later(flat, [*flat.get(VALUE_CHECKS, []), *checks]) for flat in dnf)
                if f is not None]

    def _finish_arrays(self, flat: Flat, pointer: str) -> Dnf:
        """``uniqueItems``/``contains`` in exact grammar forms, or marked for the matcher."""
        out: Dnf = []
        for done in arrays.finish(flat, self._values_of, self.algebra.conj, pointer, self.at_runtime):
            self.marked = self.marked or UNIQUE_AT_RUNTIME in done or CONTAINS_AT_RUNTIME in done
            out.extend(self.algebra.prune(done, pointer=pointer))
        return out

    def _lists_values(self, node: dict[str, Any]) -> bool:
        if "enum" in node or "const" in node:
            return True
        return any(isinstance(s, dict) and ("enum" in s or "const" in s) and "$ref" not in s
                   for s in node.get("allOf", []))

    def _values(self, node: dict[str, Any], raw: dict[str, Any], pointer: str) -> Dnf:
        """A value-listing node: the listed values that validate against the whole (original) node."""
        listed: list[Any] = []
        for holder in [node, *(s for s in node.get("allOf", []) if isinstance(s, dict))]:
            if "const" in holder:
                listed.append(holder["const"])
            if "enum" in holder:
                listed.extend(holder["enum"])
            if listed:
                break
        if set(raw) - _ANNOTATIONS == {"enum"}:
            return [{"enum": _unique(listed)}] if listed else []  # each listed value is valid by definition
        try:
            validator = self.validator.evolve(schema=raw)
            values = [v for v in _unique(listed) if validator.is_valid(v)]
        except Exception as exc:
            if isinstance(exc, UnsupportedSchemaError):
                raise
            raise unsupported(f"the values of this enum cannot be checked against its schema ({exc})", "enum",
                              pointer) from None
        return [{"enum": values}] if values else []

    def _base(self, node: dict[str, Any], base: str, pointer: str,
              later: list[tuple[str, dict[str, Any], UnsupportedSchemaError]]) -> Dnf:
        """The node's own (non-applicator) keywords as one flat, children normalised."""
        flat: Flat = {}
        names = ("properties", "patternProperties", "additionalProperties")
        if self.check_pattern_properties and len(node.get("patternProperties", ())) > 1:
            later.append(("patternProperties", {k: node[k] for k in names if k in node},
                          unsupported("several patternProperties that a name may match together cannot be "
                                      "expressed exactly", "patternProperties", pointer)))
            node = {k: v for k, v in node.items() if k not in names[1:]}
            flat["additionalProperties"] = True  # any other name, any value: the check says which
        for key, value in node.items():
            if key not in NATIVE or key in ("$ref", "enum") or key.startswith("_"):
                continue  # private keys are the normaliser's own, never a user's
            where = f"{pointer}/{key}"
            if key in ("properties", "patternProperties"):
                flat[key] = {name: to_node(self.norm(sub, base, f"{where}/{escape(name)}"))
                             for name, sub in value.items()}
            elif key == "prefixItems":
                flat[key] = [to_node(self.norm(sub, base, f"{where}/{i}")) for i, sub in enumerate(value)]
            elif key in ("items", "additionalProperties", "contains"):
                flat[key] = to_node(self.norm(value, base, where))
                if key == "contains":
                    flat[CONTAINS_SOURCE] = self.standalone(value, base)
            elif key in _COUNTS:
                flat[key] = int(value)
            elif key == "type":
                flat[key] = value
            elif key == "required":
                flat[key] = list(dict.fromkeys(value))
            elif key in ("contentEncoding", "contentMediaType", "contentSchema"):
                if at_least(self.dialect, DRAFT2019):
                    continue  # annotations from 2019-09 on
                flat[key] = value
            else:
                flat[key] = value
        if "unevaluatedProperties" in node or "unevaluatedItems" in node:
            self._unevaluated(node, flat, base, pointer, later)
        if self.close_objects and "additionalProperties" not in flat and "patternProperties" not in flat:
            declared = node.get("type")
            if "properties" in node or declared == "object":
                flat["additionalProperties"] = False
        if flat.get("uniqueItems") is False:
            del flat["uniqueItems"]
        if "type" in flat and isinstance(flat["type"], list) and not flat["type"]:
            return []
        return self.algebra.prune(flat, pointer=pointer)

    def _unevaluated(self, node: dict[str, Any], flat: Flat, base: str, pointer: str,
                     later: list[tuple[str, dict[str, Any], UnsupportedSchemaError]]) -> None:
        """``unevaluated*`` equals ``additional*`` when no in-place applicator can evaluate more;
        otherwise the value is checked against the whole node when it ends."""
        applied = [k for k in _APPLICATORS if k in node]
        for key, same in (("unevaluatedProperties", "additionalProperties"), ("unevaluatedItems", "items")):
            if key not in node:
                continue
            # `contains` evaluates the items it matches (2020-12): another applicator here.
            if applied or same in node or (key == "unevaluatedItems" and "contains" in node):
                if node[key] is True or node[key] == {}:
                    continue
                whole = {k: v for k, v in node.items() if k not in _RESOURCE_KEYWORDS}
                later.append((key, whole, unsupported(f"{key} next to applicators cannot be expressed exactly", key,
                                                      pointer)))
                continue
            flat[same] = to_node(self.norm(node[key], base, f"{pointer}/{key}"))

    # ------------------------------------------------------------------ references

    def _check_elsewhere(self, target: Target) -> None:
        """The meta-schema check of a ``$ref`` target it did not see (under an unknown keyword):
        the same 400 naming the place as anywhere else, in the document's dialect."""
        node = target.node
        if self.schema_uri and "$schema" not in node:
            node = {**node, "$schema": self.schema_uri}
        check_schema(node, param=self.param, at=target.pointer)

    def _ref(self, ref: Any, base: str, pointer: str) -> Dnf:
        if not isinstance(ref, str):
            raise unsupported("`$ref` must be a string", "$ref", pointer)
        target = self.index.resolve(ref, base, f"{pointer}/$ref")
        key = (target.base, id(target.node))
        name = self.names.get(key)
        if name is None:
            if len(self.pending) >= MAX_REF_DEPTH:
                raise SchemaLimitError(
                    f"`$ref`s at {pointer or '/'} lead through more than {MAX_REF_DEPTH} references in a row",
                    limit="ref_depth", value=MAX_REF_DEPTH,
                )
            if not self.index.at_schema_location(target.node):
                self._check_elsewhere(target)
            name = f"n{len(self.names)}"
            self.names[key] = name
            self.pending.add(name)
            try:
                self.defs[name] = self.norm(target.node, target.base, target.pointer)
            finally:
                self.pending.discard(name)
        if name not in self.pending and _small(self.defs[name]):
            return copy.deepcopy(self.defs[name])
        return [{"$ref": f"#/$defs/{name}"}]

    def _refuse_ref_cycles(self) -> None:
        """``$ref``s that lead back to themselves with no keyword between (``{"$ref": "#"}``,
        a -> b -> a) define nothing: a validator would recurse forever and a grammar would
        never produce a value. Refused here instead of generating from an empty language."""
        aliases = {name: [f["$ref"].rsplit("/", 1)[-1] for f in dnf] for name, dnf in self.defs.items()
                   if dnf and all(set(f) == {"$ref"} for f in dnf)}
        for start in aliases:
            seen, stack = set(), list(aliases[start])
            while stack:
                name = stack.pop()
                if name == start:
                    raise UnsatisfiableSchemaError(
                        "the schema's `$ref`s refer to each other with no keyword between them: no value can match",
                    )
                if name in aliases and name not in seen:
                    seen.add(name)
                    stack.extend(aliases[name])

    def _deref(self, flat: Flat, pointer: str) -> Dnf:
        name = flat["$ref"].rsplit("/", 1)[-1]
        if name in self.pending or name not in self.defs:
            raise unsupported("a recursive $ref combined with other keywords cannot be expanded", "$ref", pointer)
        return copy.deepcopy(self.defs[name])

    def _expand_refs(self, dnf: Dnf, pointer: str) -> Dnf:
        out: Dnf = []
        for flat in dnf:
            out.extend(self._deref(flat, pointer) if "$ref" in flat else [flat])
        return out

    def _reachable(self, node: Any) -> list[str]:
        seen: list[str] = []
        stack = [node]
        while stack:
            text = json.dumps(stack.pop())
            for name in _ref_names(text):
                if name not in seen:
                    seen.append(name)
                    if name in self.defs:  # not while it is being normalised (a recursive reference)
                        stack.append(to_node(self.defs[name]))
        return seen

    # ------------------------------------------------------------------ helpers

    def standalone(self, node: Any, base: str) -> str | None:
        """``node`` as a schema of its own (canonical text), for the matcher to validate items
        against: with the root's ``$defs``/``definitions`` beside it when it refers into them.
        None when it cannot stand alone (other references, ``$id``, ``$anchor``, dynamic refs)."""
        if not isinstance(node, dict) or "$defs" in node or "definitions" in node:
            return None
        uri = self.schema_uri or "https://json-schema.org/draft/2020-12/schema"
        doc: dict[str, Any] = {"$schema": uri, **node}
        if _refs_in(node):
            root = self.root if isinstance(self.root, dict) else {}
            if base != self.root_base:
                return None  # inside an embedded resource, `#/...` names another document
            doc.update({k: root[k] for k in ("$defs", "definitions") if k in root})
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        if any(f'"{k}"' in text for k in ("$dynamicRef", "$recursiveRef", "$id", "$anchor")):
            return None
        if not all(ref.startswith(("#/$defs/", "#/definitions/")) for ref in _refs_in(doc)):
            return None
        return text

    def _valid_flat(self, value: Any, flat: Flat) -> bool:
        checks = flat.get(VALUE_CHECKS, [])
        if checks and not all(is_valid_instance(text, value) for _, text, _ in checks):
            return False
        schema = {k: v for k, v in flat.items()
                  if k not in (CONTAINS_SOURCE, CONTAINS_AT_RUNTIME, UNIQUE_AT_RUNTIME, VALUE_CHECKS, WHOLE_CHECK)}
        if VALUE_CHECKS in json.dumps(schema):  # a validator would skip the marker: too lenient
            raise unsupported("a listed value cannot be checked against a part checked while generating", "enum", "")
        if flat.get(UNIQUE_AT_RUNTIME):
            schema["uniqueItems"] = True  # what the marker stands for
        patterns = schema.pop("_patterns", [])
        if patterns:
            schema = {"allOf": [schema, *({"pattern": p} for p in patterns)]}
        names = _ref_names(json.dumps(schema))
        if names:
            if any(n in self.pending for n in names):
                raise unsupported("a value cannot be checked against a recursive $ref", "$ref", "")
            defs = {n: to_node(self.defs[n]) for n in self._reachable(schema)}
            schema = {"allOf": [schema], "$defs": defs}
        cls = jsonschema.Draft202012Validator
        try:
            return cls(schema, format_checker=enforced_formats(cls)).is_valid(value)
        except Exception as exc:  # e.g. a pattern Python's re cannot read: undecidable here
            raise unsupported(f"cannot check a listed value against this schema ({exc})", "enum", "") from None

    def _values_of(self, node: Any) -> list[Any] | None:
        """The finite set of values ``node`` admits, or None when it is not finite (or not obvious)."""
        if node is False:
            return []
        dnf = from_node(node) if node is not True else [{}]
        out: list[Any] = []
        for flat in dnf:
            if "enum" in flat:
                out.extend(flat["enum"])
            elif set(flat) == {"type"}:
                kinds = [flat["type"]] if isinstance(flat["type"], str) else flat["type"]
                if not set(kinds) <= {"null", "boolean"}:
                    return None
                out.extend([None] if "null" in kinds else [])
                out.extend([False, True] if "boolean" in kinds else [])
            else:
                return None
        return out

    def _name_regex(self, flat: Flat) -> str | None:
        """An ECMA-262 pattern for the property names ``flat`` (a string schema) accepts."""
        if set(flat) - {"type", "pattern", "minLength", "maxLength", "format"}:
            return None
        parts = []
        if "format" in flat:
            return None
        if "minLength" in flat or "maxLength" in flat:
            low, high = flat.get("minLength", 0), flat.get("maxLength")
            parts.append(f"^[\\s\\S]{{{low},{'' if high is None else high}}}$")
        if "pattern" in flat:
            if parts:
                return None
            parts.append(flat["pattern"])
        return parts[0] if parts else "^[\\s\\S]*$"

    def _finish(self, node: Any, pointer: str) -> Any:
        """Engine spelling: string keywords through ``rewrite_string_keywords``; no private keys."""
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("properties", "$defs"):
                out[key] = {k: self._finish(v, f"{pointer}/{key}/{escape(k)}") for k, v in value.items()}
            elif key == "patternProperties":
                # Keys are ECMA-262 regexes searched in the name; the engine reads Rust syntax.
                out[key] = {(ecma_to_engine(k, f"{pointer}/{key}") or ""): self._finish(v, f"{pointer}/{key}/{escape(k)}")
                            for k, v in value.items()}
            elif key in ("anyOf", "allOf", "prefixItems"):
                out[key] = [self._finish(v, f"{pointer}/{key}/{i}") for i, v in enumerate(value)]
            elif key in ("items", "additionalProperties"):
                out[key] = self._finish(value, f"{pointer}/{key}")
            else:
                out[key] = value
        if "enum" in out:
            return _spell_values(out["enum"])
        try:
            out = scalars.integer_step(out, pointer)
        except UnsupportedSchemaError:  # too large a step for the engine's automaton: checked when it ends
            text = self.standalone({"multipleOf": out["multipleOf"]}, self.root_base) if self.at_runtime else None
            if text is None:
                raise
            checks = [*out.get(VALUE_CHECKS, []), ["multipleOf", text, f"{pointer}/multipleOf"]]
            out = {**{k: v for k, v in out.items() if k != "multipleOf"}, VALUE_CHECKS: checks}
            self.marked = True
            self.checks_made += 1
        extra: list[str] = out.pop("_patterns", [])
        if any(k in out for k in ("pattern", "format", "contentEncoding", "contentMediaType", "contentSchema")):
            out = rewrite_string_keywords(out, pointer, dialect=self.schema_uri)
        for pattern in extra:
            rewritten = rewrite_string_keywords({"type": "string", "pattern": pattern}, pointer,
                                                dialect=self.schema_uri)
            more = [{"pattern": rewritten["pattern"]}] if "pattern" in rewritten else []
            more += rewritten.get("allOf", [])
            if more:
                out["allOf"] = [*out.get("allOf", []), *more]
        return out if VALUE_CHECKS in out else scalars.decimal_spellings(out)


def _strip_checks(node: Any) -> Any:
    """``node`` without value checks anywhere inside."""
    if isinstance(node, dict):
        return {k: _strip_checks(v) for k, v in node.items() if k != VALUE_CHECKS}
    if isinstance(node, list):
        return [_strip_checks(v) for v in node]
    return node


def _refs_in(node: Any) -> list[str]:
    """Every ``$ref`` value inside ``node``."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs_in(v)]
    return []


def _ref_names(text: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'"\$ref": "#/\$defs/(n\d+)"', text)))


def _small(dnf: Dnf) -> bool:
    return len(json.dumps(dnf)) < 2000


# Keywords that never restrict a value.
_ANNOTATIONS = frozenset({"$schema", "$comment", "title", "description", "default", "examples", "deprecated",
                          "readOnly", "writeOnly"})


def _unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats (of the same type); linear for scalars, which enums mostly hold."""
    out: list[Any] = []
    seen: set[tuple[type, Any]] = set()
    for v in values:
        if v is None or isinstance(v, str | int | float):
            if (type(v), v) not in seen:
                seen.add((type(v), v))
                out.append(v)
        elif not any(type(v) is type(w) and v == w for w in out):
            out.append(v)
    return out


def _spell_values(values: list[Any]) -> Any:
    """An enum in engine spelling: objects as exact property lists (any key order), arrays item by item."""
    scalars_ = [v for v in values if not isinstance(v, dict | list)]
    nodes: list[Any] = [{"enum": scalars_}] if scalars_ else []
    for value in values:
        if isinstance(value, dict):
            nodes.append({"type": "object", "properties": {k: _spell_values([v]) for k, v in value.items()},
                          "required": list(value), "additionalProperties": False})
        elif isinstance(value, list):
            nodes.append({"type": "array", "prefixItems": [_spell_values([v]) for v in value],
                          "minItems": len(value), "maxItems": len(value), "items": False})
    return nodes[0] if len(nodes) == 1 else {"anyOf": nodes}

