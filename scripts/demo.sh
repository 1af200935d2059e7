#!/usr/bin/env bash
# The main job: a JSON-Schema-constrained chat completion on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/constrain chat "Describe a fictional person: name, age and hobbies." \
  --json-schema '{"type":"object","properties":{"name":{"type":"string","maxLength":40},"age":{"type":"integer","minimum":0,"maximum":120},"hobbies":{"type":"array","items":{"type":"string","maxLength":30},"maxItems":3}},"required":["name","age","hobbies"],"additionalProperties":false}' \
  --temperature 0 --max-tokens 120 "$@"
