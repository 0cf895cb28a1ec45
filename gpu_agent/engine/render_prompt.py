"""Prompt templates: ``{subject}`` is where a member's trained token goes ("photo of {subject} in Rome").

Templates come from members, so they are filled by plain substitution, never ``str.format``: a prompt such as
``{subject.__class__}`` or ``{0}`` must not reach Python's formatting machinery. Braces other than ``{subject}``
stay in the text as typed.
"""

from __future__ import annotations

SUBJECT = "{subject}"


class TemplateError(ValueError):
    """A prompt template that cannot be used; the message is safe to show to the member."""


def check_template(template: str, *, require_subject: bool = False) -> str:
    """Return ``template`` stripped, or raise TemplateError saying what is wrong with it."""
    text = template.strip()
    if not text:
        raise TemplateError("the prompt is empty")
    if require_subject and SUBJECT not in text:
        raise TemplateError("the prompt template has no {subject} placeholder")
    return text


def fill_prompt(template: str, subject: str) -> str:
    """Put ``subject`` where ``{subject}`` stands.

    With a subject but no placeholder, the subject leads the prompt: a personal LoRA only draws its member
    when its token is in the prompt, and a member who typed "at the beach" means themselves at the beach.
    Without a subject (a bare base render) the placeholder becomes "a person".
    """
    text = check_template(template)
    who = " ".join(subject.split())
    if not who:
        return text.replace(SUBJECT, "a person")
    if SUBJECT in text:
        return text.replace(SUBJECT, who)
    return f"photo of {who}, {text}"
