"""Explain's verdict line says which interfaces enforce nothing of ours from
the findings' `unattached` field, never from the rendered text."""

from __future__ import annotations

from reconciler.engine.explain import Answer, Finding, _not_enforced, render
from reconciler.engine.explain_attached import unenforced_note


def finding(endpoint: str, action: str, unattached: str = "") -> Finding:
    kernel = unenforced_note(unattached, "why") if unattached else "Allow by x (agrees)"
    return Finding(endpoint, "ingress", action, "x", "", 1, True, kernel, unattached=unattached)


def test_the_last_verdict_names_each_unattached_interface_once_in_order():
    found = (
        finding("shop/b", "Deny", "cali-b"),
        finding("shop/a", "Allow", "cali-a"),
        finding("shop/c", "Allow", "cali-b"),
    )
    text = "Verdict: Allow (before NAT)\n" + render(found)
    lines = _not_enforced(Answer(text, found)).splitlines()
    assert lines[0] == "Verdict: Allow (before NAT)"  # only the last verdict line
    assert lines[-1] == "Verdict: Deny (not enforced: no program of ours on cali-a, cali-b)"


def test_a_note_in_the_text_without_the_fact_changes_nothing():
    """The text alone (a kernel line that reads like the note) is not the fact."""
    found = (finding("shop/b", "Deny"),)
    text = "  kernel: our program is not attached to cali-b (x)\n" + render(found)
    assert _not_enforced(Answer(text, found)) == text


def test_every_interface_attached_leaves_the_answer_as_it_is():
    found = (finding("shop/a", "Allow"), finding("shop/b", "Allow"))
    text = render(found)
    assert _not_enforced(Answer(text, found)) == text
