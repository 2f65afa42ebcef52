"""The one exception type users see for bad input: it always says what was wrong and what is valid."""


class ConfigError(ValueError):
    """Raised for invalid configuration or input data, with a message naming the problem and valid options."""


def check_choice(what: str, value: object, valid: list | tuple | set | dict) -> None:
    """Raise ConfigError unless ``value`` is one of ``valid``."""
    if value not in valid:
        choices = ", ".join(sorted(str(v) for v in valid))
        raise ConfigError(f"unknown {what} {value!r}; valid choices: {choices}")
