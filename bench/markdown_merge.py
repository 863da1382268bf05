"""Write the benchmark's tables into docs/performance.md without losing what people wrote.

``python -m bench --markdown docs/performance.md`` used to rewrite the whole file, deleting the
hand-written sections between the generated ones (issue 23). Now each generated ``## `` section
replaces the section of the same title where it stands, new ones are appended, and every other
section (and the text under the title, but for the generated "Measured ..." and "Peak ..."
paragraphs) is kept as it was.
"""

from __future__ import annotations

GENERATED_PREAMBLE = ("Measured ", "Peak float32 ")


def split_sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(lines before the first '## ' heading, [(heading line, body lines), ...])."""
    head: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line, []))
        elif sections:
            sections[-1][1].append(line)
        else:
            head.append(line)
    return head, sections


def _paragraphs(lines: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            out[-1].append(line)
        elif out[-1]:
            out.append([])
    return [p for p in out if p]


def merge(old: str, new: str) -> str:
    """``old`` with the sections and preamble paragraphs that ``new`` generates replaced."""
    old_head, old_sections = split_sections(old)
    new_head, new_sections = split_sections(new)
    generated = {title: body for title, body in new_sections}
    fresh_head = _paragraphs(new_head)
    # the old "Measured ..." lines go only when the new text brings its own (a bench that
    # writes a few sections, like bench.filters, leaves the main bench's preamble alone)
    replaces_preamble = any(p[0].startswith(GENERATED_PREAMBLE) for p in fresh_head)
    kept_head = [p for p in _paragraphs(old_head) if not p[0].startswith("# ") and not (
        replaces_preamble and p[0].startswith(GENERATED_PREAMBLE))]
    title = [p for p in fresh_head if p[0].startswith("# ")][:1] or [
        p for p in _paragraphs(old_head) if p[0].startswith("# ")][:1]
    head = title + [p for p in fresh_head if p[0].startswith(GENERATED_PREAMBLE)] + kept_head
    lines = [line for p in head for line in (*p, "")]
    seen = set()
    for heading, body in old_sections:
        if heading in generated:
            body = generated[heading]
            seen.add(heading)
        lines += [heading, *body]
    for heading, body in new_sections:
        if heading not in seen:
            lines += [heading, *body]
    return "\n".join(lines).rstrip("\n") + "\n"
