"""The one exception type whose message is shown to the user as a single line, and any exception in one line."""


class UserError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


def first_line(e: BaseException, limit: int = 160) -> str:
    """`e` in one line of at most `limit` characters: its message's first line, named by its type unless it is a
    UserError (written for the user already); cut at a sentence's end where possible (torch's out-of-memory
    message runs long)."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not isinstance(e, UserError):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[:cut + 1] if cut > 40 else text[:limit - 3] + "..."
