"""Reading a config or search-space file (JSON or YAML) strictly: a key given twice is an error.

Both parsers keep the last of two equal keys without a word (``json.loads``, PyYAML's
``safe_load``), so a file that sets ``lr`` twice trains with whichever came last, and the user
never learns that one of their lines had no effect. Shared by ``trainables.cli`` (``--config``)
and ``sweeps.space`` (``--space``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.config import yaml11_numbers


class DuplicateKeyError(ValueError):
    """A mapping in the file sets one key twice."""


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeyError(f"the key `{key}` appears twice in one object; keep one of them")
        seen[key] = value
    return seen


def _strict_yaml_loader() -> type:
    import yaml  # only for YAML files

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise DuplicateKeyError(f"the key `{key}` appears twice in one mapping (lines {lines[key]} and "
                                            f"{line}); keep one of them")
                lines[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def parse_file(path: str | Path) -> Any:
    """The file's content (``.json``: JSON, anything else: YAML, with 1e-4 read as a number).
    Raises ``ValueError`` naming the file for bad syntax or a duplicate key."""
    path = Path(path)
    text = path.read_text()
    is_json = path.suffix.lower() == ".json"
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=_json_pairs)
        import yaml

        return yaml11_numbers(yaml.load(text, Loader=_strict_yaml_loader()))  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as exc:
        raise ValueError(f"{path}: {exc}.") from exc
    except Exception as exc:  # json.JSONDecodeError is a ValueError, yaml.YAMLError is not
        raise ValueError(f"{path} is not valid {'JSON' if is_json else 'YAML'}: {exc}. Fix its syntax.") from exc
