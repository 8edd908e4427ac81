"""Numeric outcomes as base-b digits, most significant first (dlcspecs Oracle.md).

An outcome above the largest representable value is attested as that maximum (every digit b-1),
and a negative one, on an unsigned event, as zero: the spec's rule, so every contract's payout
curve sees a value inside its range rather than no attestation at all.
"""

from __future__ import annotations


def max_outcome(base: int, nb_digits: int) -> int:
    return int(base**nb_digits - 1)


def decompose(value: int, *, base: int = 2, nb_digits: int = 20) -> tuple[str, ...]:
    """The digit strings an oracle signs for `value` (clamped into [0, base^nb_digits - 1])."""
    if base < 2 or nb_digits < 1:
        raise ValueError("base must be >= 2 and nb_digits >= 1")
    clamped = min(max(value, 0), max_outcome(base, nb_digits))
    digits = []
    for _ in range(nb_digits):
        clamped, digit = divmod(clamped, base)
        digits.append(str(digit))  # each digit as its decimal string, in any base
    return tuple(reversed(digits))


def recompose(digits: tuple[str, ...], *, base: int = 2) -> int:
    value = 0
    for digit in digits:
        number = int(digit)
        if not 0 <= number < base or str(number) != digit:
            raise ValueError(f"{digit!r} is not a base-{base} digit")
        value = value * base + number
    return value
