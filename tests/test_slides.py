"""docs/slides.md is a Slidev deck: a headmatter, slides separated by `---`, each with a title,
balanced code fences, and only files that exist named in it."""

from __future__ import annotations

import re

import yaml

from tests.fixtures_kube import ROOT

DECK = ROOT / "docs/slides.md"


def slides() -> tuple[dict[str, object], list[str]]:
    """The headmatter and the slides (a slide's own frontmatter merged into its text)."""
    text = DECK.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    parts = re.split(r"^---$", body, flags=re.M)
    out: list[str] = []
    pending = ""
    for part in parts:
        # A part that is only YAML is the frontmatter of the slide that follows it.
        if part.strip() and "#" not in part and "```" not in part and ":" in part:
            yaml.safe_load(part)
            pending = part
            continue
        out.append(pending + part)
        pending = ""
    return yaml.safe_load(head), out


def test_the_deck_has_a_headmatter_and_titled_slides() -> None:
    head, deck = slides()
    assert head["title"] == "ec2-terminal: the architecture"
    assert head["theme"] == "default"
    assert 8 <= len(deck) <= 15
    for i, slide in enumerate(deck):
        assert re.search(r"^# \S", slide, re.M), f"slide {i + 1} has no title"
        assert slide.count("```") % 2 == 0, f"slide {i + 1} leaves a code fence open"


def test_the_files_it_names_exist() -> None:
    text = DECK.read_text()
    named = set(re.findall(r"`((?:docs|hack|k8s|charts)/[\w./-]+)`", text))
    assert named
    for path in named:
        assert (ROOT / path.split(" ")[0]).exists(), path
