"""Objects whose keys may come in any order (``property_order="any"``).

Every engine writes an object's declared properties in the order the schema lists them, so
its mask admits that order only, although JSON objects are unordered. With
``property_order="any"`` the mask admits every order, exactly:

* ``places`` finds the instance paths where objects may stand, each with the subschema that
  governs them: reached from the root through ``properties``, ``additionalProperties``, a lone
  pattern property (or one every name matches), ``items``, ``prefixItems``, local ``$ref``s
  and ``allOf``. A union *at* the place is fine. Below a union or condition (``anyOf``,
  ``oneOf``, ``if``, ...) the path alone does not say which subschemas apply: there a name is a
  place with a subschema only when one declaration alone can govern it, and otherwise a place
  without one (``None``);
* ``any_order`` rewrites the engine schema's objects at those places (copies: a shared
  ``$defs`` entry stays ordered elsewhere): declared properties (and the names of a pattern
  only a few names match) become exact-name ``patternProperties``, which the engine accepts in
  any order, but also twice and without the required ones;
* the matcher keeps the rest with an ``ObjectRule`` (``constrain.engines.rules_matcher``): a key
  never repeats, a key being written stays a prefix of an unused name, a comma needs a name
  left, and ``}`` comes only when the object has the required keys of its form. Where the
  engine's forms at a place require different names, ``}`` needs the object valid against the
  place's subschema as written; at a place without one (below a union), the keys alone must
  decide it: wherever one form's required names are allowed by another, they include that
  other's required names; else the place keeps the schema's order. A prefix the grammar
  allows can then always be completed by adding the missing required keys.

Objects anywhere else, and objects whose form the rewrite does not cover (``minProperties``,
``propertyNames``, a pattern overlapping a name with another schema, ...), keep the schema's order: still exact,
one order. One gap is known: under a union whose forms share a name prefix (``city`` in one,
``city2`` in another), a key could reach a point where only the other form's longer name is
unused; generation then stops with an error, never with invalid output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import regex

from constrain.schema.array_rules import ANY_INDEX, AnyKey, Path
from constrain.schema.check import ecma_matcher
from constrain.schema.patterns import escape_char, finite_language, matches_everything
from constrain.schema.refs import resolve_local

PropertyOrder = Literal["schema", "any"]
MAX_PLACES = 3000  # object places followed per schema (deep shared definitions fan out)
MAX_PATTERN_NAMES = 64  # a pattern matching at most this many names is rewritten as those names
MAX_GROWTH, GROWTH_FLOOR = 3, 200_000  # how much larger places below unions may make the engine schema

# Keywords under which a child's schema is not decided by the path alone.
_AMBIGUOUS = ("anyOf", "oneOf", "not", "if", "then", "else", "dependencies", "dependentSchemas",
              "$dynamicRef", "$recursiveRef", "contains", "unevaluatedProperties", "unevaluatedItems")
# What an engine object node may hold besides its properties for the rewrite to be exact.
_REWRITABLE = frozenset({
    "$defs", "type", "properties", "required", "additionalProperties", "patternProperties", "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
})


@dataclass(frozen=True)
class ObjectRule:
    """What the matcher keeps true of an object whose keys may come in any order.

    The grammar already holds each member to its schema and each form to its names; what it
    lost is the required ones. Where every object form at the place requires the same names, a
    closed object is valid exactly when it has them. Where forms differ (a union), which applies
    may depend on the values, so the closed object is validated against the subschema as
    written (``schema``).
    """

    # Per object form at the place: (its required names, the names it allows or None for any).
    shapes: tuple[tuple[frozenset[str], frozenset[str] | None], ...]
    schema: str | None = None  # self-contained JSON Schema text; None with a single form
    # The names a key may take (None: any). A key being written must stay a prefix of one not
    # yet used, or the object could reach a key whose only completions repeat one.
    names: frozenset[str] | None = None

    keyword = "properties"  # what the rule keeps, for errors: the declared properties' order

    def closes(self, keys: frozenset[str]) -> bool:
        """Whether some form's key set allows an object with exactly ``keys`` to close."""
        return any(required <= keys and (allowed is None or keys <= allowed) for required, allowed in self.shapes)


def places(root: Any, *, refs_ignore_siblings: bool) -> dict[Path, Any]:
    """Instance paths where objects may stand, each with the subschema governing it (None below a
    union or condition where no single declaration does); paths that need no union first, at
    most ``MAX_PLACES`` of them, then as many again below unions, breadth first."""
    found: dict[Path, Any] = {}
    later: list[tuple[list[Any], Path, tuple[str, ...]]] = []

    def conjuncts(node: Any, refs: tuple[str, ...], out: list[dict[str, Any]], top: bool = False) -> bool:
        """Collect the subschemas that apply together at a place (the node, its ``$ref`` target,
        its ``allOf`` members); False when one of them makes what lies below it ambiguous."""
        if node is True:
            return True
        if not isinstance(node, dict) or any(k in node for k in _AMBIGUOUS) or (_moves_base(node) and not top):
            return False
        if "$ref" in node:
            ref = node["$ref"]
            target = resolve_local(root, ref)
            if target is None or ref in refs or len(refs) > 32 or not conjuncts(target, (*refs, ref), out):
                return False
            if refs_ignore_siblings:
                return True  # before 2019-09 a reference's siblings are ignored
        out.append(node)
        return all(conjuncts(sub, refs, out) for sub in node.get("allOf", []))

    def place(children: list[Any], path: Path, refs: tuple[str, ...], governed: bool = True) -> None:
        """Record ``path``; ``governed``: ``children`` all apply there (else some of them may)."""
        if path in found or len(found) >= (MAX_PLACES if governed else 2 * MAX_PLACES):
            return
        if not governed:
            found[path] = None
            later.append((children, path, refs))
            return
        found[path] = children[0] if len(children) == 1 else {"allOf": children}
        applying: list[dict[str, Any]] = []
        if all(conjuncts(child, refs, applying) for child in children):
            below(applying, path, refs)
        else:
            later.append((children, path, refs))  # after every path that needs no union

    def beyond(nodes: list[Any], path: Path, refs: tuple[str, ...]) -> None:
        """Below a union or condition: the paths where objects may stand, without their schema
        (``None``); the rewrite decides from the engine schema whether the rule is still exact."""
        if len(path) > 32:
            return
        collected: dict[int, dict[str, Any]] = {}
        if not all(alternatives(node, refs, collected) for node in nodes):
            return
        may = [c for c in collected.values() if isinstance(c.get("properties", {}), dict)]
        for name in dict.fromkeys(name for c in may for name in c.get("properties", {})):
            children = _distinct(c["properties"][name] for c in may if name in c.get("properties", {}))
            # Declared by one subschema alone, with no other that could reach the name: wherever
            # the key stands, that declaration alone governs it (an exact place again).
            alone = len(children) == 1 and not any(
                name not in c.get("properties", {}) and _reaches_others(c) for c in may)
            place(children, (*path, name), refs, governed=alone)
        keyed = [c for c in may if c.get("patternProperties") or c.get("additionalProperties", True) is not True]
        lone = _lone_pattern(keyed[0]) if len(keyed) == 1 else None
        if lone is not None:  # in the only form that holds undeclared keys to a schema
            declared = frozenset(keyed[0].get("properties", {}))
            alone = not any(c is not keyed[0] and c.get("properties") for c in may)
            place([lone], (*path, AnyKey(declared)), refs, governed=alone)
        items = _distinct(c["items"] for c in may if isinstance(c.get("items"), dict))
        if items:
            alone = len(items) == 1 and not any(
                isinstance(c.get("items"), list) or any(k in c for k in _OTHER_ITEMS) for c in may)
            place(items, (*path, ANY_INDEX), refs, governed=alone)

    def alternatives(node: Any, refs: tuple[str, ...], out: dict[int, dict[str, Any]]) -> bool:
        """Collect every subschema that may apply at a place (through references, ``allOf``,
        unions and conditions); False where references are dynamic or read from elsewhere."""
        if not isinstance(node, dict) or id(node) in out:
            return True
        if any(k in node for k in ("$dynamicRef", "$recursiveRef")) or _moves_base(node):
            return False
        if "$ref" in node:
            ref = node["$ref"]
            target = resolve_local(root, ref)
            if target is None or len(refs) > 32:
                return False
            if ref not in refs and not alternatives(target, (*refs, ref), out):
                return False
        if "$ref" in node and refs_ignore_siblings:
            return True
        out[id(node)] = node
        subs = [*node.get("allOf", []), *node.get("anyOf", []), *node.get("oneOf", []),
                *(node[k] for k in ("not", "if", "then", "else") if k in node)]
        for k in ("dependentSchemas", "dependencies"):
            if isinstance(node.get(k), dict):
                subs += [v for v in node[k].values() if isinstance(v, dict)]
        return all(alternatives(sub, refs, out) for sub in subs)

    def below(applying: list[dict[str, Any]], path: Path, refs: tuple[str, ...]) -> None:
        if len(path) > 32 or not all(isinstance(c.get(k, {}), dict) for c in applying
                                     for k in ("properties", "patternProperties")):
            return
        declared = list(dict.fromkeys(name for c in applying for name in c.get("properties", {})))
        for name in declared:
            children: list[Any] = []
            for c in applying:
                if any(_finds(p, name) is not False for p in c.get("patternProperties", {})):
                    break  # a pattern's schema applies too: not followed
                if name in c.get("properties", {}):
                    children.append(c["properties"][name])
                elif c.get("additionalProperties", True) is not True:
                    children.append(c["additionalProperties"])
            else:
                place(children, (*path, name), refs)
        others = AnyKey(frozenset(declared))
        patterns = [c["patternProperties"] for c in applying if c.get("patternProperties")]
        if not patterns:
            extras = [c["additionalProperties"] for c in applying if c.get("additionalProperties", True) is not True]
            if extras:
                place(extras, (*path, others), refs)
        elif len(applying) == 1 and (lone := _lone_pattern(applying[0])) is not None:
            place([lone], (*path, others), refs)
        tuples = [c for c in applying if "prefixItems" in c or isinstance(c.get("items"), list)]
        if len(applying) == 1 and tuples and isinstance(tuples[0].get("prefixItems"), list):
            for index, sub in enumerate(tuples[0]["prefixItems"]):
                place([sub], (*path, index), refs)
        elif not tuples:
            items = [c["items"] for c in applying if "items" in c and c["items"] is not True]
            if items:
                place(items, (*path, ANY_INDEX), refs)

    if isinstance(root, dict):
        found[()] = root
        applying: list[dict[str, Any]] = []
        if conjuncts(root, (), applying, top=True):
            below(applying, (), ())
        else:
            later.append(([{k: v for k, v in root.items() if k not in ("$id", "id")}], (), ()))
        for nodes, path, refs in later:  # grows while read: breadth first
            beyond(nodes, path, refs)
    return found


def _distinct(nodes: Any) -> list[Any]:
    return list({id(node): node for node in nodes}.values())


# What besides ``items`` may hold an array's members to a schema.
_OTHER_ITEMS = ("prefixItems", "additionalItems", "contains", "unevaluatedItems")


def _reaches_others(node: dict[str, Any]) -> bool:
    """Whether ``node`` may hold keys it does not declare to some schema."""
    return (isinstance(node.get("additionalProperties"), dict) and node["additionalProperties"] != {}) or any(
        k in node for k in ("patternProperties", "unevaluatedProperties", "propertyNames"))


def _lone_pattern(node: dict[str, Any]) -> Any:
    """The schema of ``node``'s one pattern property where it governs every key the node does not
    declare (the node admits no others, or every name matches it); else None."""
    patterns = node.get("patternProperties") or {}
    if len(patterns) != 1:
        return None
    (pattern, sub), = patterns.items()
    return sub if node.get("additionalProperties") is False or matches_everything(pattern) else None


def _moves_base(node: dict[str, Any]) -> bool:
    """An ``$id`` (``id`` in draft-04) other than a fragment: references below read from elsewhere."""
    return any(isinstance(node.get(k), str) and not node[k].startswith("#") for k in ("$id", "id"))


def any_order(schema: Any, at: dict[Path, Any], standalone: Any) -> tuple[Any, tuple[tuple[Path, ObjectRule], ...]]:
    """(the engine schema with the objects at ``at`` rewritten, their rules). Each rewrite copies
    the definitions on its way; where the places below unions would add more than
    ``MAX_GROWTH - 1`` times the schema's size (and ``GROWTH_FLOOR`` bytes) to what the other
    places make of it, those keep the schema's order."""
    rewritten, rules = _any_order(schema, at, standalone)
    if any(at[path] is None for path, _ in rules):
        size, allowed = len(json.dumps(rewritten)), max((MAX_GROWTH - 1) * len(json.dumps(schema)), GROWTH_FLOOR)
        if size > allowed:
            governed = _any_order(schema, {p: s for p, s in at.items() if s is not None}, standalone)
            if size - len(json.dumps(governed[0])) > allowed:
                return governed
    return rewritten, rules


def _any_order(schema: Any, at: dict[Path, Any], standalone: Any) -> tuple[Any, tuple[tuple[Path, ObjectRule], ...]]:
    """``any_order`` with every place in ``at``: deepest first, so a parent's properties are still
    named when its children are reached. ``standalone(node)`` is the self-contained text of a
    place's subschema (None: it cannot stand alone, the place keeps the schema's order), needed
    where several object forms meet."""
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    rules: list[tuple[Path, ObjectRule]] = []
    for path in sorted(at, key=len, reverse=True):
        shapes: list[tuple[frozenset[str], frozenset[str] | None]] = []
        rewritten, changed = _rewrite(schema, path, defs, (), shapes)
        if not changed:
            continue
        text = None
        if len({required for required, _ in shapes}) > 1:
            if at[path] is None:
                # Below a union or condition the path does not decide the subschema: exact only
                # where the keys alone decide whether the object may close.
                if not _keys_decide(shapes):
                    continue
            else:  # forms that differ in required names: the object is checked against the subschema
                text = json.dumps(at[path], ensure_ascii=False, separators=(",", ":")) if not path \
                    else standalone(at[path])
                if text is None:
                    continue
        names = [allowed for _, allowed in shapes]
        union = None if None in names else frozenset().union(*names)  # type: ignore[arg-type]
        schema = rewritten
        rules.append((path, ObjectRule(tuple(shapes), text, union)))
    return schema, tuple(rules)


def _keys_decide(shapes: list[tuple[frozenset[str], frozenset[str] | None]]) -> bool:
    """Whether an object's keys alone tell if it may close, whichever form the grammar follows:
    where one form's required names are allowed by another, they include the other's. Closing
    when some form that the keys fit has its required names then means the followed one has too
    (its required names are among the others' it allows), and nothing valid is refused."""
    return all(other_required <= required
               for required, _ in shapes for other_required, allowed in shapes
               if (allowed is None or required <= allowed))


def _rewrite(node: Any, rest: Path, defs: dict[str, Any], seen: tuple[str, ...],
             names: list[tuple[frozenset[str], frozenset[str] | None]]) -> tuple[Any, bool]:
    """``node`` with the objects at instance path ``rest`` below it rewritten; ``names`` collects
    each object form that may stand there: (required names, allowed names or None for any)."""
    if not isinstance(node, dict):
        if node is not False:
            names.append(_ANY)
        return node, False
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        if set(node) - {"$defs"} != {"$ref"} or name in seen or name not in defs:
            names.append(_ANY)
            return node, False
        new, changed = _rewrite(defs[name], rest, defs, (*seen, name), names)
        if changed and "$defs" in node and isinstance(new, dict):
            new = {**new, "$defs": node["$defs"]}
        return (new, True) if changed else (node, False)  # a rewritten copy in place of the reference
    if "anyOf" in node:
        branches = [_rewrite(b, rest, defs, seen, names) for b in node["anyOf"]]
        if not any(changed for _, changed in branches):
            return node, False
        return {**node, "anyOf": [b for b, _ in branches]}, True
    if not rest:
        shape = _shape(node)
        if shape is not None:
            names.append(shape)
        return _unordered(node)
    followed = _follow(node, rest, defs, seen, names)
    if followed is None:  # objects may stand there in a form this walk does not see: any keys
        if _may_hold(node, rest[0]):
            names.append(_ANY)
        return node, False
    return followed


def _follow(node: dict[str, Any], rest: Path, defs: dict[str, Any], seen: tuple[str, ...],
            names: list[tuple[frozenset[str], frozenset[str] | None]]) -> tuple[Any, bool] | None:
    """``_rewrite`` one step down from a flat node; None when the step cannot be followed."""
    step, rest = rest[0], rest[1:]
    key, child = None, None
    if isinstance(step, AnyKey):
        patterns = node.get("patternProperties", {})
        if set(node.get("properties", {})) != step.excluded:
            pass
        elif not patterns and isinstance(node.get("additionalProperties"), dict):
            key, child = "additionalProperties", node["additionalProperties"]
        elif len(patterns) == 1 and (node.get("additionalProperties") is False or "" in patterns):
            (pattern, sub), = patterns.items()  # "": the engine's spelling of a pattern every name matches
            new, changed = _rewrite(sub, rest, defs, seen, names)
            return ({**node, "patternProperties": {pattern: new}}, True) if changed else (node, False)
    elif step == ANY_INDEX or isinstance(step, int):
        prefix = node.get("prefixItems", [])
        if isinstance(step, int) and step < len(prefix):
            new, changed = _rewrite(prefix[step], rest, defs, seen, names)
            return ({**node, "prefixItems": [*prefix[:step], new, *prefix[step + 1:]]}, True) if changed \
                else (node, False)
        if not prefix and isinstance(node.get("items"), dict):
            key, child = "items", node["items"]
    elif step in node.get("properties", {}):
        new, changed = _rewrite(node["properties"][step], rest, defs, seen, names)
        return ({**node, "properties": {**node["properties"], step: new}}, True) if changed else (node, False)
    if key is None:
        return None
    new, changed = _rewrite(child, rest, defs, seen, names)
    return ({**node, key: new}, True) if changed else (node, False)


def _may_hold(node: dict[str, Any], step: Any) -> bool:
    """Whether a value of ``node`` may have the key or index ``step``."""
    kind = node.get("type")
    want = "array" if step == ANY_INDEX or isinstance(step, int) else "object"
    if "enum" in node:
        return any(isinstance(v, list if want == "array" else dict) for v in node["enum"])
    if kind is not None and kind != want and want not in kind:
        return False
    return not (want == "object" and node.get("additionalProperties") is False
                and not node.get("patternProperties") and not isinstance(step, AnyKey))


def _shape(node: dict[str, Any]) -> tuple[frozenset[str], frozenset[str] | None] | None:
    """(required names, allowed names or None for any) of the objects an engine node admits;
    None when it admits no object."""
    kind = node.get("type")
    if "enum" in node:
        objects = [v for v in node["enum"] if isinstance(v, dict)]
        return _ANY if objects else None  # fixed values: spelled out in the grammar
    if kind is not None and kind != "object" and "object" not in kind:
        return None
    required = frozenset(node.get("required", ()))
    if node.get("additionalProperties") is not False or node.get("patternProperties"):
        return required, None
    return required, frozenset(k for k, v in node.get("properties", {}).items() if v is not False)


_ANY: tuple[frozenset[str], None] = (frozenset(), None)  # an object form about which nothing is known


def _unordered(node: dict[str, Any]) -> tuple[Any, bool]:
    """An engine object node with its declared properties as exact-name patterns, when exact."""
    kind = node.get("type")
    if not set(node) <= _REWRITABLE or not (kind is None or kind == "object" or "object" in kind):
        return node, False
    props = dict(node.get("properties", {}))
    others = dict(node.get("patternProperties", {}))
    extra = node.get("additionalProperties", True)
    for pattern, sub in list(others.items()):  # a pattern only a few names match: those names
        names = finite_language(pattern, MAX_PATTERN_NAMES)
        if names is not None and not any(name in props for name in names):
            props.update(dict.fromkeys(names, sub))
            del others[pattern]
    for name in node.get("required", []):  # required but undeclared: the engine would order it too
        if name not in props:
            if others or extra is False:
                return node, False
            props[name] = extra
    if not props:
        return node, False
    # The patterns that match (or may match) each name. A name exactly one matches, with the very
    # schema the name has: that pattern spells it already.
    matching = {name: [(p, found) for p in others if (found := _fullmatch(p, name)) is not False]
                for name in props}
    spelled = {name for name, found in matching.items()
               if len(found) == 1 and found[0][1] is True and others[found[0][0]] == props[name]}
    if any(found and name not in spelled for name, found in matching.items()):
        return node, False  # the engine needs disjoint patterns (and both schemas would apply)
    closed = node.get("additionalProperties") is False
    if closed and not set(node.get("required", [])) <= {name for name, sub in props.items() if sub is not False}:
        return node, False
    # A forbidden name stays a pattern with schema `false` where additionalProperties would admit it.
    patterns = {_exact(name): sub for name, sub in props.items()
                if name not in spelled and (sub is not False or not closed)}
    if not patterns:
        return node, False
    out = {k: v for k, v in node.items() if k not in ("properties", "required")}
    out["patternProperties"] = {**patterns, **others}
    return out, True


def _finds(pattern: str, name: str) -> bool | None:
    """Whether the ECMA ``pattern`` (as written) finds a match in ``name``; None: cannot tell."""
    matcher = ecma_matcher(pattern)
    return None if matcher is None else bool(matcher(name))


def _fullmatch(pattern: str, name: str) -> bool | None:
    """Whether an engine pattern (anchored, Rust syntax) matches ``name``; None: cannot tell."""
    try:
        return regex.fullmatch(pattern, name) is not None
    except regex.error:
        return None


def _exact(name: str) -> str:
    return "^" + "".join(escape_char(ord(ch)) for ch in name) + "$"
