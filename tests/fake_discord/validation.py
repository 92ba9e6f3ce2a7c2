"""Payload checks Discord performs (HTTP 400, code 50035 "Invalid Form Body").

Only limits a bot can plausibly exceed are checked: message length, embed limits, component
shapes, autocomplete choices and application command definitions.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
# The locales Discord accepts as keys of name_localizations / description_localizations.
DISCORD_LOCALES = frozenset(
    [
        "id",
        "da",
        "de",
        "en-GB",
        "en-US",
        "es-ES",
        "es-419",
        "fr",
        "hr",
        "it",
        "lt",
        "hu",
        "nl",
        "no",
        "pl",
        "pt-BR",
        "ro",
        "fi",
        "sv-SE",
        "vi",
        "tr",
        "cs",
        "el",
        "bg",
        "ru",
        "uk",
        "hi",
        "th",
        "zh-CN",
        "ja",
        "zh-TW",
        "ko",
    ]
)


def valid_command_name(name: str) -> bool:
    """Discord's rule for a slash command's or option's name, localized ones included:
    ``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``, lower case where a letter has one."""
    if not 1 <= len(name) <= 32 or name != name.lower():
        return False
    for char in name:
        deva_or_thai = 0x0900 <= ord(char) <= 0x097F or 0x0E00 <= ord(char) <= 0x0E7F
        if char not in "-_" and unicodedata.category(char)[0] not in "LN" and not deva_or_thai:
            return False
    return True


def _localization_errors(item: dict[str, Any], where: str, *, slash: bool) -> list[str]:
    errors: list[str] = []
    for key, limit in (("name_localizations", 32), ("description_localizations", 100)):
        values = item.get(key) or {}
        if not isinstance(values, dict):
            errors.append(f"{where}.{key}: must be an object")
            continue
        for locale, text in values.items():
            if locale not in DISCORD_LOCALES:
                errors.append(f"{where}.{key}.{locale}: invalid locale")
            elif not isinstance(text, str) or not 1 <= len(text) <= limit:
                errors.append(f"{where}.{key}.{locale}: 1-{limit} characters")
            elif key == "name_localizations" and slash and not valid_command_name(text):
                errors.append(f"{where}.{key}.{locale}: invalid name {text!r}")
    return errors


def message_errors(data: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    content = data.get("content")
    if content is not None and not isinstance(content, str):
        errors.append("content: must be a string")
    elif isinstance(content, str) and len(content) > 2000:
        errors.append(f"content: must be 2000 or fewer in length (got {len(content)})")
    embeds = data.get("embeds") or []
    if len(embeds) > 10:
        errors.append("embeds: at most 10")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            value = embed.get(key)
            if value is not None:
                total += len(str(value))
                if len(str(value)) > limit:
                    errors.append(f"embeds.{i}.{key}: must be {limit} or fewer in length")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            errors.append(f"embeds.{i}.fields: at most 25")
        for j, fld in enumerate(fields):
            name, value = str(fld.get("name", "")), str(fld.get("value", ""))
            total += len(name) + len(value)
            if not name or len(name) > 256:
                errors.append(f"embeds.{i}.fields.{j}.name: 1-256 characters")
            if not value or len(value) > 1024:
                errors.append(f"embeds.{i}.fields.{j}.value: 1-1024 characters")
        footer = embed.get("footer") or {}
        if len(str(footer.get("text", ""))) > 2048:
            errors.append(f"embeds.{i}.footer.text: must be 2048 or fewer in length")
        total += len(str(footer.get("text", "")))
    if total > 6000:
        errors.append(f"embeds: total text must be 6000 or fewer (got {total})")
    errors.extend(_component_errors(data.get("components") or []))
    return errors


def _component_errors(rows: list[dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    if len(rows) > 40:
        errors.append("components: too many")
    seen: set[str] = set()

    def check(item: dict[str, Any], path: str) -> None:
        custom_id = item.get("custom_id")
        if custom_id is not None:
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 100:
                errors.append(f"{path}.custom_id: 1-100 characters")
            elif custom_id in seen:
                errors.append(f"{path}.custom_id: duplicate {custom_id!r}")
            seen.add(str(custom_id))
        if item.get("type") == 2:
            label = item.get("label")
            if label is not None and len(str(label)) > 80:
                errors.append(f"{path}.label: must be 80 or fewer in length")
            if item.get("style") == 5:
                if not item.get("url"):
                    errors.append(f"{path}.url: link buttons need a url")
            elif item.get("style") != 6 and not custom_id:
                errors.append(f"{path}.custom_id: required")
        for k, child in enumerate(item.get("components") or []):
            check(child, f"{path}.components.{k}")

    for i, row in enumerate(rows):
        if row.get("type") == 1 and len(row.get("components") or []) > 5:
            errors.append(f"components.{i}: an action row holds at most 5 components")
        check(row, f"components.{i}")
    return errors


def autocomplete_errors(data: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    choices = data.get("choices")
    if not isinstance(choices, list):
        return ["choices: required list"]
    if len(choices) > 25:
        errors.append(f"choices: at most 25 (got {len(choices)})")
    for i, choice in enumerate(choices):
        name = choice.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            errors.append(f"choices.{i}.name: 1-100 characters")
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            errors.append(f"choices.{i}.value: at most 100 characters")
    return errors


def command_errors(cmd: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    name = cmd.get("name")
    ctype = cmd.get("type", 1)
    if not isinstance(name, str) or (ctype == 1 and not _COMMAND_NAME.match(name)):
        errors.append(f"name: invalid {name!r}")
    elif ctype == 1 and name != name.lower():
        errors.append(f"name: must be lowercase {name!r}")
    if ctype == 1:
        desc = cmd.get("description")
        if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
            errors.append(f"{name}.description: 1-100 characters")
    errors.extend(_localization_errors(cmd, str(name), slash=ctype == 1))
    errors.extend(_option_errors(cmd.get("options") or [], str(name)))
    return errors


def _option_errors(options: list[dict[str, Any]], path: str) -> list[str]:
    errors: list[str] = []
    if len(options) > 25:
        errors.append(f"{path}.options: at most 25")
    optional_seen = False
    names: set[str] = set()
    for opt in options:
        name = opt.get("name")
        where = f"{path}.{name}"
        if not isinstance(name, str) or not _COMMAND_NAME.match(name) or name != name.lower():
            errors.append(f"{where}: invalid option name")
        if name in names:
            errors.append(f"{where}: duplicate option name")
        names.add(str(name))
        desc = opt.get("description")
        if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
            errors.append(f"{where}.description: 1-100 characters")
        errors.extend(_localization_errors(opt, where, slash=True))
        for k, choice in enumerate(opt.get("choices") or []):
            for locale, text in (choice.get("name_localizations") or {}).items():
                if locale not in DISCORD_LOCALES or not 1 <= len(str(text)) <= 100:
                    errors.append(f"{where}.choices.{k}.name_localizations.{locale}: invalid")
        if opt.get("type") in (1, 2):
            errors.extend(_option_errors(opt.get("options") or [], where))
            continue
        if opt.get("required"):
            if optional_seen:
                errors.append(f"{where}: required options must come before optional ones")
        else:
            optional_seen = True
        if opt.get("autocomplete") and opt.get("choices"):
            errors.append(f"{where}: autocomplete and choices are exclusive")
        if len(opt.get("choices") or []) > 25:
            errors.append(f"{where}.choices: at most 25")
    return errors
